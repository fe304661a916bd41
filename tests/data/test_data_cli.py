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
    assert any(line.split()[:3] == ["1d", "AAPL", "1,259"] for line in lines)
    r = run("show", "AAPL", "--tail", 3, "--store", store)
    assert r.exit_code == 0 and "2020-01-10" in r.stdout and len(r.stdout.splitlines()) == 1 + 2 + 3
    out = tmp_path / "aapl.parquet"
    assert run("export", "AAPL", "--to", out, "--store", store).exit_code == 0
    assert pl.read_parquet(out).equals(st.read("1d", "AAPL"))
    r = run("remove", "AAPL", "--store", store)
    assert r.exit_code == 0 and not st.has("1d", "AAPL") and st.has("1h", "EURUSD")
    r = run("remove", "AAPL", "--store", store)
    assert r.exit_code == 2 and r.stderr.startswith("error: AAPL")


def _default_store(monkeypatch, tmp_path):
    """No --store and no $GPT_TRADER_STORE: the default store ~/.gpt-trader/store (HOME=tmp)."""
    monkeypatch.delenv("GPT_TRADER_STORE")
    monkeypatch.setenv("HOME", str(tmp_path))


def test_only_the_default_store_falls_back_to_the_sample(monkeypatch, tmp_path):
    _default_store(monkeypatch, tmp_path)
    r = run("show", "MSFT")
    assert r.exit_code == 0
    assert r.stderr.strip() == "note: MSFT 1d from the embedded sample (not in the default store ~/.gpt-trader/store)"
    assert not (tmp_path / ".gpt-trader").exists()
    # a named store is the only source: a symbol it lacks is an error, not the sample
    (tmp_path / "named").mkdir()
    r = run("show", "MSFT", "--store", tmp_path / "named")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: MSFT not in store {tmp_path / 'named'}"


def test_reading_commands_refuse_a_named_store_that_is_missing_or_a_file(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["list"], ["show", "AAPL"], ["export", "AAPL", "-o", tmp_path / "a.csv"], ["validate"], ["remove", "AAPL"]):
        r = run(*args, "--store", tmp_path / "missing")
        assert r.exit_code == 2, args
        assert r.stderr.strip() == f"error: store {tmp_path / 'missing'} does not exist (named by --store); fetch or import into it first"
        r = run(*args, "--store", blocker)
        assert r.exit_code == 2 and r.stderr.strip() == f"error: store {blocker} is a file, not a folder", args
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path / "env-missing"))
    r = run("list")
    assert r.exit_code == 2 and "named by $GPT_TRADER_STORE" in r.stderr
    assert not (tmp_path / "missing").exists() and not (tmp_path / "env-missing").exists()
    # writing commands create a named store that does not exist yet, and say so; a file is an error
    r = run("import", SAMPLE_AAPL, "--store", tmp_path / "new")
    assert r.exit_code == 0 and f"note: created store {tmp_path / 'new'}" in r.stderr
    r = run("import", SAMPLE_AAPL, "--store", blocker)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: store {blocker} is a file, not a folder"


