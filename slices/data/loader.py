"""Read direct bar files (SLICES.md, contract 2) into per-symbol frames with the store columns.

The loader only parses and normalises column names, types and time zones; it does not drop,
sort or de-duplicate rows. ``validate --data`` reports the faults of the raw rows, and
``schema.clean_for_store`` decides what may enter the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from slices.data.errors import DataError
from slices.data.schema import COLUMNS, PRICE_COLUMNS, cast_frame, check_symbol

TIME_NAMES = ("date", "datetime", "timestamp", "time")
INDEX_NAMES = ("", "unnamed: 0", "__index_level_0__")
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LoadedSymbol:
    """One symbol read from a file: ``frame`` has the store columns (raw order, raw faults)."""

    symbol: str
    frame: pl.DataFrame
    source: str
    adjusted: bool | None
    warnings: list[str] = field(default_factory=list)


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def _read_raw(path: Path) -> pl.DataFrame:
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported extension {path.suffix!r} (use .csv, .parquet or .pq)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if kind == "csv":
            return pl.read_csv(path, infer_schema_length=10000)
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises many types for unreadable input
        raise DataError(f"{path}: unreadable {kind} file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None


def _time_column(df: pl.DataFrame, where: str) -> str:
    for col in df.columns:
        if col.strip().lower() in TIME_NAMES:
            return col
    if df.columns and df.columns[0].strip().lower() in INDEX_NAMES:
        return df.columns[0]
    raise DataError(f"{where}: no time column (expected date, datetime, timestamp or time)")


def _parse_time(series: pl.Series, where: str) -> pl.Series:
    if series.dtype == pl.String:
        try:
            series = series.str.to_datetime(time_unit="us", strict=True)
        except Exception:
            bad = series.head(1).to_list()
            raise DataError(f"{where}: time column {series.name!r} is not parseable as dates (e.g. {bad[0]!r})") from None
    if not isinstance(series.dtype, (pl.Datetime, pl.Date)):
        raise DataError(f"{where}: time column {series.name!r} has type {series.dtype}, expected dates")
    return series


def read_bar_file(path: str | Path, adjust: bool = True) -> list[LoadedSymbol]:
    """Read one CSV or Parquet bar file into one ``LoadedSymbol`` per symbol.

    Rules (SLICES.md contract 2): the symbol is the upper-cased file stem unless a ``symbol``
    column (any case) makes it long format; the time column is the first named
    date/datetime/timestamp/time or an unnamed pandas index; dates become 00:00 UTC, naive
    datetimes are UTC, zoned ones are converted; OHLCV names in any case; a missing volume
    becomes 0 with a warning; with an ``adj_close``/``Adj Close`` column and ``adjust``,
    open/high/low/close are multiplied by ``adj_close / close``.

    Raises ``DataError`` (naming the file) for a missing/unreadable file, no time column,
    a missing price column or empty data.
    """
    path = Path(path)
    where = str(path)
    raw = _read_raw(path)
    if raw.height == 0:
        raise DataError(f"{where}: empty data")
    tcol = _time_column(raw, where)
    by_norm: dict[str, str] = {}
    for col in raw.columns:
        by_norm.setdefault(_norm(col), col)
    missing = [c for c in PRICE_COLUMNS if c not in by_norm]
    if missing:
        raise DataError(f"{where}: missing price column(s) {', '.join(missing)}")
    warnings: list[str] = []
    exprs = [_parse_time(raw[tcol], where).alias("timestamp")]
    exprs += [raw[by_norm[c]].cast(pl.Float64, strict=False).alias(c) for c in PRICE_COLUMNS]
    if "volume" in by_norm:
        exprs.append(raw[by_norm["volume"]].cast(pl.Float64, strict=False).alias("volume"))
    else:
        exprs.append(pl.Series("volume", [0.0] * raw.height, dtype=pl.Float64))
        warnings.append(f"{where}: no volume column; volume set to 0")
    adj_name = by_norm.get("adj_close")
    adjusted: bool | None = None
    if adj_name is not None and adjust:
        exprs.append(raw[adj_name].cast(pl.Float64, strict=False).alias("__adj"))
        adjusted = True
    elif adj_name is not None:
        adjusted = False
    sym_name = by_norm.get("symbol")
    if sym_name is not None:
        exprs.append(raw[sym_name].cast(pl.String).alias("__symbol"))
    df = pl.DataFrame(exprs)
    if "__adj" in df.columns:
        factor = pl.col("__adj") / pl.col("close")
        df = df.with_columns([(pl.col(c) * factor).alias(c) for c in PRICE_COLUMNS]).drop("__adj")
    df = df.with_columns(cast_frame(df.select(COLUMNS))["timestamp"])
    if sym_name is None:
        symbol = check_symbol(path.stem, where)
        return [LoadedSymbol(symbol, df.select(COLUMNS), where, adjusted, warnings)]
    if df["__symbol"].null_count():
        raise DataError(f"{where}: {df['__symbol'].null_count()} row(s) without a symbol")
    out = []
    for (sym,), part in df.partition_by("__symbol", as_dict=True, maintain_order=True).items():
        out.append(LoadedSymbol(check_symbol(sym, where), part.select(COLUMNS), where, adjusted, list(warnings)))
    return out
