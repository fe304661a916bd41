"""SLICES.md "Command-line style": many warnings are summarised by kind with counts, and symbol
exclusions are always shown, in every slice that loads bars.

One contract-2 file of 10 daily symbols: 8 with a zero-volume bar each (a warning kind that is
summarised), one with a sub-penny placeholder quote (excluded, named), one clean. Every slice's
command line that loads bars must print the exclusion naming the symbol, ONE line
``warning: 8 symbols with zero-volume bars (...)``, never the 8 single warnings, and never hide
lines behind ``... and N more``. (paper_trade and live_trade used to print 8 warnings then
"... and 26 more" on the shared S&P file, and optimize every one of the 35.)
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from conftest import built_slices, run_cli, shown, stderr_lines

ZERO = [f"Z{i}" for i in range(8)]


@pytest.fixture(scope="module")
def bars_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 300
    t0 = datetime(2019, 1, 2, tzinfo=timezone.utc)
    days = [t0 + timedelta(days=d) for d in range(n * 7 // 5 + 10) if (t0 + timedelta(days=d)).weekday() < 5][:n]
    frames = []
    for sym in [*ZERO, "PENNY", "CLEAN"]:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        volume = np.full(n, 1e6)
        if sym in ZERO:
            volume[120] = 0.0
        if sym == "PENNY":
            close[:20] = 0.004  # a placeholder quote, then a real price: suspicious, excluded
        frames.append(pl.DataFrame({"symbol": sym, "timestamp": days, "open": close, "high": close * 1.01,
                                    "low": close * 0.99, "close": close, "volume": volume}))
    path = tmp_path_factory.mktemp("warnsum") / "bars.parquet"
    pl.concat(frames).write_parquet(path)
    return path


def commands(f, work):
    return {
        "backtest": ["slices.backtest", "run", "--data", f, "--no-report", "--out", work / "bt"],
        "analyze": ["slices.analyze", "indicators", "--data", f, "-o", work / "ind.parquet", "-q"],
        "optimize": ["slices.optimize", "search", "--data", f, "--param", "fast=10", "--param", "slow=30",
                     "--min-trades", "0", "--jobs", "1", "--no-report", "-q", "--out", work / "opt"],
        "paper_trade": ["slices.paper_trade", "run", "--session", "w", "--ledgers", work / "led", "--data", f,
                        "--replay", "-q"],
        "live_trade": ["slices.live_trade", "run", "--session", "w", "--ledgers", work / "led", "--data", f,
                       "--replay"],
    }


@pytest.mark.parametrize("reader", ["backtest", "analyze", "optimize", "paper_trade", "live_trade"])
def test_warnings_summarised_by_kind_and_exclusions_shown(reader, bars_file, tmp_path):
    if reader not in built_slices():
        pytest.skip(f"slice {reader} is not built")
    args = [str(a) for a in commands(bars_file, tmp_path)[reader]]
    res = run_cli(args, tmp_path, timeout=300)
    assert res.returncode == 0, shown(res)
    lines = stderr_lines(res)
    warnings = [x for x in lines if x.startswith("warning: ")]
    assert any("PENNY" in x and "excluded" in x for x in warnings), shown(res)
    summary = [x for x in warnings if re.match(r"warning: 8 symbols with zero-volume bars \(", x)]
    assert len(summary) == 1, shown(res)
    singles = [x for x in warnings if x not in summary and any(re.search(rf"\b{z}\b", x) for z in ZERO)]
    assert not singles, shown(res)
    assert not any(re.search(r"\.\.\. and [\d,]+ more", x) for x in lines), shown(res)