def test_validate_sample_file_and_sample_store():
    r = run("validate", "--data", SAMPLE_ROOT / "bars" / "1d" / "DIS.parquet", "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 0  # DIS 2020-01-10: open above high, a warning (contract 2 rule 12)
    assert "ohlc_inconsistent" in r.stdout and "0 errors, 1 warnings" in r.stdout
    r = run("validate", "--data", SAMPLE_AAPL, "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 0 and "0 errors" in r.stdout
    r = run("validate", "--store", SAMPLE_ROOT, "--format", "json", "--asof", "none")
    data = json.loads(r.stdout)
    assert data["series"] == 32 and data["summary"]["error"] == 0
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
    assert "imported 477 symbols" in r.stdout
    st = Store(store)
    assert len(st.symbols("1d")) == 477
    excluded = sorted(line for line in r.stderr.splitlines() if line.endswith("; symbol excluded"))
    assert excluded == [
        f"warning: {sp500}: BHF 2015-01-12: sub-penny price 0.006 (placeholder quote); symbol excluded",
        f"warning: {sp500}: CBS 2019-12-04: non-positive open 0; symbol excluded",
        f"warning: {sp500}: SCG 2019-03-05: sub-penny price 0.0063 (placeholder quote); symbol excluded",
        f"warning: {sp500}: STI 2019-12-06: duplicate timestamp; symbol excluded",
        f"warning: {sp500}: VIAB 2019-12-04: duplicate timestamp; symbol excluded",
    ]
    assert not {"BHF", "CBS", "SCG", "STI", "VIAB"} & set(st.symbols("1d"))
    # prices are adjusted by adj_close / close (AAPL 2015-01-12: close 109.25, adj_close 100.0 or so)
    raw = pl.read_parquet(sp500).filter(pl.col("symbol") == "AAPL").head(1)
    assert st.read("1d", "AAPL")["close"][0] == raw["adj_close"][0] * 0 + raw["close"][0] * (raw["adj_close"][0] / raw["close"][0])
    r = run("validate", "--store", store, "--asof", "2020-01-10", "--strict")
    assert r.exit_code == 0  # only what contract 2 accepts was imported
    assert "477 series" in r.stdout


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
        assert not (tmp_path / "s").exists()  # nothing was written: the named store was not created
        assert not Store(tmp_path / "s").symbols("1d")


def test_fetch_unknown_symbol_is_reported_and_others_are_stored(monkeypatch, tmp_path):
    market = {"AAA": make_bars(50, start=datetime(2021, 1, 1, tzinfo=timezone.utc))}
    _stub_providers(monkeypatch, {"yahoo": SeriesProvider(market, "yahoo"), "alpaca": SeriesProvider(market, "alpaca")})
    r = run("fetch", "ZZZ", "AAA", "--start", "2021-01-01", "--end", "2021-03-01", "--store", tmp_path / "s")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"note: created store {tmp_path / 's'}",
                                             "error: ZZZ 1d: yahoo: unknown symbol ZZZ; alpaca: unknown symbol ZZZ"]
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
    monkeypatch.setattr(cli_mod, "_progress", lambda n, label, **kw: real(n, label, file=tty, **kw))
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
    env = {k: v for k, v in os.environ.items() if k != "GPT_TRADER_STORE"}
    proc = subprocess.run([sys.executable, "-m", "slices.data", "export", "AAPL", "--to", str(blocker / "x.csv")],
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(blocker) in lines[-1] and len(lines) == 2  # the sample note + error
    r = run("import", SAMPLE_AAPL, "--store", blocker / "store")
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {blocker}")


def test_bad_lock_timeout_setting_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_TRADER_LOCK_TIMEOUT", "soon")
    r = run("import", SAMPLE_AAPL, "--store", tmp_path / "s")
    assert r.exit_code == 2 and r.stderr.strip() == "error: GPT_TRADER_LOCK_TIMEOUT='soon': use a number of seconds"


# ---- contract 2 import, store rules, command-line style -----------------------------------
def _csv(path, df: pl.DataFrame, symbol: str | None = None):
    if symbol is not None:
        df = df.with_columns(symbol=pl.lit(symbol))
    df.write_csv(path)
    return path


def test_a_bad_imported_row_never_replaces_a_good_stored_bar(tmp_path):
    store = tmp_path / "s"
    good = make_bars(10)
    assert run("import", _csv(tmp_path / "aaa.csv", good), "--store", store).exit_code == 0
    bad = good.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(float("nan")).otherwise(pl.col("close")).alias("close"))
    bad = bad.with_columns(pl.col("open") * 1.01)  # every other bar differs, so nothing of it may land
    path = _csv(tmp_path / "aaa.csv", bad)
    day = f"{good['timestamp'][4]:%Y-%m-%d}"
    r = run("import", path, "--symbols", "AAA", "--store", store)  # named: error, nothing written
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {path}: AAA {day}: missing close"
    assert Store(store).read("1d", "AAA").equals(good)
    r = run("import", path, "--store", store)  # unnamed, and the only symbol: its fault is the error
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {path}: AAA {day}: missing close"
    assert Store(store).read("1d", "AAA").equals(good)
    both = pl.concat([bad.with_columns(symbol=pl.lit("AAA")), bad.with_columns(symbol=pl.lit("BBB"))])
    both.write_csv(tmp_path / "both.csv")
    r = run("import", tmp_path / "both.csv", "--store", store)  # several, none left: ONE line, the first's reason
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'both.csv'}: AAA {day}: missing close (and 1 more symbol excluded)"]
    assert Store(store).symbols("1d") == ["AAA"] and Store(store).read("1d", "AAA").equals(good)
    # a long file: the good symbol is imported, the bad one excluded and its stored bars kept
    long = pl.concat([bad.with_columns(symbol=pl.lit("AAA")), make_bars(10, seed=5).with_columns(symbol=pl.lit("BBB"))])
    long.write_csv(tmp_path / "long.csv")
    r = run("import", tmp_path / "long.csv", "--store", store)
    assert r.exit_code == 0 and "symbol excluded" in r.stderr
    assert Store(store).symbols("1d") == ["AAA", "BBB"] and Store(store).read("1d", "AAA").equals(good)


