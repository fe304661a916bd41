"""A fake Alpaca on 127.0.0.1 (ephemeral ports) for the live_trade tests: the REST endpoints and
JSON shapes alpaca-py's TradingClient parses, the ``trade_updates`` websocket protocol of its
TradingStream (JSON: authenticate -> authorization, listen -> listening, then stream messages),
the market-data REST endpoint of StockHistoricalDataClient.get_stock_latest_trade
(``GET /v2/stocks/trades/latest``: prices from :attr:`FakeAlpaca.last_trade`) and the market-data
websocket of StockDataStream (msgpack on ``/v2/iex``: ``connected``, ``auth`` -> ``authenticated``,
``subscribe`` -> ``subscription``, then bars pushed with :meth:`FakeAlpaca.push_bar`).

A demo server for a session by hand (README "A full session against the fake server"):
``python -m tests.live_trade.fake_alpaca`` prints the URLs and keys to use and serves until
Ctrl-C (at most ``--minutes``, 60).

Runs in threads of the test process (``http.server`` + ``websockets.sync.server``); the session
under test is a subprocess pointed at it with ``--base-url``/``--stream-url``. Faults are queued
with :meth:`FakeAlpaca.fault`: an HTTP status (429 carries ``X-RateLimit-Reset``), ``"timeout"``
(answer after the client's timeout) or ``"hang_after_accept"`` (POST /v2/orders: the order is
created, then no reply: for the kill test). :meth:`drop_streams` closes every websocket.
Every wait is bounded.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import msgpack
from websockets.sync.server import serve

KEY_ID, SECRET = "PKTESTKEY0123456789", "sEcReT/0123456789abcdefghijklmnopqrstuv"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAlpaca:
    """State: ``account`` cash, ``positions`` {symbol: [qty, avg]}, ``orders`` {id: dict},
    ``market_open``, ``fill_price`` {symbol: price}, ``fill_mode`` ``fill`` | ``partial`` (half,
    then the rest) | ``none`` (accepted, never filled). ``posts`` counts POST /v2/orders per
    client order id; ``requests`` logs (method, path)."""

    def __init__(self, cash: float = 100_000.0):
        self.lock = threading.RLock()
        self.cash = cash
        self.last_equity = cash
        self.positions: dict[str, list[float]] = {}
        self.orders: dict[str, dict] = {}
        self.by_cid: dict[str, str] = {}
        self.market_open = True
        self.fill_price: dict[str, float] = {}
        self.fill_mode = "fill"
        self.fill_delay = 0.05
        self.posts: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[str, str, object]] = []
        self.accepted = threading.Event()
        self.clients: list = []
        self.data_clients: list = []
        self.subscribed: dict[str, list[str]] = {}
        self.last_trade: dict[str, float] = {}
        self.clock_time: datetime | None = None
        self.trading_blocked = False
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._ws = serve(self._ws_handler, "127.0.0.1", 0)
        self._threads = [threading.Thread(target=self._http.serve_forever, daemon=True),
                         threading.Thread(target=self._ws.serve_forever, daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws.socket.getsockname()[1]}/stream"

    @property
    def data_stream_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws.socket.getsockname()[1]}/v2/iex"

    def push_bar(self, symbol: str, t: datetime, o: float, h: float, lo: float, c: float, v: float) -> int:
        """Send one 1-minute bar (open time ``t``) to every market-data client subscribed to
        ``symbol``; returns how many clients got it."""
        msg = msgpack.packb([{"T": "b", "S": symbol, "o": o, "h": h, "l": lo, "c": c, "v": v,
                              "t": msgpack.Timestamp.from_datetime(t), "n": 10, "vw": (o + c) / 2}], datetime=False)
        sent = 0
        for ws, syms in list(self.data_clients):
            if symbol in syms or "*" in syms:
                try:
                    ws.send(msg)
                    sent += 1
                except Exception:
                    pass
        return sent

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._ws.shutdown()

    # ------------------------------------------------------------------ faults and helpers
    def fault(self, method: str, path_prefix: str, kind) -> None:
        """Queue one fault for the next request matching ``method`` and ``path_prefix``."""
        with self.lock:
            self.faults.append((method, path_prefix, kind))

    def _take_fault(self, method: str, path: str):
        with self.lock:
            for i, (m, p, k) in enumerate(self.faults):
                if m == method and path.startswith(p):
                    del self.faults[i]
                    return k
        return None

    def equity(self) -> float:
        with self.lock:
            return self.cash + sum(q * self.fill_price.get(s, avg) for s, (q, avg) in self.positions.items())

    def drop_streams(self) -> None:
        for c in list(self.clients):
            try:
                c.close()
            except Exception:
                pass

    def push(self, event: str, order: dict, qty: float | None = None, price: float | None = None) -> None:
        msg = json.dumps({"stream": "trade_updates", "data": {
            "event": event, "order": dict(order), "timestamp": _now(), "qty": qty, "price": price,
            "position_qty": self.positions.get(order["symbol"], [0.0])[0], "execution_id": str(uuid.uuid4())}})
        for c in list(self.clients):
            try:
                c.send(msg)
            except Exception:
                pass

    def set_position(self, symbol: str, qty: float, avg: float) -> None:
        """Change the account behind the session's back (e.g. a manual trade)."""
        with self.lock:
            if qty:
                self.positions[symbol] = [qty, avg]
            else:
                self.positions.pop(symbol, None)
            self.cash -= qty * avg

    # ------------------------------------------------------------------ orders
    def _fill(self, oid: str, q: float) -> None:
        with self.lock:
            o = self.orders[oid]
            if o["status"] in ("filled", "canceled", "rejected"):
                return
            px = self.fill_price.get(o["symbol"], 100.0)
            filled = float(o["filled_qty"]) + q
            prev = float(o["filled_qty"])
            avg = px if not prev else (prev * float(o["filled_avg_price"]) + q * px) / filled
            o.update(filled_qty=str(filled), filled_avg_price=str(avg), updated_at=_now())
            o["status"] = "filled" if filled >= float(o["qty"]) - 1e-9 else "partially_filled"
            if o["status"] == "filled":
                o["filled_at"] = _now()
            sign = 1 if o["side"] == "buy" else -1
            pq, pavg = self.positions.get(o["symbol"], [0.0, 0.0])
            nq = pq + sign * q
            navg = (abs(pq) * pavg + q * px) / (abs(pq) + q) if pq == 0 or (pq > 0) == (sign > 0) else pavg
            if abs(nq) < 1e-9:
                self.positions.pop(o["symbol"], None)
            else:
                self.positions[o["symbol"]] = [nq, navg if (nq > 0) == (pq > 0) or pq == 0 else px]
            self.cash -= sign * q * px
            event = "fill" if o["status"] == "filled" else "partial_fill"
        self.push(event, o, q, px)

    def _work(self, oid: str) -> None:
        time.sleep(self.fill_delay)
        o = self.orders[oid]
        self.push("new", o)
        if self.fill_mode == "none":
            return
        q = float(o["qty"])
        if self.fill_mode == "partial" and q >= 2:
            half = float(int(q // 2))
            self._fill(oid, half)
            time.sleep(self.fill_delay)
            self._fill(oid, q - half)
        else:
            self._fill(oid, q)

    def create_order(self, body: dict) -> dict:
        now = _now()
        oid = str(uuid.uuid4())
        o = {"id": oid, "client_order_id": body.get("client_order_id") or str(uuid.uuid4()), "created_at": now,
             "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None,
             "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
             "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])), "symbol": body["symbol"],
             "asset_class": "us_equity", "notional": None, "qty": str(body["qty"]), "filled_qty": "0",
             "filled_avg_price": None, "order_class": "simple", "order_type": body["type"], "type": body["type"],
             "side": body["side"], "time_in_force": body["time_in_force"], "limit_price": body.get("limit_price"),
             "stop_price": body.get("stop_price"), "status": "accepted",
             "extended_hours": bool(body.get("extended_hours")), "legs": None, "trail_percent": None,
             "trail_price": None, "hwm": None}
        with self.lock:
            self.orders[oid] = o
            self.by_cid[o["client_order_id"]] = oid
        return o

    # ------------------------------------------------------------------ HTTP
    def _account(self) -> dict:
        eq = self.equity()
        return {"id": "3f1b0a1e-0000-4000-8000-000000000001", "account_number": "PA1TESTACCT", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "buying_power": str(2 * self.cash), "cash": str(self.cash),
                "portfolio_value": str(eq), "equity": str(eq), "last_equity": str(self.last_equity),
                "pattern_day_trader": False, "trading_blocked": self.trading_blocked, "transfers_blocked": False,
                "account_blocked": False, "trade_suspended_by_user": False, "multiplier": "2",
                "shorting_enabled": True, "long_market_value": "0", "short_market_value": "0",
                "created_at": "2024-01-02T00:00:00Z", "daytrade_count": 0}

    def _position(self, sym: str, q: float, avg: float) -> dict:
        px = self.fill_price.get(sym, avg)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, sym)), "symbol": sym, "exchange": "NASDAQ",
                "asset_class": "us_equity", "asset_marginable": True, "avg_entry_price": str(avg), "qty": str(abs(q)),
                "side": "long" if q > 0 else "short", "market_value": str(q * px), "cost_basis": str(q * avg),
                "unrealized_pl": str(q * (px - avg)), "current_price": str(px), "qty_available": str(abs(q))}

    def _clock(self) -> dict:
        now = self.clock_time or datetime.now(timezone.utc)
        return {"timestamp": now.isoformat(), "is_open": self.market_open,
                "next_open": (now + timedelta(hours=1)).isoformat(), "next_close": (now + timedelta(hours=2)).isoformat()}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code: int, body, headers: dict | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                path, q = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                fake.requests.append((method, path))
                if self.headers.get("APCA-API-KEY-ID") != KEY_ID or self.headers.get("APCA-API-SECRET-KEY") != SECRET:
                    return self._send(401, {"code": 40110000, "message": "request is not authorized"})
                kind = fake._take_fault(method, path)
                if kind == "timeout":
                    time.sleep(3.0)
                elif kind == "hang_after_accept" and method == "POST" and path == "/v2/orders":
                    fake.posts[body.get("client_order_id")] = fake.posts.get(body.get("client_order_id"), 0) + 1
                    o = fake.create_order(body)
                    threading.Thread(target=fake._work, args=(o["id"],), daemon=True).start()
                    fake.accepted.set()
                    time.sleep(30.0)
                    return
                elif isinstance(kind, int):
                    headers = {"X-RateLimit-Reset": str(int(time.time()) + 1)} if kind == 429 else {}
                    msg = {429: "rate limit exceeded", 403: "insufficient buying power", 422: "qty must be > 0",
                           500: "internal server error"}.get(kind, "error")
                    return self._send(kind, {"code": kind * 100000, "message": msg}, headers)
                try:
                    code, out = self._dispatch(method, path, q, body)
                except KeyError:
                    code, out = 404, {"code": 40410000, "message": "not found"}
                self._send(code, out)

            def _dispatch(self, method, path, q, body):
                if path == "/v2/account":
                    return 200, fake._account()
                if path == "/v2/stocks/trades/latest":
                    syms = [x for x in q.get("symbols", "").split(",") if x in fake.last_trade]
                    return 200, {"trades": {x: {"t": _now(), "p": fake.last_trade[x], "s": 100, "x": "V", "i": 1,
                                                "c": ["@"], "z": "C"} for x in syms}}
                if path == "/v2/clock":
                    return 200, fake._clock()
                if path == "/v2/calendar":
                    day = q.get("start") or datetime.now(timezone.utc).strftime("%Y-%m-%d")
                    return 200, [{"date": day[:10], "open": "09:30", "close": "16:00"}]
                if path == "/v2/positions":
                    with fake.lock:
                        return 200, [fake._position(s, qq, a) for s, (qq, a) in fake.positions.items()]
                if path == "/v2/orders:by_client_order_id":
                    return 200, fake.orders[fake.by_cid[q["client_order_id"]]]
                if path == "/v2/orders" and method == "GET":
                    with fake.lock:
                        return 200, [o for o in fake.orders.values()
                                     if o["status"] in ("new", "accepted", "partially_filled")]
                if path == "/v2/orders" and method == "POST":
                    cid = body.get("client_order_id")
                    fake.posts[cid] = fake.posts.get(cid, 0) + 1
                    if cid in fake.by_cid:
                        return 422, {"code": 40010001, "message": "client_order_id must be unique"}
                    o = fake.create_order(body)
                    threading.Thread(target=fake._work, args=(o["id"],), daemon=True).start()
                    return 200, o
                if path.startswith("/v2/orders/") and method == "DELETE":
                    with fake.lock:
                        o = fake.orders[path.rsplit("/", 1)[1]]
                        if o["status"] in ("filled", "canceled"):
                            return 422, {"code": 42210000, "message": "order is already in filled/canceled state"}
                        o.update(status="canceled", canceled_at=_now(), updated_at=_now())
                    fake.push("canceled", o)
                    return 204, None
                if path.startswith("/v2/orders/"):
                    return 200, fake.orders[path.rsplit("/", 1)[1]]
                raise KeyError(path)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

        return Handler

    # ------------------------------------------------------------------ websocket
    def _ws_handler(self, ws) -> None:
        if ws.request.path.startswith("/v2/"):
            return self._data_ws(ws)
        try:
            auth = json.loads(ws.recv(timeout=10))
            ok = auth.get("data", {}).get("key_id") == KEY_ID and auth.get("data", {}).get("secret_key") == SECRET
            ws.send(json.dumps({"stream": "authorization", "data": {
                "action": "authenticate", "status": "authorized" if ok else "unauthorized"}}))
            if not ok:
                return
            listen = json.loads(ws.recv(timeout=10))
            ws.send(json.dumps({"stream": "listening", "data": {"streams": listen.get("data", {}).get("streams", [])}}))
            self.clients.append(ws)
            for _ in range(100_000):  # until the client or the test closes it
                ws.recv(timeout=60)
        except Exception:
            pass
        finally:
            if ws in self.clients:
                self.clients.remove(ws)

    def _data_ws(self, ws) -> None:
        """The market-data stream protocol (msgpack frames, each a list of messages)."""
        entry = None
        try:
            ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
            auth = msgpack.unpackb(ws.recv(timeout=10))
            if auth.get("key") != KEY_ID or auth.get("secret") != SECRET:
                ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
                return
            ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
            for _ in range(100_000):  # until the client or the test closes it
                msg = msgpack.unpackb(ws.recv(timeout=60))
                if msg.get("action") == "subscribe":
                    bars = list(msg.get("bars", []))
                    self.subscribed = {"bars": bars}
                    ws.send(msgpack.packb([{"T": "subscription", "trades": [], "quotes": [], "bars": bars,
                                            "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [],
                                            "corrections": [], "cancelErrors": []}]))
                    if entry is None:
                        entry = (ws, set(bars))
                        self.data_clients.append(entry)
        except Exception:
            pass
        finally:
            if entry in self.data_clients:
                self.data_clients.remove(entry)


def main() -> None:
    """Serve a fake Alpaca for a demo session; prints what to export; stops on Ctrl-C or after --minutes."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.live_trade.fake_alpaca", description=main.__doc__)
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this many minutes [60]")
    ap.add_argument("--price", action="append", default=[], metavar="SYM=PRICE",
                    help="fill price of a symbol, repeatable [AAPL=190]; no latest trade is served, so the price band uses the bar close")
    args = ap.parse_args()
    fake = FakeAlpaca()
    for item in args.price or ["AAPL=190"]:
        sym, px = item.split("=", 1)
        fake.fill_price[sym.strip().upper()] = float(px)
    print(f"export APCA_API_KEY_ID={KEY_ID} APCA_API_SECRET_KEY='{SECRET}'")
    print(f"export APCA_API_BASE_URL={fake.base_url} APCA_API_STREAM_URL={fake.stream_url}")
    print(f"export APCA_API_DATA_URL={fake.base_url} APCA_API_DATA_STREAM_URL={fake.data_stream_url}")
    print(f"fake Alpaca serving for {args.minutes:g} minute(s); Ctrl-C stops it", flush=True)
    try:
        time.sleep(args.minutes * 60)
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()


if __name__ == "__main__":
    main()
