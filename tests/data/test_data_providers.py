"""Provider adapters against recorded response shapes; retry, backoff, failover (offline)."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from yfinance import exceptions as yfe

from data_helpers import SeriesProvider, make_bars
from slices.data.errors import (
    AuthError,
    EmptyResponseError,
    NetworkUnreachableError,
    ProviderError,
    TransientProviderError,
    UnknownSymbolError,
)
from slices.data.providers import (
    AlpacaProvider,
    Provider,
    RetryPolicy,
    YahooProvider,
    fetch_with_failover,
    provider_chain,
)
from slices.data.schema import SCHEMA

UTC = timezone.utc
# read at import, before the autouse fixture hides credentials from every test
LIVE_KEYS = (os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY"))
D0, D1 = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC)


# ---- yfinance ------------------------------------------------------------------------------
def yahoo_daily_frame() -> pd.DataFrame:
    """The shape of ``yf.Ticker('AAPL').history(interval='1d', actions=False)``: tz-aware
    DatetimeIndex named Date at midnight New York time; Open High Low Close Volume."""
    idx = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"], name="Date").tz_localize("America/New_York")
    return pd.DataFrame({
        "Open": [187.15, 184.22, 182.15, 181.99],
        "High": [188.44, 185.88, 183.09, 182.76],
        "Low": [183.885, 183.43, 180.88, 180.17],
        "Close": [185.64, 184.25, 181.91, 181.18],
        "Volume": [82488700, 58414500, 71983600, 62303300],
    }, index=idx)


class FakeTicker:
    def __init__(self, result, calls):
        self.result, self.calls = result, calls

    def history(self, **kw):
        self.calls.append(kw)
        r = self.result() if callable(self.result) else self.result
        if isinstance(r, BaseException):
            raise r
        return r


def yahoo(result):
    calls: list[dict] = []
    return YahooProvider(ticker_factory=lambda sym: FakeTicker(result, calls)), calls


def test_yahoo_daily_frame_is_normalised_to_store_schema():
    prov, calls = yahoo(yahoo_daily_frame())
    bars = prov.fetch("AAPL", "1d", D0, D1)
    df = bars.frame
    assert dict(df.schema) == SCHEMA
    # session dates at 00:00 UTC, not converted from New York midnight (05:00 UTC)
    assert df["timestamp"].to_list()[0] == datetime(2024, 1, 2, tzinfo=UTC)
    assert df["close"].to_list() == [185.64, 184.25, 181.91, 181.18]
    assert calls[0]["auto_adjust"] is True and calls[0]["interval"] == "1d"
    assert calls[0]["end"] == "2024-01-06"  # yahoo's end is exclusive


def test_yahoo_intraday_is_converted_to_utc_and_deduplicated():
    idx = pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-02 10:30", "2024-01-02 10:30"], name="Datetime").tz_localize("America/New_York")
    frame = pd.DataFrame({"Open": [1.0, 2.0, 2.5], "High": [1.5, 2.5, 3.0], "Low": [0.9, 1.9, 2.4],
                          "Close": [1.2, 2.2, 2.6], "Volume": [10, 20, 30]}, index=idx)
    prov, _ = yahoo(frame)
    bars = prov.fetch("AAPL", "1h", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
    assert bars.frame["timestamp"].to_list() == [datetime(2024, 1, 2, 14, 30, tzinfo=UTC), datetime(2024, 1, 2, 15, 30, tzinfo=UTC)]
    assert bars.frame["close"].to_list() == [1.2, 2.6]  # the later duplicate wins
    assert any("duplicate" in w for w in bars.warnings)


def test_yahoo_download_multiindex_layout_is_accepted():
    f = yahoo_daily_frame()
    f.columns = pd.MultiIndex.from_product([f.columns, ["AAPL"]], names=["Price", "Ticker"])
    prov, _ = yahoo(f)
    assert prov.fetch("AAPL", "1d", D0, D1).frame.height == 4


@pytest.mark.parametrize("exc, kind", [
    (yfe.YFRateLimitError(), TransientProviderError),
    (yfe.YFPricesMissingError("AAPL", "(1d 2024-01-02 -> 2024-01-05)"), EmptyResponseError),
    (yfe.YFTickerMissingError("ZZZZZ", "no data"), UnknownSymbolError),
])
def test_yahoo_errors_are_classified(exc, kind):
    prov, _ = yahoo(exc)
    with pytest.raises(kind):
        prov.fetch("AAPL", "1d", D0, D1)


def test_yahoo_unknown_symbol_when_online(monkeypatch):
    monkeypatch.setattr("slices.data.providers._resolvable", lambda host: True)
    prov, _ = yahoo(yfe.YFTzMissingError("ZZZZZ"))
    with pytest.raises(UnknownSymbolError, match="unknown symbol"):
        prov.fetch("ZZZZZ", "1d", D0, D1)


def test_yahoo_missing_timezone_while_offline_is_network_unreachable(monkeypatch):
    monkeypatch.setattr("slices.data.providers._resolvable", lambda host: False)
    prov, _ = yahoo(yfe.YFTzMissingError("AAPL"))
    with pytest.raises(NetworkUnreachableError):
        prov.fetch("AAPL", "1d", D0, D1)


def test_yahoo_empty_frame_and_partial_bad_rows():
    prov, _ = yahoo(yahoo_daily_frame().iloc[0:0])
    with pytest.raises(EmptyResponseError):
        prov.fetch("AAPL", "1d", D0, D1)
    partial = yahoo_daily_frame()
    partial.iloc[1, partial.columns.get_loc("Close")] = np.nan  # a half-filled bar
    prov, _ = yahoo(partial)
    bars = prov.fetch("AAPL", "1d", D0, D1)
    assert bars.frame.height == 3
    assert any("dropped 1 row" in w for w in bars.warnings)


# ---- Alpaca through the real alpaca-py client and a local HTTP server -------------------------
ALPACA_PAGE_1 = {"bars": {"AAPL": [
    {"c": 185.64, "h": 188.44, "l": 183.885, "n": 1008871, "o": 187.15, "t": "2024-01-02T05:00:00Z", "v": 82496943, "vw": 185.949},
    {"c": 184.25, "h": 185.88, "l": 183.43, "n": 656853, "o": 184.22, "t": "2024-01-03T05:00:00Z", "v": 58418916, "vw": 184.319},
]}, "next_page_token": "QUFQTHxEfDIwMjQtMDEtMDNUMDU6MDA6MDAuMDAwMDAwMDAwWg=="}
ALPACA_PAGE_2 = {"bars": {"AAPL": [
    {"c": 181.91, "h": 183.0872, "l": 180.88, "n": 712850, "o": 182.15, "t": "2024-01-04T05:00:00Z", "v": 71992243, "vw": 181.976},
    {"c": 181.18, "h": 182.76, "l": 180.17, "n": 636483, "o": 181.99, "t": "2024-01-05T05:00:00Z", "v": 62379661, "vw": 181.514},
]}, "next_page_token": None}


class AlpacaServer:
    """Serves scripted (status, json) answers on 127.0.0.1; records request paths and headers."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[tuple[str, dict, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                u = urlparse(self.path)
                server.requests.append((u.path, parse_qs(u.query), dict(self.headers)))
                status, body = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def alpaca_server():
    servers = []

    def make(*answers):
        s = AlpacaServer(answers)
        servers.append(s)
        return s, AlpacaProvider("test-key-id", "test-secret", url_override=s.url)

    yield make
    for s in servers:
        s.close()