def test_import_replaces_the_same_timestamps_and_keeps_the_rest(tmp_path):
    store = tmp_path / "s"
    full = make_bars(10)
    run("import", _csv(tmp_path / "aaa.csv", full), "--store", store)
    newer = full.filter(pl.int_range(pl.len()).is_in([2, 6])).with_columns(pl.col("volume") + 1)
    r = run("import", _csv(tmp_path / "aaa.csv", newer), "--store", store)
    assert r.exit_code == 0, r.output
    stored = Store(store).read("1d", "AAA")
    assert stored.height == 10 and stored["volume"].to_list() == [v + (i in (2, 6)) for i, v in enumerate(full["volume"])]


def test_import_symbols_range_and_timeframe_rules(tmp_path):
    store = tmp_path / "s"
    long = pl.concat([make_bars(20).with_columns(symbol=pl.lit("AAA")), make_bars(20, seed=1).with_columns(symbol=pl.lit("BBB"))])
    path = tmp_path / "long.parquet"
    long.write_parquet(path)
    r = run("import", path, "-s", "bbb", "--start", "2020-01-05", "--end", "2020-01-07", "--store", store)
    assert r.exit_code == 0, r.output
    assert Store(store).symbols("1d") == ["BBB"]
    assert [f"{t:%d}" for t in Store(store).read("1d", "BBB")["timestamp"]] == ["05", "06", "07"]
    r = run("import", path, "-t", "1h", "--store", store)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {path}: AAA: the bars are 1d, not 1h (--timeframe)"
    half = make_bars(10, step=timedelta(minutes=30))
    r = run("import", _csv(tmp_path / "h.csv", half), "--store", store)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'h.csv'}: H: 30m bars cannot be stored (the store holds 1m 5m 15m 1h 1d)"
    assert "H" not in Store(store).symbols("1d")
    # a single bar has no spacing: 1d by definition, or what -t says
    one = make_bars(1, start=datetime(2021, 1, 4, 15, tzinfo=timezone.utc))
    assert run("import", _csv(tmp_path / "one.csv", one), "-t", "1h", "--store", store).exit_code == 0
    assert Store(store).symbols("1h") == ["ONE"]


