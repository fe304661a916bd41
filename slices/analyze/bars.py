"""Bar loading for the analyze slice (its own copy; SLICES.md contracts 1 and 2).

Bars are returned per symbol as a polars DataFrame with exactly the bar-store schema:
``timestamp`` Datetime(us, UTC) strictly increasing, ``open high low close volume`` Float64.

Sources:

1. ``--data PATH`` files (contract 2), when any are given: the only source;
2. else the bar store ``<root>/bars/<timeframe>/<SYMBOL>.parquet`` (contract 1). A store the user
   names (``--store`` or ``$GPT_TRADER_STORE``) must exist and is the only source; only the
   default store ``~/.gpt-trader/store`` falls back to the embedded sample ``slices/sample/``
   for the symbols it lacks, with one ``note:`` line on stderr.

Every source goes through the same checks (contract 2 rules 9-14, on the rows within
``--start``/``--end``): errors name the file, the symbol and the first offending bar; when the
user named no symbol, a symbol that fails a check is excluded with a ``warning: ...; symbol
excluded`` line and the others are used. The timeframe follows SLICES.md "Shared definitions".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import polars as pl

from slices.analyze.errors import AnalyzeError, note, warn, warn_grouped

SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
DEFAULT_STORE = "~/.gpt-trader/store"
STORE_TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1mo")
PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-_=^]{0,31}$")
_TIME_NAMES = ("date", "datetime", "timestamp", "time")
_INDEX_NAMES = ("__index_level_0__", "index", "unnamed: 0", "unnamed:_0", "")
_ALIASES = {"adjclose": "adj_close", "adj_close": "adj_close", "adjusted_close": "adj_close", "ticker": "symbol"}
_MEANINGFUL = (*_TIME_NAMES, *PRICE_COLUMNS, "volume", "adj_close", "symbol")
_INTRADAY_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400}
_SCHEMA = {
    "timestamp": pl.Datetime("us", "UTC"),
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
GAP_FACTOR = 5  # a spacing longer than 5 x the median spacing and GAP_MIN_DAYS is a gap (rule 12)
GAP_MIN_DAYS = 4
_NOMINAL_SECONDS = {**_INTRADAY_SECONDS, "1d": 86400, "1w": 7 * 86400, "1mo": 30 * 86400}  # a sparse symbol's step
# ISO text at 00:00 local time with an explicit offset (yfinance's daily bars written by pandas)
_MIDNIGHT_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]00:00(:00(\.0*)?)?([+-]\d{2}(:?\d{2})?|[Zz])$"


# --------------------------------------------------------------------------------------------
# symbols, store root, time bounds


def check_symbol(text: str) -> str:
    """Strip and upper-case a symbol and check it against SLICES.md's symbol rule.

    Returns the normalised symbol. Raises AnalyzeError naming it when it does not match
    ``^[A-Z0-9^][A-Z0-9.\\-_=^]{0,31}$`` (so a symbol can never escape a folder as a file name).
    """
    sym = str(text).strip().upper()
    if not SYMBOL_RE.match(sym):
        raise AnalyzeError(
            f"invalid symbol {text!r} (letters, digits and . - _ = ^, starting with a letter, digit or ^, "
            "at most 32 characters)"
        )
    return sym


def split_symbols(values) -> list[str]:
    """Symbols from positional arguments and ``--symbols`` values: split on commas, stripped,
    upper-cased and checked with :func:`check_symbol`; duplicates dropped, order kept."""
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            if part.strip():
                sym = check_symbol(part)
                if sym not in out:
                    out.append(sym)
    return out


def store_root(store: str | os.PathLike | None) -> Path:
    """Return the bar-store root: ``store``, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``."""
    if store:
        return Path(store).expanduser()
    env = os.environ.get("GPT_TRADER_STORE")
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_STORE).expanduser()


def parse_time_bound(text: str | None, *, end: bool) -> datetime | None:
    """Parse a ``--start``/``--end`` value (ISO date or datetime) to an aware UTC datetime.

    Returns an exclusive upper bound for ``end``: a date-only ``--end`` becomes the start of the
    next day, a datetime ``--end`` one microsecond after it (both inclusive as the user means).
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


