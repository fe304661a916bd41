"""Bar loading and validation for the backtest slice (this slice's own copy).

Reads bars through the contracts of SLICES.md:

* the bar store ``<root>/bars/<timeframe>/<SYMBOL>.parquet`` (contract 1). A store named with
  ``--store`` or ``$GPT_TRADER_STORE`` must exist and hold every symbol asked for; only the
  default store ``~/.gpt-trader/store`` falls back to the embedded sample ``slices/sample/`` for
  the symbols it lacks, with one ``note:`` line;
* direct files given with ``--data`` (contract 2, rules 1-14): CSV/TXT or Parquet, per-symbol
  or long format.

Everything is returned as one long frame with columns ``symbol`` (Utf8), ``timestamp``
(Datetime(us, UTC)), ``open high low close volume`` (Float64), sorted by symbol then timestamp,
after validation. Also here: the shared definitions "timeframe of bars" (:func:`infer_timeframe`)
and "suspicious series" (:func:`suspicious_reasons`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import polars as pl

TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1mo")
INTRADAY_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400}
_TF_MIN_SECONDS = {**INTRADAY_SECONDS, "1d": 20 * 3600, "1w": 4 * 86400, "1mo": 25 * 86400}  # shortest spacing of each
_NOMINAL_SECONDS = {**INTRADAY_SECONDS, "1d": 86400, "1w": 7 * 86400, "1mo": 30 * 86400}  # a sparse symbol's step
PRICES = ("open", "high", "low", "close")
COLUMNS = ("timestamp", *PRICES, "volume")
SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
DEFAULT_STORE = "~/.gpt-trader/store"
SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-_=^]{0,31}$")
SUB_PENNY = 0.01
JUMP_FACTOR = 5.0
_TIME_NAMES = ("date", "datetime", "timestamp", "time")
_INDEX_NAMES = ("__index_level_0__", "index", "unnamed: 0", "")
_ALIASES = {"adjclose": "adj_close", "adjusted_close": "adj_close", "ticker": "symbol"}
_MEANINGFUL = {*PRICES, "volume", "adj_close", "symbol", *_TIME_NAMES}
# ISO text at 00:00 local time with an explicit offset (yfinance's daily bars written by pandas)
_MIDNIGHT_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]00:00(:00(\.0*)?)?([+-]\d{2}(:?\d{2})?|[Zz])$"


class DataError(Exception):
    """Bad input data or arguments: the CLI prints the message on one line and exits with code 2."""


@dataclass
class LoadReport:
    """What loading found that is worth telling the user.

    ``notes``: informational lines (the embedded-sample fallback, the inferred timeframe).
    ``warnings``: every warning text (for metrics.json); ``findings``: the same warnings as
    ``(kind, symbol, text)`` so a terminal can summarise them by kind. Kinds: ``excluded``
    (symbol left out), ``suspicious`` (kept with --keep-suspicious), ``ohlc``, ``zero_volume``,
    ``gap``, ``missing_volume``. ``timeframe``: the run's timeframe (given or inferred).
    """

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    timeframe: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)
    marks: list[int] = field(default_factory=list)

    def mark(self) -> None:
        """End a stage of the checks (reading, rule-11 exclusions, suspicious series, each kind
        of rule-12 warning): :meth:`merge` keeps the stages of several batches in stage order."""
        self.marks.append(len(self.warnings))

    def merge(self, parts: list["LoadReport"]) -> None:
        """Append the warnings of ``parts`` (the reports of consecutive batches of one run) stage
        by stage, so they come in the order one pass over all the symbols gives; and their
        notes and exclusions."""
        cuts = [[0, *r.marks, len(r.warnings)] for r in parts]
        for stage in range(max((len(c) - 1 for c in cuts), default=0)):
            for r, c in zip(parts, cuts):
                if stage + 1 < len(c):
                    self.warnings.extend(r.warnings[c[stage]:c[stage + 1]])
                    self.findings.extend(r.findings[c[stage]:c[stage + 1]])
        for r in parts:
            self.notes.extend(r.notes)
            self.excluded.update(r.excluded)
            self.timeframe = r.timeframe or self.timeframe

    def warn(self, kind: str, symbol: str, text: str) -> None:
        """Record one warning of ``kind`` about ``symbol`` (``""`` when it concerns a file)."""
        self.warnings.append(text)
        self.findings.append((kind, symbol, text))


# ----------------------------------------------------------------------------- small helpers
def check_symbol(sym: str, where: str = "--symbols") -> str:
    """Strip and upper-case ``sym``; raise DataError naming it unless it matches SYMBOL_RE
    (letters, digits, ``. - _ = ^``, at most 32 characters: it becomes a file name)."""
    s = str(sym).strip().upper()
    if not SYMBOL_RE.match(s):
        raise DataError(f"{where}: invalid symbol {sym!r} (letters, digits and . - _ = ^, at most 32 characters)")
    return s


def fmt_ts(ts: datetime | None) -> str:
    """ISO-8601 for people: ``2020-01-10`` at midnight (daily bars), else ``2020-01-10T14:30:00Z``."""
    if ts is None:
        return "?"
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_price(x: float) -> str:
    """A price at its own precision (6 significant digits, no float noise): 0.0063, 172.5."""
    return f"{x:,.6g}" if abs(x) < 1e6 else f"{x:,.2f}"


def _listed(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n:,} more" if len(names) > n else "")


def parse_when(text: str | None, what: str, end: bool = False) -> datetime | None:
    """Parse ``--start``/``--end`` (``YYYY-MM-DD`` or ISO datetime, naive = UTC) as a UTC datetime.

    A bare date as ``end`` means the end of that day (inclusive). Raises DataError if unparsable.
    """
    if not text:
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            out = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
            return out + timedelta(days=1) - timedelta(microseconds=1) if end else out
        out = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{what}: cannot parse {text!r} as a date (use YYYY-MM-DD or ISO-8601)") from None
    return out.replace(tzinfo=timezone.utc) if out.tzinfo is None else out.astimezone(timezone.utc)


# ----------------------------------------------------------------------------- stores
def store_root(store: str | os.PathLike | None) -> tuple[Path, str | None]:
    """Resolve the bar-store root and who named it.

    Returns ``(root, named_by)``: ``--store`` if given, else ``$GPT_TRADER_STORE``, else the
    default ``~/.gpt-trader/store`` with ``named_by`` None. A named store must be an existing
    folder (DataError otherwise); the default one may be missing (then the sample is used).
    """
    if store:
        root, by = Path(store).expanduser(), "--store"
    elif os.environ.get("GPT_TRADER_STORE"):
        root, by = Path(os.environ["GPT_TRADER_STORE"]).expanduser(), "$GPT_TRADER_STORE"
    else:
        return Path(DEFAULT_STORE).expanduser(), None
    if not root.exists():
        raise DataError(f"{by} {root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{by} {root}: not a folder")
    return root, by


def _symbols_in(root: Path, timeframe: str) -> list[str]:
    folder = root / "bars" / timeframe
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


# ----------------------------------------------------------------------------- reading (rules 1-8)
def read_file(path: Path) -> pl.DataFrame:
    """Read one contract-2 file: ``.csv``/``.txt`` as comma-separated text with a header (every
    column as text, converted later), ``.parquet``/``.pq`` as Parquet. Raises DataError for a
    missing, unreadable or other file."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".parquet", ".pq"):
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r} (use .csv, .txt, .parquet or .pq)")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # polars raises many types for unreadable files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {msg})") from None