def test_every_command_checks_symbols_before_building_a_path(monkeypatch, tmp_path):
    store = tmp_path / "s"
    run("import", SAMPLE_AAPL, "--store", store)
    _stub_providers(monkeypatch, {"yahoo": Offline("yahoo"), "alpaca": Offline("alpaca")})
    for args in (["fetch", "../../evil"], ["fetch", "-s", "AAPL,../../evil"], ["update", "../../evil"],
                 ["import", SAMPLE_AAPL, "-s", "../../evil"], ["show", "../../evil"], ["show", "-s", "../../evil"],
                 ["export", "../../evil", "-o", tmp_path / "x.csv"], ["remove", "../../evil"], ["remove", "-s", "../../evil"],
                 ["validate", "../../evil"], ["validate", "-s", "../../evil"], ["validate", "--data", SAMPLE_AAPL, "../../evil"]):
        r = run(*args, "--store", store)
        assert r.exit_code == 2, args
        assert r.stderr.strip() == "error: invalid symbol '../../evil': use letters, digits and . - _ = ^", args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_help_on_every_command_and_one_line_usage_errors():
    for cmd in ([], ["fetch"], ["update"], ["import"], ["list"], ["show"], ["export"], ["remove"], ["validate"]):
        for flag in ("-h", "--help"):
            r = run(*cmd, flag)
            assert r.exit_code == 0 and r.stdout.startswith("Usage:"), (cmd, flag)
    assert "[table|json]" in run("list", "-h").stdout and "[1m|5m|15m|1h|1d]" in run("validate", "-h").stdout
    r = run("show", "--bogus")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    r = run("list", "AAPL,MSFT")
    assert r.exit_code == 2 and r.stderr.strip().endswith("hint: --symbols takes one comma list: --symbols AAPL,MSFT")
    r = run("export", "AAPL,", "MSFT", "-o", "x.csv")
    assert r.exit_code == 2 and r.stderr.strip() == (
        "error: export takes one symbol, got 2: AAPL MSFT; hint: --symbols takes one comma list: --symbols AAPL,MSFT")


def test_symbols_as_comma_lists_positional_and_repeated(tmp_path):
    store = tmp_path / "s"
    run("import", SAMPLE_ROOT / "bars" / "1d" / "AAPL.parquet", SAMPLE_ROOT / "bars" / "1d" / "MSFT.parquet",
        SAMPLE_ROOT / "bars" / "1d" / "JPM.parquet", "--store", store)
    r = run("show", "aapl,msft", "-s", "JPM", "-n", "1", "-f", "json", "--store", store)
    assert [d["symbol"] for d in json.loads(r.stdout)["series"]] == ["AAPL", "MSFT", "JPM"]
    r = run("remove", "-s", "AAPL,MSFT", "--store", store)
    assert r.exit_code == 0 and Store(store).symbols("1d") == ["JPM"]


def test_json_outputs_have_the_documented_keys(tmp_path):
    store = tmp_path / "s"
    r = run("import", SAMPLE_AAPL, SAMPLE_ROOT / "bars" / "1h" / "EURUSD.parquet", "-f", "json", "--store", store)
    doc = json.loads(r.stdout)
    assert set(doc) == {"store", "imported", "excluded", "rows", "warnings"}
    assert set(doc["imported"][0]) == {"symbol", "timeframe", "provider", "rows", "total", "first", "last", "warnings", "note", "error"}
    assert doc["imported"][0]["first"] == "2015-01-12" and doc["imported"][1]["first"].endswith("Z")
    doc = json.loads(run("list", "-f", "json", "--store", store).stdout)
    assert set(doc) == {"store", "series"} and {s["symbol"] for s in doc["series"]} == {"AAPL", "EURUSD"}
    assert set(doc["series"][0]) == {"timeframe", "symbol", "rows", "first", "last", "provider", "updated", "validated"}
    doc = json.loads(run("show", "EURUSD", "-n", "2", "-f", "json", "--store", store).stdout)
    (s,) = doc["series"]
    assert s["timeframe"] == "1h" and len(s["bars"]) == 2 and s["bars"][0]["timestamp"].endswith("Z")
    assert set(s) == {"symbol", "timeframe", "source", "rows", "first", "last", "meta", "bars"}
    doc = json.loads(run("validate", "-f", "json", "--asof", "none", "--store", store).stdout)
    assert set(doc) == {"asof", "series", "summary", "findings"} and doc["series"] == 2


