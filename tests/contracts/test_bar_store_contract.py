"""The embedded sample satisfies the bar-store contract of SLICES.md (contract 1)."""
from __future__ import annotations

import polars as pl
import pytest

from conftest import ROOT

SAMPLE = ROOT / "slices" / "sample"
FILES = sorted((SAMPLE / "bars").glob("*/*.parquet"))
SCHEMA = {"timestamp": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
          "close": pl.Float64, "volume": pl.Float64}


def test_sample_layout_and_size():
    assert {p.parent.name for p in FILES} == {"1d", "1h", "1m"}
    assert len([p for p in FILES if p.parent.name == "1d"]) == 30
    assert {p.stem for p in FILES if p.parent.name != "1d"} == {"EURUSD", "IDXFUT"}
    assert sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) <= 3 * 1024 * 1024
    assert (SAMPLE / "README.md").exists()


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sample_file_follows_the_schema(path):
    df = pl.read_parquet(path)
    assert dict(df.schema) == SCHEMA
    assert df.height > 0 and path.stem == path.stem.upper()
    assert df["timestamp"].null_count() == 0
    assert (df["timestamp"].diff().drop_nulls().dt.total_microseconds() > 0).all()
    prices = df.select("open", "high", "low", "close")
    assert prices.null_count().sum_horizontal().item() == 0
    assert (prices.min_horizontal() > 0).all()
    assert (df["high"] >= df["low"]).all()
    if path.parent.name == "1d":
        assert (df["timestamp"].dt.hour() == 0).all() and (df["timestamp"].dt.minute() == 0).all()
