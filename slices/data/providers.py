"""Market-data providers behind one small interface, with retry and failover.

- ``YahooProvider``: yfinance ``Ticker.history`` (``auto_adjust=True``: split- and
  dividend-adjusted OHLC).
- ``AlpacaProvider``: alpaca-py ``StockHistoricalDataClient.get_stock_bars``
  (``adjustment=all``); keys from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``, never printed.

Every adapter returns bars normalised to the store schema (``normalise``) and maps its
library's failures to ``TransientProviderError`` (retried), ``AuthError``,
``UnknownSymbolError``, ``EmptyResponseError`` or ``ProviderError`` (not retried).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import numpy as np
import polars as pl
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from slices.data.errors import (
    AuthError,
    DataError,
    EmptyResponseError,
    NetworkUnreachableError,
    ProviderError,
    TransientProviderError,
    UnknownSymbolError,
)
from slices.data.schema import TIMEFRAME_SECONDS, clean_for_store

EXCHANGE_TZ = "America/New_York"
PROVIDERS = ("yahoo", "alpaca")


@dataclass
class Bars:
    """A provider's answer: ``frame`` in store schema plus normalisation ``warnings``.

    ``fetch_with_failover`` fills ``failed_over`` (names of the providers that failed before
    this one served the bars) and ``notes`` (one line per such failure, with its reason).
    """

    frame: pl.DataFrame
    warnings: list[str] = field(default_factory=list)
    failed_over: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def normalise(
    timestamps_us: np.ndarray,
    ohlcv: dict[str, np.ndarray],
    timeframe: str,
    symbol: str,
    source: str,
    session_days: np.ndarray | None = None,
) -> Bars:
    """Build a store frame from provider arrays and clean it (``schema.clean_for_store``).

    ``timestamps_us``: bar open times as int64 microseconds since the epoch, UTC.
    ``session_days`` (daily bars): the exchange-local session date of each bar as
    ``datetime64[D]``; daily bars are stamped 00:00 UTC of that date (SLICES.md contract 1).
    Duplicates keep the last row, rows are sorted, bad rows dropped with a warning.
    Raises ``EmptyResponseError`` when no bars are given.
    """
    if len(timestamps_us) == 0:
        raise EmptyResponseError(f"{source}: no bars for {symbol} {timeframe} in the requested range")
    if timeframe == "1d" and session_days is not None:
        ts = session_days.astype("datetime64[D]").astype("datetime64[us]").astype(np.int64)
    else:
        ts = np.asarray(timestamps_us, dtype=np.int64)
    df = pl.DataFrame(
        {"timestamp": pl.Series(ts, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
         **{k: pl.Series(np.asarray(ohlcv[k], dtype=np.float64)) for k in ("open", "high", "low", "close", "volume")}}
    )
    try:
        res = clean_for_store(df, symbol, source)
    except DataError as exc:
        raise ProviderError(str(exc)) from None
    return Bars(res.frame, res.warnings)


class Provider(ABC):
    """Interface: ``fetch(symbol, timeframe, start, end) -> Bars`` for bars with
    ``start <= timestamp <= end`` (UTC, tz-aware datetimes); ``name`` identifies it in
    metadata and reports."""

    name: str = "?"

    @abstractmethod
    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> Bars:
        """Download and normalise bars; raise a ``ProviderError`` subclass on failure."""


def _status_of(exc: BaseException) -> int | None:
    try:
        for attr in ("status_code", "status"):
            v = getattr(exc, attr, None)
            if isinstance(v, int) and v >= 100:
                return v
        resp = getattr(exc, "response", None)
        v = getattr(resp, "status_code", None)
    except Exception:  # a property that parses a body may fail
        return None
    return v if isinstance(v, int) and v >= 100 else None


def _is_network(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "TimeoutError", "ConnectTimeout", "ReadTimeout",
                         "SSLError", "ProxyError", "DNSError", "CurlError"}) or isinstance(exc, OSError)


def classify_http(exc: BaseException, source: str, symbol: str) -> ProviderError:
    """Map an HTTP/network exception to the slice's provider errors (5xx/429/network: transient;
    401/403: auth; 404/422 or a message naming the symbol: unknown symbol)."""
    status = _status_of(exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if status is not None:
        if status == 429 or status >= 500:
            return TransientProviderError(f"{source}: HTTP {status} for {symbol}: {text}")
        if status in (401, 403) and "subscription" in text.lower():
            # e.g. Alpaca's "subscription does not permit querying recent SIP data"
            return ProviderError(f"{source}: HTTP {status} for {symbol}: {text}")
        if status in (401, 403):
            return AuthError(f"{source}: authentication failed (HTTP {status}); check the API keys")
        if status in (400, 404, 422) and "symbol" in text.lower():
            return UnknownSymbolError(f"{source}: unknown symbol {symbol} (HTTP {status}: {text})")
        return ProviderError(f"{source}: HTTP {status} for {symbol}: {text}")
    names = {c.__name__ for c in type(exc).__mro__}
    full = str(exc).lower()
    if names & {"DNSError", "gaierror", "NameResolutionError"} or any(
        k in full for k in ("resolve host", "name resolution", "failed to resolve", "nodename nor servname")
    ):
        return NetworkUnreachableError(f"{source}: network unreachable (cannot resolve the provider's host) for {symbol}")
    if _is_network(exc):
        return TransientProviderError(f"{source}: network unreachable or timed out for {symbol} ({type(exc).__name__}: {text[:120]})")
    return ProviderError(f"{source}: {type(exc).__name__} for {symbol}: {text}")


def _resolvable(host: str) -> bool:
    """True if DNS resolves ``host`` (used to tell "offline" from "unknown symbol")."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