def test_show_and_export_aliases_and_number_formats(tmp_path):
    store = tmp_path / "s"
    run("import", SAMPLE_ROOT / "bars" / "1h" / "EURUSD.parquet", "--store", store)
    a = run("show", "EURUSD", "--tail", 2, "--store", store).stdout
    assert a == run("show", "EURUSD", "-n", 2, "--store", store).stdout
    header, _, _, first, second = a.splitlines()
    assert header.startswith("EURUSD 1h: 5,000 bars 2017-04-19T") and first.split()[0].endswith("Z")
    assert all(len(x.split(".")[-1]) <= 8 for x in first.split()[1:5])  # prices at their own precision
    assert run("export", "EURUSD", "--to", tmp_path / "a.csv", "--store", store).exit_code == 0
    assert run("export", "EURUSD", "-o", tmp_path / "b.csv", "--store", store).exit_code == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_validate_without_timeframe_checks_each_one_the_symbol_has(monkeypatch, tmp_path):
    _default_store(monkeypatch, tmp_path)
    r = run("validate", "EURUSD", "--asof", "none")  # the README example, exactly
    assert r.exit_code == 0 and r.stdout.strip() == "1 series: 0 errors, 0 warnings, 0 info"
    assert "EURUSD 1h from the embedded sample" in r.stderr
    r = run("validate", "NOPE", "--asof", "none")
    assert r.exit_code == 2 and r.stderr.strip() == "error: NOPE not in store ~/.gpt-trader/store nor in the embedded sample".replace(
        "~/.gpt-trader/store", str(tmp_path / ".gpt-trader" / "store"))


def test_validate_data_reports_suspicious_series(tmp_path):
    df = make_bars(30)
    df = df.with_columns([pl.when(pl.int_range(pl.len()) >= 15).then(pl.col(c) * 100).otherwise(pl.col(c)).alias(c)
                          for c in ("open", "high", "low", "close")])
    path = _csv(tmp_path / "aaa.csv", df)
    r = run("validate", "--data", path, "--asof", "none", "--calendar", "none", "--strict", "-f", "json")
    assert r.exit_code == 1
    (f,) = [f for f in json.loads(r.stdout)["findings"] if f["kind"] == "suspicious_series"]
    assert f["severity"] == "error" and f["start"] == "2020-01-16T00:00:00Z" and "(bad quote or unadjusted split)" in f["message"]
    r = run("validate", "--data", path, "--asof", "none", "--calendar", "none", "--strict", "--keep-suspicious")
    assert r.exit_code == 0 and "suspicious_series" in r.stdout
    r = run("validate", "--data", path, "--asof", "none", "--calendar", "none", "--strict", "--end", "2020-01-15")
    assert r.exit_code == 0  # the range comes first (rule 9)


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(cli_mod, "open_store", boom)
    r = run("list")
    assert r.exit_code == 2 and r.stderr == "error: unexpected RuntimeError: kaput (run with --debug for the traceback)\n"
    r = CliRunner().invoke(cli, ["list", "--debug"])
    assert isinstance(r.exception, RuntimeError)


def test_readme_examples_run_as_written(tmp_path, sp500):
    text = (REPO / "slices" / "data" / "README.md").read_text()
    block = text.split("Examples:\n\n```\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "GPT_TRADER_STORE"}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
    ran = 0
    for line in block.splitlines():
        cmd = line.split("#")[0].strip()
        if not cmd or " fetch " in cmd or " update" in cmd:
            continue  # network
        cmd = cmd.replace("/tmp/store", str(tmp_path / "store")).replace("aapl.csv", str(tmp_path / "aapl.csv"))
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, cwd=REPO)
        assert proc.returncode in (0, 1), (cmd, proc.stderr)  # 1: --strict found an error, as documented
        assert "Traceback" not in proc.stderr
        ran += 1
    assert ran >= 8
