"""`update --watch INTERVAL`: keeps the store current, one summary line per cycle, stops cleanly.

Offline: providers are replaced by `DripProvider` (in-process through `cli.make_provider`; in a
real subprocess through a small launcher that patches the same name and runs the entrypoint).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from data_helpers import SeriesProvider, make_bars
from slices.data import cli as cli_mod
from slices.data.cli import cli
from slices.data.errors import NetworkUnreachableError, ProviderError, TransientProviderError
from slices.data.providers import Bars
from slices.data.service import watch_loop
from slices.data.store import Store

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2021, 1, 1, tzinfo=timezone.utc)


class DripProvider(SeriesProvider):
    """Serves only the first bar of each requested range: every update gains one bar while the
    market has more. ``fail`` maps a call number (1-based) to an exception raised instead."""

    def __init__(self, market, name="yahoo", fail=None, on_fetch=None):
        super().__init__(market, name)
        self.fail = fail or {}
        self.on_fetch = on_fetch

    def fetch(self, symbol, timeframe, start, end):
        bars = super().fetch(symbol, timeframe, start, end)
        if self.on_fetch:
            self.on_fetch(symbol)
        if len(self.calls) in self.fail:
            raise self.fail[len(self.calls)]
        return Bars(bars.frame.head(1))


def seed(root: Path, symbol: str, df: pl.DataFrame, timeframe: str = "1d") -> None:
    st = Store(root)
    with st.lock():
        st.write(timeframe, symbol, df, {"provider": "yahoo", "providers": ["yahoo"], "adjusted": True,
                                         "source": "yahoo", "fetched_at": "2021-01-01T00:00:00Z",
                                         "created_at": "2021-01-01T00:00:00Z"})


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def stub(monkeypatch, provider):
    monkeypatch.setattr(cli_mod, "make_provider", lambda name: provider)


def watch_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("watch: ")]


def test_three_cycles_gain_three_bars_and_new_series_join(monkeypatch, tmp_path):
    store = tmp_path / "s"
    aapl, msft = make_bars(40, start=T0), make_bars(40, start=T0, seed=2)
    seed(store, "AAPL", aapl.head(10))
    seed(store, "MSFT", msft)  # complete: the provider has nothing newer
    stub(monkeypatch, DripProvider({"AAPL": aapl, "MSFT": msft, "IBM": make_bars(40, start=T0, seed=5)}))
    pauses = []

    def pause(stop, seconds):
        pauses.append(seconds)
        if len(pauses) == 1:  # fetched by someone else between cycles: the next cycle watches it too
            seed(store, "IBM", make_bars(40, start=T0, seed=5).head(5))

    monkeypatch.setattr(cli_mod, "_pause", pause)
    r = run("update", "--watch", "1h", "--max-cycles", "3", "--store", store)
    assert r.exit_code == 0, r.output
    assert Store(store).read("1d", "AAPL").equals(aapl.head(13))
    assert Store(store).read("1d", "MSFT").equals(msft)
    assert Store(store).read("1d", "IBM").height == 7
    lines = watch_lines(r.stderr)
    assert len(lines) == 3
    assert lines[0].endswith(": AAPL +1 bar, MSFT no new bars")
    assert lines[2].endswith(": AAPL +1 bar, IBM +1 bar, MSFT no new bars")
    stamp = lines[0].split(": ")[1]
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")  # ISO-8601 UTC, seconds
    assert len(pauses) == 2 and all(0 < s <= 3600 for s in pauses)  # no pause after the last cycle
    assert r.stderr.splitlines()[-1] == "note: stopped (--max-cycles) after 3 cycles; every write completed"
    assert r.stdout == ""  # table format: the cycle lines on stderr are the whole report


def test_a_failing_cycle_is_a_warning_and_the_watch_goes_on(monkeypatch, tmp_path):
    store = tmp_path / "s"
    aapl = make_bars(40, start=T0)
    seed(store, "AAPL", aapl.head(10))
    # call 2 fails without a retry (not transient), call 3 serves again
    stub(monkeypatch, DripProvider({"AAPL": aapl}, fail={2: ProviderError("yahoo: HTTP 400 for AAPL: bad request")}))
    monkeypatch.setattr(cli_mod, "_pause", lambda stop, s: None)
    r = run("update", "AAPL", "-t", "1d", "--provider", "yahoo", "--watch", "30s", "--max-cycles", "3",
            "-f", "json", "--store", store)
    assert r.exit_code == 0, r.output
    assert Store(store).read("1d", "AAPL").equals(aapl.head(12))
    assert [line.split(": ", 2)[2] for line in watch_lines(r.stderr)] == ["AAPL +1 bar", "AAPL failed", "AAPL +1 bar"]
    assert "warning: AAPL 1d: yahoo: HTTP 400 for AAPL: bad request; trying again in the next cycle" in r.stderr
    assert "error:" not in r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]  # one JSON object per cycle
    assert [d["cycle"] for d in docs] == [1, 2, 3]
    assert set(docs[0]) == {"cycle", "time", "store", "results", "error"}
    assert [d["results"][0]["added"] for d in docs] == [1, 0, 1]
    assert docs[1]["results"][0]["error"].startswith("AAPL 1d: yahoo: HTTP 400")


def test_sigterm_mid_cycle_stops_after_the_current_symbols_write(monkeypatch, tmp_path):
    store = tmp_path / "s"
    aapl, msft = make_bars(40, start=T0), make_bars(40, start=T0, seed=2)
    seed(store, "AAPL", aapl.head(10))
    seed(store, "MSFT", msft.head(10))
    # the signal arrives while AAPL is being fetched: AAPL's bar is still written, MSFT is not started
    prov = DripProvider({"AAPL": aapl, "MSFT": msft}, on_fetch=lambda sym: os.kill(os.getpid(), signal.SIGTERM))
    stub(monkeypatch, prov)
    before = signal.getsignal(signal.SIGTERM)
    r = run("update", "--watch", "1h", "--store", store)  # no --max-cycles: only the signal ends it
    assert r.exit_code == 0, r.output
    assert [c[0] for c in prov.calls] == ["AAPL"]
    assert Store(store).read("1d", "AAPL").equals(aapl.head(11))
    assert Store(store).read("1d", "MSFT").equals(msft.head(10))
    assert watch_lines(r.stderr)[0].endswith(": AAPL +1 bar, stopped before MSFT")
    assert r.stderr.splitlines()[-1] == "note: stopped by SIGTERM after 1 cycle; every write completed"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers are put back


def test_a_stop_during_the_retry_backoff_abandons_that_symbol(monkeypatch, tmp_path):
    store = tmp_path / "s"
    aapl = make_bars(40, start=T0)
    seed(store, "AAPL", aapl.head(10))
    seed(store, "MSFT", make_bars(10, start=T0, seed=2))
    # a transient error is retried after a 1 s backoff; Ctrl-C during that wait ends it at once
    fail = {1: TransientProviderError("yahoo: HTTP 503 for AAPL: unavailable")}
    prov = DripProvider({"AAPL": aapl}, fail=fail, on_fetch=lambda sym: os.kill(os.getpid(), signal.SIGINT))
    stub(monkeypatch, prov)
    r = run("update", "--provider", "yahoo", "--watch", "1h", "--store", store)
    assert r.exit_code == 0, r.output
    assert len(prov.calls) == 1  # not retried, MSFT not started
    assert Store(store).read("1d", "AAPL").equals(aapl.head(10))
    assert watch_lines(r.stderr)[0].endswith(": AAPL stopped, stopped before MSFT")
    assert "warning" not in r.stderr
    assert r.stderr.splitlines()[-1] == "note: stopped by SIGINT after 1 cycle; every write completed"


def test_many_series_are_counted_and_timeframes_named(monkeypatch, tmp_path):
    store = tmp_path / "s"
    market = {f"S{i:02d}": make_bars(20, start=T0, seed=i) for i in range(12)}
    for sym, df in market.items():
        seed(store, sym, df.head(19 if sym < "S05" else 20))  # S00..S04 have one bar to come
    seed(store, "S11", make_bars(20, start=T0, seed=11), "1h")  # the same symbol in a second timeframe
    del market["S03"]  # unknown to the provider: fails
    stub(monkeypatch, DripProvider(market))
    r = run("update", "--watch", "1m", "--max-cycles", "1", "--store", store)
    assert r.exit_code == 0, r.output
    assert watch_lines(r.stderr)[0].endswith(": 4 series +4 bars, 8 unchanged, 1 failed (S03 1d)")
    assert r.stderr.count("warning: S03 1d: yahoo: unknown symbol S03") == 1
    r = run("update", "S11", "--watch", "1m", "--max-cycles", "1", "--store", store)
    assert watch_lines(r.stderr)[0].endswith(": S11 1h no new bars, S11 1d no new bars")


class Offline(SeriesProvider):
    def fetch(self, symbol, timeframe, start, end):
        raise NetworkUnreachableError(f"{self.name}: network unreachable (cannot resolve the provider's host) for {symbol}")


def test_a_cycle_without_any_usable_provider_is_a_warning(monkeypatch, tmp_path):
    store = tmp_path / "s"
    aapl = make_bars(20, start=T0)
    seed(store, "AAPL", aapl.head(10))
    providers = iter([Offline({}, "yahoo"), Offline({}, "alpaca"), DripProvider({"AAPL": aapl}), DripProvider({"AAPL": aapl})])
    monkeypatch.setattr(cli_mod, "make_provider", lambda name: next(providers))
    monkeypatch.setattr(cli_mod, "_pause", lambda stop, s: None)
    r = run("update", "--watch", "10s", "--max-cycles", "2", "-f", "json", "--store", store)
    assert r.exit_code == 0, r.output
    assert [line.split(": ", 2)[2] for line in watch_lines(r.stderr)] == ["cycle failed", "AAPL +1 bar"]
    assert "warning: no provider usable: AAPL 1d: yahoo: network unreachable" in r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert docs[0]["error"].startswith("no provider usable") and docs[0]["results"] == []
    assert docs[1]["error"] is None and docs[1]["results"][0]["added"] == 1


@pytest.mark.parametrize("value", ["5x", "0", "0.5s", "-1", "1d", ""])
def test_a_bad_interval_is_a_one_line_error(tmp_path, value):
    seed(tmp_path / "s", "AAPL", make_bars(5, start=T0))
    r = run("update", "--watch", value, "--store", tmp_path / "s")
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: ") and "--watch" in r.stderr


@pytest.mark.parametrize("value,seconds", [("60", 60), ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5M", 90)])
def test_interval_forms(value, seconds):
    assert cli_mod.Interval().convert(value, None, None) == seconds


@pytest.mark.parametrize("args,text", [
    (["--max-cycles", "2"], "--max-cycles needs --watch"),
    (["--watch", "1m", "--prepend"], "--watch cannot be used with --prepend"),
    (["--watch", "1m", "ZZZ"], "not in store"),
])
def test_watch_option_errors(tmp_path, args, text):
    seed(tmp_path / "s", "AAPL", make_bars(5, start=T0))
    r = run("update", *args, "--store", tmp_path / "s")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and text in r.stderr


def test_watching_an_empty_store_is_an_error(tmp_path):
    (tmp_path / "s").mkdir()
    r = run("update", "--watch", "1m", "--store", tmp_path / "s")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "no symbols to watch" in r.stderr


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_watch_loop_keeps_a_fixed_rate_and_skips_missed_slots():
    clock, waits, starts = FakeClock(), [], []
    durations = {1: 3.0, 2: 12.0, 3: 1.0, 4: 0.0}

    def cycle(n):
        starts.append(clock.t)
        clock.t += durations[n]

    def wait(s):
        waits.append(s)
        clock.t += s

    n = watch_loop(cycle, 10.0, lambda: False, wait, max_cycles=4, clock=clock)
    assert n == 4
    # cycle 2 overran its slot (10..22): cycle 3 starts at once, cycle 4 on the new grid
    assert starts == [0.0, 10.0, 22.0, 32.0]
    assert waits == [7.0, 9.0]


def test_watch_loop_stops_when_asked_during_the_wait():
    clock, flag = FakeClock(), []

    def wait(s):
        clock.t += 1.0  # interrupted early by the stop
        flag.append(True)

    n = watch_loop(lambda n: None, 60.0, lambda: bool(flag), wait, clock=clock)
    assert n == 1 and len(flag) == 1


LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
import polars as pl
from slices.data import cli
from test_data_watch import DripProvider
market = {{"AAPL": pl.read_parquet(sys.argv[1])}}
cli.make_provider = lambda name: DripProvider(market, name)
sys.argv = ["python -m slices.data"] + sys.argv[2:]
cli.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_sleep_of_a_real_process_stops_it_cleanly(tmp_path, sig):
    store = tmp_path / "s"
    aapl = make_bars(40, start=T0)
    seed(store, "AAPL", aapl.head(10))
    market = tmp_path / "market.parquet"
    aapl.write_parquet(market)
    code = LAUNCHER.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", code, str(market), "update", "--watch", "1h", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    err = ""
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 120  # interpreter start-up on a loaded machine
        while "watch: " not in err and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1.0):
                err += proc.stderr.readline()
        assert "watch: " in err, err
        proc.send_signal(sig)  # the process now sleeps for an hour before its next cycle
        out, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err += rest
    assert proc.returncode == 0, err
    assert f"note: stopped by {sig.name} after 1 cycle; every write completed" in err
    assert "Traceback" not in err
    assert Store(store).read("1d", "AAPL").equals(aapl.head(11))  # intact, with the cycle's bar
    assert not [p for p in (store / "bars" / "1d").iterdir() if p.name.startswith(".")]  # no temporary file left
