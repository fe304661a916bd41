"""The CLI as a user runs it: every command on the embedded sample, files written, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from analyze_helpers import ROOT, make_bars, random_walk
from click.testing import CliRunner

from slices.analyze.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_bad_input(result, fragment):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    assert fragment in lines[-1], lines[-1]
    assert "Traceback" not in result.output


def test_help_lists_commands():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("indicators", "regime", "risk", "report"):
        assert cmd in res.output
    for cmd in ("indicators", "regime", "risk", "report"):
        out = run(cmd, "--help").output
        for opt in ("--store", "--data", "--start", "--end", "--timeframe", "--format", "--out"):
            assert opt in out, (cmd, opt)


def test_indicators_table_json_and_files(no_store, tmp_path):
    res = run("indicators", "AAPL", "-i", "rsi:14", "-i", "macd:12:26:9", "--rows", "3")
    assert res.exit_code == 0
    assert "rsi_14" in res.stdout and "macd_hist_12_26_9" in res.stdout
    assert "from the embedded sample" in res.stderr
    res = run("indicators", "AAPL", "-i", "sma:5", "--format", "json", "--start", "2019-12-01")
    doc = json.loads(res.stdout)
    rows = doc["rows"]
    assert doc["columns"][-1] == "sma_5" and rows[0]["sma_5"] is None
    closes = [r["close"] for r in rows]
    assert rows[10]["sma_5"] == pytest.approx(np.mean(closes[6:11]))
    wide = run("indicators", "AAPL", "--rows", "2")  # standard set: one line per column, last bars across
    lines = wide.stdout.splitlines()
    assert lines[1].split() == ["column", "2020-01-09", "2020-01-10"]
    assert any(line.startswith("keltner_upper_20_2_10 ") for line in lines)
    pq, csv = tmp_path / "a.parquet", tmp_path / "a.csv"
    assert run("indicators", "AAPL", "--out", pq).exit_code == 0
    frame = pl.read_parquet(pq)
    for col in (
        "sma_20",
        "rsi_14",
        "macd_12_26_9",
        "bbands_upper_20_2",
        "atr_14",
        "adx_14",
        "plus_di_14",
        "stoch_k_14_3_3",
        "willr_14",
        "cci_20",
        "roc_10",
        "obv",
        "mfi_14",
        "vwap_20",
        "donchian_upper_20",
        "keltner_upper_20_2_10",
        "ema_20",
        "wma_20",
    ):
        assert col in frame.columns
    assert frame.height == 1259
    assert run("indicators", "AAPL", "-i", "ema:10", "--out", csv).exit_code == 0
    assert "ema_10" in pl.read_csv(csv).columns


def test_intraday_indicators_use_session_vwap(no_store):
    res = run("indicators", "IDXFUT", "--timeframe", "1m", "--format", "json", "--start", "2006-02-27")
    rows = json.loads(res.stdout)["rows"]
    assert "vwap" in rows[0]
    first = rows[0]
    assert first["vwap"] == pytest.approx((first["high"] + first["low"] + first["close"]) / 3)


def test_regime_command(no_store, tmp_path):
    res = run("regime", "MSFT")
    assert res.exit_code == 0
    assert re.search(r"MSFT current trend regime: (bull|bear|sideways) for \d+ bars", res.stdout)
    doc = json.loads(run("regime", "MSFT", "--format", "json").stdout)
    trend = [r["trend"] for r in doc["rows"]]
    cur = doc["current"]["MSFT"]["trend"]  # "current" is per symbol since regime takes many symbols
    assert trend[-cur["bars"] :] == [cur["regime"]] * cur["bars"] and trend[-cur["bars"] - 1] != cur["regime"]
    out = tmp_path / "r.csv"
    assert run("regime", "MSFT", "--out", out, "--trend-window", "100").exit_code == 0
    assert "ma_100" in pl.read_csv(out).columns


def test_risk_command(no_store, tmp_path):
    res = run("risk", "AAPL", "MSFT", "JPM", "--weights", "AAPL=0.5,MSFT=0.3,JPM=0.2", "--value", "100000")
    assert res.exit_code == 0
    for word in (
        "historical",
        "gaussian",
        "cornish_fisher",
        "monte_carlo",
        "Worst historical windows",
        "flash crash",
        "Correlation",
    ):
        assert word in res.stdout
    doc = json.loads(
        run(
            "risk",
            "AAPL",
            "MSFT",
            "--confidence",
            "0.9,0.99",
            "--horizon",
            "1,10",
            "--format",
            "json",
            "--simulations",
            "500",
            "--seed",
            "3",
        ).stdout
    )
    assert doc["monte_carlo"] == {"simulations": 500, "seed": 3}
    assert {(r["confidence"], r["horizon"]) for r in doc["var"]} == {(0.9, 1), (0.9, 10), (0.99, 1), (0.99, 10)}
    html = tmp_path / "risk.html"
    assert run("risk", "AAPL", "MSFT", "XOM", "--out", html).exit_code == 0
    assert_self_contained(html.read_text())
    js = tmp_path / "risk.json"
    assert run("risk", "AAPL", "MSFT", "--out", js).exit_code == 0
    assert json.loads(js.read_text())["symbols"] == ["AAPL", "MSFT"]


def assert_self_contained(page: str):
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=[\"']https?:", page)
    assert "Plotly.newPlot" in page and "plotly.js" in page.lower()
    calls = re.findall(r"Plotly\.newPlot\('fig\d+', (\[.*?\]), (\{.*?\}), \{responsive: true, displaylogo: false\}\);", page)
    assert calls
    for data, layout in calls:
        json.loads(data)
        json.loads(layout)


def test_report_command(no_store, tmp_path):
    res = run("report", "AAPL", "MSFT")
    assert res.exit_code == 0
    assert "simple_ma" in res.stdout and "breakout" in res.stdout and "AAPL" in res.stdout
    doc = json.loads(run("report", "AAPL", "MSFT", "XOM", "--format", "json").stdout)
    aapl = doc["symbols"][0]
    assert aapl["symbol"] == "AAPL" and aapl["trend"] in ("bull", "bear", "sideways")
    assert 0 <= aapl["rsi_14"] <= 100 and aapl["dist_52w_high"] <= 0 <= aapl["dist_52w_low"]
    assert all(aapl[s] in ("long", "short", "flat") for s in doc["strategies"])
    assert sorted(doc["correlation"]["cluster_order"]) == ["AAPL", "MSFT", "XOM"]
    page = tmp_path / "report.html"
    assert run("report", "AAPL", "MSFT", "XOM", "--out", page).exit_code == 0
    text = page.read_text()
    assert_self_contained(text)
    assert text.count("Plotly.newPlot") == 4  # three price charts and the heatmap
    lo = json.loads(run("report", "XOM", "--long-only", "--format", "json").stdout)
    assert "short" not in [lo["symbols"][0][s] for s in lo["strategies"]]


def test_report_from_data_file(tmp_path):
    path = tmp_path / "bars.csv"
    frames = [
        make_bars(random_walk(300, seed=i)).with_columns(pl.lit(s).alias("symbol")) for i, s in enumerate(["X", "Y"])
    ]
    pl.concat(frames).write_csv(path)
    doc = json.loads(run("report", "--data", path, "--format", "json").stdout)
    assert [r["symbol"] for r in doc["symbols"]] == ["X", "Y"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["indicators", "AAPL", "-i", "foo"], "unknown indicator 'foo'"),
        (["indicators", "AAPL", "-i", "sma:abc"], "parameter window must be a number"),
        (
            ["indicators", "AAPL", "-i", "sma:500", "--start", "2019-06-01"],
            "AAPL: 155 bars, indicator sma:500 needs at least 500",
        ),
        (["regime", "AAPL", "--start", "2019-06-01"], "regime needs at least 220"),
        (["risk", "AAPL", "MSFT", "--weights", "AAPL=0.6,MSFT=0.6"], "weights sum to 1.2, not 1"),
        (["risk", "AAPL", "MSFT", "--confidence", "95"], "--confidence"),
        (["risk", "AAPL", "--horizon", "0"], "--horizon"),
        (["report", "NOPE"], "NOPE 1d: not in the default store"),
        (["report", "AAPL", "--out", "x.txt"], "--out x.txt"),
        (["indicators", "AAPL", "--timeframe", "3h"], "'3h' is not one of '1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w', '1mo'"),
        (["indicators", "AAPL", "--timeframe", "4h"], "--timeframe 4h: the bar store holds only 1m, 5m, 15m, 1h, 1d"),
        (["indicators", "AAPL", "--start", "yesterday"], "cannot parse --start"),
        (  # the error says which span the series holds (was: 'empty data')
            ["report", "IDXFUT", "--timeframe", "1m", "--start", "2015-01-01"],
            "IDXFUT: no rows between --start 2015-01-01 and --end - (it holds 2006-01-02T09:01:00Z .. 2006-02-27T22:00:00Z)",
        ),
    ],
)
def test_bad_input_exit_2(no_store, args, fragment):
    assert_bad_input(run(*args), fragment)


def test_weights_normalize(no_store):
    res = run("risk", "AAPL", "MSFT", "--weights", "AAPL=3,MSFT=1", "--normalize", "--format", "json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["per_symbol"]["AAPL"]["weight"] == pytest.approx(0.75)


def test_nan_price_in_data_file(tmp_path):
    b = make_bars(random_walk(50))
    b = b.with_columns(pl.when(pl.int_range(pl.len()) == 10).then(None).otherwise(pl.col("close")).alias("close"))
    path = tmp_path / "xyz.csv"
    b.write_csv(path)
    # the only symbol of the file is excluded (rule 14), so its reason is the error
    assert_bad_input(run("report", "--data", path), "xyz.csv: XYZ 2020-01-11: missing or non-numeric price (close)")


def test_module_entrypoint_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    env.pop("GPT_TRADER_STORE", None)  # only the default store falls back to the embedded sample
    ok = subprocess.run(
        [sys.executable, "-m", "slices.analyze", "report", "AAPL", "MSFT"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "AAPL" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "slices.analyze", "indicators", "AAPL", "-i", "zz"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown indicator")


def test_shared_data_commands(sp500, tmp_path):
    res = run("report", "--data", sp500, "AAPL", "MMM", "GE", "--format", "json")
    assert res.exit_code == 0
    assert [r["symbol"] for r in json.loads(res.stdout)["symbols"]] == ["AAPL", "MMM", "GE"]
    res = run("risk", "--data", sp500, "AAPL", "MMM", "GE", "JPM")
    assert res.exit_code == 0 and "cornish_fisher" in res.stdout
    assert_bad_input(run("indicators", "--data", sp500, "CBS"), "CBS 2019-12-04: non-positive price (open 0")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["indicators", "AAPL", "--rows", "0"], "Invalid value for '--rows'"),
        (["risk", "AAPL", "MSFT", "--seed", "-1"], "Invalid value for '--seed'"),  # was a numpy traceback
        (["risk", "AAPL", "--simulations", "5"], "Invalid value for '--simulations'"),
        (["report", "AAPL", "--format", "xml"], "Invalid value for '--format'"),
        (["indicators", "AAPL", "--bogus"], "No such option '--bogus'"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_usage_errors_are_one_line(no_store, args, fragment):
    res = run(*args)
    assert_bad_input(res, fragment)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # no 'Usage:' / 'Try ...' block


def test_indicator_table_shows_the_rows_it_announces(no_store):
    wide = run("indicators", "AAPL").stdout.splitlines()  # standard set: one line per column
    assert wide[0].endswith("last 5:") and len(wide[1].split()) == 1 + 5
    assert run("indicators", "AAPL", "--rows", "7").stdout.splitlines()[1].split()[1:] == [
        "2020-01-02",
        "2020-01-03",
        "2020-01-06",
        "2020-01-07",
        "2020-01-08",
        "2020-01-09",
        "2020-01-10",
    ]
    narrow = run("indicators", "AAPL", "-i", "rsi").stdout.splitlines()
    assert narrow[0].endswith("last 10:") and len(narrow) == 3 + 10
    hourly = run("indicators", "EURUSD", "--timeframe", "1h", "-i", "vwap", "--rows", "2").stdout.splitlines()
    assert hourly[-1].startswith("2018-02-07T15:00Z ")


def test_risk_table_dates_and_currency(no_store):
    out = run("risk", "AAPL", "MSFT", "--value", "250000").stdout
    assert "T00:00:00" not in out  # daily timestamps shown as dates
    windows = out[out.index("Worst historical windows") :].splitlines()[3]
    assert re.fullmatch(r"1\s+-0\.\d{4}\s+-[\d,]+\.\d{2}\s+\d{4}-\d\d-\d\d\s+\d{4}-\d\d-\d\d", windows.strip()), windows
    var_line = next(line for line in out.splitlines() if line.startswith("historical"))
    assert all(re.fullmatch(r"[\d,]+\.\d{2}", cell) for cell in var_line.split()[5:7]), var_line


# ---------------------------------------------------------------------------------------------
# command-line style (SLICES.md): symbols options, many symbols, short options, hints


@pytest.mark.parametrize("command", ["indicators", "regime", "risk", "report", "signals"])
def test_every_command_has_the_shared_options(command):
    for flag in ("-h", "--help"):
        res = run(command, flag)
        assert res.exit_code == 0
    text = run(command, "--help").output
    for opt in ("--symbols", "-s,", "--timeframe", "-t,", "--format", "-f,", "--out", "-o,", "--debug", "--quiet", "-q,",
                "--keep-suspicious", "--store", "--data", "--start", "--end", "--no-adjust", "[table|json]", "1mo"):
        assert opt in text, (command, opt)


def test_symbols_option_positional_and_commas_agree(no_store):
    a = json.loads(run("report", "-s", "AAPL,MSFT", "-s", "XOM", "-f", "json").stdout)
    b = json.loads(run("report", "AAPL,MSFT", "xom", "-f", "json").stdout)
    c = json.loads(run("report", "AAPL", "--symbols", "MSFT, XOM", "-f", "json").stdout)
    assert [r["symbol"] for r in a["symbols"]] == [r["symbol"] for r in b["symbols"]] == ["AAPL", "MSFT", "XOM"]
    assert [r["symbol"] for r in c["symbols"]] == ["AAPL", "MSFT", "XOM"]


def test_usage_error_with_a_comma_list_gets_the_hint(no_store):
    res = run("report", "AAPL", "--rows", "3,")
    line = res.stderr.strip()
    assert res.exit_code == 2 and line.startswith("error: ") and "\n" not in line
    assert line.endswith("hint: --symbols takes one comma list: --symbols AAPL,MSFT")


def test_indicators_many_symbols_long_format(no_store, tmp_path):
    out = tmp_path / "ind.parquet"
    res = run("indicators", "-s", "AAPL,MSFT", "-i", "sma:2", "-i", "rsi", "-o", out)
    assert res.exit_code == 0 and "2 symbols" in res.stderr
    frame = pl.read_parquet(out)
    assert frame.columns == ["symbol", "timestamp", "open", "high", "low", "close", "volume", "sma_2", "rsi_14"]
    assert frame["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "MSFT"]
    assert frame.height == 2 * 1259 and frame.sort("symbol", "timestamp").equals(frame)
    msft = frame.filter(pl.col("symbol") == "MSFT")["close"].to_numpy()
    assert frame.filter(pl.col("symbol") == "MSFT")["sma_2"][5] == pytest.approx((msft[4] + msft[5]) / 2)
    table = run("indicators", "AAPL", "MSFT", "-i", "sma:2", "-n", "2").stdout
    assert table.count("last 2:") == 2


def test_indicators_all_symbols_of_a_data_file(tmp_path):
    path = tmp_path / "bars.csv"
    frames = [make_bars(random_walk(30, seed=i)).with_columns(pl.lit(s).alias("symbol")) for i, s in enumerate(["Y", "X"])]
    pl.concat(frames).write_csv(path)
    out = tmp_path / "o.csv"
    assert run("indicators", "--data", path, "-i", "sma:60", "-o", out).exit_code == 2  # explicit: too few bars
    res = run("indicators", "--data", path, "-o", out, "-q")  # standard set: sma_50 left empty, warned
    assert res.exit_code == 0 and "too few bars" in res.stderr
    frame = pl.read_csv(out)
    assert frame["symbol"].unique(maintain_order=True).to_list() == ["X", "Y"] and frame["sma_50"].null_count() + frame["sma_50"].is_nan().sum() == 60


def test_regime_many_symbols(no_store):
    doc = json.loads(run("regime", "-s", "MSFT,AAPL", "-f", "json").stdout)
    assert doc["symbols"] == ["MSFT", "AAPL"] and set(doc["current"]) == {"MSFT", "AAPL"}
    assert {r["symbol"] for r in doc["rows"]} == {"MSFT", "AAPL"}


def test_no_progress_bar_off_a_terminal(no_store):
    res = run("indicators", "-s", "AAPL,MSFT,XOM", "-i", "sma:2", "-f", "json")
    assert res.exit_code == 0 and "indicators" not in res.stderr and "%" not in res.stderr


def test_numbers_for_people(no_store):
    out = run("indicators", "EURUSD", "-t", "1h", "-i", "sma:2", "-n", "1").stdout
    assert "5,000 bars 2017-04-19T" in out and "1.23427" in out and "6,143 " in out
    assert "0.9999999999999999" not in run("report", "AAPL", "MSFT").stdout
