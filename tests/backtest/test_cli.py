"""Tests for the backtest command line (slices/backtest/cli.py) through click's CliRunner, plus one
real subprocess. Expectations come from SLICES.md contract 3, the execution rules documented in
slices/backtest/engine.py and the sample bars themselves, never from a previous run's output.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("slices") is None:  # plain `pytest` without the repo on sys.path
    sys.path.insert(0, str(ROOT))

from slices.backtest.cli import cli  # noqa: E402
from slices.backtest.metrics import METRICS  # noqa: E402
from slices.backtest.strategies import STRATEGIES  # noqa: E402

SAMPLE_1D = ROOT / "slices" / "sample" / "bars" / "1d"
HAS_REPORT = (ROOT / "slices" / "backtest" / "report.py").exists()
UTC_US = pl.Datetime("us", "UTC")
TRADES_SCHEMA = {
    "symbol": pl.String, "side": pl.String, "quantity": pl.Float64, "entry_time": UTC_US, "entry_price": pl.Float64,
    "exit_time": UTC_US, "exit_price": pl.Float64, "pnl": pl.Float64, "return_pct": pl.Float64,
    "commission": pl.Float64, "exit_reason": pl.String, "is_open": pl.Boolean,
}
EQUITY_SCHEMA = {
    "timestamp": UTC_US, "equity": pl.Float64, "cash": pl.Float64, "gross_exposure": pl.Float64,
    "drawdown": pl.Float64, "benchmark": pl.Float64,
}
STRATEGY_NAMES = ["simple_ma", "momentum", "mean_reversion", "volatility", "breakout"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


class Run:
    """A finished `run`: the click result and the files it wrote."""

    def __init__(self, result, out: Path):
        self.result, self.out = result, out

    @property
    def metrics(self) -> dict:
        return json.loads((self.out / "metrics.json").read_text())

    @property
    def trades(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "trades.parquet")

    @property
    def equity(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "equity.parquet")


def run_ok(tmp_path: Path, *args: str, report: bool = False, name: str = "out") -> Run:
    out = tmp_path / name
    extra = [] if report else ["--no-report"]
    result = invoke("run", *args, "--out", out, *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.exception is None
    return Run(result, out)


def sample(symbol: str) -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_1D / f"{symbol}.parquet")


def prev_equity(run: Run) -> pl.DataFrame:
    """Each trade with the equity at the close before its entry bar."""
    eq = run.equity.with_columns(prev_equity=pl.col("equity").shift(1)).select("timestamp", "prev_equity")
    return run.trades.join(eq, left_on="entry_time", right_on="timestamp", how="left")


# ----------------------------------------------------------------------------- the base run
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("base")
    mp = pytest.MonkeyPatch()  # module scope: the autouse function-scoped store fixture is not active here
    mp.delenv("GPT_TRADER_STORE", raising=False)  # an empty default store: the sample is read
    mp.setenv("HOME", str(tmp_path_factory.mktemp("home_base")))
    try:
        return run_ok(tmp, "--symbols", "AAPL,MSFT")
    finally:
        mp.undo()


def test_run_prints_summary(base):
    out = base.result.stdout
    for label in ("Total return", "CAGR", "Sharpe", "Max drawdown", "Trades", "Buy & hold"):
        assert label in out, label
    m = base.metrics["portfolio"]
    line = next(x for x in out.splitlines() if x.startswith("Total return"))
    assert f"{m['total_return'] * 100:,.2f}%" in line
    assert str(base.out) in out
    assert "AAPL" in out and "MSFT" in out
    assert "embedded sample" in base.result.stderr  # the sample fallback note


def test_run_writes_files_with_contract_schemas(base):
    assert {p.name for p in base.out.iterdir()} >= {"metrics.json", "trades.parquet", "equity.parquet"}
    assert base.trades.schema == pl.Schema(TRADES_SCHEMA)
    assert base.equity.schema == pl.Schema(EQUITY_SCHEMA)
    t = base.trades
    assert t.height > 0
    assert set(t["side"].unique()) <= {"long", "short"}
    assert set(t["exit_reason"].unique()) <= {"signal", "reverse", "stop_loss", "take_profit", "halt", "open"}
    assert (t["quantity"] > 0).all()
    assert t.filter(pl.col("is_open"))["exit_reason"].unique().to_list() == ["open"]
    assert (t["exit_time"] >= t["entry_time"]).all()


def test_equity_timeline_is_the_bars(base):
    eq = base.equity
    stamps = sorted(set(sample("AAPL")["timestamp"]) | set(sample("MSFT")["timestamp"]))
    assert eq["timestamp"].to_list() == stamps
    e = eq["equity"].to_numpy()
    assert e[0] == 100_000.0
    np.testing.assert_allclose(eq["drawdown"].to_numpy(), e / np.maximum.accumulate(e) - 1, rtol=0, atol=1e-12)
    assert (eq["drawdown"] <= 0).all()
    assert (eq["gross_exposure"] >= (eq["equity"] - eq["cash"]).abs() - 1e-6).all()


def test_benchmark_is_equal_weight_buy_and_hold(base):
    a, m = sample("AAPL")["close"].to_numpy(), sample("MSFT")["close"].to_numpy()
    assert a.size == m.size  # same sessions in the sample
    expected = 50_000 * a / a[0] + 50_000 * m / m[0]
    np.testing.assert_allclose(base.equity["benchmark"].to_numpy(), expected, rtol=1e-12)


def test_metrics_json_structure_and_consistency(base):
    doc = base.metrics
    assert {"run", "portfolio", "per_symbol", "warnings"} <= set(doc)
    assert set(METRICS) <= set(doc["portfolio"])
    assert set(doc["per_symbol"]) == {"AAPL", "MSFT"}
    for sym, metrics in doc["per_symbol"].items():
        assert set(METRICS) <= set(metrics), sym
    p, eq, t = doc["portfolio"], base.equity, base.trades
    assert p["final_equity"] == pytest.approx(eq["equity"][-1], rel=1e-12)
    assert p["total_return"] == pytest.approx(eq["equity"][-1] / 100_000 - 1, rel=1e-9)
    assert p["max_drawdown"] == pytest.approx(eq["drawdown"].min(), rel=1e-9)
    assert p["n_trades"] == t.height
    assert p["buy_and_hold_return"] == pytest.approx(eq["benchmark"][-1] / 100_000 - 1, rel=1e-9)
    assert sum(v["n_trades"] for v in doc["per_symbol"].values()) == t.height
    for sym in ("AAPL", "MSFT"):
        c = sample(sym)["close"]
        assert doc["per_symbol"][sym]["buy_and_hold_return"] == pytest.approx(c[-1] / c[0] - 1, rel=1e-9)
    run = doc["run"]
    assert run["strategy"] == "simple_ma" and run["symbols"] == ["AAPL", "MSFT"] and run["timeframe"] == "1d"
    for key in ("params", "start", "end", "cash", "commission", "slippage_bps", "sizing", "allow_short",
                "whole_shares", "stop_loss_atr", "take_profit_atr", "max_position_pct", "max_drawdown"):
        assert key in run, key
    assert run["cash"] == 100_000 and run["params"] == {"fast": 10, "slow": 30}


def test_trade_pnl_net_of_commission(base):
    t = base.trades
    sign = np.where(t["side"].to_numpy() == "long", 1.0, -1.0)
    q, en, ex = t["quantity"].to_numpy(), t["entry_price"].to_numpy(), t["exit_price"].to_numpy()
    gross = sign * q * (ex - en)
    np.testing.assert_allclose(t["pnl"].to_numpy(), gross - t["commission"].to_numpy(), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(t["return_pct"].to_numpy(), 100 * t["pnl"].to_numpy() / (q * en), rtol=1e-9)
    # default commission 0.0005 on both fills (entry only for a trade still open)
    closed = ~t["is_open"].to_numpy()
    expected = 0.0005 * q * (en + np.where(closed, ex, 0.0))
    np.testing.assert_allclose(t["commission"].to_numpy(), expected, rtol=1e-9)


def test_default_whole_shares(base):
    q = base.trades["quantity"].to_numpy()
    assert np.all(q == np.floor(q))


def test_no_fill_before_next_bar(base):
    # a signal on a close fills on the next bar's open at the earliest: nothing trades on the first bar
    assert (base.trades["entry_time"] > base.equity["timestamp"][0]).all()


def test_format_json_matches_metrics_json(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--format", "json")
    doc = json.loads(r.result.stdout)
    written = r.metrics
    assert doc["portfolio"] == written["portfolio"]
    assert doc["per_symbol"] == written["per_symbol"]
    assert doc["run"] == written["run"]


@pytest.mark.skipif(not HAS_REPORT, reason="slices/backtest/report.py not there yet")
def test_report_html_written(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", report=True)
    html = (r.out / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "AAPL" in html and "MSFT" in html
    assert "report.html" in r.result.stdout
    for ext in ("http://", "https://"):  # works offline: no external scripts
        assert f'<script src="{ext}' not in html


def test_no_report_skips_html(base):
    assert not (base.out / "report.html").exists()


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_each_strategy(tmp_path, name):
    r = run_ok(tmp_path, "--strategy", name, "--symbols", "AAPL,XOM")
    run = r.metrics["run"]
    assert run["strategy"] == name
    assert set(run["params"]) == set(STRATEGIES[name].params)
    assert r.trades.height > 0
    assert r.trades.schema == pl.Schema(TRADES_SCHEMA)


def test_strategies_trade_differently(tmp_path):
    finals = {name: run_ok(tmp_path, "--strategy", name, "--symbols", "AAPL", name=name).metrics["portfolio"]["final_equity"]
              for name in STRATEGY_NAMES}
    assert len(set(finals.values())) == len(finals)


def test_params_land_in_run(tmp_path, base):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--param", "fast=5", "--param", "slow=20")
    assert r.metrics["run"]["params"] == {"fast": 5, "slow": 20}
    assert r.trades.height > base.trades.height  # faster averages cross more often
    assert "fast=5" in r.result.stdout and "slow=20" in r.result.stdout


def test_cash(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--cash", "50000")
    eq = r.equity
    assert eq["equity"][0] == 50_000 and eq["cash"][0] == 50_000 and eq["benchmark"][0] == 50_000
    assert r.metrics["run"]["cash"] == 50_000
    c = sample("AAPL")["close"]
    assert eq["benchmark"][-1] == pytest.approx(50_000 * c[-1] / c[0], rel=1e-12)


def test_commission(tmp_path):
    free = run_ok(tmp_path, "--symbols", "AAPL", "--commission", "0", name="free")
    dear = run_ok(tmp_path, "--symbols", "AAPL", "--commission", "0.01", name="dear")
    assert free.trades["commission"].sum() == 0
    assert dear.metrics["portfolio"]["final_equity"] < free.metrics["portfolio"]["final_equity"]
    t = dear.trades
    q, en, ex = t["quantity"].to_numpy(), t["entry_price"].to_numpy(), t["exit_price"].to_numpy()
    expected = 0.01 * q * (en + np.where(t["is_open"].to_numpy(), 0.0, ex))
    np.testing.assert_allclose(t["commission"].to_numpy(), expected, rtol=1e-9)
    # cash bookkeeping: with no position open at the end, final cash = start + sum of net trade pnl
    if not t["is_open"].any():
        assert dear.equity["cash"][-1] == pytest.approx(100_000 + t["pnl"].sum(), rel=1e-9)
    else:
        closed = t.filter(~pl.col("is_open"))
        still = t.filter(pl.col("is_open"))
        spent = (still["quantity"] * still["entry_price"]).sum() + still["commission"].sum()
        assert dear.equity["cash"][-1] == pytest.approx(100_000 + closed["pnl"].sum() - spent, rel=1e-9)


@pytest.mark.parametrize("bps", [0, 100])
@pytest.mark.parametrize("shorts", ["--long-only", "--allow-short"])
def test_slippage_moves_fills_against_trader(tmp_path, bps, shorts):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--slippage-bps", str(bps), "--commission", "0", shorts)
    bars = sample("AAPL").select("timestamp", "open")
    t = r.trades.join(bars.rename({"open": "entry_open"}), left_on="entry_time", right_on="timestamp")
    t = t.join(bars.rename({"open": "exit_open"}), left_on="exit_time", right_on="timestamp")
    s = bps / 1e4
    # buys fill at open x (1 + s), sells at open x (1 - s): a long enters buying, a short enters selling
    d = np.where(t["side"].to_numpy() == "long", 1.0, -1.0)
    np.testing.assert_allclose(t["entry_price"].to_numpy(), t["entry_open"].to_numpy() * (1 + d * s), rtol=1e-12)
    ex = t.filter(pl.col("exit_reason").is_in(["signal", "reverse"]))
    assert ex.height > 0
    dx = np.where(ex["side"].to_numpy() == "long", 1.0, -1.0)
    np.testing.assert_allclose(ex["exit_price"].to_numpy(), ex["exit_open"].to_numpy() * (1 - dx * s), rtol=1e-12)
    if shorts == "--allow-short":
        assert (t["side"] == "short").any()
    assert r.metrics["run"]["slippage_bps"] == bps


def test_allow_short_vs_long_only(tmp_path):
    # XOM fell over the sample span (close 2020 < close 2015)
    c = sample("XOM")["close"]
    assert c[-1] < c[0]
    short = run_ok(tmp_path, "--symbols", "XOM", "--allow-short", name="short")
    long_ = run_ok(tmp_path, "--symbols", "XOM", "--long-only", name="long")
    assert short.trades.filter(pl.col("side") == "short").height > 0
    assert long_.trades["side"].unique().to_list() == ["long"]
    # simple_ma flips long <-> short on each cross: with shorts those exits are reversals
    assert "reverse" in short.trades["exit_reason"].to_list()
    assert "reverse" not in long_.trades["exit_reason"].to_list()
    assert short.metrics["run"]["allow_short"] is True and long_.metrics["run"]["allow_short"] is False
    s = short.trades.filter(pl.col("side") == "short")
    np.testing.assert_allclose(  # a short gains when the price falls
        s["pnl"].to_numpy(), (s["quantity"] * (s["entry_price"] - s["exit_price"]) - s["commission"]).to_numpy(), rtol=1e-9)


def test_fractional(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--fractional")
    q = r.trades["quantity"].to_numpy()
    assert np.any(q != np.floor(q))
    assert r.metrics["run"]["whole_shares"] is False


def test_fixed_fraction_sizing(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--sizing", "fixed-fraction", "--fraction", "0.05", "--fractional")
    t = prev_equity(r)
    # one symbol, flat before each entry: equity at the entry open is the previous close's equity (all cash)
    value = (t["quantity"] * t["entry_price"] * (1 + 0.0005)).to_numpy()
    np.testing.assert_allclose(value, 0.05 * t["prev_equity"].to_numpy(), rtol=1e-9)


def test_fixed_fraction_whole_shares_about_five_percent(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--sizing", "fixed-fraction", "--fraction", "0.05")
    t = prev_equity(r)
    share = (t["quantity"] * t["entry_price"] / t["prev_equity"]).to_numpy()
    assert np.all((share > 0.045) & (share <= 0.0505))


def _wilder_atr(h, l, c, n):
    tr = np.full(c.size, np.nan)
    for i in range(1, c.size):
        tr[i] = max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1]))
    out = np.full(c.size, np.nan)
    out[n] = np.mean(tr[1:n + 1])
    for i in range(n + 1, c.size):
        out[i] = (out[i - 1] * (n - 1) + tr[i]) / n
    return out


def test_atr_risk_sizing(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--sizing", "atr-risk", "--fraction", "0.01", "--fractional",
               "--commission", "0", "--slippage-bps", "0")
    bars = sample("AAPL")
    atr = _wilder_atr(*(bars[k].to_numpy() for k in ("high", "low", "close")), 14)
    sig_atr = dict(zip(bars["timestamp"].shift(-1).to_list(), atr))  # entry bar -> ATR on the signal bar
    t = prev_equity(r)
    assert t.height > 0
    checked = 0
    for row in t.iter_rows(named=True):
        risk_q = 0.01 * row["prev_equity"] / (2 * sig_atr[row["entry_time"]])  # default stop distance 2 ATR
        if risk_q * row["entry_price"] < 0.99 * row["prev_equity"]:  # not capped by the cash
            assert row["quantity"] == pytest.approx(risk_q, rel=1e-9)
            checked += 1
    assert checked > 0
    ew = run_ok(tmp_path, "--symbols", "AAPL", "--fractional", "--commission", "0", "--slippage-bps", "0", name="ew")
    assert not np.allclose(ew.trades["quantity"].to_numpy()[:3], r.trades["quantity"].to_numpy()[:3])


def test_stop_loss(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--stop-loss-atr", "1")
    stops = r.trades.filter(pl.col("exit_reason") == "stop_loss")
    assert stops.height > 0
    longs = stops.filter(pl.col("side") == "long")
    assert (longs["exit_price"] < longs["entry_price"]).all()
    assert (stops["pnl"] < 0).all()


def test_take_profit(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--take-profit-atr", "1")
    tps = r.trades.filter(pl.col("exit_reason") == "take_profit")
    assert tps.height > 0
    longs = tps.filter(pl.col("side") == "long")
    assert (longs["exit_price"] > longs["entry_price"]).all()
    assert "stop_loss" not in r.trades["exit_reason"].to_list()


def test_max_position_pct(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--max-position-pct", "10", "--fractional")
    t = prev_equity(r)
    value = (t["quantity"] * t["entry_price"] * (1 + 0.0005)).to_numpy()
    np.testing.assert_allclose(value, 0.10 * t["prev_equity"].to_numpy(), rtol=1e-9)
    uncapped = run_ok(tmp_path, "--symbols", "AAPL", "--fractional", name="uncapped")
    assert uncapped.trades["quantity"][0] > 5 * r.trades["quantity"][0]  # the cap binds (equal weight: all in)


def test_max_position_pct_whole_shares_two_symbols(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--max-position-pct", "10")
    t = prev_equity(r)
    share = (t["quantity"] * t["entry_price"] / t["prev_equity"]).to_numpy()
    assert np.all(share <= 0.105) and np.all(share > 0.09)


def test_max_drawdown_halt(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL,MSFT", "--max-drawdown", "0.02")
    t = r.trades
    halts = t.filter(pl.col("exit_reason") == "halt")
    assert halts.height > 0
    halt_time = halts["exit_time"].min()
    assert (halts["exit_time"] == halt_time).all()
    assert (t["entry_time"] < halt_time).all()
    assert not t["is_open"].any()
    eq = r.equity
    after = eq.filter(pl.col("timestamp") >= halt_time)
    assert (after["gross_exposure"] == 0).all()
    assert after["equity"].n_unique() == 1
    # the halt came from a close whose drawdown reached 2 %
    before = eq.filter(pl.col("timestamp") < halt_time)
    assert before["drawdown"][-1] <= -0.02
    assert (before["drawdown"][:-1] > -0.02).all()
    assert any("halt" in w for w in r.metrics["warnings"])


def test_start_end(tmp_path):
    r = run_ok(tmp_path, "--symbols", "AAPL", "--start", "2018-01-01", "--end", "2018-12-31")
    ts = sample("AAPL")["timestamp"]
    expected = [x for x in ts if x.year == 2018]
    assert r.equity["timestamp"].to_list() == expected
    assert r.trades["entry_time"].min() >= expected[0] and r.trades["exit_time"].max() <= expected[-1]
    c = sample("AAPL").filter(pl.col("timestamp").dt.year() == 2018)["close"]
    assert r.metrics["portfolio"]["buy_and_hold_return"] == pytest.approx(c[-1] / c[0] - 1, rel=1e-9)


@pytest.mark.parametrize(("timeframe", "symbol"), [("1h", "EURUSD"), ("1m", "IDXFUT")])
def test_intraday_timeframes(tmp_path, timeframe, symbol):
    r = run_ok(tmp_path, "--timeframe", timeframe, "--symbols", symbol)
    assert r.metrics["run"]["timeframe"] == timeframe
    assert r.metrics["run"]["symbols"] == [symbol]
    assert r.metrics["run"]["periods_per_year"] > 252
    stored = pl.read_parquet(ROOT / "slices" / "sample" / "bars" / timeframe / f"{symbol}.parquet")
    assert r.equity.height == stored.height
    assert r.equity["timestamp"].dt.hour().n_unique() > 1


def _synthetic_csv(path: Path, n: int = 200, adj: float | None = None) -> Path:
    days = [np.datetime64("2021-01-04") + np.timedelta64(i, "D") for i in range(n)]
    close = 100 + 10 * np.sin(np.arange(n) / 8)
    opens = np.concatenate(([close[0]], close[:-1]))
    lines = ["Date,Open,High,Low,Close" + (",Adj Close" if adj else "") + ",Volume"]
    for dday, o, c in zip(days, opens, close):
        row = [str(dday), f"{o:.6f}", f"{max(o, c) + 1:.6f}", f"{min(o, c) - 1:.6f}", f"{c:.6f}"]
        if adj:
            row.append(f"{c * adj:.6f}")
        lines.append(",".join(row + ["1000"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_csv(tmp_path):
    csv = _synthetic_csv(tmp_path / "syn.csv")
    r = run_ok(tmp_path, "--data", csv)
    assert r.metrics["run"]["symbols"] == ["SYN"]
    assert r.equity.height == 200
    assert r.trades.height > 0
    assert "embedded sample" not in r.result.stderr


def test_no_adjust(tmp_path):
    csv = _synthetic_csv(tmp_path / "adj.csv", adj=0.5)
    adjusted = run_ok(tmp_path, "--data", csv, "--fractional", name="a")
    raw = run_ok(tmp_path, "--data", csv, "--fractional", "--no-adjust", name="r")
    assert adjusted.metrics["run"]["adjust"] is True and raw.metrics["run"]["adjust"] is False
    a, b = adjusted.trades, raw.trades
    assert a.height == b.height > 0  # a constant factor changes no signal
    np.testing.assert_allclose(a["entry_price"].to_numpy(), 0.5 * b["entry_price"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(a["quantity"].to_numpy(), 2 * b["quantity"].to_numpy(), rtol=1e-6)


def test_warnings_on_stderr_summarised_by_kind_and_all_in_metrics(tmp_path):
    # Changed with SLICES.md "Command-line style": many warnings of one kind are one line with a
    # count (it used to be the first 8 warnings and "... and 4 more").
    rows = ["symbol,date,open,high,low,close,volume"]
    for k in range(12):  # 12 symbols, each with one zero-volume bar -> 12 warnings
        for i in range(60):
            day = np.datetime64("2021-01-04") + np.timedelta64(i, "D")
            c = 100 + 5 * math.sin((i + k) / 5)
            rows.append(f"S{k:02d},{day},{c},{c + 1},{c - 1},{c},{0 if i == 10 else 1000}")
    path = tmp_path / "many.csv"
    path.write_text("\n".join(rows) + "\n")
    r = run_ok(tmp_path, "--data", path)
    warned = [x for x in r.result.stderr.splitlines() if x.startswith("warning:")]
    assert warned == ["warning: 12 symbols with zero-volume bars (S00, S01, S02, S03, S04, S05, ...); "
                      "all listed in metrics.json"]
    zero = [w for w in r.metrics["warnings"] if "zero-volume" in w]
    assert sorted(w.split(":")[1].strip() for w in zero) == [f"S{k:02d}" for k in range(12)]


def test_lowercase_symbols(tmp_path):
    r = run_ok(tmp_path, "--symbols", " aapl , msft")
    assert r.metrics["run"]["symbols"] == ["AAPL", "MSFT"]


def test_help_exits_0():
    for args in (["--help"], ["run", "--help"], ["strategies", "--help"]):
        r = invoke(*args)
        assert r.exit_code == 0 and "Usage" in r.stdout


# ----------------------------------------------------------------------------- strategies command
def test_strategies_lists_all_with_params_and_defaults():
    r = invoke("strategies")
    assert r.exit_code == 0
    out = r.stdout
    for name in STRATEGY_NAMES:
        assert name in out
    expected = {
        "simple_ma": {"fast": 10, "slow": 30}, "momentum": {"lookback": 20, "threshold": 0},
        "mean_reversion": {"window": 20, "z_entry": 2, "z_exit": 0.5},
        "volatility": {"window": 20, "atr_window": 14, "k": 2}, "breakout": {"window": 20, "exit_window": 10},
    }
    for params in expected.values():
        for k, v in params.items():
            assert f"{k}={v:g}" in out, k
    rj = invoke("strategies", "--format", "json")
    assert rj.exit_code == 0
    doc = json.loads(rj.stdout)
    assert set(doc) == set(STRATEGY_NAMES)
    for name, params in expected.items():
        assert {k: v["default"] for k, v in doc[name]["params"].items()} == params
        assert doc[name]["description"]


# ----------------------------------------------------------------------------- default folder
def test_default_out_folder_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("run", "--symbols", "AAPL", "--no-report")
    assert r.exit_code == 0, r.output
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1
    folder = folders[0]
    assert folder.name.startswith("backtest-") and folder.name.endswith("-simple_ma")
    assert (folder / "metrics.json").exists() and (folder / "trades.parquet").exists()
    assert str(Path("runs") / folder.name) in r.stdout
    r2 = invoke("run", "--symbols", "AAPL", "--no-report")  # a second run never overwrites the first
    assert r2.exit_code == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


# ----------------------------------------------------------------------------- bad input
def assert_usage_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(("args", "needles"), [
    (["--strategy", "nope"], ["nope"]),
    (["--param", "zzz=1"], ["zzz"]),
    (["--param", "fast=abc"], ["fast"]),
    (["--param", "fast=2.5"], ["fast"]),
    (["--param", "fast=0"], ["fast"]),
    (["--param", "fast=40"], ["fast"]),
    (["--param", "fast"], ["fast"]),
    (["--data", "/no/such/file.csv"], ["/no/such/file.csv"]),
    (["--symbols", "NOSUCH"], ["NOSUCH"]),
    (["--symbols", "AAPL", "--bogus"], ["--bogus"]),
    (["--symbols", "AAPL", "--cash", "-1"], ["--cash"]),
    (["--symbols", "AAPL", "--cash", "abc"], ["--cash"]),
    (["--symbols", "AAPL", "--commission", "2"], ["--commission"]),
    (["--symbols", "AAPL", "--slippage-bps", "-1"], ["--slippage-bps"]),
    (["--symbols", "AAPL", "--fraction", "0", "--sizing", "fixed-fraction"], ["--fraction"]),
    (["--symbols", "AAPL", "--max-drawdown", "2"], ["--max-drawdown"]),
    (["--symbols", "AAPL", "--max-position-pct", "0"], ["--max-position-pct"]),
    (["--symbols", "AAPL", "--stop-loss-atr", "-1"], ["--stop-loss-atr"]),
    (["--symbols", "AAPL", "--sizing", "kelly"], ["kelly"]),
    (["--symbols", "AAPL", "--timeframe", "2d"], ["2d"]),
    (["--symbols", "AAPL", "--start", "2019-12-20", "--param", "slow=30"], ["AAPL", "2019-12-20"]),
    (["--symbols", "AAPL", "--start", "2019-01-05", "--end", "2019-01-06"], ["2019-01-05"]),
    (["--symbols", "AAPL", "--start", "2021-01-01"], ["2021-01-01"]),
    (["--symbols", "AAPL", "--start", "2019-02-01", "--end", "2019-01-01"], ["--start"]),
    (["--symbols", "AAPL", "--start", "garbage"], ["garbage"]),
    (["--symbols", ","], ["--symbols"]),
    (["--symbols", "EURUSD"], ["EURUSD"]),  # exists only in 1h
])
def test_bad_input_one_line_exit_2(tmp_path, args, needles):
    assert_usage_error(invoke("run", *args, "--out", tmp_path / "o", "--no-report"), *needles)
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_bad_data_file_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close\n2020-01-02,1,2,0.5,1.5\n2020-01-02,1,2,0.5,1.5\n")
    assert_usage_error(invoke("run", "--data", bad, "--symbols", "BAD", "--out", tmp_path / "o", "--no-report"),
                       str(bad), "BAD", "2020-01-02")


def test_unknown_command_and_strategies_bad_format():
    assert_usage_error(invoke("frobnicate"))
    assert_usage_error(invoke("strategies", "--format", "xml"))


def test_param_infinite_integer(tmp_path):
    assert_usage_error(invoke("run", "--symbols", "AAPL", "--param", "fast=inf", "--out", tmp_path / "o"), "fast")


def test_param_huge_integer(tmp_path):
    assert_usage_error(invoke("run", "--symbols", "AAPL", "--strategy", "momentum", "--param", "lookback=1e20",
                              "--out", tmp_path / "o"), "lookback")


def test_null_symbol_in_long_file(tmp_path):
    rows = ["symbol,date,open,high,low,close,volume"]
    for i in range(40):
        day = np.datetime64("2020-01-01") + np.timedelta64(i, "D")
        rows += [f"A,{day},10,12,8,{10 + i % 3},1", f",{day},10,12,8,{10 + i % 2},1"]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(rows) + "\n")
    assert_usage_error(invoke("run", "--data", path, "--out", tmp_path / "o", "--no-report"), str(path))


# ----------------------------------------------------------------------------- real subprocesses
def _env(home: Path) -> dict:
    """Environment of a subprocess whose default store (under ``home``) is empty."""
    env = dict(os.environ)
    env.pop("GPT_TRADER_STORE", None)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_subprocess_run(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "slices.backtest", "run", "--symbols", "AAPL", "--out", str(out),
                           "--no-report"], cwd=tmp_path, env=_env(store), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Total return" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["run"]["symbols"] == ["AAPL"]
    assert "Traceback" not in proc.stderr


def test_subprocess_no_arguments_default_run(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-m", "slices.backtest"], cwd=cwd, env=_env(store),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    folders = list((cwd / "runs").iterdir())
    assert len(folders) == 1 and (folders[0] / "metrics.json").exists()
    symbols = json.loads((folders[0] / "metrics.json").read_text())["run"]["symbols"]
    assert symbols == sorted(p.stem for p in SAMPLE_1D.glob("*.parquet"))  # the whole sample


def test_subprocess_bad_input(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    proc = subprocess.run([sys.executable, "-m", "slices.backtest", "run", "--strategy", "nope"], cwd=tmp_path,
                          env=_env(store), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert proc.stdout == ""
