"""The backtest command line around data and output: the `bars` command (SLICES.md contract 2
conformance), option names and short forms, one-line usage errors with the comma hint, warning
summaries, the inferred timeframe, the run folder holding one run."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from slices.backtest.cli import cli

UTC_US = pl.Datetime("us", "UTC")
BARS_SCHEMA = {"symbol": pl.String, "timestamp": UTC_US, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
               "close": pl.Float64, "volume": pl.Float64}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def long_csv(path: Path, symbols: dict[str, list[float]], start_day: int = 1) -> Path:
    rows = ["symbol,date,open,high,low,close,volume"]
    for sym, closes in symbols.items():
        for i, c in enumerate(closes):
            rows.append(f"{sym},2020-{1 + (start_day + i - 1) // 28:02d}-{1 + (start_day + i - 1) % 28:02d},"
                        f"{c},{c * 1.01},{c * 0.99},{c},1000")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_help_everywhere():
    for args in ([], ["run"], ["bars"], ["strategies"]):
        for flag in ("-h", "--help"):
            r = invoke(*args, flag)
            assert r.exit_code == 0 and "Usage:" in r.output
    text = invoke("run", "-h").output
    for name in ("-s, --symbols", "-t, --timeframe", "-f, --format", "-o, --out", "--keep-suspicious", "--debug",
                 "[table|json]", "[1m|5m|15m|30m|1h|4h|1d|1w|1mo]"):
        assert name in text, name


def test_comma_list_in_the_wrong_place_gives_the_hint():
    line = one_line_error(invoke("run", "--symbols", "AAPL", "MSFT"), "MSFT")
    assert line.endswith("hint: --symbols takes one comma list: --symbols AAPL,MSFT")
    one_line_error(invoke("bars", "-s", "AAPL", "KO"), "hint: --symbols takes one comma list")


def test_symbols_repeatable_and_comma_lists(tmp_path):
    r = invoke("bars", "-s", "aapl, msft", "--symbols", "KO", "-o", tmp_path / "b.parquet")
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(tmp_path / "b.parquet")["symbol"].unique().sort().to_list() == ["AAPL", "KO", "MSFT"]


def test_bars_out_is_the_long_frame_the_run_simulates(tmp_path):
    out = tmp_path / "bars.parquet"
    r = invoke("bars", "--symbols", "MSFT,AAPL", "--start", "2019-01-02", "--end", "2019-01-31", "--out", out)
    assert r.exit_code == 0, r.output
    frame = pl.read_parquet(out)
    assert frame.schema == pl.Schema(BARS_SCHEMA)
    assert frame.equals(frame.sort("symbol", "timestamp"))
    assert frame["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "MSFT"]
    sample = pl.read_parquet(Path(__file__).resolve().parents[2] / "slices" / "sample" / "bars" / "1d" / "AAPL.parquet")
    jan = sample.filter(pl.col("timestamp").dt.year() == 2019, pl.col("timestamp").dt.month() == 1)
    assert frame.filter(pl.col("symbol") == "AAPL")["close"].to_list() == jan["close"].to_list()


def test_bars_summary_and_json(tmp_path):
    path = long_csv(tmp_path / "two.csv", {"AAA": [10.0] * 20, "BBB": [20.0] * 15})
    r = invoke("bars", "--data", path)
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x and not x.startswith(("note:", "warning:"))]
    assert lines[0].split() == ["symbol", "first", "last", "bars", "timeframe"]
    assert lines[1].split() == ["AAA", "2020-01-01", "2020-01-20", "20", "1d"]
    assert lines[2].split() == ["BBB", "2020-01-01", "2020-01-15", "15", "1d"]
    r = invoke("bars", "--data", path, "-f", "json")
    doc = json.loads(r.stdout)
    assert doc["timeframe"] == "1d" and doc["symbols"]["BBB"] == {"first": "2020-01-01", "last": "2020-01-15", "bars": 15}
    assert doc["excluded"] == {} and doc["output"] is None


def test_bars_and_run_give_the_same_error_and_exclusions(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close\n2020-01-02,1,2,0.5,NA\n")
    e1 = one_line_error(invoke("bars", "--data", bad), "missing or non-numeric price")
    e2 = one_line_error(invoke("run", "--data", bad, "--no-report", "--out", tmp_path / "o"), "missing or non-numeric price")
    assert e1 == e2
    closes = [10.0 + (i % 7) for i in range(60)]
    mixed = long_csv(tmp_path / "mixed.csv", {"GOOD": closes, "JUMP": closes[:30] + [c * 10 for c in closes[30:]]})
    rb = invoke("bars", "--data", mixed, "-f", "json")
    assert list(json.loads(rb.stdout)["excluded"]) == ["JUMP"]
    rr = invoke("run", "--data", mixed, "--no-report", "--out", tmp_path / "r")
    assert rr.exit_code == 0, rr.output
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]["symbols"] == ["GOOD"]
    excl = [x for x in rr.output.splitlines() if x.startswith("warning:") and "symbol excluded" in x]
    assert excl == [x for x in rb.output.splitlines() if x.startswith("warning:") and "symbol excluded" in x]
    assert len(excl) == 1 and "JUMP 2020-02-03: close jumps x10.91 (bad quote or unadjusted split)" in excl[0]


def test_inferred_timeframe_is_noted_and_recorded(tmp_path):
    rows = ["datetime,open,high,low,close,volume"] + [
        f"2020-01-{2 + h // 24:02d} {h % 24:02d}:00:00,{10 + h % 5},{11 + h % 5},{9 + h % 5},{10 + h % 5},5"
        for h in range(24 * 5)]
    path = tmp_path / "fx.csv"
    path.write_text("\n".join(rows) + "\n")
    r = invoke("run", "--data", path, "--no-report", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "note: timeframe 1h (inferred from the bar spacing)" in r.output
    run = json.loads((tmp_path / "o" / "metrics.json").read_text())["run"]
    assert run["timeframe"] == "1h"
    assert run["periods_per_year"] == pytest.approx((24 * 5 - 1) * 365.25 * 86400 / ((24 * 5 - 1) * 3600))
    one_line_error(invoke("run", "--data", path, "-t", "1d", "--no-report", "-o", tmp_path / "p"),
                   "--timeframe 1d disagrees", "1h")


def test_named_store_rules_on_the_command_line(tmp_path):
    one_line_error(invoke("bars", "--store", tmp_path / "nope"), "--store", "no such folder")
    (tmp_path / "empty").mkdir()
    one_line_error(invoke("bars", "--store", tmp_path / "empty", "-s", "AAPL"), "AAPL has no 1d bars in store")
    r = invoke("bars", "-s", "AAPL")  # the default store is empty here: the sample, with the note
    assert r.exit_code == 0
    assert "note: AAPL 1d from the embedded sample (not in the default store ~/.gpt-trader/store)" in r.output


def test_out_folder_holds_one_run(tmp_path):
    out = tmp_path / "o"
    r = invoke("run", "-s", "AAPL", "-o", out)
    assert r.exit_code == 0 and (out / "report.html").exists() and f"Report: {out / 'report.html'}" in r.output
    (out / "notes.txt").write_text("mine")
    r = invoke("run", "-s", "AAPL", "-o", out, "--no-report")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["equity.parquet", "metrics.json", "notes.txt", "trades.parquet"]
    assert "Report:" not in r.output and "report.html" not in r.output and f"Output: {out}" in r.output


def test_halt_warning_names_a_date(tmp_path):
    r = invoke("run", "-s", "AAPL,AMZN", "--max-drawdown", "0.05", "--no-report", "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    halt = [x for x in r.output.splitlines() if x.startswith("warning:") and "halt" in x]
    assert len(halt) == 1 and "on bar" not in halt[0]
    assert __import__("re").search(r"on \d{4}-\d{2}-\d{2}", halt[0])
    assert halt[0][len("warning: "):] in json.loads((tmp_path / "o" / "metrics.json").read_text())["warnings"]


def test_shared_file_warnings_summary(tmp_path, sp500):
    r = invoke("run", "--data", sp500, "--no-report", "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    warned = [x for x in r.output.splitlines() if x.startswith("warning:")]
    for sym in ("CBS", "STI", "VIAB", "BHF", "SCG"):
        assert sum(f" {sym} " in w and "symbol excluded" in w for w in warned) == 1
    assert any(w.startswith("warning: 14 symbols with zero-volume bars (") for w in warned)
    untaken = next(w for w in warned if "entry signal(s) not taken" in w)
    assert "size below one share" in untaken
    never = next(w for w in warned if "never traded" in w)
    assert all(f"{s} (" in never for s in ("AMZN", "GOOGL", "BLK"))
    assert len(warned) < 20  # summarised, not 35 lines
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert len(doc["warnings"]) > len(warned)
    assert sum("zero-volume" in w for w in doc["warnings"]) == 14
