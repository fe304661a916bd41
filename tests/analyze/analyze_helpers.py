"""Helpers shared by the analyze tests: synthetic bars in the bar-store schema."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
SP500 = SHARED / "sp500_daily_2015_2020.parquet"


def make_bars(
    close, spread=0.01, volume=None, start=datetime(2020, 1, 1, tzinfo=timezone.utc), step=timedelta(days=1), seed=0
):
    """Bars in the store schema around a close path: open = previous close, high/low outside both."""
    close = np.asarray(close, dtype=float)
    rng = np.random.default_rng(seed)
    opn = np.concatenate([[close[0]], close[:-1]])
    hi = np.maximum(opn, close) * (1 + spread * rng.random(len(close)))
    lo = np.minimum(opn, close) * (1 - spread * rng.random(len(close)))
    vol = rng.integers(1_000, 100_000, len(close)).astype(float) if volume is None else np.asarray(volume, float)
    ts = pl.datetime_range(start, start + step * (len(close) - 1), step, time_unit="us", time_zone="UTC", eager=True)
    return pl.DataFrame({"timestamp": ts, "open": opn, "high": hi, "low": lo, "close": close, "volume": vol})


def random_walk(n, seed=0, vol=0.02, drift=0.0, start=100.0):
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(drift, vol, n)))
