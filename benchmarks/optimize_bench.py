"""Speed of `python -m slices.optimize search` against backtesting.py's Backtest.optimize, side by side.

The 75-combination grid simple_ma fast=5:25:5, slow=30:100:5 on one symbol (AAPL of the shared
S&P 500 file, or of the embedded sample), same costs (commission 0.0005, no slippage for both),
as whole processes (interpreter start-up included) and per combination (start-up excluded: the
time of a 1-combination run is subtracted). Also: the first run with an empty numba cache (the
kernels compile), 1,040 combinations on one symbol (default --jobs, --jobs 2, --jobs 1), and 100
combinations over every symbol of the shared file as one portfolio each. Wall and CPU time (user +
system of the child process) are printed with the load average, as the machine may be shared.

    python benchmarks/optimize_bench.py [--repeat 3] [--skip-portfolio]
"""
from __future__ import annotations

import argparse
import os
import resource
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
if len(sys.argv) > 4:  # in-process: the 75 grid minus a 1-combination grid, median of repeats
    import statistics, time
    def t(f, s):
        t0 = time.perf_counter()
        bt.optimize(fast=f, slow=s, maximize="Sharpe Ratio", constraint=lambda p: p.fast < p.slow)
        return time.perf_counter() - t0
    runs = [t(range(5, 26, 5), range(30, 101, 5)) - t([10], [30]) for _ in range(int(sys.argv[4]))]
    print(statistics.median(runs) / 74)
'''


OURS_SCRIPT = r'''
import statistics, sys, tempfile, time
from pathlib import Path
from slices.optimize.engine import Config
from slices.optimize.evaluate import DataSpec, prepare
from slices.optimize.search import SearchSettings, run_search, write_search, check_settings
from slices.optimize.strategies import STRATEGIES
import slices.optimize.search as search_module
search_module.FAST_AFTER_S = 0.0  # the compiled path's marginal cost (a small sweep would take the engine)
data, sym, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = DataSpec(symbols=[sym], data=[data]) if data.endswith(".parquet") else DataSpec(symbols=[sym], store=data)
cfg = Config(commission=0.0005, slippage_bps=0)
strat = STRATEGIES["simple_ma"]
prep = prepare(strat, cfg, spec, 101)
out = Path(tempfile.mkdtemp())
def t(space):
    s = SearchSettings(space=space, jobs=1, config=cfg, data=spec)
    dims, _ = check_settings(s, strat)
    t0 = time.perf_counter()
    res, _ = run_search(s, prep=prep, strat=strat)
    write_search(out, s, strat, prep, res, dims, report=False)
    return time.perf_counter() - t0