def normalise_name(name: str) -> str:
    """Contract-2 column name: stripped, lower-cased, runs of spaces/hyphens -> ``_``, aliases
    applied (``Adj Close`` -> ``adj_close``, ``Ticker`` -> ``symbol``)."""
    n = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _ALIASES.get(n, n)


def _columns(raw: pl.DataFrame, source: str) -> tuple[dict[str, str], str]:
    """Map meaning -> raw column name, and find the time column (rules 2 and 3)."""
    meaning: dict[str, str] = {}
    for c in raw.columns:
        n = normalise_name(c)
        if n in _MEANINGFUL:
            if n in meaning:
                raise DataError(f"{source}: columns {meaning[n]!r} and {c!r} both mean {n}")
            meaning[n] = c
    time_col = next((c for c in raw.columns if normalise_name(c) in _TIME_NAMES), None)
    if time_col is None:
        time_col = next((c for c in raw.columns if c.strip().lower() in _INDEX_NAMES), None)
    if time_col is None:
        raise DataError(f"{source}: no time column (expected one named date, datetime, timestamp or time)")
    return meaning, time_col


def _number(col: pl.Series) -> pl.Series:
    """Float64 with every empty, null-marker or non-numeric cell (and NaN) as null (rule 7)."""
    if col.dtype.is_numeric():
        out = col.cast(pl.Float64)
    elif col.dtype == pl.String:
        out = col.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        out = pl.Series(col.name, [None] * col.len(), dtype=pl.Float64)
    return out.fill_nan(None)