def test_alpaca_bars_are_paginated_and_normalised(alpaca_server):
    server, prov = alpaca_server((200, ALPACA_PAGE_1), (200, ALPACA_PAGE_2))
    bars = prov.fetch("AAPL", "1d", D0, D1)
    df = bars.frame
    assert dict(df.schema) == SCHEMA
    assert df["timestamp"].to_list() == [datetime(2024, 1, d, tzinfo=UTC) for d in (2, 3, 4, 5)]
    assert df["open"].to_list() == [187.15, 184.22, 182.15, 181.99]
    assert df["volume"].to_list()[-1] == 62379661.0
    path, query, headers = server.requests[0]
    assert path == "/v2/stocks/bars"
    assert query["symbols"] == ["AAPL"] and query["timeframe"] == ["1Day"] and query["adjustment"] == ["all"]
    assert headers.get("APCA-API-KEY-ID") == "test-key-id"
    assert len(server.requests) == 2 and server.requests[1][1]["page_token"] == [ALPACA_PAGE_1["next_page_token"]]


@pytest.mark.parametrize("status", [401, 403])
def test_alpaca_auth_failure_is_not_retried(alpaca_server, status):
    server, prov = alpaca_server((status, {"message": "forbidden."}))
    sleeps = []
    with pytest.raises(AuthError) as info:
        RetryPolicy(sleep=sleeps.append).call(lambda: prov.fetch("AAPL", "1d", D0, D1))
    assert len(server.requests) == 1 and sleeps == []
    assert "test-secret" not in str(info.value) and "test-key-id" not in str(info.value)


