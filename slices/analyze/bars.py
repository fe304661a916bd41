"""Bar loading for the analyze slice (its own copy; SLICES.md contracts 1 and 2).

Bars are returned as a polars DataFrame with exactly the bar-store schema:
``timestamp`` Datetime(us, UTC) strictly increasing, ``open high low close volume`` Float64.

Sources, first that applies for each symbol:

1. ``--data PATH`` files (contract 2), when any are given: the symbol must be in them;
2. the bar store ``<root>/bars/<timeframe>/<SYMBOL>.parquet`` (contract 1), root from
   ``--store``, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``;
3. the embedded sample ``slices/sample/`` with one ``note:`` line on stderr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from slices.analyze.errors import AnalyzeError, note, warn

SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_TIME_NAMES = ("date", "datetime", "timestamp", "time")
_INDEX_NAMES = ("", "unnamed: 0", "__index_level_0__")
_SCHEMA = {
    "timestamp": pl.Datetime("us", "UTC"),
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


def store_root(store: str | os.PathLike | None) -> Path:
    """Return the bar-store root: ``store``, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``."""
    if store:
        return Path(store).expanduser()
    env = os.environ.get("GPT_TRADER_STORE")
    if env:
        return Path(env).expanduser()
    return Path("~/.gpt-trader/store").expanduser()


def parse_time_bound(text: str | None, *, end: bool) -> datetime | None:
    """Parse a ``--start``/``--end`` value (ISO date or datetime) to an aware UTC datetime.

    A date-only ``--end`` is inclusive: it becomes the start of the next day (exclusive bound).
    Raises AnalyzeError on unparsable text.
    """
    if text is None or text == "":
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            value = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
            return value + timedelta(days=1) if end else value
        value = datetime.fromisoformat(text)
    except ValueError:
        raise AnalyzeError(
            f"cannot parse {'--end' if end else '--start'} {text!r} (use YYYY-MM-DD or ISO datetime)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value + timedelta(microseconds=1) if end else value


@dataclass
class BarRequest:
    """What to load: store root option, direct files, time range, timeframe, adjustment."""

    store: str | None = None
    data: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    timeframe: str = "1d"
    adjust: bool = True
    _data_cache: dict | None = field(default=None, repr=False, compare=False)


def _time_column(columns: list[str], path: Path) -> str:
    for name in columns:
        if name.lower() in _TIME_NAMES:
            return name
    if columns and columns[0].strip().lower() in _INDEX_NAMES:
        return columns[0]
    raise AnalyzeError(f"{path}: no time column (expected date, datetime, timestamp or time)")


def _to_utc(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        col = col.dt.cast_time_unit("us")
        if dtype.time_zone is None:
            return col.dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC")
    raise TypeError(dtype)


def _read_file(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if not path.exists():
        raise AnalyzeError(f"{path}: file not found")
    try:
        if suffix == ".csv":
            return pl.read_csv(path, try_parse_dates=True, infer_schema_length=10000)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except Exception as exc:  # unreadable file: report in one line
        raise AnalyzeError(
            f"{path}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    raise AnalyzeError(f"{path}: unsupported extension {suffix!r} (use .csv, .parquet or .pq)")


def normalise_frame(raw: pl.DataFrame, path: Path, default_symbol: str | None) -> dict[str, pl.DataFrame]:
    """Normalise a direct bar file (contract 2) to ``{SYMBOL: bars}`` without validating prices.

    Columns are matched case-insensitively; an ``adj_close`` / ``Adj Close`` column is kept as
    ``__adj`` for :func:`_apply_adjustment`. Missing volume becomes 0 (with a warning).
    Raises AnalyzeError for a missing time or price column or empty data.
    """
    if raw.height == 0:
        raise AnalyzeError(f"{path}: empty data")
    tcol = _time_column(raw.columns, path)
    lower = {c.lower().replace(" ", "_"): c for c in raw.columns if c != tcol}
    dtype = raw.schema[tcol]
    if dtype == pl.String:
        try:
            parsed = raw.select(pl.col(tcol).str.to_datetime(time_unit="us", strict=True))
        except Exception:
            raise AnalyzeError(f"{path}: cannot parse time column {tcol!r}") from None
        raw = raw.with_columns(parsed.to_series().alias(tcol))
        dtype = raw.schema[tcol]
    if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise AnalyzeError(f"{path}: time column {tcol!r} has type {dtype}, not a date or datetime")
    exprs = [_to_utc(pl.col(tcol), dtype).alias("timestamp")]
    for name in PRICE_COLUMNS:
        if name not in lower:
            raise AnalyzeError(f"{path}: missing price column {name!r}")
        exprs.append(pl.col(lower[name]).cast(pl.Float64).alias(name))
    if "volume" in lower:
        exprs.append(pl.col(lower["volume"]).cast(pl.Float64).alias("volume"))
    else:
        warn(f"{path}: no volume column; volume set to 0")
        exprs.append(pl.lit(0.0).alias("volume"))
    adj_name = lower.get("adj_close") or lower.get("adjclose")
    if adj_name is not None:
        exprs.append(pl.col(adj_name).cast(pl.Float64).alias("__adj"))
    sym_name = lower.get("symbol")
    if sym_name is not None:
        exprs.append(pl.col(sym_name).cast(pl.String).str.to_uppercase().alias("__symbol"))
    frame = raw.select(exprs)
    if sym_name is None:
        frame = frame.with_columns(pl.lit(default_symbol).alias("__symbol"))
    out: dict[str, pl.DataFrame] = {}
    for (sym,), part in frame.partition_by("__symbol", as_dict=True, maintain_order=True).items():
        out[str(sym)] = part.drop("__symbol")
    return out


def _apply_adjustment(frame: pl.DataFrame, where: Path, symbol: str, adjust: bool) -> pl.DataFrame:
    """Scale OHLC by ``adj_close / close`` (contract 2) after checking the raw prices."""
    if "__adj" not in frame.columns:
        return frame
    if frame.height:
        _check_prices(frame, where, symbol, ("open", "high", "low", "close", "__adj"))
    if adjust:
        ratio = pl.col("__adj") / pl.col("close")
        frame = frame.with_columns([(pl.col(c) * ratio).alias(c) for c in PRICE_COLUMNS])
    return frame.drop("__adj")


def _first_ts(frame: pl.DataFrame, mask: pl.Series) -> str:
    ts = frame.filter(mask)["timestamp"][0]
    return ts.isoformat() if ts is not None else "null"


def _check_prices(frame: pl.DataFrame, where: Path | str, symbol: str, columns=PRICE_COLUMNS) -> None:
    for name in columns:
        col = frame[name]
        bad = col.is_null() | col.is_nan() | (col <= 0) | col.is_infinite()
        if bad.any():
            label = "adj_close" if name == "__adj" else name
            raise AnalyzeError(f"{where}: {symbol}: NaN or non-positive {label} at {_first_ts(frame, bad)}")


def validate_bars(frame: pl.DataFrame, where: Path | str, symbol: str) -> pl.DataFrame:
    """Check bars against contract 1 and return them in the exact schema.

    Errors (AnalyzeError naming ``where``, the symbol and the first offending timestamp): empty
    data, null/duplicate/unsorted timestamps, NaN or non-positive prices, high < low.
    Warnings: low above min(open, close) or high below max(open, close), negative volume.
    """
    if frame.height == 0:
        raise AnalyzeError(f"{where}: {symbol}: empty data (no bars in the requested range)")
    frame = frame.select([pl.col(c).cast(t) for c, t in _SCHEMA.items()])
    ts = frame["timestamp"]
    if ts.null_count():
        raise AnalyzeError(f"{where}: {symbol}: null timestamp")
    diff = ts.diff().dt.total_microseconds()
    if (diff == 0).any():
        raise AnalyzeError(f"{where}: {symbol}: duplicate timestamp at {_first_ts(frame, diff == 0)}")
    if (diff < 0).any():
        raise AnalyzeError(f"{where}: {symbol}: unsorted timestamps at {_first_ts(frame, diff < 0)}")
    _check_prices(frame, where, symbol)
    bad = frame["high"] < frame["low"]
    if bad.any():
        raise AnalyzeError(f"{where}: {symbol}: high < low at {_first_ts(frame, bad)}")
    odd = frame.select(
        (pl.col("low") > pl.min_horizontal("open", "close")) | (pl.col("high") < pl.max_horizontal("open", "close"))
    ).to_series()
    if odd.any():
        warn(
            f"{where}: {symbol}: {int(odd.sum())} bars with open/close outside high-low, first at {_first_ts(frame, odd)}"
        )
    vol = frame["volume"]
    if (vol.is_nan() | (vol < 0)).any():
        warn(f"{where}: {symbol}: NaN or negative volume, first at {_first_ts(frame, vol.is_nan() | (vol < 0))}")
    return frame


def _in_range(frame: pl.DataFrame, req: BarRequest, where: Path, symbol: str) -> pl.DataFrame:
    """The bars within ``--start``/``--end``; AnalyzeError naming the span held when none are left."""
    start = parse_time_bound(req.start, end=False)
    end = parse_time_bound(req.end, end=True)
    out = frame
    if start is not None:
        out = out.filter(pl.col("timestamp") >= start)
    if end is not None:
        out = out.filter(pl.col("timestamp") < end)
    if out.height == 0 and frame.height > 0:
        first, last = frame["timestamp"].min(), frame["timestamp"].max()
        raise AnalyzeError(
            f"{where}: {symbol}: no bars between --start {req.start or '-'} and --end {req.end or '-'} "
            f"(it holds {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M})"
        )
    return out


def _data_frames(req: BarRequest) -> dict[str, tuple[Path, pl.DataFrame]]:
    """``{SYMBOL: (file, frame)}`` of the ``--data`` files, read once per request."""
    if req._data_cache is not None:
        return req._data_cache
    out: dict[str, tuple[Path, pl.DataFrame]] = {}
    for item in req.data:
        path = Path(item).expanduser()
        raw = _read_file(path)
        for sym, frame in normalise_frame(raw, path, path.stem.upper()).items():
            if sym in out:
                raise AnalyzeError(f"{path}: {sym}: also in {out[sym][0]}")
            out[sym] = (path, frame)
    req._data_cache = out
    return out


def data_symbols(req: BarRequest) -> list[str]:
    """Symbols found in the ``--data`` files, in file order."""
    return list(_data_frames(req).keys())


def load_bars(symbols: list[str], req: BarRequest) -> dict[str, pl.DataFrame]:
    """Load and validate bars for ``symbols`` (upper-cased) as ``{SYMBOL: DataFrame}``.

    The DataFrame has the bar-store schema (see module docstring), restricted to
    ``[req.start, req.end]``. Raises AnalyzeError for an unknown timeframe, a symbol found
    nowhere, and any validation error of :func:`validate_bars`.
    """
    if req.timeframe not in TIMEFRAMES:
        raise AnalyzeError(f"unknown timeframe {req.timeframe!r} (use one of {', '.join(TIMEFRAMES)})")
    symbols = [s.upper() for s in symbols]
    out: dict[str, pl.DataFrame] = {}
    if req.data:
        files = _data_frames(req)
        for sym in symbols:
            if sym not in files:
                raise AnalyzeError(
                    f"{sym}: not in --data files ({', '.join(req.data)}); found {', '.join(list(files)[:10])}"
                )
            path, frame = files[sym]
            frame = _apply_adjustment(_in_range(frame, req, path, sym), path, sym, req.adjust)
            out[sym] = validate_bars(frame, path, sym)
        return out
    root = store_root(req.store)
    from_sample: list[str] = []
    for sym in symbols:
        path = root / "bars" / req.timeframe / f"{sym}.parquet"
        if not path.exists():
            sample = SAMPLE_ROOT / "bars" / req.timeframe / f"{sym}.parquet"
            if not sample.exists():
                raise AnalyzeError(f"{sym} {req.timeframe}: not in store {root} nor in the embedded sample")
            from_sample.append(sym)
            path = sample
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise AnalyzeError(f"{path}: cannot read ({type(exc).__name__})") from None
        missing = [c for c in BAR_COLUMNS if c not in frame.columns]
        if missing:
            raise AnalyzeError(f"{path}: {sym}: missing column(s) {', '.join(missing)}")
        out[sym] = validate_bars(_in_range(frame.select(BAR_COLUMNS), req, path, sym), path, sym)
    if from_sample:
        note(f"{' '.join(from_sample)} {req.timeframe} not in store {root}; using embedded sample")
    return out


def infer_timeframe(frame: pl.DataFrame) -> str:
    """Label of the median bar spacing: ``1d`` for a day or more, else minutes/hours (e.g. ``1h``)."""
    if frame.height < 2:
        return "1d"
    step = frame["timestamp"].diff().dt.total_seconds().median()
    if step is None or step >= 20 * 3600:
        return "1d"
    if step >= 3600:
        return f"{int(round(step / 3600))}h"
    return f"{max(1, int(round(step / 60)))}m"


def is_intraday(frame: pl.DataFrame) -> bool:
    """True when the median bar spacing is under 20 hours."""
    return infer_timeframe(frame) != "1d"


def periods_per_year(frame: pl.DataFrame) -> float:
    """Bars per year used to annualise: 252 sessions times the median number of bars per session date."""
    if not is_intraday(frame):
        return 252.0
    per_day = frame.group_by(pl.col("timestamp").dt.date()).len()["len"].median()
    return 252.0 * float(per_day or 1)
