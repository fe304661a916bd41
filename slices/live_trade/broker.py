"""Alpaca through alpaca-py: the trading client with bounded retries, idempotent submission, the
``trade_updates`` stream on a background thread.

* Keys come only from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` (:func:`keys_from_env`); they
  are passed to alpaca-py and never printed, logged or written anywhere by this slice.
* Endpoints: ``--base-url`` / ``$APCA_API_BASE_URL`` and ``--stream-url`` / ``$APCA_API_STREAM_URL``
  are passed to alpaca-py's ``url_override`` (tests point them at a fake server on 127.0.0.1).
* Every request has a timeout (``timeout`` seconds). Transient failures (timeouts, connection
  errors, HTTP 429, 5xx) are retried at most ``attempts`` times: 429 waits until the
  ``X-RateLimit-Reset`` time (epoch seconds) when the response gives one, else exponential
  backoff ``backoff x 2^k`` capped at ``max_wait`` seconds; alpaca-py's own fixed-wait retry is
  switched off so the two never stack. Any other 4xx is a :class:`Rejected` (never retried).
* :meth:`Alpaca.submit` never sends an order twice: it looks the client order id up first, and
  after every transient failure looks it up again before retrying (the request may have reached
  Alpaca); a 422 "client_order_id must be unique" also resolves to the existing order.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

KEY_VARS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")


class Rejected(Exception):
    """The broker refused a request with a 4xx other than 429: ``status`` (HTTP code) and
    ``message`` (the broker's text). Never retried."""

    def __init__(self, status: int | None, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class Unavailable(Exception):
    """The broker did not answer after every retry (timeouts, 429, 5xx): one line."""


@dataclass(frozen=True)
class Keys:
    """The API key pair (repr hides both)."""

    key_id: str
    secret: str

    def __repr__(self) -> str:
        return "Keys(<hidden>)"

    def secrets(self) -> tuple[str, str]:
        return self.key_id, self.secret


def keys_from_env() -> Keys:
    """The keys from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``; ValueError naming the
    variables that are missing or empty (never their values)."""
    missing = [v for v in KEY_VARS if not os.environ.get(v, "").strip()]
    if missing:
        raise ValueError(f"{' and '.join(missing)} not set: export your Alpaca API key id and secret key as "
                         f"{' and '.join(KEY_VARS)} (paper keys for --account paper)")
    return Keys(os.environ[KEY_VARS[0]].strip(), os.environ[KEY_VARS[1]].strip())


def endpoint(given: str | None, env: str) -> str | None:
    """``--base-url``/``--stream-url`` if given, else the environment variable, else None (alpaca-py's default)."""
    return given or os.environ.get(env) or None


def _session_with_timeout(session, timeout: float) -> None:
    """Give every request of a requests.Session a default timeout (alpaca-py sets none)."""
    from requests.adapters import HTTPAdapter

    class _Timeout(HTTPAdapter):
        def send(self, request, **kw):
            if kw.get("timeout") is None:
                kw["timeout"] = timeout
            return super().send(request, **kw)

    for prefix in ("http://", "https://"):
        session.mount(prefix, _Timeout())


def _status_and_message(exc) -> tuple[int | None, str, dict]:
    import json

    status = exc.status_code
    headers = dict(exc.response.headers) if exc.response is not None else {}
    try:
        msg = json.loads(str(exc)).get("message") or str(exc)
    except (ValueError, AttributeError):
        msg = str(exc)
    return status, " ".join(str(msg).split())[:300], headers


class Alpaca:
    """One Alpaca account through alpaca-py's ``TradingClient``.

    ``paper``: the paper endpoint (else live); ``base_url``: url_override (None: alpaca-py's
    default for ``paper``); ``timeout`` seconds per request; ``attempts`` tries per call for
    transient failures; ``backoff``/``max_wait`` seconds; ``sleep`` is injectable for tests and
    ``on_wait(message)`` is told about every retry (the session logs it as an event).
    """

    def __init__(self, keys: Keys, paper: bool, base_url: str | None = None, *, timeout: float = 10.0,
                 attempts: int = 5, backoff: float = 0.5, max_wait: float = 30.0, sleep=time.sleep, on_wait=None,
                 data_url: str | None = None, feed: str = "iex"):
        from alpaca.trading.client import TradingClient

        key, secret = keys.secrets()
        self.client = TradingClient(key, secret, paper=paper, url_override=base_url)
        self.client._retry = 0  # alpaca-py's fixed-wait 429/504 retry off: this class retries (and reads the reset header)
        _session_with_timeout(self.client._session, timeout)
        self.attempts, self.backoff, self.max_wait = max(1, attempts), backoff, max_wait
        self.sleep, self.on_wait = sleep, on_wait
        self._keys, self.data_url, self.feed, self.timeout = keys, data_url, feed, timeout
        self._data = None

    # ------------------------------------------------------------------ retries
    def _wait_for(self, k: int, status: int | None, headers: dict) -> float:
        if status == 429:
            reset = headers.get("X-RateLimit-Reset") or headers.get("x-ratelimit-reset")
            try:
                return min(self.max_wait, max(0.05, float(reset) - time.time()))
            except (TypeError, ValueError):
                pass
        return min(self.max_wait, self.backoff * 2 ** k)

    def call(self, what: str, fn, *args, before_retry=None):
        """``fn(*args)`` with the retry policy of the module docstring. ``before_retry()`` runs
        before each retry and may return a result that ends the call (submit's lookup).
        Raises Rejected (4xx) or Unavailable (retries exhausted)."""
        import requests
        from alpaca.common.exceptions import APIError

        last = ""
        for k in range(self.attempts):
            try:
                return fn(*args)
            except APIError as exc:
                status, msg, headers = _status_and_message(exc)
                if status is not None and 400 <= status < 500 and status != 429:
                    raise Rejected(status, msg) from None
                last = f"HTTP {status}: {msg}"
                wait = self._wait_for(k, status, headers)
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}"
                wait = self._wait_for(k, None, {})
            if k + 1 >= self.attempts:
                break
            if self.on_wait:
                self.on_wait(f"{what}: {last}; retry {k + 1} of {self.attempts - 1} in {wait:.2f} s")
            self.sleep(wait)
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
        raise Unavailable(f"{what}: broker unavailable after {self.attempts} attempt(s) ({last})")

    # ------------------------------------------------------------------ reads
    def account(self):
        """``TradeAccount`` (account_number, status, equity, last_equity, cash, buying_power ...)."""
        return self.call("get account", self.client.get_account)

    def clock(self):
        """``Clock`` (timestamp, is_open, next_open, next_close)."""
        return self.call("get clock", self.client.get_clock)

    def calendar_today(self, day):
        """The ``Calendar`` entry of ``day`` (a date) or None when the market does not open that day."""
        from alpaca.trading.requests import GetCalendarRequest

        rows = self.call("get calendar", self.client.get_calendar, GetCalendarRequest(start=day, end=day))
        return next((c for c in rows if c.date == day), None)

    def positions(self) -> dict[str, tuple[float, float]]:
        """Broker positions: symbol -> (signed qty, avg entry price)."""
        out = {}
        for p in self.call("get positions", self.client.get_all_positions):
            q = float(p.qty)
            side = getattr(p.side, "value", p.side)
            out[p.symbol] = (-abs(q) if side == "short" else q, float(p.avg_entry_price))
        return out

    def open_orders(self) -> list:
        """Every open order of the account (``Order`` models), up to 500."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        return self.call("get open orders", self.client.get_orders,
                         GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))

    def find(self, client_order_id: str):
        """The order with this client order id, or None when Alpaca does not know it (404)."""
        try:
            return self.call("look up order", self.client.get_order_by_client_id, client_order_id)
        except Rejected as exc:
            if exc.status == 404:
                return None
            raise

    def latest_trade(self, symbol: str) -> float | None:
        """The price of the latest trade of ``symbol`` from Alpaca's market-data API
        (``StockHistoricalDataClient.get_stock_latest_trade``, feed ``self.feed``, url_override
        ``self.data_url``), or None when the API has no trade for it. Raises Rejected/Unavailable."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockLatestTradeRequest

        if self._data is None:
            from alpaca.data.historical.stock import StockHistoricalDataClient

            key, secret = self._keys.secrets()
            self._data = StockHistoricalDataClient(key, secret, url_override=self.data_url)
            self._data._retry = 0
            _session_with_timeout(self._data._session, self.timeout)
        req = StockLatestTradeRequest(symbol_or_symbols=symbol, feed=DataFeed(self.feed))
        trades = self.call(f"latest trade {symbol}", self._data.get_stock_latest_trade, req)
        t = trades.get(symbol) if isinstance(trades, dict) else None
        return float(t.price) if t is not None and t.price and t.price > 0 else None

    # ------------------------------------------------------------------ writes
    def submit(self, order: dict):
        """Send ``order`` (ledger columns: id, symbol, side, type, qty, limit_price, time_in_force;
        ``extended_hours`` optional) unless Alpaca already has its client order id. Returns
        ``(Order, sent)``; ``sent`` is False when an existing order was found before any POST.
        Raises Rejected (4xx: the order is refused) or Unavailable."""
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        cid = order["id"]
        existing = self.find(cid)
        if existing is not None:
            return existing, False
        common = dict(symbol=order["symbol"], qty=order["qty"], side=OrderSide(order["side"]),
                      time_in_force=TimeInForce(order["time_in_force"]), client_order_id=cid,
                      extended_hours=bool(order.get("extended_hours")))
        if order["type"] == "limit":
            req = LimitOrderRequest(limit_price=order["limit_price"], **common)
        else:
            req = MarketOrderRequest(**common)
        try:
            res = self.call(f"submit {cid}", self.client.submit_order, req, before_retry=lambda: self.find(cid))
        except Rejected as exc:
            if exc.status == 422 and "client_order_id" in exc.message:
                found = self.find(cid)
                if found is not None:
                    return found, False
            raise
        return res, True

    def cancel(self, broker_id: str) -> None:
        """Cancel an order by Alpaca's id (a 404/422 for an order already closed is ignored)."""
        try:
            self.call(f"cancel {broker_id}", self.client.cancel_order_by_id, broker_id)
        except Rejected as exc:
            if exc.status not in (404, 422):
                raise


class _StreamThread:
    """An alpaca-py websocket stream run on a daemon thread; every message (an alpaca-py model)
    lands in :attr:`queue`. alpaca-py reconnects a dropped websocket itself (backoff 1..30 s); its
    log lines (one line each, no traceback) land in the queue as ``("log", level, message)`` so the
    session records them as events."""

    def __init__(self, stream, logger: str, name: str):
        self.queue: queue.Queue = queue.Queue()
        self.stream = stream
        self._log = _QueueLog(self.queue)
        log = logging.getLogger(logger)
        log.addHandler(self._log)
        log.propagate = False
        log.setLevel(logging.INFO)
        self.thread = threading.Thread(target=self.stream.run, name=name, daemon=True)

    async def _put(self, item) -> None:
        self.queue.put(item)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the stream to close (bounded: the thread is a daemon and dies with the process)."""
        try:
            if self.stream._loop is not None:
                self.stream.stop()
        except Exception:
            pass
        self.thread.join(timeout=2.0)


class TradeUpdates(_StreamThread):
    """``trade_updates`` from alpaca-py's ``TradingStream`` (``TradeUpdate`` models in the queue)."""

    def __init__(self, keys: Keys, paper: bool, url: str | None):
        from alpaca.trading.stream import TradingStream

        key, secret = keys.secrets()
        super().__init__(TradingStream(key, secret, paper=paper, url_override=url), "alpaca.trading.stream",
                         "trade_updates")
        self.stream.subscribe_trade_updates(self._put)


class BarStream(_StreamThread):
    """1-minute bars of ``symbols`` from alpaca-py's ``StockDataStream`` (``Bar`` models in the
    queue: symbol, timestamp = the minute's open time, open high low close volume). ``url`` is the
    stream's url_override: the whole websocket URL (Alpaca's default
    ``wss://stream.data.alpaca.markets/v2/<feed>``); ``feed`` ``iex`` (free) or ``sip``."""

    def __init__(self, keys: Keys, symbols: list[str], url: str | None, feed: str = "iex"):
        from alpaca.data.enums import DataFeed
        from alpaca.data.live.stock import StockDataStream

        key, secret = keys.secrets()
        super().__init__(StockDataStream(key, secret, feed=DataFeed(feed), url_override=url),
                         "alpaca.data.live.websocket", "bars")
        self.stream.subscribe_bars(self._put, *symbols)


class _QueueLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip().splitlines()
        self.queue.put(("log", record.levelname.lower(), msg[0] if msg else record.levelname))

    def __init__(self, q: queue.Queue):
        super().__init__()
        self.queue = q