def _epoch(col: pl.Series) -> pl.Series:
    """Integers as Unix epoch: seconds below 1e11, milliseconds below 1e14, microseconds below
    1e17, else nanoseconds (rule 4, by each value's magnitude)."""
    v, a = col.cast(pl.Int64), col.cast(pl.Int64).abs()
    us = (pl.when(a < 10**11).then(v * 1_000_000).when(a < 10**14).then(v * 1_000)
          .when(a < 10**17).then(v).otherwise(v // 1_000))
    return pl.select(us.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")).to_series()


def _first_bad(col: pl.Series, bad: pl.Series, source: str, what: str) -> DataError:
    i = int(bad.arg_true()[0])
    v = col[i]
    shown = "an empty cell" if v is None or (isinstance(v, str) and not v.strip()) else repr(v)
    return DataError(f"{source}: time column {col.name!r}: {what} {shown} (data row {i + 1:,})")


def to_utc(col: pl.Series, source: str) -> pl.Series:
    """The time column as Datetime(us, UTC) (rule 4). Zoned values (a zoned datetime, or ISO text
    with an offset) that are all 00:00 local time are dates: 00:00 UTC of that local date
    (yfinance writes daily bars as America/New_York midnight). Raises DataError naming the
    column and the first empty or unparsable value, or an unsupported type."""
    dtype = col.dtype
    if col.null_count():
        raise _first_bad(col, col.is_null(), source, "empty time cell:")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        col = col.cast(pl.Datetime("us", dtype.time_zone))
        if dtype.time_zone is None:
            return col.dt.replace_time_zone("UTC")
        if dtype.time_zone == "UTC":  # midnights or not, the same instants
            return col
        if (col.dt.time() == time(0)).all():  # local midnights: dates
            return col.dt.replace_time_zone(None).dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC")
    if dtype.is_integer():
        return _epoch(col)
    if dtype != pl.String:
        raise DataError(f"{source}: time column {col.name!r} has unsupported type {dtype} (first value {col[0]!r})")
    if col.str.strip_chars().str.contains(_MIDNIGHT_WITH_OFFSET).all():  # local midnights as text: dates
        col = col.str.strip_chars().str.slice(0, 10)
    t = pl.col("t").str.replace(r"[Zz]$", "+00:00").str.replace("T", " ", literal=True)
    aware = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
    parsed = pl.coalesce(
        *[t.str.to_datetime(f, strict=False, time_unit="us").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
          for f in aware],
        t.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
        t.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us"),
        t.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
    ).dt.replace_time_zone("UTC")
    frame = pl.DataFrame({"t": col.str.strip_chars()})
    digits = frame["t"].str.contains(r"^-?\d+$")
    out = frame.select(parsed).to_series()
    if digits.any():
        ep = _epoch(frame["t"].cast(pl.Int64, strict=False).fill_null(0))
        out = pl.select(pl.when(digits).then(ep).otherwise(out)).to_series()
    bad = out.is_null()
    if bad.any():
        raise _first_bad(col, bad, source, "cannot parse")
    return out.alias(col.name)


def normalise(raw: pl.DataFrame, source: str, symbol: str | None, adjust: bool, report: LoadReport) -> pl.DataFrame:
    """Map a raw bar table (any contract-2 layout) to the long schema, unchecked.

    ``source`` names the file in messages; ``symbol`` is the file's symbol when it has no symbol
    column (the upper-cased stem). Returns ``symbol timestamp open high low close volume
    _adj_bad _vol_missing`` in file order: prices Float64 with null for every missing or
    non-numeric cell, already multiplied by ``adj_close / close`` when ``adjust`` and an adj_close
    column exist (``_adj_bad`` marks rows whose adj_close is missing or non-positive);
    ``volume`` null cells set to 0 (``_vol_missing`` marks them). Raises DataError for a
    missing time or price column, an unparsable time, an empty symbol cell or an invalid symbol.
    """
    meaning, time_col = _columns(raw, source)
    missing = [p for p in PRICES if p not in meaning]
    if missing:
        raise DataError(f"{source}: missing price column(s) {', '.join(missing)}")
    ts = to_utc(raw[time_col], source)
    cols = {p: _number(raw[meaning[p]]) for p in PRICES}
    if "volume" in meaning:
        vol = _number(raw[meaning["volume"]])
    else:
        report.warn("missing_volume", "", f"{source}: no volume column; volume set to 0")
        vol = pl.zeros(raw.height, pl.Float64, eager=True).alias("volume")
    adj_bad = pl.repeat(False, raw.height, dtype=pl.Boolean, eager=True)
    if "adj_close" in meaning and adjust:
        adj = _number(raw[meaning["adj_close"]])
        adj_bad = (adj.is_null() | (adj <= 0)).fill_null(True)
        # rows with a bad close or adj_close keep their raw prices, so the checks name the bad value
        factor = pl.select(pl.when((cols["close"] > 0) & ~adj_bad).then(adj / cols["close"]).otherwise(1.0)).to_series()
        cols = {p: c * factor for p, c in cols.items()}
    if "symbol" in meaning:
        sym = raw[meaning["symbol"]].cast(pl.String).str.strip_chars().str.to_uppercase()
        empty = sym.is_null() | (sym == "")
        if empty.any():
            i = int(empty.arg_true()[0])
            raise DataError(f"{source}: empty symbol cell in column {meaning['symbol']!r} at {fmt_ts(ts[i])}")
        for s in sym.unique(maintain_order=True).to_list():
            check_symbol(s, source)
    else:
        sym = pl.repeat(check_symbol(symbol or "", source), raw.height, dtype=pl.String, eager=True)
    return pl.DataFrame({
        "symbol": sym, "timestamp": ts, **cols, "volume": vol.fill_null(0.0),
        "_adj_bad": adj_bad, "_vol_missing": vol.is_null(),
    })


# ----------------------------------------------------------------------------- checks (rules 9-14)
def row_problems(df: pl.DataFrame, sources: list[str]) -> dict[str, str]:
    """First hard error (rule 11) of each symbol, in file order.

    ``df``: the concatenated rows of every source in file order, ``_f`` the index of the row's
    file in ``sources``. Checked per symbol: missing or non-numeric price, infinite price,
    non-positive price, missing or non-positive adj_close, high below low, negative volume,
    duplicate timestamp and timestamps not increasing (within one file), the same timestamp in
    two files. Returns ``{symbol: "<file>: <SYM> <time>: <reason>"}``.
    """
    px = [pl.col(p) for p in PRICES]
    ts, key = pl.col("timestamp"), ["symbol", "_f"]
    # rows of one symbol and file that are contiguous and increasing need no grouped check
    run = (pl.col("symbol") != pl.col("symbol").shift(1)) | (pl.col("_f") != pl.col("_f").shift(1))
    back, runs = df.select((ts <= ts.shift(1)).and_(~run).any().alias("back"),
                           run.fill_null(True).sum().alias("runs")).row(0)
    starts = df.filter(run.fill_null(True))  # one row per contiguous run of a symbol and file
    groups, n_symbols = starts.select(pl.struct(key).n_unique().alias("g"), pl.col("symbol").n_unique().alias("s")).row(0)
    checks = [
        (pl.any_horizontal([p.is_null() for p in px]), "missing or non-numeric price"),
        (pl.any_horizontal([p.is_infinite() for p in px]), "infinite price"),
        (pl.any_horizontal([p <= 0 for p in px]), "non-positive price"),
        (pl.col("_adj_bad"), "missing or non-positive adj_close"),
        (pl.col("high") < pl.col("low"), "high below low"),
        (pl.col("volume") < 0, "negative volume"),
    ]
    reason = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
    for cond, text in checks[1:]:
        reason = reason.when(cond).then(pl.lit(text))
    whole = False  # checks that need every row of a symbol (grouped windows)
    if back or runs != groups:
        whole = True
        reason = (reason.when(~ts.is_first_distinct().over(key)).then(pl.lit("duplicate timestamp"))
                  .when(ts.diff().over(key) < pl.duration(microseconds=0)).then(pl.lit("timestamps not increasing")))
    if len(sources) > 1 and groups != n_symbols:  # some symbol is in two files: the same bar may be in both
        whole = True
        first_f = pl.col("_f").first().over("symbol", "timestamp")
        reason = reason.when(first_f != pl.col("_f")).then(pl.format("the same bar is also in #{}", first_f))
    rows = df.lazy()
    if not whole:  # row-wise checks only: name the reason of the few rows that fail any (same first row per symbol)
        rows = rows.filter(pl.any_horizontal([c for c, _ in checks]).fill_null(False))
    bad = rows.select("symbol", "timestamp", "_f", reason.alias("reason")).filter(pl.col("reason").is_not_null())
    bad = bad.group_by("symbol", maintain_order=True).first().collect()
    out = {}
    for s, t, f, r in bad.iter_rows():
        if r.startswith("the same bar is also in #"):
            r = f"the same bar is also in {sources[int(r.rsplit('#', 1)[1])]}"
        out[s] = f"{sources[f]}: {s} {fmt_ts(t)}: {r}"
    return out


def suspicious_reasons(bars: pl.DataFrame, sources: list[str]) -> dict[str, str]:
    """Suspicious series (SLICES.md shared definitions), first offending bar per symbol.

    ``bars``: long frame sorted by symbol, timestamp, ``_f`` indexing ``sources``. A bar is suspicious when any
    price is below 0.01 (``sub-penny price 0.0063 (placeholder quote)``) or its close is more than
    5x or under 1/5 of the previous close (``close jumps x11,920.00 (bad quote or unadjusted
    split)``). Returns ``{symbol: "<file>: <SYM> <time>: <reason>"}``.
    """
    low = pl.min_horizontal(*PRICES)
    ratio = pl.when(_same_symbol()).then(pl.col("close") / pl.col("close").shift(1))  # sorted: the previous row's close
    flagged = bars.lazy().select(
        "symbol", "timestamp", "_f", low.alias("low_px"), ratio.alias("ratio"),
    ).filter((pl.col("low_px") < SUB_PENNY) | (pl.col("ratio") > JUMP_FACTOR) | (pl.col("ratio") < 1 / JUMP_FACTOR))
    first = flagged.group_by("symbol", maintain_order=True).first().collect()
    msgs = {}
    for s, t, f, px, r in first.iter_rows():
        if px < SUB_PENNY:
            why = f"sub-penny price {px:.6g} (placeholder quote)"
        else:
            why = f"close jumps x{r:,.2f} (bad quote or unadjusted split)" if r >= 0.01 else \
                f"close jumps x{r:.2g} (bad quote or unadjusted split)"
        msgs[s] = f"{sources[f]}: {s} {fmt_ts(t)}: {why}"
    return msgs


def data_warnings(bars: pl.DataFrame, sources: list[str], report: LoadReport,
                  sparse: dict[str, str] | None = None) -> None:
    """Rule-12 warnings on usable bars (long frame sorted by symbol then timestamp, with ``_f`` and ``_vol_missing``),
    one per symbol and kind: open/close outside low..high, zero-volume bars, gaps (a step longer
    than both 5 x the symbol's median step and 4 calendar days), missing volume cells.
    ``sparse``: ``{symbol: timeframe}`` of sparse symbols (see :func:`infer_timeframe`), whose
    gaps are measured against their timeframe's spacing instead of their own median step."""
    incons = (pl.col("high") < pl.max_horizontal("open", "close")) | (pl.col("low") > pl.min_horizontal("open", "close"))
    same = _same_symbol()  # the frame is sorted by symbol: a row's predecessor is the symbol's previous bar
    step = pl.when(same).then(pl.col("timestamp").diff())
    medians = dict(bars.lazy().select("symbol", step.alias("step")).group_by("symbol").agg(pl.col("step").median())
                   .collect().iter_rows())
    medians |= {s: timedelta(seconds=_NOMINAL_SECONDS[tf]) for s, tf in (sparse or {}).items()}
    median = pl.col("symbol").replace_strict(medians, return_dtype=pl.Duration("us"))
    limit = pl.max_horizontal(median * 5, pl.lit(timedelta(days=4)))
    flagged = bars.lazy().select(
        "symbol", "timestamp", "_f", step.alias("step"), pl.when(same).then(pl.col("timestamp").shift(1)).alias("prev"),
        incons.alias("ohlc"), (pl.col("volume") == 0).alias("zero_volume"),
        (step > limit).fill_null(False).alias("gap"), pl.col("_vol_missing").alias("missing_volume"),
    ).filter(pl.col("ohlc") | pl.col("zero_volume") | pl.col("gap") | pl.col("missing_volume")).collect()
    if flagged.height == 0:
        return
    report.mark()
    what = {"ohlc": "bar(s) with open/close outside low..high", "zero_volume": "zero-volume bar(s)",
            "missing_volume": "bar(s) with missing volume set to 0"}
    for kind in ("ohlc", "zero_volume", "missing_volume", "gap"):
        rows = flagged.filter(pl.col(kind)).group_by("symbol", maintain_order=True).agg(
            pl.len(), pl.col("_f").first(), pl.col("timestamp").first(),
            pl.col("prev").sort_by("step").last().alias("a"), pl.col("timestamp").sort_by("step").last().alias("b"),
            pl.col("step").max())
        for s, n, f, t, a, b, d in rows.iter_rows():
            src = sources[f]
            if kind == "gap":
                text = f"{src}: {s}: {n:,} gap(s) in the bars, largest {fmt_ts(a)} .. {fmt_ts(b)} ({d.days:,} days)"
            else:
                text = f"{src}: {s}: {n:,} {what[kind]}, first at {fmt_ts(t)}"
            report.warn(kind, s, text)
        report.mark()


# ----------------------------------------------------------------------------- timeframes
def _spacing_text(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:,.4g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.4g} hours"
    if seconds >= 60:
        return f"{seconds / 60:,.4g} minutes"
    return f"{seconds:,.4g} seconds"


def timeframe_of_spacing(seconds: float | None) -> str | None:
    """The timeframe of a median bar spacing in seconds (SLICES.md shared definitions), or None.

    Nearest of ``1m 5m 15m 30m 1h 4h`` within +-10 %; 20 hours to 4 days ``1d``; over 4 up to
    10 days ``1w``; 25 to 35 days ``1mo``. ``None`` spacing (a single bar) is ``1d``.
    """
    if seconds is None:
        return "1d"
    day = 86400.0
    for tf, s in INTRADAY_SECONDS.items():
        if abs(seconds - s) <= 0.1 * s:
            return tf
    if 20 * 3600 <= seconds <= 4 * day:
        return "1d"
    if 4 * day < seconds <= 10 * day:
        return "1w"
    if 25 * day <= seconds <= 35 * day:
        return "1mo"
    return None


def _same_symbol() -> pl.Expr:
    """True where a row's symbol is the previous row's (false on the first row)."""
    return (pl.col("symbol") == pl.col("symbol").shift(1)).fill_null(False)


def infer_timeframe(bars: pl.DataFrame, sparse: dict[str, str] | None = None, increasing: bool = False) -> str:
    """The one timeframe of a sorted long frame: each symbol's median spacing of its unique
    timestamps mapped by :func:`timeframe_of_spacing`.

    Raises DataError for symbols of different timeframes (naming two of them), and for a spacing
    that matches no timeframe. A symbol whose spacing matches none but is longer than the
    timeframe of the other symbols is sparse bars of that timeframe (e.g. SNI in the shared S&P
    file: 2 daily bars 60 days apart), not an error; such symbols are added to ``sparse``
    (``{symbol: timeframe}``) so their gaps are warned about. ``increasing``: the frame is sorted
    by symbol and each symbol's timestamps strictly increase (as after the checks of
    :func:`load_bars`), so no per-symbol sort is needed.
    """
    if increasing:
        step = pl.when(_same_symbol()).then(pl.col("timestamp").diff().dt.total_microseconds())
        med = bars.lazy().select("symbol", step.alias("us")).group_by("symbol", maintain_order=True).agg(
            pl.col("us").median()).collect()
    else:
        med = bars.group_by("symbol", maintain_order=True).agg(
            pl.col("timestamp").unique().sort().diff().dt.total_microseconds().median().alias("us"))
    seen: dict[str, str] = {}
    odd: list[tuple[str, float]] = []
    for sym, us in med.iter_rows():
        tf = timeframe_of_spacing(None if us is None else us / 1e6)
        if tf is None:
            odd.append((sym, us / 1e6))
            continue
        seen.setdefault(tf, sym)
        if len(seen) > 1:
            (t1, s1), (t2, s2) = list(seen.items())[:2]
            raise DataError(f"symbols of different timeframes in one run: {s1} is {t1}, {s2} is {t2} "
                            f"(pass --symbols of one timeframe)")
    tf = next(iter(seen), None)
    for sym, sec in odd:
        if tf is None or sec < _TF_MIN_SECONDS[tf]:
            raise DataError(f"{sym}: median bar spacing {_spacing_text(sec)} matches no timeframe "
                            f"(pass bars of one of these spacings: {' '.join(TIMEFRAMES)})")
        if sparse is not None:
            sparse[sym] = tf
    return tf or "1d"



# ----------------------------------------------------------------------------- loading
def none_left(excluded: dict[str, str], order: list[str]) -> str:
    """The one error line of rule 14 when every symbol was excluded: the first excluded symbol's
    own reason (in ``order``, the file order), then `` (and N more symbols excluded)``."""
    first = min(excluded, key=lambda s: order.index(s) if s in order else len(order))
    more = len(excluded) - 1
    return excluded[first] + (f" (and {more:,} more symbol{'s' if more > 1 else ''} excluded)" if more else "")


def _store_files(wanted: list[str] | None, tf: str, store, report: LoadReport) -> list[tuple[str, Path]]:
    """The store files of a run, ``[(symbol, path)]`` in the order asked (or listed), without
    reading them: the store, else (default store only) the embedded sample with one note."""
    root, named_by = store_root(store)
    in_store = _symbols_in(root, tf)
    in_sample = [] if named_by else _symbols_in(SAMPLE_ROOT, tf)
    shown_root = str(root) if named_by else DEFAULT_STORE
    if wanted is None:
        listed = in_store or in_sample
        if not listed:
            where = f"store {root}" if named_by else f"the default store {DEFAULT_STORE} nor in the embedded sample"
            raise DataError(f"no {tf} bars in {where} (fetch with `python -m slices.data fetch` or pass --data FILE)")
        wanted = []
        for s in listed:
            if SYMBOL_RE.match(s):
                wanted.append(s)
            else:
                report.warn("excluded", s, f"{root / 'bars' / tf / (s + '.parquet')}: invalid symbol name {s!r}; symbol excluded")
    lost = [s for s in wanted if s not in in_store and s not in in_sample]
    if lost:
        where = f"store {root}" if named_by else f"the default store {DEFAULT_STORE} nor in the embedded sample"
        raise DataError(f"--symbols: {_listed(lost)} has no {tf} bars in {where} "
                        f"(fetch it with `python -m slices.data fetch {lost[0]}` or pass --data FILE)")
    from_sample = [s for s in wanted if s not in in_store]
    if from_sample:
        report.notes.append(f"note: {_listed(from_sample)} {tf} from the embedded sample (not in the default store {shown_root})")
    return [(s, (SAMPLE_ROOT if s in from_sample else root) / "bars" / tf / f"{s}.parquet") for s in wanted]


@dataclass
class _Request:
    """One load's checked arguments (see :func:`load_bars`)."""

    named: bool
    wanted: list[str] | None
    lo: datetime | None
    hi: datetime | None
    start: str | None
    end: str | None
    timeframe: str | None
    data: list | None
    adjust: bool
    keep_suspicious: bool


def _request(symbols, timeframe, start, end, data, adjust, keep_suspicious) -> _Request:
    if timeframe is not None and timeframe not in TIMEFRAMES:
        raise DataError(f"--timeframe: unknown timeframe {timeframe!r} (one of {', '.join(TIMEFRAMES)})")
    named = symbols is not None
    wanted = list(dict.fromkeys(check_symbol(s) for s in symbols if str(s).strip())) if named else None
    if named and not wanted:
        raise DataError("--symbols: empty symbol list")
    lo, hi = parse_when(start, "--start"), parse_when(end, "--end", end=True)
    if lo and hi and lo > hi:
        raise DataError(f"--start {start} is after --end {end}")
    return _Request(named, wanted, lo, hi, start, end, timeframe, data, adjust, keep_suspicious)


def load_bars(
    symbols: list[str] | None,
    timeframe: str | None = None,
    *,
    store: str | os.PathLike | None = None,
    data: list[str | os.PathLike] | None = None,
    start: str | None = None,
    end: str | None = None,
    adjust: bool = True,
    keep_suspicious: bool = False,
) -> tuple[pl.DataFrame, LoadReport]:
    """Load and check bars for a run (SLICES.md contracts 1 and 2).

    ``symbols``: tickers (stripped, upper-cased, checked against SYMBOL_RE) or None for every
    symbol of the data (``--data`` files, else the store, else the embedded sample).
    ``timeframe``: one of TIMEFRAMES or None; with the store it picks the folder (default ``1d``);
    with ``data`` it must agree with the inferred timeframe. ``start``/``end``: inclusive UTC
    bounds, applied before every check. ``keep_suspicious``: keep suspicious series (warning).

    Returns ``(bars, report)``: ``bars`` the long frame ``symbol timestamp open high low close
    volume`` sorted by symbol and timestamp; ``report.timeframe`` the run's timeframe. A named
    symbol with invalid or suspicious data is a DataError; when symbols are not named such a
    symbol is excluded with a warning ``<file>: <SYM> <time>: <reason>; symbol excluded``.
    Raises DataError for an unknown timeframe or symbol, unreadable files and empty results.
    """
    req = _request(symbols, timeframe, start, end, data, adjust, keep_suspicious)
    report = LoadReport()
    if data:
        return _check(_data_frames(req, report), req, ", ".join(str(p) for p in data), report, None), report
    files = _store_files(req.wanted, timeframe or "1d", store, report)
    frames = [(normalise(read_file(path), str(path), s, False, report), str(path)) for s, path in files]
    return _check(frames, req, "the store", report, None), report


class BarBatches:
    """The bars of a run as :func:`load_bars` checks them, a batch of whole symbols at a time,
    so that a store of hundreds of symbols of minute bars is never in memory at once.

    Iterating yields long frames (``symbol timestamp open high low close volume``, sorted by
    symbol then timestamp; symbols in sorted order across batches) of store files read
    ``batch_rows`` rows or so at a time (a file's row count from its Parquet metadata). Every
    check is :func:`load_bars`'s, per symbol; ``report`` collects the notes and warnings of the
    batches read so far. An excluded symbol leaves its batch; when every symbol is excluded the
    iteration ends with :func:`load_bars`'s error. ``--data`` files (one file may hold every
    symbol) are read whole, as :func:`load_bars` reads them, and handed out per batch of symbols.
    Raises DataError as :func:`load_bars` does."""

    def __init__(self, symbols: list[str] | None, timeframe: str | None = None, *, store=None, data=None,
                 start: str | None = None, end: str | None = None, adjust: bool = True, keep_suspicious: bool = False,
                 batch_rows: int = 1_000_000):
        self.req = _request(symbols, timeframe, start, end, data, adjust, keep_suspicious)
        self.report = LoadReport()
        self.batch_rows = batch_rows
        self.files = None if data else _store_files(self.req.wanted, timeframe or "1d", store, self.report)
        if self.files is not None:
            self.files.sort(key=lambda sp: sp[0])
            self.report.timeframe = timeframe or "1d"

    def __iter__(self):
        """The batches, in order. The store's are read and checked ``AHEAD`` at a time on
        background threads (each with its own report, merged in batch order, so the warnings come
        out as one pass would give them) while the caller works on the current one."""
        req, report = self.req, self.report
        if self.files is None:
            yield from self._data_batches()
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        order = [s for s, _ in self.files]
        got = False
        with ThreadPoolExecutor(self.AHEAD, thread_name_prefix="bar-batches") as pool:
            todo = iter(self._batches())
            ahead = deque(pool.submit(self._one, files, order) for files in _take(todo, self.AHEAD))
            subs = []
            try:
                while ahead:
                    bars, sub = ahead.popleft().result()
                    ahead.extend(pool.submit(self._one, files, order) for files in _take(todo, 1))
                    subs.append(sub)
                    if bars.height:
                        got = True
                        yield bars
            finally:
                for f in ahead:
                    f.cancel()
        report.merge(subs)
        if not got:
            raise DataError(none_left(report.excluded, order))

    AHEAD = 2

    def _one(self, files: list[tuple[str, Path]], order: list[str]) -> tuple[pl.DataFrame, LoadReport]:
        sub = LoadReport()
        frames = [(normalise(read_file(path), str(path), s, False, sub), str(path)) for s, path in files]
        bars = _check(frames, self.req, "the store", sub, order)
        return bars, sub

    def _data_batches(self):
        req, report = self.req, self.report
        bars = _check(_data_frames(req, report), req, ", ".join(str(p) for p in req.data), report, None)
        batch, rows = [], 0
        for part in bars.partition_by("symbol", maintain_order=True):
            batch.append(part)
            rows += part.height
            if rows >= self.batch_rows:
                yield pl.concat(batch)
                batch, rows = [], 0
        if batch:
            yield pl.concat(batch)

    def _batches(self):
        batch, rows = [], 0
        for s, path in self.files:
            batch.append((s, path))
            try:
                rows += pl.scan_parquet(path).select(pl.len()).collect().item()
            except Exception:  # unreadable: read_file names the problem
                rows += 1
            if rows >= self.batch_rows:
                yield batch
                batch, rows = [], 0
        if batch:
            yield batch


def _take(it, n: int) -> list:
    """The next ``n`` items of iterator ``it`` (fewer at its end)."""
    out = []
    for _ in range(n):
        x = next(it, None)
        if x is None:
            break
        out.append(x)
    return out


def _data_frames(req: _Request, report: LoadReport) -> list[tuple[pl.DataFrame, str]]:
    frames = []
    for p in req.data:
        path = Path(p).expanduser()
        frame = normalise(read_file(path), str(path), path.stem.upper(), req.adjust, report)
        if req.wanted:
            frame = frame.filter(pl.col("symbol").is_in(req.wanted))
        frames.append((frame, str(path)))
    return frames


def _check(frames: list[tuple[pl.DataFrame, str]], req: _Request, where: str, report: LoadReport,
           batch_of: list[str] | None) -> pl.DataFrame:
    """Rules 9-14 on the frames read (one per file); ``batch_of``: the run's symbols when these
    frames are one batch of them (then a batch whose symbols are all excluded is an empty frame,
    and the timeframe is the store folder's)."""
    sources = [src for _, src in frames]
    bars = pl.concat([f.with_columns(pl.lit(i, pl.UInt32).alias("_f")) for i, (f, _) in enumerate(frames)],
                     how="vertical_relaxed")
    present = bars["symbol"].unique(maintain_order=True).to_list()
    lost = [s for s in (req.wanted or []) if s not in present and (batch_of is None)]
    if lost:
        raise DataError(f"--symbols: {_listed(lost)} not found in {where}")
    if not present:
        raise DataError(f"{where}: no rows")
    if req.lo:
        bars = bars.filter(pl.col("timestamp") >= req.lo)
    if req.hi:
        bars = bars.filter(pl.col("timestamp") <= req.hi)

    order = batch_of or present
    report.mark()
    problems: dict[str, str] = {}
    left = set(bars["symbol"].unique().to_list())
    span = f" between {req.start or 'the start'} and {req.end or 'the end'}"
    for s in present:
        if s not in left:
            problems[s] = f"{where}: {s}: no bars{span}"
    problems.update(row_problems(bars, sources))
    bars = _drop(bars, problems, req.named, report, order, batch_of is not None)
    report.mark()
    if not _sorted(bars):
        bars = bars.sort("symbol", "timestamp")
    sus = suspicious_reasons(bars, sources)
    if sus and req.keep_suspicious:
        for s, msg in sus.items():
            report.warn("suspicious", s, f"{msg}; kept (--keep-suspicious)")
    elif sus:
        bars = _drop(bars, {s: f"{m} (pass --keep-suspicious to use it)" if req.named else m for s, m in sus.items()},
                     req.named, report, order, batch_of is not None)
    report.mark()
    if bars.height == 0:
        return bars.select("symbol", *COLUMNS)
    sparse: dict[str, str] = {}
    inferred = infer_timeframe(bars, sparse, increasing=True)  # rule 11 left no duplicate or backward time
    data_warnings(bars, sources, report, sparse)
    if req.data:
        if req.timeframe and req.timeframe != inferred:
            raise DataError(f"--timeframe {req.timeframe} disagrees with the bars of {where}, which are {inferred}")
        report.timeframe = inferred
        if not req.timeframe:
            report.notes.append(f"note: timeframe {inferred} (inferred from the bar spacing)")
    else:
        report.timeframe = req.timeframe or "1d"
    return bars.select("symbol", *COLUMNS)


def _sorted(bars: pl.DataFrame) -> bool:
    """Whether the long frame is already sorted by symbol then timestamp (a store read in symbol
    order usually is: then the sort, a copy of every row, is skipped)."""
    sym, ts = pl.col("symbol"), pl.col("timestamp")
    new_sym = sym != sym.shift(1)
    return bool(bars.select(((sym > sym.shift(1)) | (~new_sym & (ts > ts.shift(1)))).slice(1).all()).item()) \
        if bars.height > 1 else True


def _drop(bars: pl.DataFrame, problems: dict[str, str], named: bool, report: LoadReport, order: list[str],
          batch: bool = False) -> pl.DataFrame:
    """Apply rule 14: an error for a named symbol, else exclusion with a warning. When none is
    left, one error: the reason of the first excluded symbol in file order (``order``), then
    `` (and N more symbols excluded)`` when there were more (no exclusion warning is printed);
    in a ``batch`` (of :class:`BarBatches`) an empty frame instead, after the warnings."""
    if not problems:
        return bars
    if named:
        raise DataError(next(iter(problems.values())))
    left = bars.filter(~pl.col("symbol").is_in(list(problems)))
    if left.height == 0 and not batch:
        raise DataError(none_left({**report.excluded, **problems}, order))
    for s, msg in problems.items():
        report.excluded[s] = msg
        report.warn("excluded", s, f"{msg}; symbol excluded")
    return left