def test_alpaca_subscription_limit_is_not_an_auth_error(alpaca_server):
    server, prov = alpaca_server((403, {"message": "subscription does not permit querying recent SIP data"}))
    with pytest.raises(ProviderError, match="subscription") as info:
        prov.fetch("AAPL", "1d", D0, D1)
    assert not isinstance(info.value, AuthError)


def test_alpaca_missing_keys_is_auth_error_without_request():
    with pytest.raises(AuthError, match="APCA_API_KEY_ID"):
        AlpacaProvider().fetch("AAPL", "1d", D0, D1)


def test_alpaca_unknown_symbol_and_empty_response(alpaca_server):
    _, prov = alpaca_server((422, {"code": 42210000, "message": "invalid symbol: 1234$"}))
    with pytest.raises(UnknownSymbolError):
        prov.fetch("ZZZZ", "1d", D0, D1)
    _, prov = alpaca_server((200, {"bars": {}, "next_page_token": None}))
    with pytest.raises(EmptyResponseError):
        prov.fetch("AAPL", "1d", D0, D1)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_alpaca_transient_errors_are_retried_with_exponential_backoff(alpaca_server, status):
    server, prov = alpaca_server((status, {"message": "busy"}), (status, {"message": "busy"}),
                                 (200, {**ALPACA_PAGE_2}))
    sleeps: list[float] = []
    bars = RetryPolicy(attempts=4, base=0.5, sleep=sleeps.append).call(lambda: prov.fetch("AAPL", "1d", D0, D1))
    assert bars.frame.height == 2
    assert sleeps == [0.5, 1.0]
    assert len(server.requests) == 3


def test_alpaca_partial_response_is_refetched_whole(alpaca_server):
    """Page 1 arrives, page 2 fails with 503: the retry restarts the request, so the result
    has every bar exactly once and never a truncated series."""
    server, prov = alpaca_server((200, ALPACA_PAGE_1), (503, {"message": "unavailable"}),
                                 (200, ALPACA_PAGE_1), (200, ALPACA_PAGE_2))
    sleeps: list[float] = []
    bars = RetryPolicy(base=0.25, sleep=sleeps.append).call(lambda: prov.fetch("AAPL", "1d", D0, D1))
    assert bars.frame["timestamp"].to_list() == [datetime(2024, 1, d, tzinfo=UTC) for d in (2, 3, 4, 5)]
    assert sleeps == [0.25] and len(server.requests) == 4


def test_retry_gives_up_after_the_attempt_limit(alpaca_server):
    server, prov = alpaca_server((502, {"message": "bad gateway"}))
    sleeps: list[float] = []
    with pytest.raises(TransientProviderError, match="HTTP 502"):
        RetryPolicy(attempts=3, base=1.0, max_wait=1.5, sleep=sleeps.append).call(lambda: prov.fetch("AAPL", "1d", D0, D1))
    assert len(server.requests) == 3
    assert sleeps == [1.0, 1.5]  # capped by max_wait


# ---- failover ----------------------------------------------------------------------------
class Failing(Provider):
    def __init__(self, name, exc):
        self.name, self.exc, self.calls = name, exc, 0

    def fetch(self, symbol, timeframe, start, end):
        self.calls += 1
        raise self.exc