# ---- Yahoo -------------------------------------------------------------------------------
YAHOO_INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "1h", "1d": "1d"}


class YahooProvider(Provider):
    """Yahoo Finance through ``yfinance.Ticker(symbol).history(...)``.

    ``ticker_factory`` (tests) replaces ``yfinance.Ticker``; it must return an object whose
    ``history`` returns yfinance's DataFrame: a tz-aware ``DatetimeIndex`` (exchange time) and
    columns ``Open High Low Close Volume`` (``Dividends``, ``Stock Splits`` ignored; a
    ``(Price, Ticker)`` MultiIndex as from ``yf.download`` is accepted).
    """

    name = "yahoo"

    def __init__(self, ticker_factory: Callable | None = None, timeout: float = 15.0):
        self.ticker_factory = ticker_factory
        self.timeout = timeout

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> Bars:
        """Adjusted bars in ``[start, end]`` (daily: by session date). Errors: rate limit ->
        transient; no time zone -> unknown symbol (or network unreachable when Yahoo's host
        does not resolve); no prices -> empty; HTTP/network errors via ``classify_http``."""
        import yfinance as yf
        from yfinance import exceptions as yfe

        logging.getLogger("yfinance").setLevel(logging.CRITICAL)  # its errors are raised, not logged
        factory = self.ticker_factory or yf.Ticker
        if timeframe == "1d":
            kw = {"start": start.strftime("%Y-%m-%d"), "end": (end + timedelta(days=1)).strftime("%Y-%m-%d")}
        else:
            kw = {"start": start, "end": end + timedelta(seconds=1)}
        try:
            hist = factory(symbol).history(
                interval=YAHOO_INTERVALS[timeframe], auto_adjust=True, actions=False,
                raise_errors=True, timeout=self.timeout, **kw,
            )
        except yfe.YFRateLimitError as exc:
            raise TransientProviderError(f"yahoo: rate limited for {symbol}: {exc}") from None
        except yfe.YFTzMissingError:
            # yfinance also reports "no timezone" when it could not reach Yahoo at all
            if not _resolvable("query2.finance.yahoo.com"):
                raise NetworkUnreachableError(f"yahoo: network unreachable (cannot resolve query2.finance.yahoo.com) for {symbol}") from None
            raise UnknownSymbolError(f"yahoo: unknown symbol {symbol} (no time zone: possibly delisted or misspelt)") from None
        except yfe.YFPricesMissingError as exc:
            raise EmptyResponseError(f"yahoo: no bars for {symbol} {timeframe}: {exc}") from None
        except yfe.YFTickerMissingError as exc:
            raise UnknownSymbolError(f"yahoo: unknown symbol {symbol}: {exc}") from None
        except (yfe.YFInvalidPeriodError, yfe.YFNotImplementedError) as exc:
            raise ProviderError(f"yahoo: {exc}") from None
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_http(exc, "yahoo", symbol) from None
        return self._to_bars(hist, symbol, timeframe, start, end)

    @staticmethod
    def _to_bars(hist, symbol: str, timeframe: str, start: datetime, end: datetime) -> Bars:
        if hist is None or len(hist) == 0:
            raise EmptyResponseError(f"yahoo: no bars for {symbol} {timeframe} in the requested range")
        cols = hist.columns
        if getattr(cols, "nlevels", 1) > 1:  # yf.download layout: (Price, Ticker)
            level = next(i for i in range(cols.nlevels) if "Close" in set(cols.get_level_values(i)))
            hist = hist.copy()
            hist.columns = cols.get_level_values(level)
        missing = [c for c in ("Open", "High", "Low", "Close") if c not in hist.columns]
        if missing:
            raise ProviderError(f"yahoo: response for {symbol} lacks column(s) {', '.join(missing)}")
        idx = hist.index
        if getattr(idx, "tz", None) is None:
            idx = idx.tz_localize("UTC")
        ohlcv = {k.lower(): hist[k].to_numpy(dtype=np.float64, na_value=np.nan) for k in ("Open", "High", "Low", "Close")}
        vol = hist["Volume"].to_numpy(dtype=np.float64, na_value=np.nan) if "Volume" in hist.columns else np.zeros(len(hist))
        ohlcv["volume"] = vol
        # yfinance's index is in the exchange's time zone: its local date is the session date
        return _bars_in_range(idx, idx.tz, ohlcv, symbol, timeframe, start, end, "yahoo")


