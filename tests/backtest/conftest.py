"""Shared fixtures of the backtest tests (kept inside tests/backtest so the slice tests run alone)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=40, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SP500 = SHARED / "sp500_daily_2015_2020.parquet"


@pytest.fixture(autouse=True)
def empty_store(tmp_path_factory, monkeypatch):
    """Point GPT_TRADER_STORE at an empty folder so a developer's real store never leaks into tests."""
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path_factory.mktemp("store")))


@pytest.fixture
def sp500() -> Path:
    if not SP500.exists():
        pytest.skip(f"shared data not present ({SP500}); a fresh clone has only the embedded sample")
    return SP500


def make_bars(close: np.ndarray, symbol: str = "XYZ", start: str = "2020-01-01", spread: float = 0.01,
              opens: np.ndarray | None = None) -> pl.DataFrame:
    """Long-format daily bars from closes: open = previous close (or ``opens``), high/low around both."""
    close = np.asarray(close, dtype=float)
    o = np.asarray(opens, dtype=float) if opens is not None else np.concatenate(([close[0]], close[:-1]))
    hi = np.maximum(o, close) * (1 + spread)
    lo = np.minimum(o, close) * (1 - spread)
    t0 = np.datetime64(start, "us")
    stamps = t0 + np.arange(close.size) * np.timedelta64(1, "D")
    return pl.DataFrame({
        "symbol": [symbol] * close.size,
        "timestamp": pl.Series(stamps).dt.replace_time_zone("UTC"),
        "open": o, "high": hi, "low": lo, "close": close, "volume": np.full(close.size, 1e6),
    })
