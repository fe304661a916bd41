"""Benchmarks of the analyze slice (prints figures; not a test).

Run from the repository root: ``python benchmarks/analyze_bench.py`` (needs ../shared/data).

0. The whole process ``python -m slices.analyze indicators --data <sp500 file> -o OUT.parquet -q``:
   the standard set for every valid symbol (477 of 482; the loader checks them all and excludes
   CBS, STI, VIAB, BHF, SCG) in ONE command, start-up, loading and writing included (target: under 3 s).
1. The standard indicator set (18 indicators, 29 columns) for all 482 symbols of
   ``../shared/data/sp500_daily_2015_2020.parquet``, computed as the command does (``compute_many``
   on batches of ``INDICATOR_BATCH`` symbols; target: under 2 s).
2. Historical and parametric (Gaussian and Cornish-Fisher) VaR/CVaR for a 30-symbol portfolio,
   2 confidences x 2 horizons, from aligned bars (target: under 100 ms); plus the whole ``risk``
   computation with 10,000 Monte Carlo draws for reference.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slices.analyze import indicators as ind  # noqa: E402
from slices.analyze import risk  # noqa: E402
from slices.analyze.bars import BarRequest, load_bars  # noqa: E402
from slices.analyze.cli import INDICATOR_BATCH  # noqa: E402

SP500 = ROOT.parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times)), out


def bench_process(repeat=5):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ind.parquet"
        cmd = [sys.executable, "-m", "slices.analyze", "indicators", "--data", str(SP500), "-o", str(out), "-q"]
        env = {**os.environ, "HOME": tmp}
        times, cpu = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode:
                sys.exit(done.stderr)
        frame = pl.read_parquet(out)
    print(
        f"whole process, standard set, {frame['symbol'].n_unique()} symbols, {frame.height:,} rows x {frame.width} columns "
        f"written: best {min(times):.2f} s, median {float(np.median(times)):.2f} s wall  [target < 3 s]; "
        f"CPU (user + sys, all threads) best {min(cpu):.2f} s; load average {os.getloadavg()[0]:.1f}"
    )
    t = []
    for _ in range(repeat):
        s = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import slices.analyze.cli"], cwd=ROOT, check=True)
        t.append(time.perf_counter() - s)
    print(f"  of which interpreter start + imports (python -c 'import slices.analyze.cli'): best {min(t):.2f} s")


def bench_indicators():
    def load():
        raw = pl.read_parquet(SP500)
        ratio = pl.col("adj_close") / pl.col("close")
        frame = raw.select(
            "symbol",
            pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp"),
            *[(pl.col(c) * ratio).alias(c) for c in ("open", "high", "low", "close")],
            pl.col("volume").cast(pl.Float64),
        )
        return {s: p.drop("symbol") for (s,), p in frame.partition_by("symbol", as_dict=True).items()}

    t_load, _, parts = best(load, 3)
    specs = ind.standard_specs(intraday=False)

    syms = list(parts)

    def compute():  # as the indicators command: batches of INDICATOR_BATCH symbols at once
        return [
            ind.compute_many({s: parts[s] for s in syms[i : i + INDICATOR_BATCH]}, specs, strict=False, skipped=[])
            for i in range(0, len(syms), INDICATOR_BATCH)
        ]

    cpu = time.process_time()
    t_min, t_med, out = best(compute, 5)
    cpu = (time.process_time() - cpu) / 5
    rows = sum(len(batch["obv"]) for batch in out)
    cols = len(out[0])
    print(f"standard indicator set ({len(specs)} indicators, {cols} columns), {len(syms)} symbols, {rows:,} bars:")
    print(
        f"  compute: best {t_min:.3f} s, median {t_med:.3f} s wall, {cpu:.3f} s CPU per run "
        f"(read + adjust + split the file: {t_load:.3f} s)"
    )
    print(f"  total (read + compute, best): {t_load + t_min:.3f} s  [target < 2 s]")


def bench_var():
    syms = (
        pl.read_parquet(SP500, columns=["symbol"])
        .group_by("symbol")
        .len()
        .filter(pl.col("len") == 1259)["symbol"]
        .sort()
        .head(30)
        .to_list()
    )
    bars = load_bars(syms, BarRequest(data=(str(SP500),)))
    w = np.full(len(syms), 1.0 / len(syms))
    conf, hor = [0.95, 0.99], [1, 5]

    def hist_param():  # the slice's own code path, without Monte Carlo
        al = risk.align(bars)
        port = al.returns @ w
        return risk.var_table(port, al.returns, w, conf, hor, 1e6, 0, 0, methods=risk.METHODS[:3])

    t_min, t_med, _ = best(hist_param, 20)
    print(
        f"historical + Gaussian + Cornish-Fisher VaR/CVaR, {len(syms)} symbols x 1259 bars, 2 confidences x 2 horizons:"
    )
    print(f"  best {t_min * 1000:.1f} ms, median {t_med * 1000:.1f} ms (align + returns included)  [target < 100 ms]")
    t_min, t_med, _ = best(lambda: risk.risk_report(bars, w, conf, hor, 1e6, 10_000, 42, 252), 5)
    print(
        f"full risk report (incl. Monte Carlo 10,000 draws, stress, correlation, drawdowns): best {t_min * 1000:.0f} ms, median {t_med * 1000:.0f} ms"
    )


if __name__ == "__main__":
    if not SP500.exists():
        sys.exit(f"benchmark needs {SP500}")
    bench_process()
    bench_indicators()
    bench_var()
