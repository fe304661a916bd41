"""Backtest parity (issue 9): a `paper_trade run --replay` session over the same bars with the same
strategy and settings gives exactly the backtest slice's trades and equity curve (1e-9 relative).

Both slices run through their command lines on the embedded sample (named as the store, so a
developer's real store never matters), using only option names both CLIs share.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, built_slices, isolated_env

pytestmark = pytest.mark.skipif(not {"backtest", "paper_trade"} <= set(built_slices()),
                                reason="needs the backtest and paper_trade slices")
SAMPLE = ROOT / "slices" / "sample"
ROTATION = str(ROOT / "examples" / "strategies" / "momentum_rotation.py")
CASES = {
    "simple_ma_two_symbols": ["--symbols", "AAPL,MSFT"],
    "momentum_shorts": ["--symbols", "AAPL,MSFT,XOM", "--strategy", "momentum", "--allow-short"],
    "breakout_stops_targets": ["--symbols", "AAPL,NVDA,BA", "--strategy", "breakout", "--allow-short",
                               "--stop-loss-atr", "2", "--take-profit-atr", "3"],
    "mean_reversion_fractional_costs": ["--symbols", "KO,PEP", "--strategy", "mean_reversion", "--fractional",
                                        "--allow-short", "--commission", "0.001", "--slippage-bps", "5",
                                        "--cash", "25000"],
    "max_drawdown_halt": ["--symbols", "NFLX,NVDA,FB", "--strategy", "momentum", "--allow-short",
                          "--max-drawdown", "0.1", "--stop-loss-atr", "1.5"],
    "volatility_window": ["--symbols", "JPM,GS,BAC,CVX", "--strategy", "volatility", "--start", "2016-06-01",
                          "--end", "2019-06-30", "--take-profit-atr", "2"],
    "all_thirty_symbols": [],
    # the weights form (contract 5): rebalances at the next open, sells first, FIFO lots
    "weights_rotation_all_thirty": ["--strategy", ROTATION],
    "weights_rotation_fractional_threshold_costs": [
        "--strategy", ROTATION, "--symbols", "AAPL,MSFT,XOM,JNJ,JPM,KO,PEP,NVDA", "--param", "top=3", "--param", "every=7",
        "--fractional", "--rebalance-threshold", "0.02", "--commission", "0.001", "--slippage-bps", "5", "--cash", "25000"],
    "weights_rotation_leverage": ["--strategy", ROTATION, "--symbols", "AAPL,NFLX,NVDA,BA,XOM", "--param", "top=1",
                                  "--leverage", "1.5", "--start", "2016-01-01"],
    "weights_rotation_max_drawdown_halt": ["--strategy", ROTATION, "--symbols", "NFLX,NVDA,FB,AMZN", "--param", "top=1",
                                           "--max-drawdown", "0.15"],
}
TRADE_KEY = ["entry_time", "symbol", "exit_time", "quantity", "exit_reason"]


def _run(args: list[str], tmp: Path) -> None:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=isolated_env(tmp), cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stderr}"


def _same(a: pl.DataFrame, b: pl.DataFrame, what: str) -> None:
    assert a.columns == b.columns or set(a.columns) <= set(b.columns), (what, a.columns, b.columns)
    assert a.height == b.height, (what, a.height, b.height)
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype == pl.Float64:
            x, y = x.to_numpy(), y.to_numpy()
            ok = np.abs(x - y) <= 1e-9 * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
            assert ok.all(), f"{what}.{c}: first difference at row {int(np.argmin(ok))}: {x[~ok][0]} vs {y[~ok][0]}"
        else:
            assert x.dtype == y.dtype, (what, c, x.dtype, y.dtype)
            assert x.equals(y), f"{what}.{c} differs"


@pytest.mark.parametrize("case", list(CASES))
def test_replay_equals_backtest(case, tmp_path):
    pt_trades = _compare(case, ["--store", str(SAMPLE), *CASES[case]], tmp_path)
    if case.endswith("max_drawdown_halt"):
        assert "halt" in pt_trades["exit_reason"].to_list()
    if case == "breakout_stops_targets":
        assert {"stop_loss", "take_profit"} <= set(pt_trades["exit_reason"].to_list())


@pytest.mark.skipif("optimize" not in built_slices(), reason="needs the optimize slice")
def test_replay_equals_backtest_optimized_portfolio_file(tmp_path):
    """The weights strategy file that `optimize portfolio --rebalance monthly` writes."""
    syms = "AAPL,MSFT,XOM,JNJ,JPM"
    _run(["-m", "slices.optimize", "portfolio", "--store", str(SAMPLE), "--symbols", syms, "--method",
          "inverse-volatility", "--rebalance", "monthly", "--out", str(tmp_path / "opt"), "--no-report"], tmp_path)
    strategy = tmp_path / "opt" / "portfolio_strategy.py"
    assert strategy.is_file()
    trades = _compare("optimized", ["--store", str(SAMPLE), "--symbols", syms, "--strategy", str(strategy)], tmp_path)
    assert set(trades["symbol"].to_list()) == set(syms.split(","))


def _compare(case: str, opts: list[str], tmp_path: Path) -> pl.DataFrame:
    """Run backtest and a paper replay with ``opts``; assert equal trades and equity; return the
    paper trades. Trades are compared in TRADE_KEY order (the backtest leaves the order of rows
    with the same entry_time and symbol, e.g. lots closed in parts, unspecified)."""
    bt = tmp_path / "bt"
    _run(["-m", "slices.backtest", "run", *opts, "--out", str(bt), "--no-report"], tmp_path)
    led = tmp_path / "ledgers"
    _run(["-m", "slices.paper_trade", "run", "--session", case, "--ledgers", str(led), "--replay", "-q", *opts], tmp_path)
    for what in ("trades", "equity"):
        _run(["-m", "slices.paper_trade", what, case, "--ledgers", str(led), "--out", str(tmp_path / f"{what}.parquet")],
             tmp_path)
    bt_trades, pt_trades = pl.read_parquet(bt / "trades.parquet"), pl.read_parquet(tmp_path / "trades.parquet")
    assert bt_trades.height > 0
    _same(bt_trades.sort(TRADE_KEY, maintain_order=True), pt_trades.sort(TRADE_KEY, maintain_order=True), "trades")
    _same(pl.read_parquet(bt / "equity.parquet"), pl.read_parquet(tmp_path / "equity.parquet"), "equity")
    return pt_trades
