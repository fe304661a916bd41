"""Optimize/backtest parity (issue 12): the optimize slice runs its own engine, and the best
combination of a search, run through `python -m slices.backtest run` with the exact command
best.json gives, has the same portfolio metrics to 1e-9. A few other rows of results.parquet are
checked the same way, so parity is not only true of the winner.

Both slices run through their command lines on the embedded sample, named as the store.
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, built_slices, isolated_env

pytestmark = pytest.mark.skipif(not {"backtest", "optimize"} <= set(built_slices()),
                                reason="needs the backtest and optimize slices")
SAMPLE = ROOT / "slices" / "sample"
ROTATION = ROOT / "examples" / "strategies" / "momentum_rotation.py"
RSI = ROOT / "examples" / "strategies" / "rsi_reversion.py"
CASES = {
    "simple_ma_grid_two_symbols": ["--symbols", "AAPL,MSFT", "--param", "fast=5:20:5", "--param", "slow=30,50"],
    "momentum_shorts_stops": ["--symbols", "AAPL,XOM,JPM", "--strategy", "momentum", "--allow-short",
                              "--param", "lookback=10:40:10", "--param", "threshold=0,0.02", "--stop-loss-atr", "2"],
    "breakout_halt_random": ["--symbols", "NFLX,NVDA", "--strategy", "breakout", "--method", "random", "--trials", "6",
                             "--seed", "3", "--param", "window=10:40:5", "--param", "exit_window=5:20:5",
                             "--constraint", "exit_window < window", "--max-drawdown", "0.15", "--allow-short"],
    "mean_reversion_fractional_window": ["--symbols", "KO,PEP", "--strategy", "mean_reversion", "--fractional",
                                         "--commission", "0.001", "--slippage-bps", "5", "--cash", "25000",
                                         "--start", "2016-03-01", "--end", "2019-06-30",
                                         "--param", "window=10,20", "--param", "z_entry=1.5:2.5:0.5",
                                         "--objective", "total_return", "--min-trades", "0"],
    "fixed_fraction_take_profit": ["--symbols", "JPM,GS,BAC", "--strategy", "volatility", "--sizing", "fixed-fraction",
                                   "--fraction", "0.2", "--take-profit-atr", "3", "--param", "k=1,1.5,2",
                                   "--objective", "-max_drawdown"],
    "weights_file": ["--symbols", "AAPL,MSFT,XOM,JPM,KO", "--strategy", str(ROTATION), "--param", "top=1:3:1",
                     "--param", "every=5,21", "--rebalance-threshold", "0.01"],
    "signal_file_bayes": ["--symbols", "AAPL,KO", "--strategy", str(RSI), "--method", "bayes", "--trials", "10",
                          "--seed", "7", "--param", "n=5:30:1", "--param", "lower=20:40:5"],
}


def _python(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=isolated_env(tmp), cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stderr[-3000:]}"
    return r


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _backtest(command: str, tmp: Path, name: str) -> dict:
    args = shlex.split(command)
    assert args[:4] == ["python", "-m", "slices.backtest", "run"], command
    r = _python(args[1:] + ["--out", str(tmp / name), "--format", "json"], tmp)
    return json.loads(r.stdout)["portfolio"]


@pytest.mark.parametrize("case", list(CASES))
def test_best_combination_equals_backtest(case, tmp_path):
    if "file" in case and not ROTATION.exists():
        pytest.skip("examples/strategies absent")
    out = tmp_path / "search"
    r = _python(["-m", "slices.optimize", "search", "--store", str(SAMPLE), *CASES[case], "--jobs", "1",
                 "--out", str(out), "--no-report", "--format", "json", "--quiet"], tmp_path)
    best = json.loads(r.stdout)
    assert best["params"] is not None, r.stdout
    assert f"--store {SAMPLE}" in best["command"]
    got = _backtest(best["command"], tmp_path, "best")
    bad = {k: (v, got[k]) for k, v in best["metrics"].items() if not _close(v, got[k])}
    assert not bad, f"{case}: optimize vs backtest differ: {bad}\n{best['command']}"

    # two more rows of results.parquet (the worst eligible and the middle one) reproduce too
    frame = pl.read_parquet(out / "results.parquet").filter(pl.col("eligible")).sort("objective")
    names = list(best["params"])
    for i in {0, frame.height // 2}:
        row = frame.row(i, named=True)
        command = best["command"]
        for k in names:
            old = f"--param {k}={_text(best['params'][k])}"
            assert old in command
            command = command.replace(old, f"--param {k}={_text(row[k])}")
        got = _backtest(command, tmp_path, f"row{i}")
        bad = {k: (row[k], got[k]) for k in best["metrics"] if not _close(row[k], got[k])}
        assert not bad, f"{case} row {i}: {bad}\n{command}"


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else f"{v:.1f}"
    return str(v)
