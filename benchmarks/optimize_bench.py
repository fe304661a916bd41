"""Speed of `python -m slices.optimize search` against backtesting.py's Backtest.optimize, side by side.

The 75-combination grid simple_ma fast=5:25:5, slow=30:100:5 on one symbol (AAPL of the shared
S&P 500 file, or of the embedded sample), same costs (commission 0.0005, no slippage for both),
as whole processes (interpreter start-up included) and per combination (start-up excluded: the
time of a 1-combination run is subtracted). Also: 1,000 combinations on one symbol, --jobs 2.

    python benchmarks/optimize_bench.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SP500 = ROOT.parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"

BT_SCRIPT = r'''
import sys, polars as pl
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA
path, sym, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if path.endswith("sample"):
    df = pl.read_parquet(f"{path}/bars/1d/{sym}.parquet")
else:
    df = pl.read_parquet(path).filter(pl.col("symbol") == sym)
    df = df.rename({c: c.lower() for c in df.columns})
tcol = "timestamp" if "timestamp" in df.columns else "date"
pdf = df.select(pl.col(tcol).alias("Date"), pl.col("open").alias("Open"), pl.col("high").alias("High"),
                pl.col("low").alias("Low"), pl.col("close").alias("Close"), pl.col("volume").alias("Volume")).to_pandas().set_index("Date")
class MA(Strategy):
    fast = 10
    slow = 30
    def init(self):
        self.f = self.I(SMA, self.data.Close, self.fast)
        self.s = self.I(SMA, self.data.Close, self.slow)
    def next(self):
        if crossover(self.f, self.s):
            self.buy()
        elif crossover(self.s, self.f):
            self.position.close()
bt = Backtest(pdf, MA, cash=100_000, commission=0.0005, finalize_trades=True)
fast = range(5, 26, 5) if n > 1 else [10]
slow = range(30, 101, 5) if n > 1 else [30]
bt.optimize(fast=fast, slow=slow, maximize="Sharpe Ratio", constraint=lambda p: p.fast < p.slow)
'''


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = ["--data", str(SP500)] if SP500.exists() else ["--store", str(ROOT / "slices" / "sample")]
    src = str(SP500) if SP500.exists() else str(ROOT / "slices" / "sample")
    tmp = tempfile.mkdtemp()
    base = [sys.executable, "-m", "slices.optimize", "search", *data, "-s", "AAPL", "--commission", "0.0005",
            "--slippage-bps", "0", "--no-report", "--quiet", "--out", tmp]
    grid = ["--param", "fast=5:25:5", "--param", "slow=30:100:5"]
    ours75 = timed(base + grid + ["--jobs", "1"], a.repeat)
    ours1 = timed(base + ["--param", "fast=10", "--param", "slow=30", "--jobs", "1"], a.repeat)
    script = Path(tmp) / "bt.py"
    script.write_text(BT_SCRIPT)
    try:
        theirs75 = timed([sys.executable, str(script), src, "AAPL", "75"], a.repeat)
        theirs1 = timed([sys.executable, str(script), src, "AAPL", "1"], a.repeat)
    except SystemExit as exc:
        print(f"backtesting.py not measured: {str(exc)[:300]}")
        theirs75 = theirs1 = float("nan")
    ours1000 = timed(base + ["--param", "fast=2:41:1", "--param", "slow=45:120:3", "--jobs", "2"], a.repeat)
    print(f"{'case':<58}{'ours':>10}{'backtesting.py':>16}")
    print(f"{'75 combinations, whole process':<58}{ours75:>9.2f}s{theirs75:>15.2f}s   ratio {ours75 / theirs75:.2f}")
    print(f"{'per combination, start-up excluded':<58}{(ours75 - ours1) / 74 * 1e3:>8.2f}ms"
          f"{(theirs75 - theirs1) / 74 * 1e3:>14.2f}ms   x{(theirs75 - theirs1) / max(ours75 - ours1, 1e-9):.1f} faster")
    print(f"{'1,000 combinations (40 x 26 grid, fast<slow), --jobs 2':<58}{ours1000:>9.2f}s")


if __name__ == "__main__":
    main()
