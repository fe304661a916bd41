"""The command line as a user runs it (click's runner; a subprocess for the real entrypoint)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from data_helpers import SeriesProvider, make_bars
from slices.data import cli as cli_mod
from slices.data.cli import cli
from slices.data.errors import NetworkUnreachableError
from slices.data.providers import Provider
from slices.data.store import SAMPLE_ROOT, Store

REPO = Path(__file__).resolve().parents[2]
SAMPLE_AAPL = SAMPLE_ROOT / "bars" / "1d" / "AAPL.parquet"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "slices.data", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 0
    for cmd in ("fetch", "update", "import", "list", "show", "export", "remove", "validate"):
        assert cmd in proc.stdout


def test_bad_input_is_one_line_exit_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "slices.data", "import", str(tmp_path / "nope.csv"), "--store", str(tmp_path / "s")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.csv'}: file not found"]
    assert "Traceback" not in proc.stderr


def test_import_list_show_export_remove_cycle(tmp_path):
    store = tmp_path / "store"
    r = run("import", SAMPLE_AAPL, SAMPLE_ROOT / "bars" / "1h" / "EURUSD.parquet", "--store", store)
    assert r.exit_code == 0, r.output
    assert "AAPL" in r.stdout and "EURUSD" in r.stdout
    st = Store(store)
    assert st.read("1d", "AAPL").equals(pl.read_parquet(SAMPLE_AAPL))
    assert st.symbols("1h") == ["EURUSD"]  # timeframe inferred from the spacing
    r = run("list", "--store", store)
    lines = r.stdout.splitlines()
    assert any(line.split()[:3] == ["1d", "AAPL", "1259"] for line in lines)
    r = run("show", "AAPL", "--tail", 3, "--store", store)
    assert r.exit_code == 0 and "2020-01-10" in r.stdout and len(r.stdout.splitlines()) == 1 + 2 + 3
    out = tmp_path / "aapl.parquet"
    assert run("export", "AAPL", "--to", out, "--store", store).exit_code == 0
    assert pl.read_parquet(out).equals(st.read("1d", "AAPL"))
    r = run("remove", "AAPL", "--store", store)
    assert r.exit_code == 0 and not st.has("1d", "AAPL") and st.has("1h", "EURUSD")
    r = run("remove", "AAPL", "--store", store)
    assert r.exit_code == 2 and r.stderr.startswith("error: AAPL")


def test_show_falls_back_to_the_sample_with_a_note(tmp_path):
    r = run("show", "MSFT", "--store", tmp_path / "empty")
    assert r.exit_code == 0
    assert f"note: MSFT 1d not in store {tmp_path / 'empty'}; using embedded sample" in r.stderr
    assert not (tmp_path / "empty").exists()


def test_validate_sample_file_and_sample_store():
    r = run("validate", "--data", SAMPLE_ROOT / "bars" / "1d" / "DIS.parquet", "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 1  # DIS 2020-01-10: open above high
    assert "ohlc_inconsistent" in r.stdout and "1 errors" in r.stdout
    r = run("validate", "--data", SAMPLE_AAPL, "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 0 and "0 errors" in r.stdout
    r = run("validate", "--store", SAMPLE_ROOT, "--format", "json", "--asof", "none")
    data = json.loads(r.stdout)
    assert data["series"] == 32 and data["summary"]["error"] == 1
    assert {"symbol", "timeframe", "kind", "severity", "start", "end", "count", "message"} <= set(data["findings"][0])
    assert not (SAMPLE_ROOT / "meta").exists()  # the read-only sample is never written


def test_validate_records_last_validated_in_a_writable_store(tmp_path):
    store = tmp_path / "s"
    run("import", SAMPLE_AAPL, "--store", store)
    r = run("validate", "--store", store, "--asof", "none")
    assert r.exit_code == 0
    rec = json.loads((store / "meta" / "validation.json").read_text())
    assert rec["1d"]["AAPL"]["errors"] == 0 and rec["1d"]["AAPL"]["last_validated"].endswith("Z")
    assert run("list", "--store", store).stdout.splitlines()[2].split()[-1] == rec["1d"]["AAPL"]["last_validated"]


def test_validate_bad_asof_is_a_clear_error():
    r = run("validate", "--data", SAMPLE_AAPL, "--asof", "yesterday-ish")
    assert r.exit_code == 2 and "--asof" in r.stderr


def test_import_shared_sp500_as_it_is(tmp_path, sp500):
    store = tmp_path / "s"
    r = run("import", sp500, "--store", store)
    assert r.exit_code == 0, r.output
    assert "imported 482 symbols" in r.stdout
    st = Store(store)
    assert len(st.symbols("1d")) == 482
    cbs = st.read("1d", "CBS")
    assert cbs.filter(pl.col("timestamp") == datetime(2019, 12, 4, tzinfo=timezone.utc))["close"].round(6).to_list() == [40.77]
    assert "CBS: dropped 1 row" in r.stderr
    r = run("validate", "--store", store, "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 0  # rows breaking the store contract were dropped at import
    assert "482 series" in r.stdout


def _stub_providers(monkeypatch, mapping: dict[str, Provider]):
    monkeypatch.setattr(cli_mod, "make_provider", lambda name: mapping[name])


class Offline(Provider):
    def __init__(self, name):
        self.name = name

    def fetch(self, symbol, timeframe, start, end):
        raise NetworkUnreachableError(f"{self.name}: network unreachable (cannot resolve the provider's host) for {symbol}")


def test_fetch_offline_is_one_clean_line(monkeypatch, tmp_path):
    _stub_providers(monkeypatch, {"yahoo": Offline("yahoo"), "alpaca": Offline("alpaca")})
    for symbols in (["AAPL"], ["AAPL", "MSFT", "IBM"]):
        r = run("fetch", *symbols, "--store", tmp_path / "s")
        assert r.exit_code == 2
        assert len(r.stderr.strip().splitlines()) == 1
        assert r.stderr.startswith("error: no provider usable: AAPL 1d: yahoo: network unreachable")
        assert not Store(tmp_path / "s").symbols("1d")


def test_fetch_unknown_symbol_is_reported_and_others_are_stored(monkeypatch, tmp_path):
    market = {"AAA": make_bars(50, start=datetime(2021, 1, 1, tzinfo=timezone.utc))}
    _stub_providers(monkeypatch, {"yahoo": SeriesProvider(market, "yahoo"), "alpaca": SeriesProvider(market, "alpaca")})
    r = run("fetch", "ZZZ", "AAA", "--start", "2021-01-01", "--end", "2021-03-01", "--store", tmp_path / "s")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == ["error: ZZZ 1d: yahoo: unknown symbol ZZZ; alpaca: unknown symbol ZZZ"]
    assert Store(tmp_path / "s").symbols("1d") == ["AAA"] and "AAA" in r.stdout


def test_fetch_with_failover_summary_and_update(monkeypatch, tmp_path):
    full = make_bars(400, start=datetime(2021, 1, 1, tzinfo=timezone.utc))
    market = {"AAA": full, "BBB": make_bars(400, start=datetime(2021, 1, 1, tzinfo=timezone.utc), seed=3)}
    alpaca = SeriesProvider(market, name="alpaca")
    _stub_providers(monkeypatch, {"yahoo": Offline("yahoo"), "alpaca": alpaca})
    store = tmp_path / "s"
    r = run("fetch", "AAA", "BBB", "--start", "2021-01-01", "--end", "2021-06-30", "--store", store)
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    assert [(x[0], x[2], x[3]) for x in rows] == [("AAA", "alpaca", "181"), ("BBB", "alpaca", "181")]
    assert Store(store).meta("1d", "AAA")["provider"] == "alpaca"
    # outage over: update brings both to the end of the market without refetching stored bars
    alpaca.calls.clear()
    r = run("update", "--store", store)
    assert r.exit_code == 0, r.output
    assert all(start > datetime(2021, 6, 30, tzinfo=timezone.utc) for _, start, _ in alpaca.calls)
    assert Store(store).read("1d", "AAA").equals(full)
    r = run("update", "AAA", "--store", store)
    assert r.exit_code == 0 and "no new bars" in r.stdout


def test_update_unknown_symbol_is_an_error(tmp_path):
    r = run("update", "ZZZ", "--store", tmp_path / "s")
    assert r.exit_code == 2 and "ZZZ" in r.stderr and "fetch first" in r.stderr


def test_writes_into_the_sample_are_refused():
    r = run("import", SAMPLE_AAPL, "--store", SAMPLE_ROOT)
    assert r.exit_code == 2 and "read-only" in r.stderr


# ---- audit fixes ---------------------------------------------------------------------------
def test_failover_says_which_provider_failed_and_which_served(monkeypatch, tmp_path):
    market = {"AAA": make_bars(30, start=datetime(2021, 1, 1, tzinfo=timezone.utc))}
    _stub_providers(monkeypatch, {"yahoo": Offline("yahoo"), "alpaca": SeriesProvider(market, "alpaca")})
    r = run("fetch", "AAA", "--start", "2021-01-01", "--end", "2021-01-30", "--store", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert "note: AAA 1d: yahoo failed (yahoo: network unreachable" in r.stderr and "served by alpaca" in r.stderr
    header, _, row = r.stdout.splitlines()[:3]
    assert header.split() == ["symbol", "tf", "provider", "rows", "total", "first", "last", "warnings", "note"]
    assert row.split()[:4] == ["AAA", "1d", "alpaca", "30"] and row.endswith("failover from yahoo")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_for_several_symbols_on_a_terminal(monkeypatch, tmp_path):
    market = {s: make_bars(20, start=datetime(2021, 1, 1, tzinfo=timezone.utc), seed=i) for i, s in enumerate(("AAA", "BBB", "CCC"))}
    _stub_providers(monkeypatch, {"yahoo": SeriesProvider(market, "yahoo"), "alpaca": SeriesProvider(market, "alpaca")})
    tty = _Tty()
    real = cli_mod._progress
    monkeypatch.setattr(cli_mod, "_progress", lambda n, label: real(n, label, file=tty))
    r = run("fetch", "AAA", "BBB", "CCC", "--start", "2021-01-01", "--end", "2021-01-20", "--store", tmp_path / "s")
    assert r.exit_code == 0, r.output
    bar = tty.getvalue()
    assert "fetching" in bar and "33%  AAA" in bar and "100%  CCC" in bar
    assert [line.split()[0] for line in r.stdout.splitlines()[2:]] == ["AAA", "BBB", "CCC"]
    # one symbol, or stderr not a terminal: no bar
    quiet = io.StringIO()
    with real(3, "fetching", file=quiet) as step:
        step("AAA")
    with real(1, "fetching", file=_Tty()) as step:
        step("AAA")
    assert quiet.getvalue() == ""


def test_update_prepend_from_the_command_line(monkeypatch, tmp_path):
    full = make_bars(200, start=datetime(2021, 1, 1, tzinfo=timezone.utc))
    prov = SeriesProvider({"AAA": full}, "yahoo")
    _stub_providers(monkeypatch, {"yahoo": prov, "alpaca": SeriesProvider({}, "alpaca")})
    store = tmp_path / "s"
    mid = full["timestamp"][120]
    assert run("fetch", "AAA", "--start", f"{mid:%Y-%m-%d}", "--end", "2021-07-19", "--store", store).exit_code == 0
    prov.calls.clear()
    r = run("update", "AAA", "--prepend", "--start", "2021-01-01", "--store", store)
    assert r.exit_code == 0, r.output
    assert prov.calls == [("AAA", datetime(2021, 1, 1, tzinfo=timezone.utc), mid - timedelta(days=1))]
    assert Store(store).read("1d", "AAA").equals(full)
    assert run("update", "AAA", "--prepend", "--start", "2021-01-01", "--store", store).stdout.rstrip().endswith("nothing before start")


def test_update_start_without_prepend_is_an_error(tmp_path):
    r = run("update", "--start", "2010-01-01", "--store", tmp_path / "s")
    assert r.exit_code == 2 and r.stderr.strip() == (
        "error: update --start needs --prepend (a forward update always starts after the last stored bar)")


def test_validate_symbols_select_from_data_files(tmp_path):
    a = make_bars(40, start=datetime(2019, 1, 2, tzinfo=timezone.utc))
    b = make_bars(40, start=datetime(2019, 1, 2, tzinfo=timezone.utc), seed=2)
    b = b.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(0.0).otherwise(pl.col("close")).alias("close"))
    long = pl.concat([a.with_columns(symbol=pl.lit("AAA")), b.with_columns(symbol=pl.lit("BBB"))])
    path = tmp_path / "long.csv"
    long.write_csv(path)
    r = run("validate", "AAA", "--data", path, "--calendar", "none", "--asof", "none", "--format", "json",
            "--store", tmp_path / "s")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["series"] == 1 and {f["symbol"] for f in data["findings"]} <= {"AAA"}
    r = run("validate", "BBB", "--data", path, "--calendar", "none", "--asof", "none", "--strict", "--store", tmp_path / "s")
    assert r.exit_code == 1 and "1 series: 1 errors" in r.stdout and "bad_price" in r.stdout
    r = run("validate", "ZZZ", "AAA", "--data", path, "--store", tmp_path / "s")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: not in {path}: ZZZ"


def test_os_errors_are_one_clean_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "slices.data", "export", "AAPL", "--to", str(blocker / "x.csv"),
                           "--store", str(tmp_path / "s")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(blocker) in lines[-1] and len(lines) == 2  # the sample note + error
    r = run("import", SAMPLE_AAPL, "--store", blocker / "store")
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {blocker}")


def test_bad_lock_timeout_setting_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_TRADER_LOCK_TIMEOUT", "soon")
    r = run("import", SAMPLE_AAPL, "--store", tmp_path / "s")
    assert r.exit_code == 2 and r.stderr.strip() == "error: GPT_TRADER_LOCK_TIMEOUT='soon': use a number of seconds"
