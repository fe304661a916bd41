"""The bar-store schema (SLICES.md, contract 1) and the normalisation every writer goes through.

Store frame: columns exactly ``timestamp open high low close volume`` in that order;
``timestamp`` is ``Datetime("us", "UTC")`` strictly increasing, the others ``Float64``;
prices finite and > 0, ``low <= min(open, close)``, ``high >= max(open, close)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
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


def price_fault_mask() -> pl.Expr:
    """Expression: True where a row breaks contract 1's price rules: a price null, NaN,
    infinite or <= 0, or ``high < low``. Every write to the store checks it."""
    bad_price = pl.any_horizontal(
        [pl.col(c).is_null() | ~pl.col(c).is_finite() | (pl.col(c) <= 0) for c in PRICE_COLUMNS]
    )
    return bad_price.fill_null(True) | (pl.col("high") < pl.col("low")).fill_null(False)


def bad_row_mask() -> pl.Expr:
    """Expression: True where a provider row is dropped: ``price_fault_mask`` or inconsistent
    OHLC (``high < max(open, close)`` or ``low > min(open, close)`` beyond ``OHLC_RTOL``).
    Source: SLICES.md contract 1 (the data slice writes only consistent provider bars)."""
    return price_fault_mask() | ohlc_inconsistent_mask().fill_null(False)


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


# Shared definitions (SLICES.md): spacings matched within +-10 %, then day ranges.
SPACING_TIMEFRAMES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400}
DAY_RANGES: tuple[tuple[str, float, float], ...] = (("1d", 20 / 24, 4.0), ("1w", 4.0, 10.0), ("1mo", 25.0, 35.0))
# the spacing a timeframe stands for (a sparse symbol's gaps are measured against it)
NOMINAL_SECONDS: dict[str, int] = {**SPACING_TIMEFRAMES, "1d": 86400, "1w": 7 * 86400, "1mo": 30 * 86400}


def _spacing_text(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.4g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.4g} hours"
    if seconds >= 60:
        return f"{seconds / 60:.4g} minutes"
    return f"{seconds:.4g} seconds"


def _spacings(timestamps: pl.Series) -> pl.Series:
    """Seconds between consecutive sorted unique timestamps (Float64)."""
    ts = timestamps.drop_nulls().unique().sort()
    return (ts.diff().drop_nulls().dt.total_microseconds() / 1e6).cast(pl.Float64)


def _timeframe_of(spacings: pl.Series, where: str) -> str:
    if spacings.len() == 0:
        return "1d"
    med = float(spacings.median())
    for tf, secs in SPACING_TIMEFRAMES.items():
        if abs(med - secs) <= 0.1 * secs:
            return tf
    days = med / 86400
    for tf, lo, hi in DAY_RANGES:
        if (lo <= days <= hi) if tf != "1w" else (lo < days <= hi):
            return tf
    raise DataError(f"{where}: median bar spacing {_spacing_text(med)} matches no timeframe "
                    f"(pass bars of 1m 5m 15m 30m 1h 4h 1d 1w or 1mo spacing)")


def infer_timeframe(timestamps: pl.Series, where: str) -> str:
    """Timeframe of bars (SLICES.md shared definitions): the median spacing of the sorted unique
    timestamps, matched to the nearest of 1m 5m 15m 30m 1h 4h within +-10 %; 20 hours up to 4
    days is ``1d``, over 4 up to 10 days ``1w``, 25 to 35 days ``1mo``; a single bar is ``1d``.

    Returns one of those labels (the store holds only ``TIMEFRAMES``: see ``store_timeframe``).
    Raises ``DataError`` naming the spacing when it matches none.
    """
    return _timeframe_of(_spacings(timestamps), where)


def infer_timeframes(series: dict[str, pl.Series], where: dict[str, str],
                     sparse: dict[str, str] | None = None) -> dict[str, str]:
    """``infer_timeframe`` per symbol. A symbol whose own spacing matches no timeframe but is
    longer than the other symbols' timeframe (the shared S&P file's SNI: two daily bars 60 days
    apart) is sparse bars of that timeframe (the longest of the others' timeframes shorter than
    its spacing, when they differ) and is added to ``sparse`` (``{symbol: timeframe}``, for its
    gap warning); any other spacing that matches none is a ``DataError`` naming it."""
    out: dict[str, str] = {}
    odd: list[str] = []
    for sym, ts in series.items():
        try:
            out[sym] = infer_timeframe(ts, where[sym])
        except DataError:
            odd.append(sym)
    for sym in odd:
        med = float(_spacings(series[sym]).median())
        shorter = [tf for tf in set(out.values()) if NOMINAL_SECONDS[tf] < med]
        if not shorter:
            infer_timeframe(series[sym], where[sym])  # raises with the symbol's own spacing
        out[sym] = max(shorter, key=NOMINAL_SECONDS.__getitem__)
        if sparse is not None:
            sparse[sym] = out[sym]
    return out


def store_timeframe(inferred: str, given: str | None, where: str) -> str:
    """The store timeframe for bars whose spacing is ``inferred``: ``given`` (``--timeframe``)
    must agree with it, and it must be one the store holds. ``DataError`` otherwise."""
    if given is not None and given != inferred:
        raise DataError(f"{where}: the bars are {inferred}, not {given} (--timeframe)")
    if inferred not in TIMEFRAMES:
        raise DataError(f"{where}: {inferred} bars cannot be stored (the store holds {' '.join(TIMEFRAMES)})")
    return inferred


# Suspicious series (SLICES.md shared definitions).
SUB_PENNY = 0.01
MAX_CLOSE_RATIO = 5.0


def first_suspicious(low_price: np.ndarray, close: np.ndarray) -> tuple[int, str, int] | None:
    """The suspicious-series rule on one symbol's sorted bars.

    ``low_price``: the lowest of open/high/low/close per bar; ``close``: the closes. A bar is
    suspicious when a price is below 0.01 (a sub-penny placeholder quote) or its close is more
    than 5 times, or less than 1/5 of, the previous close (a bad quote or an unadjusted split;
    bars are split-adjusted). Returns (index of the first such bar, reason text, number of such
    bars) or None. Reason texts: ``sub-penny price 0.0063 (placeholder quote)``,
    ``close jumps x11,920.00 (bad quote or unadjusted split)``.
    """
    sub = low_price < SUB_PENNY
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.concatenate(([1.0], close[1:] / close[:-1]))
    jump = (ratio > MAX_CLOSE_RATIO) | (ratio < 1 / MAX_CLOSE_RATIO)
    hit = np.flatnonzero(sub | jump)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if sub[i]:
        return i, f"sub-penny price {fmt_price(float(low_price[i]))} (placeholder quote)", int(hit.size)
    r = float(ratio[i])
    shown = f"{r:,.2f}" if r >= 0.01 else np.format_float_positional(r, precision=3, fractional=False, trim="-")
    return i, f"close jumps x{shown} (bad quote or unadjusted split)", int(hit.size)


def fmt_price(x: float) -> str:
    """A price at its own precision, no exponent and no float noise: a value that is exactly
    a 32-bit float (many feeds store those) prints as that float's shortest form
    (``0.006000000052154064`` -> ``0.006``), any other with at most 8 significant digits
    (``0.9999999999999999`` -> ``1``)."""
    if x is None:
        return "null"
    if not math.isfinite(x):
        return str(x)
    if float(np.float32(x)) == x:
        return np.format_float_positional(np.float32(x), trim="-")
    return np.format_float_positional(float(f"{x:.8g}"), trim="-")


def fmt_time(value, daily: bool | None = None) -> str:
    """ISO-8601 UTC: ``2020-01-10`` for daily bars, ``2020-01-10T14:30:00Z`` otherwise.

    ``value``: a datetime or int microseconds since the epoch. ``daily=None``: a date when the
    time is 00:00:00."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)):
        value = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(value))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    if daily is None:
        daily = (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)
    return value.strftime("%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%SZ")