def _day(dt: datetime) -> datetime:
    """00:00 UTC of ``dt``'s date."""
    return datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc)


def _bars_in_range(stamps, session_tz, ohlcv: dict[str, np.ndarray], symbol: str, timeframe: str,
                   start: datetime, end: datetime, source: str) -> Bars:
    """Normalise a provider's bars (``stamps``: tz-aware pandas ``DatetimeIndex`` of bar open
    times; ``session_tz``: the zone whose local date is the session date of a daily bar) and
    keep those inside ``[start, end]`` (daily bars compared by date)."""
    ts_us = stamps.tz_convert("UTC").tz_localize(None).values.astype("datetime64[us]").astype(np.int64)
    session = stamps.tz_convert(session_tz).tz_localize(None).values.astype("datetime64[D]")
    bars = normalise(ts_us, ohlcv, timeframe, symbol, source, session)
    a, b = (_day(start), _day(end)) if timeframe == "1d" else (start, end)
    return Bars(bars.frame.filter((pl.col("timestamp") >= a) & (pl.col("timestamp") <= b)), bars.warnings)


# ---- Alpaca ------------------------------------------------------------------------------
class AlpacaProvider(Provider):
    """Alpaca market data through alpaca-py's ``StockHistoricalDataClient``.

    Keys: arguments, else ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``; missing keys raise
    ``AuthError`` (no request is sent). ``url_override`` points the real client at another
    base URL (tests use a local HTTP server). ``feed``: ``iex``/``sip``/... (default:
    ``$GPT_TRADER_ALPACA_FEED``, else the account's default). Bars use ``adjustment=all``.
    The client's own 429 retry loop is disabled so that retries follow this slice's policy.
    """

    name = "alpaca"

    def __init__(self, api_key: str | None = None, secret_key: str | None = None,
                 url_override: str | None = None, feed: str | None = None):
        self._key = api_key or os.environ.get("APCA_API_KEY_ID")
        self._secret = secret_key or os.environ.get("APCA_API_SECRET_KEY")
        self.url_override = url_override
        self.feed = feed or os.environ.get("GPT_TRADER_ALPACA_FEED") or None

    def __repr__(self) -> str:  # never show keys
        return f"AlpacaProvider(url_override={self.url_override!r}, feed={self.feed!r})"

    @staticmethod
    def _timeframe(timeframe: str):
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        return {
            "1m": TimeFrame(1, TimeFrameUnit.Minute),
            "5m": TimeFrame(5, TimeFrameUnit.Minute),
            "15m": TimeFrame(15, TimeFrameUnit.Minute),
            "1h": TimeFrame(1, TimeFrameUnit.Hour),
            "1d": TimeFrame(1, TimeFrameUnit.Day),
        }[timeframe]

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> Bars:
        """All-adjusted bars in ``[start, end]`` (daily: by New York session date), all pages.
        Errors: missing keys / 401 / 403 -> auth; 429 / 5xx / network -> transient;
        4xx naming the symbol -> unknown symbol; no bars -> empty."""
        if not self._key or not self._secret:
            raise AuthError("alpaca: no API keys; set APCA_API_KEY_ID and APCA_API_SECRET_KEY")
        from alpaca.data.enums import Adjustment
        from alpaca.data.historical import StockHistoricalDataClient
        from alpaca.data.requests import StockBarsRequest

        client = StockHistoricalDataClient(self._key, self._secret, url_override=self.url_override)
        client._retry = 0  # one HTTP attempt per call: retries are done by tenacity here
        kw = {"feed": self.feed} if self.feed else {}
        if timeframe == "1d":
            a, b = _day(start), _day(end) + timedelta(hours=23, minutes=59, seconds=59)
        else:
            a, b = start, end
        # free plans may not query the last 15 minutes of SIP data; never ask for the future
        b = min(b, datetime.now(timezone.utc) - timedelta(minutes=16))
        req = StockBarsRequest(symbol_or_symbols=symbol, timeframe=self._timeframe(timeframe),
                               start=a, end=b, adjustment=Adjustment.ALL, **kw)
        try:
            barset = client.get_stock_bars(req)
        except Exception as exc:  # alpaca's APIError (HTTP status) or requests' network errors
            raise classify_http(exc, "alpaca", symbol) from None
        bars = barset.data.get(symbol, []) if hasattr(barset, "data") else []
        if not bars:
            raise EmptyResponseError(f"alpaca: no bars for {symbol} {timeframe} in the requested range")
        import pandas as pd

        stamps = pd.DatetimeIndex([b.timestamp for b in bars])
        if stamps.tz is None:
            stamps = stamps.tz_localize("UTC")
        ohlcv = {k: np.array([getattr(b, k) for b in bars], dtype=np.float64) for k in ("open", "high", "low", "close", "volume")}
        # Alpaca stamps daily bars at New York midnight in UTC (04:00/05:00Z): New York's date
        return _bars_in_range(stamps, EXCHANGE_TZ, ohlcv, symbol, timeframe, start, end, "alpaca")