def iso(ts: datetime | None) -> str:
    """ISO-8601 for people: ``2020-01-10`` at 00:00 UTC, else ``2020-01-10T14:30:00Z``."""
    if ts is None:
        return "null"
    ts = ts.astimezone(timezone.utc) if ts.tzinfo else ts
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "") + "Z"


@dataclass
class BarRequest:
    """What to load: store root option, direct files, time range, timeframe, adjustment, checks.

    ``timeframe`` None means: ``1d`` from the store, inferred from ``--data`` files.
    """

    store: str | None = None
    data: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    timeframe: str | None = None
    adjust: bool = True
    keep_suspicious: bool = False
    _raw: pl.DataFrame | None = field(default=None, repr=False, compare=False)


@dataclass
class Loaded:
    """Result of :func:`load`: ``bars`` ``{SYMBOL: frame}`` in request (or file) order, the
    run's ``timeframe`` and the ``excluded`` symbols with their reasons."""

    bars: dict[str, pl.DataFrame]
    timeframe: str
    excluded: dict[str, str]


# --------------------------------------------------------------------------------------------
# reading files (contract 2 rules 1-8)


def _normalise_name(name: str) -> str:
    key = re.sub(r"[ \-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


def _read_file(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".parquet", ".pq"):
        raise AnalyzeError(f"{path}: unsupported extension {suffix!r} (use .csv, .txt, .parquet or .pq)")
    if not path.is_file():
        raise AnalyzeError(f"{path}: file not found")
    try:
        if suffix in (".csv", ".txt"):
            return pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
        return pl.read_parquet(path)
    except pl.exceptions.NoDataError:
        raise AnalyzeError(f"{path}: no rows (empty file)") from None
    except Exception as exc:  # unreadable file: report in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise AnalyzeError(f"{path}: cannot read ({type(exc).__name__}: {first})") from None


def _pick_columns(columns: list[str], path: Path) -> dict[str, str]:
    """``{meaning: column}`` for time, prices, volume, adj_close and symbol (rules 2, 3)."""
    found: dict[str, str] = {}
    for col in columns:
        key = _normalise_name(col)
        if key in _MEANINGFUL:
            if key in found:
                raise AnalyzeError(f"{path}: columns {found[key]!r} and {col!r} both mean {key}")
            found[key] = col
    out = {k: v for k, v in found.items() if k not in _TIME_NAMES}
    time = next((found[n] for n in (_normalise_name(c) for c in columns) if n in _TIME_NAMES), None)
    if time is None:
        time = next((c for c in columns if c.strip().lower() in _INDEX_NAMES), None)
    if time is None:
        raise AnalyzeError(f"{path}: no time column (expected date, datetime, timestamp or time)")
    out["time"] = time
    missing = [c for c in PRICE_COLUMNS if c not in out]
    if missing:
        raise AnalyzeError(f"{path}: missing price column(s) {', '.join(missing)}")
    return out


def _first_bad(raw: pl.DataFrame, col: str, bad: pl.Series) -> str:
    value = raw[col].filter(bad)[0]
    return "an empty cell" if value is None or str(value).strip() == "" else repr(value)


def _parse_time(raw: pl.DataFrame, col: str, path: Path) -> pl.Series:
    """Rule 4: the time column as Datetime(us, UTC); AnalyzeError naming the first bad value.

    Zoned values (a zoned datetime, or ISO text with an offset) that are all 00:00 local time are
    dates: 00:00 UTC of that local date (yfinance writes daily bars as America/New_York midnight).
    """
    s = raw[col]
    dtype = s.dtype
    if dtype == pl.String:
        s = s.str.strip_chars()
        if s.null_count() == 0 and s.str.contains(r"^[+-]?\d+$").all():
            s = s.cast(pl.Int64, strict=False)
            dtype = pl.Int64
        elif s.null_count() == 0 and s.str.contains(_MIDNIGHT_WITH_OFFSET).all():
            s = s.str.slice(0, 10)
    if dtype == pl.Date:
        out = s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Datetime):
        out = s.dt.cast_time_unit("us")
        if dtype.time_zone is None or (out.dt.time() == time(0)).all():  # naive, or local midnights (dates)
            out = out.dt.replace_time_zone(None).dt.replace_time_zone("UTC")
        else:
            out = out.dt.convert_time_zone("UTC")
    elif dtype.is_integer():
        v = s.cast(pl.Int64)
        frame = pl.DataFrame({"v": v}).select(
            pl.when(pl.col("v").abs() < 10**11)
            .then(pl.col("v") * 1_000_000)
            .when(pl.col("v").abs() < 10**14)
            .then(pl.col("v") * 1_000)
            .when(pl.col("v").abs() < 10**17)
            .then(pl.col("v"))
            .otherwise(pl.col("v") // 1_000)
            .cast(pl.Datetime("us", "UTC"))
        )
        out = frame.to_series()
    elif dtype == pl.String:
        text = pl.col("s").str.replace(r"[Zz]$", "+00:00").str.replace("T", " ", literal=True)
        zoned = [
            text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
            for f in ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
        ]
        naive = [
            text.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
            for f in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
        ]
        out = pl.DataFrame({"s": s}).select(pl.coalesce([*zoned, *naive])).to_series()
    else:
        raise AnalyzeError(
            f"{path}: time column {col!r} has type {dtype} (first value {s[0]!r}), not a date, datetime, text or integer"
        )
    bad = out.is_null()
    if bad.any():
        raise AnalyzeError(f"{path}: time column {col!r}: cannot read {_first_bad(raw, col, bad)} as a time")
    return out.rename("timestamp")


def _numbers(s: pl.Series) -> pl.Series:
    """A price/volume column as Float64 with null for empty cells, null markers and text (rule 7)."""
    if s.dtype == pl.String:
        s = s.str.strip_chars().cast(pl.Float64, strict=False)
    elif s.dtype.is_numeric() or s.dtype == pl.Boolean:
        s = s.cast(pl.Float64)
    else:
        s = pl.Series(s.name, [None] * len(s), dtype=pl.Float64)
    return s.fill_nan(None)


def read_bar_file(path: Path, index: int) -> pl.DataFrame:
    """Read one ``--data`` file (contract 2 rules 1-8) into a long frame, not yet checked.

    Columns: ``symbol`` (str), ``timestamp`` Datetime(us, UTC), ``open high low close volume``
    Float64 with null where a cell is missing or not a number, ``adj`` (adj_close or null),
    ``file`` (``index``), ``row`` (row number in the file). Raises AnalyzeError for a bad
    extension, a missing or unreadable file, a missing time or price column, two columns with
    one meaning, a bad time cell, an empty or invalid symbol.
    """
    raw = _read_file(path)
    cols = _pick_columns(raw.columns, path)
    if raw.height == 0:
        raise AnalyzeError(f"{path}: no rows")
    ts = _parse_time(raw, cols["time"], path)
    data = {"timestamp": ts}
    for name in PRICE_COLUMNS:
        data[name] = _numbers(raw[cols[name]])
    if "volume" in cols:
        data["volume"] = _numbers(raw[cols["volume"]])
    else:
        warn(f"{path}: no volume column; volume set to 0")
        data["volume"] = pl.Series([0.0] * raw.height, dtype=pl.Float64)
    has_adj = "adj_close" in cols
    data["adj"] = _numbers(raw[cols["adj_close"]]) if has_adj else pl.Series([None] * raw.height, dtype=pl.Float64)
    if "symbol" in cols:
        sym = raw[cols["symbol"]].cast(pl.String).str.strip_chars().str.to_uppercase()
        empty = sym.is_null() | (sym == "")
        if empty.any():
            raise AnalyzeError(f"{path}: empty symbol cell at {iso(ts.filter(empty)[0])}")
        for value in sym.unique(maintain_order=True).to_list():
            if not SYMBOL_RE.match(value):
                raise AnalyzeError(f"{path}: invalid symbol {value!r} in column {cols['symbol']!r}")
    else:
        sym = pl.Series([check_file_symbol(path)] * raw.height, dtype=pl.String)
    frame = pl.DataFrame({"symbol": sym, **data})
    return frame.with_columns(
        pl.lit(index, dtype=pl.Int32).alias("file"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.lit(has_adj).alias("has_adj"),
    )


def check_file_symbol(path: Path) -> str:
    """The symbol of a one-symbol file: its upper-cased stem, checked (AnalyzeError naming the file)."""
    stem = path.stem.strip().upper()
    if not SYMBOL_RE.match(stem):
        raise AnalyzeError(f"{path}: invalid symbol {stem!r} from the file name (add a symbol column)")
    return stem


# --------------------------------------------------------------------------------------------
# checks (contract 2 rules 9-14)


def _range(frame: pl.DataFrame, req: BarRequest) -> pl.DataFrame:
    start = parse_time_bound(req.start, end=False)
    end = parse_time_bound(req.end, end=True)
    if start is not None:
        frame = frame.filter(pl.col("timestamp") >= start)
    if end is not None:
        frame = frame.filter(pl.col("timestamp") < end)
    return frame


_FAULTS = (
    "duplicate timestamp",
    "timestamps not increasing",
    "missing or non-numeric price",
    "infinite price",
    "non-positive price",
    "high < low",
    "negative volume",
    "missing or non-numeric adj_close",
    "non-positive adj_close",
)


def _row_faults(frame: pl.DataFrame, adjust: bool) -> pl.DataFrame:
    """Per row, the index into ``_FAULTS`` of its first rule-11 fault (null when the row is good)."""
    step = pl.col("timestamp").diff().over(["symbol", "file"])
    zero = pl.duration(microseconds=0)
    checks = [
        step == zero,
        step < zero,
        pl.any_horizontal([pl.col(c).is_null() for c in PRICE_COLUMNS]),
        pl.any_horizontal([pl.col(c).is_infinite() for c in PRICE_COLUMNS]),
        pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]),
        pl.col("high") < pl.col("low"),
        pl.col("volume") < 0,
    ]
    if adjust:
        checks += [
            pl.col("has_adj") & (pl.col("adj").is_null() | pl.col("adj").is_infinite()),
            pl.col("has_adj") & (pl.col("adj") <= 0),
        ]
    code = pl.when(checks[0]).then(pl.lit(0, dtype=pl.Int8))
    for i, check in enumerate(checks[1:], start=1):
        code = code.when(check).then(pl.lit(i, dtype=pl.Int8))
    return frame.with_columns(code.alias("fault"))