def test_failover_uses_the_second_provider_and_reports_it():
    market = {"AAPL": make_bars(10, start=D0)}
    first = Failing("yahoo", TransientProviderError("yahoo: HTTP 503"))
    second = SeriesProvider(market, name="alpaca")
    sleeps: list[float] = []
    bars, name = fetch_with_failover([first, second], "AAPL", "1d", D0, datetime(2024, 2, 1, tzinfo=UTC),
                                     RetryPolicy(attempts=3, base=0.1, sleep=sleeps.append))
    assert name == "alpaca" and bars.frame.height == 10
    assert first.calls == 3 and len(sleeps) == 2  # transient: retried before failing over


def test_failover_does_not_retry_auth_or_unknown_symbol():
    a = Failing("yahoo", UnknownSymbolError("yahoo: unknown symbol ZZZZ"))
    b = Failing("alpaca", AuthError("alpaca: authentication failed"))
    with pytest.raises(ProviderError, match="yahoo: unknown symbol ZZZZ; alpaca: authentication failed"):
        fetch_with_failover([a, b], "ZZZZ", "1d", D0, D1, RetryPolicy(sleep=lambda s: None))
    assert a.calls == 1 and b.calls == 1


def test_all_empty_is_an_empty_response():
    a = Failing("yahoo", EmptyResponseError("yahoo: no bars"))
    b = Failing("alpaca", EmptyResponseError("alpaca: no bars"))
    with pytest.raises(EmptyResponseError):
        fetch_with_failover([a, b], "AAPL", "1d", D0, D1, RetryPolicy(sleep=lambda s: None))


def test_provider_chain(monkeypatch):
    assert provider_chain("auto") == ["yahoo", "alpaca"]
    monkeypatch.setenv("GPT_TRADER_PROVIDER", "alpaca")
    assert provider_chain("auto") == ["alpaca", "yahoo"]
    assert provider_chain("yahoo") == ["yahoo"]
    with pytest.raises(ProviderError):
        provider_chain("bloomberg")


# ---- network (skipped offline) ---------------------------------------------------------------
@pytest.mark.network
def test_yahoo_live_daily_bars():
    bars = YahooProvider().fetch("AAPL", "1d", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 31, tzinfo=UTC))
    assert 15 <= bars.frame.height <= 21 and dict(bars.frame.schema) == SCHEMA


@pytest.mark.network
def test_alpaca_live_daily_bars():
    if not all(LIVE_KEYS):
        pytest.skip("Alpaca keys absent: set APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    prov = AlpacaProvider(*LIVE_KEYS)
    bars = prov.fetch("AAPL", "1d", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 31, tzinfo=UTC))
    assert 15 <= bars.frame.height <= 21 and bars.frame["close"].min() > 0


def test_alpaca_keys_never_reach_output_or_logs(alpaca_server, monkeypatch, caplog, tmp_path):
    """The keys come from the environment as a user sets them; a rejected key (401), a 5xx and
    a failover print/log nothing that contains them, even with every logger at DEBUG."""
    import logging

    from click.testing import CliRunner

    from slices.data import cli as cli_mod

    key, secret = "PKTESTKEYID0001", "s3cr3t-Sh0uld-N3ver-Appear"
    monkeypatch.setenv("APCA_API_KEY_ID", key)
    monkeypatch.setenv("APCA_API_SECRET_KEY", secret)
    server, _ = alpaca_server((401, {"message": f"forbidden. key {key}"}))
    failing = Failing("yahoo", UnknownSymbolError("yahoo: unknown symbol AAPL"))
    monkeypatch.setattr(cli_mod, "make_provider",
                        lambda name: AlpacaProvider(url_override=server.url) if name == "alpaca" else failing)
    caplog.set_level(logging.DEBUG)
    r = CliRunner().invoke(cli_mod.cli, ["fetch", "AAPL", "--provider", "auto", "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "alpaca: authentication failed (HTTP 401)" in r.stderr
    assert server.requests[0][2].get("APCA-API-SECRET-KEY") == secret  # the real client did send it
    prov = AlpacaProvider()
    for text in (r.stdout, r.stderr, caplog.text, repr(prov), str(prov)):
        assert secret not in text and key not in text