# ---- retry and failover --------------------------------------------------------------------
@dataclass
class RetryPolicy:
    """Exponential backoff for transient errors (tenacity): waits ``base, 2*base, 4*base...``
    capped at ``max_wait`` seconds, at most ``attempts`` tries. ``sleep`` is injectable (tests)."""

    attempts: int = 4
    base: float = 1.0
    max_wait: float = 16.0
    sleep: Callable[[float], None] | None = None

    def call(self, fn: Callable[[], Bars]) -> Bars:
        """Run ``fn`` retrying only ``TransientProviderError``; re-raise the last error."""
        kw = {"sleep": self.sleep} if self.sleep is not None else {}
        retrying = Retrying(
            retry=retry_if_exception_type(TransientProviderError),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.base, max=self.max_wait),
            reraise=True,
            **kw,
        )
        return retrying(fn)


def make_provider(name: str) -> Provider:
    """A provider by name (``yahoo`` or ``alpaca``)."""
    if name == "yahoo":
        return YahooProvider()
    if name == "alpaca":
        return AlpacaProvider()
    raise ProviderError(f"unknown provider {name!r}: use yahoo or alpaca")


def provider_chain(choice: str, primary: str | None = None) -> list[str]:
    """Provider names to try in order: ``yahoo``/``alpaca`` alone, or for ``auto`` the primary
    (``primary``, else ``$GPT_TRADER_PROVIDER``, else ``yahoo``) followed by the other."""
    if choice in PROVIDERS:
        return [choice]
    if choice != "auto":
        raise ProviderError(f"unknown provider {choice!r}: use yahoo, alpaca or auto")
    first = primary or os.environ.get("GPT_TRADER_PROVIDER", "yahoo")
    if first not in PROVIDERS:
        raise ProviderError(f"GPT_TRADER_PROVIDER={first!r}: use yahoo or alpaca")
    return [first] + [p for p in PROVIDERS if p != first]


def fetch_with_failover(
    providers: list[Provider], symbol: str, timeframe: str, start: datetime, end: datetime,
    retry: RetryPolicy | None = None,
) -> tuple[Bars, str]:
    """Try each provider in order (each with ``retry``); return the bars and the provider name.

    Any ``ProviderError`` (after retries) moves on to the next provider; the bars then record
    which providers failed and why (``Bars.failed_over``, ``Bars.notes``). Raises
    ``ProviderError`` naming every provider's failure when all fail, or ``EmptyResponseError``
    (same message) when at least one provider answered "no bars" and none had bars: an
    answer from a working provider, e.g. nothing new for ``update``.
    """
    retry = retry or RetryPolicy()
    errors: list[ProviderError] = []
    failed: list[str] = []
    for p in providers:
        try:
            bars = retry.call(lambda p=p: p.fetch(symbol, timeframe, start, end))
        except ProviderError as exc:
            errors.append(exc)
            failed.append(p.name)
            continue
        bars.failed_over = failed
        bars.notes = [f"{symbol} {timeframe}: {name} failed ({e}); served by {p.name}" for name, e in zip(failed, errors, strict=True)]
        return bars, p.name
    msg = f"{symbol} {timeframe}: " + "; ".join(str(e) for e in errors)
    exc = EmptyResponseError(msg) if any(isinstance(e, EmptyResponseError) for e in errors) else ProviderError(msg)
    exc.causes = errors
    raise exc


def no_provider_usable(exc: ProviderError) -> bool:
    """True when every provider failed for a reason that no other symbol can avoid (host
    unreachable, missing or rejected keys): the run should stop instead of repeating it."""
    causes = getattr(exc, "causes", None)
    return bool(causes) and all(isinstance(e, (NetworkUnreachableError, AuthError)) for e in causes)


def bar_step(timeframe: str) -> timedelta:
    """Length of one bar (``1d`` = one day)."""
    return timedelta(seconds=TIMEFRAME_SECONDS[timeframe])