def _fault_text(row: dict) -> str:
    """The reason text of a rule-11 fault row (from :func:`_row_faults`)."""
    reason = _FAULTS[row["fault"]]
    if row["fault"] == 2:
        return f"{reason} ({', '.join(c for c in PRICE_COLUMNS if row[c] is None)})"
    if row["fault"] == 4:
        return f"{reason} ({', '.join(f'{c} {row[c]:g}' for c in PRICE_COLUMNS if row[c] <= 0)})"
    if row["fault"] == 5:
        return f"high {row['high']:g} < low {row['low']:g}"
    if row["fault"] == 6:
        return f"negative volume {row['volume']:g}"
    if row["fault"] == 8:
        return f"non-positive adj_close {row['adj']:g}"
    return reason


def _suspicious(frame: pl.DataFrame) -> pl.DataFrame:
    """Rule 13 on sorted, checked bars: ``sus`` (1 sub-penny price, 2 close jump, else null),
    ``lowest`` (lowest price of the bar) and ``ratio`` (close / previous close)."""
    lowest = pl.min_horizontal(*PRICE_COLUMNS)
    ratio = pl.col("close") / pl.col("close").shift(1).over("symbol")
    return frame.with_columns(
        pl.when(lowest < 0.01).then(1).when((ratio > 5) | (ratio < 0.2)).then(2).cast(pl.Int8).alias("sus"),
        lowest.alias("lowest"),
        ratio.alias("ratio"),
    )


