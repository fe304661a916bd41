"""Bar loading and validation for the backtest slice (this slice's own copy).

Reads bars through the contracts of SLICES.md:

* the bar store ``<root>/bars/<timeframe>/<SYMBOL>.parquet`` (contract 1), root from
  ``--store``, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``; a symbol the store
  lacks is read from the embedded sample ``slices/sample/`` with a one-line note;
* direct files given with ``--data`` (contract 2): CSV or Parquet, per-symbol or long format.

Everything is returned as one long frame with columns
``symbol`` (Utf8), ``timestamp`` (Datetime(us, UTC)), ``open high low close volume`` (Float64),
sorted by symbol then timestamp, after validation (see :func:`validate`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
PRICES = ("open", "high", "low", "close")
COLUMNS = ("timestamp", *PRICES, "volume")
SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
_TIME_NAMES = ("date", "datetime", "timestamp", "time")
_INDEX_NAMES = ("", "unnamed: 0", "__index_level_0__", "index")


class DataError(Exception):
    """Bad input data or arguments: the CLI prints the message on one line and exits with code 2."""


@dataclass
class LoadReport:
    """What loading found that is worth telling the user.

    ``notes``: informational lines (e.g. the embedded-sample fallback).
    ``warnings``: suspicious but usable data (gaps, zero volume, OHLC inconsistency,
    symbols excluded because their data is invalid).
    """

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def store_root(store: str | os.PathLike | None) -> Path:
    """Resolve the bar-store root: ``store`` if given, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``."""
    if store:
        return Path(store).expanduser()
    env = os.environ.get("GPT_TRADER_STORE")
    return Path(env).expanduser() if env else Path.home() / ".gpt-trader" / "store"


def _symbols_in(root: Path, timeframe: str) -> list[str]:
    folder = root / "bars" / timeframe
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


def parse_when(text: str | None, what: str, end: bool = False) -> datetime | None:
    """Parse ``--start``/``--end`` (``YYYY-MM-DD`` or ISO datetime) as a UTC datetime.

    A bare date as ``end`` means the end of that day (inclusive). Raises DataError if unparsable.
    """
    if not text:
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            out = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
            return out + timedelta(days=1) - timedelta(microseconds=1) if end else out
        out = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{what}: cannot parse {text!r} as a date (use YYYY-MM-DD)") from None
    return out.replace(tzinfo=timezone.utc) if out.tzinfo is None else out.astimezone(timezone.utc)


def _read_file(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pl.read_csv(path, try_parse_dates=True, infer_schema_length=10_000)
    except Exception as exc:  # polars raises many types for unreadable files
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _to_utc(col: pl.Series, source: str) -> pl.Series:
    dtype = col.dtype
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        col = col.cast(pl.Datetime("us", dtype.time_zone))
        return col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
    if dtype == pl.String:
        try:
            return _to_utc(col.str.to_datetime(time_unit="us"), source)
        except Exception:
            raise DataError(f"{source}: cannot parse time column {col.name!r} (e.g. {col[0]!r})") from None
    if dtype.is_integer():  # epoch: seconds, milliseconds or microseconds by magnitude
        mx = col.abs().max() or 0
        unit = 1_000_000 if mx < 1e11 else 1_000 if mx < 1e14 else 1
        return (col.cast(pl.Int64) * unit).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    raise DataError(f"{source}: time column {col.name!r} has unsupported type {dtype}")


def normalise(raw: pl.DataFrame, source: str, symbol: str | None, adjust: bool, report: LoadReport) -> pl.DataFrame:
    """Map a raw bar table (any contract-2 layout) to the long schema.

    Parameters: ``raw`` as read from a file; ``source`` names it in errors; ``symbol`` is used
    when the table has no ``symbol`` column (per-symbol file); ``adjust`` scales OHLC by
    ``adj_close / close`` when an adj-close column exists.
    Returns columns ``symbol timestamp open high low close volume`` (unsorted, unvalidated).
    Raises DataError when the time column or a price column is missing.
    """
    lower = {c.strip().lower().replace(" ", "_"): c for c in raw.columns}
    time_col = next((c for c in raw.columns if c.strip().lower() in _TIME_NAMES), None)
    if time_col is None and raw.columns and raw.columns[0].strip().lower() in _INDEX_NAMES:
        time_col = raw.columns[0]
    if time_col is None and "__index_level_0__" in raw.columns:  # pandas.to_parquet puts its index last
        time_col = "__index_level_0__"
    if time_col is None:
        raise DataError(f"{source}: no time column (expected one named date, datetime, timestamp or time)")
    missing = [p for p in PRICES if p not in lower]
    if missing:
        raise DataError(f"{source}: missing price column(s) {', '.join(missing)}")
    sym_col = lower.get("symbol") or lower.get("ticker")
    if sym_col is None and symbol is None:
        raise DataError(f"{source}: no symbol column and no symbol given")
    exprs = {p: pl.col(lower[p]).cast(pl.Float64) for p in PRICES}
    if "volume" in lower:
        vol = pl.col(lower["volume"]).cast(pl.Float64)
    else:
        report.warnings.append(f"{source}: no volume column; volume set to 0")
        vol = pl.lit(0.0)
    adj = lower.get("adj_close") or lower.get("adjclose") or lower.get("adjusted_close")
    if adj is not None and adjust:
        close = pl.col(lower["close"]).cast(pl.Float64)
        # a non-positive close keeps its raw prices so that validation reports it as such
        factor = pl.when(close > 0).then(pl.col(adj).cast(pl.Float64) / close).otherwise(1.0)
        exprs = {p: e * factor for p, e in exprs.items()}
    sym = pl.col(sym_col).cast(pl.String).str.to_uppercase() if sym_col else pl.lit(symbol)
    try:
        out = raw.select(
            sym.alias("symbol"),
            pl.lit(None).alias("timestamp"),
            *[e.alias(p) for p, e in exprs.items()],
            vol.alias("volume"),
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{source}: non-numeric price or volume column ({str(exc).splitlines()[0]})") from None
    out = out.with_columns(_to_utc(raw[time_col], source).alias("timestamp"))
    if sym_col and out["symbol"].null_count():
        ts = out.filter(pl.col("symbol").is_null())["timestamp"][0]
        raise DataError(f"{source}: empty symbol cell in column {sym_col!r} at {_fmt_ts(ts)}")
    return out


def _fmt_ts(ts: datetime | None) -> str:
    if ts is None:
        return "?"
    return ts.strftime("%Y-%m-%d") if (ts.hour, ts.minute, ts.second) == (0, 0, 0) else ts.strftime("%Y-%m-%d %H:%M")


def validate(df: pl.DataFrame, source: str) -> dict[str, str]:
    """Find each symbol's first hard data error.

    Errors (the data cannot be simulated): NaN/null prices, non-positive prices, high < low,
    duplicate timestamps, unsorted timestamps. Input rows must be in file order (not sorted)
    so that unsorted data is detectable. Returns ``{symbol: message}`` naming the source, the
    symbol and the first offending timestamp; empty when all is well.
    """
    problems: dict[str, str] = {}
    checks = [
        ("NaN or missing price", pl.any_horizontal([pl.col(p).is_null() | pl.col(p).is_nan() for p in PRICES])),
        ("missing timestamp", pl.col("timestamp").is_null()),
        ("non-positive price", pl.any_horizontal([pl.col(p) <= 0 for p in PRICES])),
        ("high below low", pl.col("high") < pl.col("low")),
        ("duplicate timestamp", pl.struct("symbol", "timestamp").is_duplicated()),
        ("unsorted timestamps", pl.col("timestamp").diff().over("symbol") < pl.duration(microseconds=0)),
    ]
    for label, mask in checks:
        bad = df.filter(mask).group_by("symbol", maintain_order=True).agg(pl.col("timestamp").first())
        for sym, ts in bad.iter_rows():
            problems.setdefault(sym, f"{source}: {sym} {_fmt_ts(ts)}: {label}")
    return problems


JUMP_FACTOR = 5.0


def suspicious(df: pl.DataFrame, source: str) -> list[str]:
    """Warnings for usable but suspicious bars in a sorted long frame, most serious kind first:
    extreme jumps (a close more than 5x or less than 1/5 of the previous close: an unadjusted
    split or a bad quote), sub-penny prices (< 0.01, usually placeholder quotes), gaps,
    OHLC inconsistency (open/close outside [low, high]) and zero-volume bars.

    A gap is a time step longer than both 5 x the symbol's median step and 4 calendar days
    (longer than a long weekend or a holiday). One line per symbol and kind.
    """
    incons = (pl.col("high") < pl.max_horizontal("open", "close")) | (pl.col("low") > pl.min_horizontal("open", "close"))
    step = pl.col("timestamp").diff().over("symbol")
    limit = pl.max_horizontal(step.median().over("symbol") * 5, pl.lit(timedelta(days=4)))
    ratio = (pl.col("close") / pl.col("close").shift(1)).over("symbol")
    flagged = df.with_columns(
        zero=pl.col("volume") == 0, incons=incons, gap=(step > limit).fill_null(False), step=step,
        subpenny=pl.col("low") < 0.01, ratio=ratio,
        jump=((ratio > JUMP_FACTOR) | (ratio < 1 / JUMP_FACTOR)).fill_null(False),
        prev=pl.col("timestamp").shift(1).over("symbol"),
    ).filter(pl.col("zero") | pl.col("incons") | pl.col("gap") | pl.col("subpenny") | pl.col("jump"))
    out: list[str] = []
    jumps = flagged.filter(pl.col("jump")).group_by("symbol", maintain_order=True).agg(
        pl.len(), pl.col("prev").first(), pl.col("timestamp").first(), pl.col("ratio").first())
    out += [f"{source}: {s}: {n} extreme price jump(s) (close x{r:,.4g}), first {_fmt_ts(a)} .. {_fmt_ts(b)}: "
            f"an unadjusted split or a bad quote distorts every result of this symbol" for s, n, a, b, r in jumps.iter_rows()]
    kinds = (
        ("subpenny", "bar(s) with a sub-penny price (< 0.01, likely a placeholder quote)"),
        ("incons", "bar(s) with open/close outside low..high"),
        ("zero", "zero-volume bar(s)"),
    )
    rows = {k: flagged.filter(pl.col(k)).group_by("symbol", maintain_order=True).agg(pl.len(), pl.col("timestamp").first())
            for k, _ in kinds}
    out += [f"{source}: {s}: {n} {kinds[0][1]}, first at {_fmt_ts(t)}" for s, n, t in rows["subpenny"].iter_rows()]
    gaps = flagged.filter(pl.col("gap")).group_by("symbol", maintain_order=True).agg(
        pl.len(), pl.col("prev").sort_by("step").last(), pl.col("timestamp").sort_by("step").last(), pl.col("step").max()
    )
    out += [
        f"{source}: {s}: {n} gap(s) in the bars, largest {_fmt_ts(a)} .. {_fmt_ts(b)} ({d.days} days)"
        for s, n, a, b, d in gaps.iter_rows()
    ]
    for kind, what in kinds[1:]:
        out += [f"{source}: {s}: {n} {what}, first at {_fmt_ts(t)}" for s, n, t in rows[kind].iter_rows()]
    return out


def load_bars(
    symbols: list[str] | None,
    timeframe: str = "1d",
    *,
    store: str | os.PathLike | None = None,
    data: list[str | os.PathLike] | None = None,
    start: str | None = None,
    end: str | None = None,
    adjust: bool = True,
) -> tuple[pl.DataFrame, LoadReport]:
    """Load and validate bars for a run.

    ``symbols``: upper-case tickers, or None for every symbol in the data (``--data`` files, else
    the store, else the embedded sample). ``timeframe``: one of ``1m 5m 15m 1h 1d`` (store and
    sample only). ``start``/``end``: inclusive bounds, ``YYYY-MM-DD`` or ISO datetimes (UTC).

    Returns ``(bars, report)``: ``bars`` is the long frame ``symbol timestamp open high low close
    volume`` sorted by symbol and timestamp. A symbol the user named whose data is invalid is a
    DataError; when symbols were not named, invalid symbols are excluded with a warning.
    Raises DataError for unknown timeframe or symbol, unreadable files, and empty results.
    """
    if timeframe not in TIMEFRAMES:
        raise DataError(f"--timeframe: unknown timeframe {timeframe!r} (one of {', '.join(TIMEFRAMES)})")
    report = LoadReport()
    named = symbols is not None
    wanted = [s.strip().upper() for s in symbols] if symbols else None
    if named and not wanted:
        raise DataError("--symbols: empty symbol list")
    frames: list[tuple[pl.DataFrame, str]] = []
    if data:
        for p in data:
            path = Path(p).expanduser()
            raw = _read_file(path)
            frame = normalise(raw, str(path), path.stem.upper(), adjust, report)
            if wanted:
                frame = frame.filter(pl.col("symbol").is_in(wanted))
            frames.append((frame, str(path)))
        have = set().union(*(f["symbol"].unique().to_list() for f, _ in frames))
        lost = [s for s in (wanted or []) if s not in have]
        if lost:
            raise DataError(f"--symbols: {', '.join(lost)} not found in {', '.join(str(p) for p in data)}")
    else:
        root = store_root(store)
        in_store = _symbols_in(root, timeframe)
        in_sample = _symbols_in(SAMPLE_ROOT, timeframe)
        if wanted is None:
            wanted = in_store or in_sample
            if not wanted:
                raise DataError(f"no {timeframe} bars in store {root} nor in the embedded sample")
        from_sample = [s for s in wanted if s not in in_store and s in in_sample]
        unknown = [s for s in wanted if s not in in_store and s not in in_sample]
        if unknown:
            raise DataError(
                f"--symbols: {', '.join(unknown)} has no {timeframe} bars in store {root} nor in the embedded sample "
                f"(fetch it with `python -m slices.data fetch {unknown[0]}` or pass --data FILE)"
            )
        if from_sample:
            listed = ", ".join(from_sample[:8]) + (f" and {len(from_sample) - 8} more" if len(from_sample) > 8 else "")
            report.notes.append(f"note: {listed} {timeframe} not in store {root}; using embedded sample")
        for s in wanted:
            path = (SAMPLE_ROOT if s in from_sample else root) / "bars" / timeframe / f"{s}.parquet"
            frames.append((normalise(_read_file(path), str(path), s, False, report), str(path)))

    problems: dict[str, str] = {}
    for frame, source in frames:
        problems.update(validate(frame, source))
    bars = pl.concat([f.with_columns(pl.lit(src).alias("_src")) for f, src in frames], how="vertical_relaxed")
    if len(frames) > 1:
        dups = bars.filter(pl.struct("symbol", "timestamp").is_duplicated()).group_by("symbol", maintain_order=True).agg(
            pl.col("timestamp").first(), pl.col("_src").unique(maintain_order=True))
        for sym, ts, srcs in dups.iter_rows():
            problems.setdefault(sym, f"{' and '.join(srcs)}: {sym} {_fmt_ts(ts)}: the same bar appears in more than one --data file")
    bars = bars.drop("_src")
    if problems:
        if named or set(problems) >= set(bars["symbol"].unique().to_list()):
            raise DataError(next(iter(problems.values())))
        for msg in problems.values():
            report.warnings.append(f"{msg}; symbol excluded")
        bars = bars.filter(~pl.col("symbol").is_in(list(problems)))
    lo, hi = parse_when(start, "--start"), parse_when(end, "--end", end=True)
    if lo and hi and lo > hi:
        raise DataError(f"--start {start} is after --end {end}")
    if lo:
        bars = bars.filter(pl.col("timestamp") >= lo)
    if hi:
        bars = bars.filter(pl.col("timestamp") <= hi)
    if bars.height == 0:
        span = f" between {start or 'the start'} and {end or 'the end'}" if (start or end) else ""
        raise DataError(f"no bars to test{span} ({', '.join(str(p) for p in data) if data else 'store/sample'})")
    bars = bars.sort("symbol", "timestamp")
    report.warnings.extend(suspicious(bars, "data" if data else "store"))
    return bars, report
