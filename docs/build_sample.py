"""Rebuild the embedded sample store ``slices/sample/`` from ``../shared/data/``.

Run from the repository root:  ``python docs/build_sample.py [SHARED_DATA_DIR]``

The sample is a read-only bar store in the layout of the bar-store contract
(SLICES.md): ``bars/<timeframe>/<SYMBOL>.parquet`` with ``timestamp``
Datetime(us, UTC) strictly increasing and ``open high low close volume`` Float64.

* Daily: 30 liquid S&P 500 names across sectors, 2015-01-12..2020-01-10,
  total-return adjusted: open/high/low/close are multiplied by adj_close/close
  (split- and dividend-adjusted); volume is kept as traded. Stamped 00:00 UTC.
* EURUSD 1h (2017-04-19..2018-02-07) and IDXFUT 1m (2006-01-02..2006-02-27):
  naive exchange-local times in the source, stored as if UTC (documented in
  slices/sample/README.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

DAILY = (
    "AAPL MSFT NVDA INTC CSCO GOOGL FB NFLX DIS T VZ AMZN HD MCD WMT PG KO PEP "
    "JPM BAC GS V JNJ PFE UNH XOM CVX BA CAT NEE"
).split()
FLOAT = ["open", "high", "low", "close", "volume"]


def _write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="zstd", compression_level=19, statistics=False)


def main(src: Path, dst: Path) -> None:
    daily = pl.read_parquet(src / "sp500_daily_2015_2020.parquet").filter(pl.col("symbol").is_in(DAILY))
    missing = set(DAILY) - set(daily["symbol"].unique())
    if missing:
        raise SystemExit(f"sample symbols missing from source: {sorted(missing)}")
    factor = pl.col("adj_close") / pl.col("close")
    daily = daily.select(
        "symbol",
        pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp"),
        *[(pl.col(c) * factor).alias(c) for c in ["open", "high", "low", "close"]],
        pl.col("volume").cast(pl.Float64),
    )
    for (sym,), g in daily.group_by("symbol"):
        _write(g.drop("symbol").sort("timestamp"), dst / "bars" / "1d" / f"{sym}.parquet")
    for name, tf in [("eurusd_1h_2017_2018", "1h"), ("index_future_1m_2006", "1m")]:
        df = pl.read_parquet(src / f"{name}.parquet")
        for (sym,), g in df.group_by("symbol"):
            g = g.select(
                pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                *[pl.col(c).cast(pl.Float64) for c in FLOAT],
            ).sort("timestamp")
            _write(g, dst / "bars" / tf / f"{sym}.parquet")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data"
    main(src, root / "slices" / "sample")