t(["fast=10", "slow=30"])  # the kernels loaded
runs = [t(["fast=5:25:5", "slow=30:100:5"]) - t(["fast=10", "slow=30"]) for _ in range(repeat)]
print(statistics.median(runs) / 74)
'''


def in_process(cmd: list[str]) -> float:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return float(r.stdout.strip().splitlines()[-1])


def timed(cmd: list[str], repeat: int, env: dict | None = None) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system of the child) of ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return statistics.median(walls), statistics.median(cpus)


def speedup(theirs: float, ours: float) -> str:
    """``x12.3``, or ``n/a`` when a difference of two noisy timings is not positive."""
    return f"x{theirs / ours:.1f}" if ours > 0 and theirs > 0 else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-portfolio", action="store_true", help="skip the 100 x all-symbols case")
    a = ap.parse_args()
    # one symbol: AAPL's file in the embedded sample's bar store (1,259 daily bars), read by both
    # sides; the all-symbols case: the shared S&P 500 file
    src = str(ROOT / "slices" / "sample")
    tmp = tempfile.mkdtemp()
    opts = ["--commission", "0.0005", "--slippage-bps", "0", "--no-report", "--quiet", "--out", tmp]
    common = [sys.executable, "-m", "slices.optimize", "search", "--data", str(SP500), *opts]
    base = [sys.executable, "-m", "slices.optimize", "search", "--store", src, *opts, "-s", "AAPL"]
    grid = ["--param", "fast=5:25:5", "--param", "slow=30:100:5"]
    grid1000 = ["--param", "fast=2:41:1", "--param", "slow=45:120:3"]  # 40 x 26 = 1,040 combinations, all fast < slow
    timed(base + grid1000, 1)  # numba's disk cache filled (compiled if need be)
    load = os.getloadavg()
    rows = []
    cold_env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp())  # an empty numba cache: the kernels compile
    rows.append(("1,040 combinations, whole process, first run (numba compiles)", timed(base + grid1000, 1, cold_env), None))
    ours75 = timed(base + grid, a.repeat)
    ours1 = timed(base + ["--param", "fast=10", "--param", "slow=30"], a.repeat)
    script = Path(tmp) / "bt.py"
    script.write_text(BT_SCRIPT)
    try:
        theirs75 = timed([sys.executable, str(script), src, "AAPL", "75"], a.repeat)
        theirs1 = timed([sys.executable, str(script), src, "AAPL", "1"], a.repeat)
    except SystemExit as exc:
        print(f"backtesting.py not measured: {str(exc)[:300]}")
        theirs75 = theirs1 = (float("nan"), float("nan"))
    rows.append(("75 combinations, whole process (numba cache warm)", ours75, theirs75))
    rows.append(("1 combination, whole process", ours1, theirs1))
    per_ours = tuple((x - y) / 74 for x, y in zip(ours75, ours1))
    per_theirs = tuple((x - y) / 74 for x, y in zip(theirs75, theirs1))
    rows.append(("per combination, whole processes ((75 - 1) / 74)", per_ours, per_theirs))
    ours_script = Path(tmp) / "ours.py"
    ours_script.write_text(OURS_SCRIPT)
    in_ours = in_process([sys.executable, str(ours_script), src, "AAPL", str(max(a.repeat, 5))])
    try:
        in_theirs = in_process([sys.executable, str(script), src, "AAPL", "75", str(max(a.repeat, 5))])
    except SystemExit:
        in_theirs = float("nan")
    rows.append(("per combination, in process ((75-grid - 1-grid) / 74, median)", (in_ours, float("nan")),
                 (in_theirs, float("nan"))))
    rows.append(("1,040 combinations, 1 symbol, default --jobs", timed(base + grid1000, a.repeat), None))
    rows.append(("1,040 combinations, 1 symbol, --jobs 2", timed(base + grid1000 + ["--jobs", "2"], a.repeat), None))
    rows.append(("1,040 combinations, 1 symbol, --jobs 1", timed(base + grid1000 + ["--jobs", "1"], a.repeat), None))
    if SP500.exists() and not a.skip_portfolio:
        pf = common + ["--param", "fast=5:50:5", "--param", "slow=60:150:10"]  # 100 combinations, every symbol
        rows.append(("100 combinations x all symbols (one portfolio each), default --jobs", timed(pf, 1), None))
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f"; {os.cpu_count()} cores")
    print(f"{'case':<72}{'ours wall':>11}{'ours cpu':>10}{'bt.py wall':>12}{'bt.py cpu':>11}")
    for name, ours, theirs in rows:
        unit, k = ("ms", 1e3) if name.startswith("per") else ("s", 1.0)
        th = f"{theirs[0] * k:>10.2f}{unit}{theirs[1] * k:>9.2f}{unit}" if theirs else ""
        th = th.replace("nanms", "   ").replace("nans", "  ")
        cpu = f"{ours[1] * k:>8.2f}{unit:<2}" if ours[1] == ours[1] else " " * 10
        print(f"{name:<72}{ours[0] * k:>9.2f}{unit:<2}{cpu}{th}")
    print(f"whole process ratio (75, warm): {ours75[0] / theirs75[0]:.2f} wall, {ours75[1] / theirs75[1]:.2f} cpu; "
          f"per combination: {speedup(per_theirs[0], per_ours[0])} faster wall, "
          f"{speedup(per_theirs[1], per_ours[1])} cpu (whole processes; noise under load); "
          f"{speedup(in_theirs, in_ours)} in process")


if __name__ == "__main__":
    main()
