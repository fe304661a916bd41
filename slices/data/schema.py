"""The bar-store schema (SLICES.md, contract 1) and the normalisation every writer goes through.

Store frame: columns exactly ``timestamp open high low close volume`` in that order;
``timestamp`` is ``Datetime("us", "UTC")`` strictly increasing, the others ``Float64``;
prices finite and > 0, ``low <= min(open, close)``, ``high >= max(open, close)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from slices.data.errors import DataError

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")
TIMEFRAME_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
COLUMNS: tuple[str, ...] = ("timestamp", *PRICE_COLUMNS, "volume")
TIMESTAMP_DTYPE = pl.Datetime(time_unit="us", time_zone="UTC")
SCHEMA: dict[str, pl.DataType] = {
    "timestamp": TIMESTAMP_DTYPE,
    **{c: pl.Float64() for c in (*PRICE_COLUMNS, "volume")},
}
# Relative tolerance for the OHLC ordering rule: multiplying o/h/l/c by the same adjustment
# factor can break an equality by one unit in the last place; that is not a data fault.
OHLC_RTOL = 1e-9

_SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-_=^]{0,31}$")


def check_symbol(symbol: str, where: str = "") -> str:
    """Return ``symbol`` upper-cased, or raise ``DataError`` if it is not a safe file stem.

    Allowed: letters, digits and ``. - _ = ^`` (``BRK-B``, ``^GSPC``, ``EURUSD=X``), at most
    32 characters, so that ``<root>/bars/<tf>/<SYMBOL>.parquet`` can never escape the store.
    """
    sym = symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        loc = f" in {where}" if where else ""
        raise DataError(f"invalid symbol {symbol!r}{loc}: use letters, digits and . - _ = ^")
    return sym


def check_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` if it is one of ``TIMEFRAMES``, else raise ``DataError``."""
    if timeframe not in TIMEFRAMES:
        raise DataError(f"unknown timeframe {timeframe!r}: use one of {' '.join(TIMEFRAMES)}")
    return timeframe


def empty_frame() -> pl.DataFrame:
    """An empty frame with the store schema."""
    return pl.DataFrame(schema=SCHEMA)


def cast_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Select the store columns in order and cast them to the store dtypes (no row changes).

    ``timestamp`` must already be a Datetime; naive values are taken as UTC and zoned ones are
    converted to UTC. Raises ``DataError`` if a column is missing.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}")
    ts = df.schema["timestamp"]
    tcol = pl.col("timestamp")
    if isinstance(ts, pl.Datetime):
        tcol = tcol.dt.replace_time_zone("UTC") if ts.time_zone is None else tcol.dt.convert_time_zone("UTC")
    elif isinstance(ts, pl.Date):
        tcol = tcol.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    else:
        raise DataError(f"timestamp column has type {ts}, expected a date or datetime")
    return df.select(
        tcol.dt.cast_time_unit("us").alias("timestamp"),
        *[pl.col(c).cast(pl.Float64, strict=False) for c in COLUMNS[1:]],
    )


def bad_row_mask() -> pl.Expr:
    """Expression: True where a row breaks the store's price rules.

    A price is bad when it is null, NaN, infinite or <= 0; the row is inconsistent when
    ``high < max(open, close)``, ``low > min(open, close)`` or ``high < low`` (beyond
    ``OHLC_RTOL``). Source: SLICES.md contract 1.
    """
    bad_price = pl.any_horizontal(
        [pl.col(c).is_null() | ~pl.col(c).is_finite() | (pl.col(c) <= 0) for c in PRICE_COLUMNS]
    )
    return bad_price.fill_null(True) | ohlc_inconsistent_mask().fill_null(False)


def ohlc_inconsistent_mask() -> pl.Expr:
    """Expression: True where ``high < max(open, close)``, ``low > min(open, close)`` or ``high < low``."""
    hi = pl.max_horizontal("open", "close")
    lo = pl.min_horizontal("open", "close")
    tol = OHLC_RTOL * pl.col("high").abs()
    return (
        (pl.col("high") < hi - tol)
        | (pl.col("low") > lo + tol)
        | (pl.col("high") < pl.col("low") - tol)
    )


