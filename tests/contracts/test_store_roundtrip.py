"""The bar store connects the slices: what `data` writes, `backtest` and `analyze` read.

Each slice is driven only through its command line (no imports across slices), the way a user
chains them. Skipped for slices that are not built yet.
"""
from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from conftest import ROOT, built_slices

pytestmark = pytest.mark.skipif(not {"data", "backtest", "analyze"} <= set(built_slices()),
                                reason="needs the data, backtest and analyze slices")


def cli(*args, env=None) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


def test_data_import_then_backtest_and_analyze_read_the_store(tmp_path):
    # a long-format CSV as a user might have it: two sample symbols, renamed so the sample fallback cannot serve them
    frames = []
    for sym, new in (("AAPL", "AAA"), ("MSFT", "BBB")):
        df = pl.read_parquet(ROOT / "slices" / "sample" / "bars" / "1d" / f"{sym}.parquet")
        frames.append(df.with_columns(pl.lit(new).alias("symbol"), pl.col("timestamp").dt.date().alias("date")))
    src = tmp_path / "bars.csv"
    pl.concat(frames).select("symbol", "date", "open", "high", "low", "close", "volume").write_csv(src)
    store = tmp_path / "store"
    cli("slices.data", "import", str(src), "--store", str(store))
    written = sorted(p.name for p in (store / "bars" / "1d").glob("*.parquet"))
    assert written == ["AAA.parquet", "BBB.parquet"]

    out = tmp_path / "run"
    res = cli("slices.backtest", "run", "--store", str(store), "--symbols", "AAA,BBB", "--out", str(out), "--no-report")
    assert "embedded sample" not in res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["symbols"] == ["AAA", "BBB"] and metrics["run"]["bars"] == 1259
    # same bars straight from the sample give the same result: the store round trip lost nothing
    direct = tmp_path / "direct"
    cli("slices.backtest", "run", "--data", str(src), "--out", str(direct), "--no-report")
    assert json.loads((direct / "metrics.json").read_text())["portfolio"] == metrics["portfolio"]

    ind = tmp_path / "ind.parquet"
    res = cli("slices.analyze", "indicators", "AAA", "--store", str(store), "--indicator", "sma:20", "--out", str(ind))
    assert "embedded sample" not in res.stderr
    got = pl.read_parquet(ind)
    assert got.height == 1259 and "sma_20" in got.columns