def _suspicious_text(row: dict) -> str:
    """SLICES.md's reason text of a suspicious row (from :func:`_suspicious`)."""
    if row["sus"] == 1:
        return f"sub-penny price {row['lowest']:.4g} (placeholder quote)"
    r = row["ratio"]
    return f"close jumps x{r:,.2f} (bad quote or unadjusted split)" if r >= 1 else (
        f"close jumps x{r:.4g} (bad quote or unadjusted split)"
    )


def _first_per_symbol(frame: pl.DataFrame, column: str) -> dict[str, dict]:
    """``{symbol: row}`` of the first row (in frame order) where ``column`` is set."""
    hits = frame.filter(pl.col(column).is_not_null()).group_by("symbol", maintain_order=True).first()
    return {r["symbol"]: r for r in hits.iter_rows(named=True)}


def _checked(
    frame: pl.DataFrame, files: list[str], req: BarRequest, named: list[str] | None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Apply rules 9-14 to a long frame of one or more files; returns the good rows (sorted by
    symbol, timestamp; adjusted) and the excluded symbols ``{SYMBOL: reason}``.

    A named symbol (``named`` not None) that fails is an AnalyzeError; unnamed ones are excluded
    with a warning, and an AnalyzeError is raised when none is left.
    """
    symbols = named if named is not None else frame["symbol"].unique(maintain_order=True).to_list()
    inrange = _range(frame, req)
    excluded: dict[str, str] = {}

    def fail(sym: str, file_index: int, ts, reason: str) -> None:
        where = files[file_index] if file_index is not None else ", ".join(files)
        text = f"{where}: {sym} {iso(ts)}: {reason}" if ts is not None else f"{where}: {sym}: {reason}"
        if named is not None:
            raise AnalyzeError(text)
        excluded[sym] = text  # warned below, once we know some symbol is left

    present = set(inrange["symbol"].unique().to_list())
    for sym in symbols:
        if sym not in present:
            span = frame.filter(pl.col("symbol") == sym)["timestamp"]
            fail(
                sym,
                None,
                None,
                f"no rows between --start {req.start or '-'} and --end {req.end or '-'} "
                f"(it holds {iso(span.min())} .. {iso(span.max())})",
            )
    faults = _first_per_symbol(_row_faults(inrange, req.adjust), "fault")
    for sym in symbols:
        if sym in faults and sym not in excluded:
            row = faults[sym]
            fail(sym, row["file"], row["timestamp"], _fault_text(row))
    good = inrange.filter(~pl.col("symbol").is_in(list(excluded)))
    if req.adjust:
        ratio = pl.when(pl.col("has_adj")).then(pl.col("adj") / pl.col("close")).otherwise(1.0)
        good = good.with_columns([(pl.col(c) * ratio).alias(c) for c in PRICE_COLUMNS])
    good = good.sort("symbol", "timestamp", maintain_order=True)
    both = good.filter(
        (pl.col("timestamp") == pl.col("timestamp").shift(1)) & (pl.col("symbol") == pl.col("symbol").shift(1))
    )
    if both.height:  # rule 10: a timestamp in two files of one symbol
        r = both.row(0, named=True)
        other = good.filter((pl.col("symbol") == r["symbol"]) & (pl.col("timestamp") == r["timestamp"]))["file"]
        names = " and ".join(files[i] for i in other.unique(maintain_order=True).to_list())
        raise AnalyzeError(f"{r['symbol']} {iso(r['timestamp'])}: in both {names}")
    sus = _first_per_symbol(_suspicious(good), "sus")
    for sym in symbols:
        if sym in sus:
            row = sus[sym]
            reason = _suspicious_text(row)
            if req.keep_suspicious:
                warn(f"{files[row['file']]}: {sym} {iso(row['timestamp'])}: {reason}; kept (--keep-suspicious)")
            else:
                hint = " (pass --keep-suspicious to use it)" if named is not None else ""
                fail(sym, row["file"], row["timestamp"], reason + hint)
    if excluded:
        good = good.filter(~pl.col("symbol").is_in(list(excluded)))
    if good.height == 0:  # rule 14: one error when none is left (then no exclusion warnings)
        first = min(excluded, key=symbols.index)  # the first excluded symbol in file order
        more = len(excluded) - 1
        raise AnalyzeError(excluded[first] + (f" (and {more:,} more symbol{'s' if more > 1 else ''} excluded)"
                                              if more else ""))
    for text in excluded.values():
        warn(f"{text}; symbol excluded")
    return good, excluded  # missing volume cells still null: _warnings counts them, load() sets them to 0


def _warnings(good: pl.DataFrame, sparse: dict[str, str] | None = None) -> None:
    """Rule 12 warnings, one summary line per kind (each symbol named when there are few). A gap
    is a spacing longer than both 5 x the symbol's median spacing and 4 calendar days; for a
    sparse symbol (``sparse``: ``{symbol: timeframe}``) its timeframe's spacing stands for the median."""
    step = pl.col("timestamp").diff().over("symbol")
    stats = good.group_by("symbol", maintain_order=True).agg(
        outside=((pl.col("open") > pl.col("high")) | (pl.col("open") < pl.col("low"))
                 | (pl.col("close") > pl.col("high")) | (pl.col("close") < pl.col("low"))).sum(),
        zero=(pl.col("volume") == 0).sum(),
        missing_volume=pl.col("volume").is_null().sum(),
        median=step.median(),
        longest=step.max(),
    )
    kinds = {
        "outside": "bars with open or close outside low..high",
        "zero": "zero-volume bars",
        "missing_volume": "missing volume cells (set to 0)",
    }
    for key, text in kinds.items():
        rows = stats.filter(pl.col(key) > 0)
        warn_grouped(text, rows.select("symbol", key).rows())
    gaps = []
    for r in stats.iter_rows(named=True):
        median = r["median"]
        if r["symbol"] in (sparse or {}):
            median = timedelta(seconds=_NOMINAL_SECONDS[sparse[r["symbol"]]])
        if median is not None and r["longest"] > max(GAP_FACTOR * median, timedelta(days=GAP_MIN_DAYS)):
            gaps.append((r["symbol"], 1))
    warn_grouped(f"gaps longer than {GAP_FACTOR}x the median bar spacing and {GAP_MIN_DAYS} days", gaps)


# --------------------------------------------------------------------------------------------
# shared definitions: timeframe, periods per year


def timeframe_of(spacing_seconds: float | None) -> str:
    """Timeframe label of a median bar spacing (SLICES.md shared definitions).

    ``1m 5m 15m 30m 1h 4h`` within +-10 %, 20 hours to 4 days ``1d``, 4 to 10 days ``1w``,
    25 to 35 days ``1mo``; None (a single bar) is ``1d``. Raises AnalyzeError naming the
    spacing otherwise.
    """
    if spacing_seconds is None:
        return "1d"
    s = float(spacing_seconds)
    for label, sec in _INTRADAY_SECONDS.items():
        if abs(s - sec) <= 0.1 * sec:
            return label
    day = 86400.0
    if 20 * 3600 <= s <= 4 * day:
        return "1d"
    if 4 * day < s <= 10 * day:
        return "1w"
    if 25 * day <= s <= 35 * day:
        return "1mo"
    raise AnalyzeError(
        f"bar spacing of {_spacing_text(s)} is not a known timeframe "
        "(pass bars of 1m 5m 15m 30m 1h 4h 1d 1w or 1mo spacing)"
    )


def _spacing_text(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def infer_timeframe(frame: pl.DataFrame) -> str:
    """Timeframe of one symbol's bars (``timestamp`` column): median spacing of the sorted unique
    timestamps matched by :func:`timeframe_of`."""
    ts = frame["timestamp"].unique().sort()
    if len(ts) < 2:
        return "1d"
    return timeframe_of(ts.diff().dt.total_microseconds().median() / 1e6)


def _resolve_timeframe(good: pl.DataFrame, given: str | None, files: list[str], sparse: dict[str, str]) -> str:
    """The one timeframe of the checked ``--data`` bars (SLICES.md shared definitions).

    Each symbol's median spacing gives its timeframe; two different ones are an error naming
    two symbols. A symbol whose spacing matches no timeframe but is longer than the other
    symbols' timeframe is sparse bars of that timeframe (the shared S&P 500 file's SNI: two daily
    bars 60 days apart): it is added to ``sparse`` (``{symbol: timeframe}``) and its gap is warned
    about; any other unmatched spacing is an error naming it. ``given`` (``--timeframe``) must
    agree with the result; without it a ``note:`` tells the inferred one.
    """
    med = good.group_by("symbol", maintain_order=True).agg(
        pl.col("timestamp").diff().dt.total_microseconds().median().alias("us")
    )
    found: dict[str, str] = {}
    odd: dict[str, AnalyzeError] = {}
    for sym, us in med.iter_rows():
        try:
            found[sym] = timeframe_of(None if us is None else us / 1e6)
        except AnalyzeError as exc:
            odd[sym] = exc
    labels = list(dict.fromkeys(found.values()))
    if len(labels) > 1:
        a = next(s for s, t in found.items() if t == labels[0])
        b = next(s for s, t in found.items() if t == labels[1])
        raise AnalyzeError(
            f"symbols of different timeframes: {a} is {labels[0]}, {b} is {labels[1]} (load one timeframe per run)"
        )
    tf = labels[0] if labels else None
    spacing = dict(med.iter_rows())
    for sym, exc in odd.items():
        if tf is None or spacing[sym] / 1e6 <= _NOMINAL_SECONDS[tf]:
            raise AnalyzeError(f"{', '.join(files)}: {sym}: {exc}")
        sparse[sym] = tf
    if given is not None and given != tf:
        raise AnalyzeError(f"--timeframe {given} does not match the --data bars, which are {tf}")
    if given is None:
        note(f"timeframe {tf} inferred from the --data bars")
    return tf


def is_intraday(timeframe: str) -> bool:
    """True for the timeframes under one day (``1m`` .. ``4h``)."""
    return timeframe in _INTRADAY_SECONDS


def periods_per_year(frame: pl.DataFrame | pl.Series, timeframe: str | None = None) -> float:
    """Bars per year used to annualise (SLICES.md shared definitions).

    ``frame``: bars (its ``timestamp`` column) or a timestamp Series; ``timeframe`` inferred when
    None. ``1d`` 252, ``1w`` 52, ``1mo`` 12; intraday ``(n - 1) x 365.25 x 86400 / (t_last -
    t_first in seconds)`` over the n unique timestamps (so 24/5 FX and 23-hour futures are right).
    """
    ts = frame if isinstance(frame, pl.Series) else frame["timestamp"]
    if timeframe is None:
        timeframe = infer_timeframe(pl.DataFrame({"timestamp": ts}))
    fixed = {"1d": 252.0, "1w": 52.0, "1mo": 12.0}
    if timeframe in fixed:
        return fixed[timeframe]
    u = ts.unique()
    span = (u.max() - u.min()).total_seconds() if len(u) > 1 else 0.0
    if span <= 0:
        return 365.25 * 86400 / _INTRADAY_SECONDS.get(timeframe, 86400)
    return (len(u) - 1) * 365.25 * 86400 / span


# --------------------------------------------------------------------------------------------
# loading


def _data_frame(req: BarRequest) -> pl.DataFrame:
    """The ``--data`` files as one long frame (read once per request)."""
    if req._raw is None:
        req._raw = pl.concat([read_bar_file(Path(p).expanduser(), i) for i, p in enumerate(req.data)])
    return req._raw


def data_symbols(req: BarRequest) -> list[str]:
    """Symbols found in the ``--data`` files, in file order (before any check)."""
    return _data_frame(req)["symbol"].unique(maintain_order=True).to_list()


def _store_frame(symbols: list[str], req: BarRequest, timeframe: str) -> tuple[pl.DataFrame, list[str]]:
    if req.store or os.environ.get("GPT_TRADER_STORE"):
        root, fallback = store_root(req.store), False
        if not root.is_dir():
            raise AnalyzeError(f"store {root}: no such folder (create it with python -m slices.data, or drop --store)")
    else:
        root, fallback = store_root(None), True
    paths: list[str] = []
    parts = []
    from_sample: list[str] = []
    for i, sym in enumerate(symbols):
        path = root / "bars" / timeframe / f"{sym}.parquet"
        if not path.is_file():
            sample = SAMPLE_ROOT / "bars" / timeframe / f"{sym}.parquet"
            if not (fallback and sample.is_file()):
                where = f"the default store {DEFAULT_STORE} nor in the embedded sample" if fallback else f"store {root}"
                raise AnalyzeError(f"{sym} {timeframe}: not in {where}")
            from_sample.append(sym)
            path = sample
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise AnalyzeError(f"{path}: cannot read ({type(exc).__name__})") from None
        missing = [c for c in BAR_COLUMNS if c not in frame.columns]
        if missing:
            raise AnalyzeError(f"{path}: {sym}: missing column(s) {', '.join(missing)}")
        paths.append(str(path))
        parts.append(
            frame.select(
                pl.lit(sym).alias("symbol"),
                pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
                *[pl.col(c).cast(pl.Float64).fill_nan(None) for c in BAR_COLUMNS[1:]],
                pl.lit(None, dtype=pl.Float64).alias("adj"),
                pl.lit(i, dtype=pl.Int32).alias("file"),
                pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
                pl.lit(False).alias("has_adj"),
            )
        )
    if from_sample:
        note(f"{' '.join(from_sample)} {timeframe} from the embedded sample (not in the default store {DEFAULT_STORE})")
    return pl.concat(parts), paths


def load(symbols: list[str] | None, req: BarRequest) -> Loaded:
    """Load and check the bars of ``symbols`` (or, when None/empty, of every symbol of the
    ``--data`` files; unusable ones excluded with a warning).

    Returns :class:`Loaded` with per-symbol frames in the bar-store schema, restricted to
    ``[req.start, req.end]``, adjusted by ``adj_close`` unless ``req.adjust`` is False.
    Raises AnalyzeError (one line, naming the file, symbol and first offending bar) for every
    error of SLICES.md contracts 1 and 2, an unknown or mismatching timeframe, a symbol that is
    not found, and a named symbol that fails a check.
    """
    if req.timeframe is not None and req.timeframe not in TIMEFRAMES:
        raise AnalyzeError(f"unknown timeframe {req.timeframe!r} (use one of {', '.join(TIMEFRAMES)})")
    named = split_symbols(symbols) if symbols else None
    if req.data:
        frame = _data_frame(req)
        files = [str(p) for p in req.data]
        if named is not None:
            have = set(frame["symbol"].unique().to_list())
            lacking = [s for s in named if s not in have]
            if lacking:
                found = frame["symbol"].unique(maintain_order=True).to_list()
                raise AnalyzeError(
                    f"{' '.join(lacking)}: not in --data files ({', '.join(files)}); "
                    f"they hold {', '.join(found[:10])}{' ...' if len(found) > 10 else ''}"
                )
            frame = frame.filter(pl.col("symbol").is_in(named))
        good, excluded = _checked(frame, files, req, named)
        sparse: dict[str, str] = {}
        timeframe = _resolve_timeframe(good, req.timeframe, files, sparse)
        _warnings(good, sparse)
    else:
        if named is None:
            raise AnalyzeError("name at least one symbol (e.g. AAPL; the sample symbols work without a store)")
        timeframe = req.timeframe or "1d"
        if timeframe not in STORE_TIMEFRAMES:
            raise AnalyzeError(f"--timeframe {timeframe}: the bar store holds only {', '.join(STORE_TIMEFRAMES)}")
        frame, files = _store_frame(named, req, timeframe)
        good, excluded = _checked(frame, files, req, named)
        _warnings(good)
    good = good.with_columns(pl.col("volume").fill_null(0.0))
    parts = good.select("symbol", *BAR_COLUMNS).partition_by("symbol", as_dict=True, include_key=False)
    order = named if named is not None else frame["symbol"].unique(maintain_order=True).to_list()
    bars = {s: parts[(s,)] for s in order if (s,) in parts}
    return Loaded(bars, timeframe, excluded)


def load_bars(symbols: list[str] | None, req: BarRequest) -> dict[str, pl.DataFrame]:
    """``load(symbols, req).bars``: ``{SYMBOL: bars}`` (see :func:`load`)."""
    return load(symbols, req).bars