@dataclass
class CleanResult:
    """Outcome of ``clean_for_store``: the store-ready frame and the warnings to print."""

    frame: pl.DataFrame
    warnings: list[str]


def _ts(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


def clean_for_store(df: pl.DataFrame, symbol: str, where: str) -> CleanResult:
    """Bring a frame to the store contract before it is written.

    Rules, in order (each applied change produces one warning naming ``where``, the symbol
    and the first timestamp concerned):

    - rows with a null timestamp: ``DataError``;
    - rows with a null/NaN/infinite/non-positive price, inconsistent OHLC or negative volume are
      dropped (``validate --data`` reports them in detail);
    - unsorted rows are sorted;
    - duplicate timestamps keep the last row (feeds re-send corrected bars; the
      shared S&P 500 file has such pairs, e.g. STI 2019-12-06);
    - null or NaN volume becomes 0.

    Raises ``DataError`` if nothing is left. Source: SLICES.md contracts 1 and 2.
    """
    df = cast_frame(df)
    warnings: list[str] = []
    if df.height == 0:
        raise DataError(f"{where}: {symbol}: no rows")
    if df["timestamp"].null_count():
        raise DataError(f"{where}: {symbol}: {df['timestamp'].null_count()} row(s) without a timestamp")
    drop = df.select((bad_row_mask() | (pl.col("volume") < 0).fill_null(False)).alias("b"))["b"]
    if drop.any():
        first = df.filter(drop)["timestamp"].min()
        warnings.append(
            f"{where}: {symbol}: dropped {int(drop.sum())} row(s) with non-positive/NaN prices, "
            f"inconsistent OHLC or negative volume (first {_ts(first)})"
        )
        df = df.filter(~drop)
        if df.height == 0:
            raise DataError(f"{where}: {symbol}: no valid rows left after dropping bad prices")
    if not df["timestamp"].is_sorted():
        back = df.filter(df["timestamp"].diff() < pl.duration(microseconds=0))["timestamp"][0]
        warnings.append(f"{where}: {symbol}: rows not sorted (first at {_ts(back)}); sorted")
        df = df.sort("timestamp", maintain_order=True)
    dup_mask = df["timestamp"].is_duplicated()
    if dup_mask.any():
        dups = df.filter(dup_mask)["timestamp"]
        warnings.append(
            f"{where}: {symbol}: {dups.n_unique()} duplicate timestamp(s) (first {_ts(dups[0])}); kept the last row"
        )
        df = df.unique(subset="timestamp", keep="last", maintain_order=True)
    nan_vol = df["volume"].is_null() | df["volume"].is_nan()
    if nan_vol.any():
        first = df.filter(nan_vol)["timestamp"][0]
        warnings.append(f"{where}: {symbol}: {int(nan_vol.sum())} missing volume(s) set to 0 (first {_ts(first)})")
        df = df.with_columns(pl.when(nan_vol).then(0.0).otherwise(pl.col("volume")).alias("volume"))
    return CleanResult(df, warnings)


def infer_timeframe(timestamps: pl.Series, where: str) -> str:
    """Infer the timeframe from the median spacing of sorted unique timestamps.

    The median spacing is matched to the nearest of ``TIMEFRAMES``; daily data (spacing of one
    or more days, weekends included) maps to ``1d``. Raises ``DataError`` when there are fewer
    than two bars or the spacing matches none (then pass ``--timeframe``).
    """
    ts = timestamps.drop_nulls().unique().sort()
    if ts.len() < 2:
        raise DataError(f"{where}: cannot infer the timeframe from fewer than 2 bars; pass --timeframe")
    med = ts.diff().drop_nulls().dt.total_seconds().median()
    if med >= 86400 * 0.9:
        return "1d"
    for tf, secs in TIMEFRAME_SECONDS.items():
        if abs(med - secs) <= 0.1 * secs:
            return tf
    raise DataError(f"{where}: median bar spacing {med:.0f}s matches no timeframe; pass --timeframe")
