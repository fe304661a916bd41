"""Intraday backtest benchmark (issue 13): seeded synthetic 1-minute bars, time and peak memory.

    python benchmarks/backtest_intraday_bench.py [--case A|B|C|all ...] [--symbols N --years Y]
        [--seed 13] [--keep DIR] [--report] [--repeat R]

Cases (252 weekdays x 390 one-minute bars a year from 2020-01-06 14:30 UTC, symbols S000..):
  A  100 symbols x 1 year  (98,280 bars a symbol, 9.8 million bar-rows). Target < 10 s, < 1.5 GB peak.
  B  500 symbols x 1 year  (49 million bar-rows).                       Target < 60 s, < 6 GB peak.
  C  500 symbols x 5 years (246 million bar-rows). Completes (24 GB machine); the time is reported.
Default: A and B. `--symbols N --years Y` runs one custom case instead (e.g. 10 x 0.1 to check
the script: round(252 x Y) weekdays).

The measured command (the issue's settings: built-in simple_ma with default parameters, shorts
allowed, zero costs, fractional shares), in a fresh interpreter, start-up included:

    python -m slices.backtest run --store ROOT --timeframe 1m --strategy simple_ma --allow-short
        --commission 0 --slippage-bps 0 --fractional --out DIR --no-report

`--report` also times the same command writing report.html (its size is printed, in MB).

Data: a contract-1 store ROOT/bars/1m/<SYMBOL>.parquet, one geometric random walk per symbol
(per-minute log-return sigma 0.0008, start price 20..200; open = previous close x exp(noise),
high/low outside max/min(open, close) by a small positive noise, volume > 0), generated symbol by
symbol from numpy default_rng([seed, symbol index]) so at most one symbol is in memory and a
symbol's bars do not depend on how many symbols are generated. Generation time is printed apart
and is not part of the measured figure. `--keep DIR` generates into DIR/intraday_<N>x<Y>y_seed<S>
and keeps it; a folder whose bench.json records the same N, Y, seed and generator version is
reused as it is (5 years of 500 symbols take minutes to write).

Measured: wall time (time.perf_counter around the child), the child's CPU time (user + system) and
its peak resident set size, from os.wait4 on that one child (ru_maxrss, KiB on Linux), so earlier
children do not leak into the figure. The load average is printed: on a shared machine wall
times are inflated; compare CPU time. The run's warnings (any `excluded` would mean the synthetic
data is wrong) are printed; a failed run prints its stderr and the script exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
GENERATOR_VERSION = 1
FIRST_DAY = np.datetime64("2020-01-06", "D")  # a Monday
BARS_PER_DAY = 390
SESSION_OPEN = np.timedelta64(14 * 60 + 30, "m")  # 14:30 UTC, no DST handling
SIGMA = 0.0008  # per-minute log-return standard deviation
GB = 1024**3

# case: (symbols, years, wall target s or None, peak target GB or None)
CASES = {"A": (100, 1.0, 10.0, 1.5), "B": (500, 1.0, 60.0, 6.0), "C": (500, 5.0, None, None)}


def weekdays(years: float) -> np.ndarray:
    """The first round(252 x years) weekdays (at least 1) from 2020-01-06, datetime64[D]."""
    n = max(1, round(252 * years))
    days = FIRST_DAY + np.arange(n * 7 // 5 + 7)
    days = days[(days.astype(np.int64) + 3) % 7 < 5]  # 1970-01-01 was a Thursday: Monday -> 0
    return days[:n]


def minute_stamps(days: np.ndarray) -> pl.Series:
    """390 one-minute bar open times a day from 14:30 UTC: Datetime(us, UTC), strictly increasing."""
    stamps = (days.astype("datetime64[m]")[:, None] + SESSION_OPEN + np.arange(BARS_PER_DAY).astype("timedelta64[m]")).ravel()
    return pl.Series("timestamp", stamps.astype("datetime64[us]")).dt.replace_time_zone("UTC")


def symbol_bars(stamps: pl.Series, seed: int, index: int) -> pl.DataFrame:
    """One symbol's bars in the contract-1 schema (timestamp, open, high, low, close, volume; Float64).

    A geometric random walk: close_t = p0 x exp(cumsum(r)), r ~ N(0, SIGMA) per minute, p0 uniform
    in 20..200; open_t = close_{t-1} x exp(N(0, SIGMA / 4)) (open_0 from p0); high = max(open,
    close) x exp(|N(0, SIGMA / 2)|), low = min(open, close) x exp(-|N(0, SIGMA / 2)|); volume
    uniform integers 100..10,000. Seeded by numpy default_rng([seed, index]).
    """
    n = len(stamps)
    rng = np.random.default_rng([seed, index])
    p0 = rng.uniform(20.0, 200.0)
    close = p0 * np.exp(np.cumsum(rng.normal(0.0, SIGMA, n)))
    prev = np.empty(n)
    prev[0] = p0
    prev[1:] = close[:-1]
    open_ = prev * np.exp(rng.normal(0.0, SIGMA / 4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, SIGMA / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, SIGMA / 2, n)))
    volume = rng.integers(100, 10_001, n).astype(np.float64)
    return pl.DataFrame({"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


def generate(store: Path, symbols: int, years: float, seed: int) -> tuple[int, float]:
    """Write ROOT/bars/1m/S000.parquet.. one symbol at a time, then bench.json; (bar-rows, seconds)."""
    t = time.perf_counter()
    folder = store / "bars" / "1m"
    folder.mkdir(parents=True, exist_ok=True)
    stamps = minute_stamps(weekdays(years))
    for i in range(symbols):
        symbol_bars(stamps, seed, i).write_parquet(folder / f"S{i:03d}.parquet")
    info = {"generator": GENERATOR_VERSION, "symbols": symbols, "years": years, "seed": seed,
            "bars_per_symbol": len(stamps), "rows": len(stamps) * symbols}
    (store / "bench.json").write_text(json.dumps(info, indent=1) + "\n")  # last: a cut-off generation is never reused
    return info["rows"], time.perf_counter() - t


def kept_store(keep: Path, symbols: int, years: float, seed: int) -> tuple[Path, int, float | None]:
    """The store under --keep DIR for this case: reused when its bench.json matches, else (re)generated.

    Returns (store root, bar-rows, generation seconds or None when reused). Refuses (SystemExit) to
    clear a non-empty folder that has no bench.json (it is not ours).
    """
    store = keep / f"intraday_{symbols}x{years:g}y_seed{seed}"
    meta = store / "bench.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        if (info.get("generator"), info.get("symbols"), info.get("years"), info.get("seed")) == (GENERATOR_VERSION, symbols, years, seed):
            return store, info["rows"], None
        shutil.rmtree(store)
    elif store.exists() and any(store.iterdir()):
        print(f"error: {store} exists without bench.json; not overwriting it", file=sys.stderr)
        sys.exit(2)
    rows, secs = generate(store, symbols, years, seed)
    return store, rows, secs


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` from the repo root; wall s, cpu s (user + system), peak RSS bytes, exit code, stderr.

    Peak RSS is that child's own ru_maxrss from os.wait4 (KiB on Linux), not the maximum over all
    children of this process.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        err.seek(0)
        stderr = err.read()
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024,
            "code": proc.returncode, "stderr": stderr}


def run_case(label: str, store: Path, rows: int, report: bool, repeat: int, wall_target, rss_target) -> tuple[list[str], bool]:
    """Time the backtest on ``store`` ``repeat`` times; table lines and whether every run succeeded."""
    lines, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "slices.backtest", "run", "--store", str(store), "--timeframe", "1m",
               "--strategy", "simple_ma", "--allow-short", "--commission", "0", "--slippage-bps", "0",
               "--fractional", "--out", str(out)] + ([] if report else ["--no-report"])
        runs = []
        for _ in range(repeat):
            r = measure(cmd)
            if r["code"] != 0:
                print(f"FAILED ({label}, exit {r['code']}): {' '.join(cmd)}\n{r['stderr']}", file=sys.stderr)
                return lines, False
            runs.append(r)
        noted = [ln for ln in runs[-1]["stderr"].splitlines() if ln.strip()]
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        rss = max(r["rss"] for r in runs) / GB
        if wall_target is None:
            target, met = "completes", "met"
        else:
            target = f"<{wall_target:g} s, <{rss_target:g} GB"
            met = "met" if wall < wall_target and rss < rss_target else "NOT met"
        name = label + (" +report" if report else "")
        lines.append(f"{name:<30}{rows:>13,}{wall:>9.2f}{cpu:>9.2f}{rss:>9.2f}  {target:<20}{met}")
        if report:
            html = out / "report.html"
            size = f"{html.stat().st_size / 1e6:.2f} MB" if html.exists() else "MISSING"
            lines.append(f"    report.html: {size}")
        excluded = [ln for ln in noted if "excluded" in ln]
        if excluded:
            ok = False
            lines.append(f"    DATA PROBLEM: {len(excluded)} symbol(s) excluded by the loader, first: {excluded[0]}")
        for ln in noted[:5]:
            lines.append(f"    stderr: {ln}")
        if len(noted) > 5:
            lines.append(f"    stderr: ... {len(noted) - 5} more lines")
    return lines, ok


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", choices=["A", "B", "C", "all"],
                    help="case to run (repeatable) [default: A and B]")
    ap.add_argument("--symbols", type=int, help="custom case: number of symbols (with --years)")
    ap.add_argument("--years", type=float, help="custom case: years of weekdays, 252 a year (with --symbols)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", type=Path, help="generate the stores under DIR, keep and reuse them")
    ap.add_argument("--report", action="store_true", help="also time the run writing report.html")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (median wall and cpu, max peak)")
    args = ap.parse_args()
    if (args.symbols is None) != (args.years is None):
        ap.error("--symbols and --years go together")
    if args.symbols is not None:
        if args.case:
            ap.error("--symbols/--years replace --case")
        if args.symbols < 1 or args.symbols > 1000 or args.years <= 0:
            ap.error("--symbols must be 1..1000 and --years > 0")
        cases = [(f"{args.symbols} x {args.years:g} y", args.symbols, args.years, None, None)]
    else:
        names = args.case or ["A", "B"]
        names = ["A", "B", "C"] if "all" in names else list(dict.fromkeys(names))
        cases = [(f"{n}: {CASES[n][0]} x {CASES[n][1]:g} y", *CASES[n]) for n in names]
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    load = os.getloadavg()
    table, ok = [], True
    for label, symbols, years, wall_target, rss_target in cases:
        with tempfile.TemporaryDirectory() as tmp:
            if args.keep:
                store, rows, secs = kept_store(args.keep, symbols, years, args.seed)
            else:
                store = Path(tmp) / "store"
                rows, secs = generate(store, symbols, years, args.seed)
            gen = "reused" if secs is None else f"generated in {secs:.1f} s"
            print(f"{label}: {rows:,} bar-rows, store {store} ({folder_size(store) / 1e6:.0f} MB on disk), {gen}", flush=True)
            for report in [False, True] if args.report else [False]:
                lines, good = run_case(label, store, rows, report, args.repeat, wall_target, rss_target)
                table += lines
                ok = ok and good
                if not good and not lines:
                    break
    print(f"\nload average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f"; {os.cpu_count()} cores; repeat {args.repeat}")
    print(f"{'case':<30}{'bar-rows':>13}{'wall s':>9}{'cpu s':>9}{'peak GB':>9}  {'target':<20}result")
    print("\n".join(table))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
