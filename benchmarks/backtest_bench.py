"""Backtest slice speed benchmark (figures recorded in slices/backtest/README.md).

    python benchmarks/backtest_bench.py [--repeat 5]

1. One symbol, ~10 years of daily bars (2,517 bars: AAPL's real daily returns of
   2015-2020 from the embedded sample, chained twice), end to end as a user runs it:
   `python -m slices.backtest run --data FILE --out DIR` in a fresh interpreter (start-up included),
   with and without report.html. Target: < 0.5 s wall.
2. All 482 symbols of ../shared/data/sp500_daily_2015_2020.parquet, one strategy, portfolio and
   per-symbol metrics, end to end in a fresh interpreter (skipped when ../shared is absent). Target: < 2 s.
Prints the median and the minimum wall time of --repeat runs for each case.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SP500 = ROOT.parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"


def ten_years(path: Path) -> int:
    aapl = pl.read_parquet(ROOT / "slices" / "sample" / "bars" / "1d" / "AAPL.parquet")
    rel = aapl.select((pl.col(c) / pl.col("close").shift(1)).alias(c) for c in ("open", "high", "low", "close")).drop_nulls()
    rel = pl.concat([rel, rel])
    close = 100 * np.cumprod(rel["close"].to_numpy())
    prev = np.concatenate(([100.0], close[:-1]))
    stamps = pl.datetime_range(pl.datetime(2010, 1, 4), pl.datetime(2030, 1, 1), "1d", eager=True, time_zone="UTC")
    stamps = stamps.filter(stamps.dt.weekday() <= 5)[: len(close)]
    df = pl.DataFrame({"timestamp": stamps, "open": prev * rel["open"].to_numpy(), "high": prev * rel["high"].to_numpy(),
                       "low": prev * rel["low"].to_numpy(), "close": close, "volume": 1e6})
    df.write_parquet(path)
    return df.height


def timed(cmd: list[str], repeat: int, cwd: Path) -> tuple[float, float]:
    walls = []
    for _ in range(repeat):
        t = time.perf_counter()
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if res.returncode != 0:
            raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{res.stderr}")
    return statistics.median(walls), min(walls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = ten_years(tmp / "TENY.parquet")
        base = [sys.executable, "-m", "slices.backtest", "run", "--out", str(tmp / "out")]
        cases = [
            (f"1 symbol x {n} daily bars, simple_ma, no report", base + ["--data", str(tmp / "TENY.parquet"), "--no-report"]),
            (f"1 symbol x {n} daily bars, simple_ma, with report.html", base + ["--data", str(tmp / "TENY.parquet")]),
        ]
        if SP500.exists():
            for strat in ("simple_ma", "breakout"):
                cases.append((f"482 symbols (shared S&P 500 file), {strat}, no report", base + ["--data", str(SP500), "--strategy", strat, "--no-report"]))
            cases.append(("482 symbols (shared S&P 500 file), simple_ma, with report.html", base + ["--data", str(SP500)]))
        else:
            print(f"skipped the 482-symbol cases: {SP500} not found")
        timed([sys.executable, "-c", "pass"], 1, ROOT)  # warm the file cache
        print(f"{'case':<66}{'median s':>10}{'min s':>10}")
        for label, cmd in cases:
            med, best = timed(cmd, args.repeat, ROOT)
            print(f"{label:<66}{med:>10.3f}{best:>10.3f}")


if __name__ == "__main__":
    main()
