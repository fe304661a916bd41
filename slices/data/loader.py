"""Read direct bar files (SLICES.md, contract 2) for ``import`` and ``validate --data``.

Two layers:

- ``read_file`` applies the reading rules 1-9 to one file and returns one ``FilePart`` per
  symbol: the rows within ``--start``/``--end`` in file order, prices as found (not yet
  adjusted), with the adj_close cells kept beside them. Reading faults (extension, missing or
  unreadable file, ambiguous or missing columns, bad time cells, bad symbols) raise
  ``DataError`` naming the file.
- ``load_bars`` applies rules 10-14 over several files: per symbol, the first rule-11 fault in
  file order, the suspicious-series rule (13), and the exclusion of invalid symbols that were
  not named (14). Its result is exactly what ``import`` stores.

``validate --data`` uses ``read_file`` and ``raw_symbol_frames`` and reports every fault of the
raw rows instead (``validate.validate_frame``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path

import numpy as np
import polars as pl

from slices.data.errors import DataError
from slices.data.schema import COLUMNS, PRICE_COLUMNS, check_symbol, first_suspicious, fmt_price, fmt_time

EXTENSIONS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
TIME_NAMES = ("date", "datetime", "timestamp", "time")
INDEX_NAMES = ("__index_level_0__", "index", "unnamed: 0", "")
ALIASES = {"adjclose": "adj_close", "adjusted_close": "adj_close", "ticker": "symbol"}
WANTED = (*PRICE_COLUMNS, "volume", "adj_close", "symbol")
NULL_MARKERS = ("", "na", "n/a", "nan", "null", "none", "nil", "-", "--", "#n/a", "#na", "#value!")
GAP_MIN_SECONDS = 4 * 86400  # a gap is longer than 4 calendar days (a long holiday weekend: Fri -> Tue)
GAP_MEDIANS = 5              # and longer than 5 median spacings (SLICES.md contract 2, rule 12)
# ISO text at 00:00 local time with an explicit offset (yfinance's daily bars written by pandas)
MIDNIGHT_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]00:00(:00(\.0*)?)?([+-]\d{2}(:?\d{2})?|[Zz])$"
_US = 1_000_000


@dataclass
class Issue:
    """A warning: ``kind`` (for summaries: ``no_volume_column``, ``missing_volume``,
    ``outside_range``, ``zero_volume``, ``gap``, ``suspicious``, ``excluded``) and the full text."""

    kind: str
    text: str
    symbol: str = ""


@dataclass
class FilePart:
    """One symbol's rows from one file, within the range, in file order.

    ``frame`` columns: ``timestamp`` Datetime(us, UTC), ``open high low close volume`` Float64
    (null where a cell is missing; prices NOT yet adjusted; volume 0 without a volume column),
    ``adj`` Float64 (the adj_close cell, or all null when there is no adj_close column or
    ``adjust`` is off), ``no_volume`` Boolean (the file has no volume column) and ``fault``
    Boolean (the row breaks a rule-11 price or volume check).
    """

    symbol: str
    source: str
    frame: pl.DataFrame
    adjusted: bool | None
    warnings: list[Issue] = field(default_factory=list)


@dataclass
class SymbolBars:
    """A symbol that passed contract 2: ``frame`` in the store schema (contract 1), strictly
    increasing; ``sources`` the files it came from; ``warnings`` the rule-12 warnings."""

    symbol: str
    frame: pl.DataFrame
    sources: list[str]
    adjusted: bool | None
    warnings: list[Issue] = field(default_factory=list)
    src: np.ndarray | None = None  # index into ``sources`` of each row of ``frame``


@dataclass
class Loaded:
    """Result of ``load_bars``: the usable symbols (file order) and every warning, exclusions
    (kind ``excluded``, text ``<file>: <SYM> <time>: <reason>; symbol excluded``) included."""

    bars: list[SymbolBars]
    warnings: list[Issue]


def normalise_name(name: str) -> str:
    """Rule 2: strip, lower-case, runs of spaces and hyphens -> one underscore, then aliases."""
    norm = re.sub(r"[ \-]+", "_", name.strip().lower())
    return ALIASES.get(norm, norm)


def _read_raw(path: Path) -> pl.DataFrame:
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported extension {path.suffix!r} (use .csv, .txt, .parquet or .pq)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if kind == "csv":
            return pl.read_csv(path, infer_schema=False)  # every cell as text: types decided below
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises many types for unreadable input
        raise DataError(f"{path}: unreadable {kind} file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None


def _columns(df: pl.DataFrame, where: str) -> tuple[str, dict[str, str]]:
    """Rules 2-3: the time column and ``{canonical name: column}`` for the wanted columns."""
    by: dict[str, str] = {}
    for col in df.columns:
        norm = normalise_name(col)
        if norm in WANTED or norm in TIME_NAMES:
            if norm in by:
                raise DataError(f"{where}: columns {by[norm]!r} and {col!r} both mean {norm}")
            by[norm] = col
    for col in df.columns:
        if normalise_name(col) in TIME_NAMES:
            return col, by
    for col in df.columns:
        if col.strip().lower() in INDEX_NAMES:
            return col, by
    raise DataError(f"{where}: no time column (expected date, datetime, timestamp or time, or a pandas index)")


def _epoch_us(values: pl.Series) -> pl.Series:
    """Rule 4: an integer is a Unix epoch in s (|v| < 1e11), ms (< 1e14), us (< 1e17), else ns."""
    v = values.cast(pl.Int64)
    a = v.abs()
    return (pl.select(pl.when(a < 10**11).then(v * _US).when(a < 10**14).then(v * 1000)
                      .when(a < 10**17).then(v).otherwise(v // 1000)).to_series())


def _iso_us(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def parse_times(s: pl.Series, where: str) -> pl.Series:
    """Rule 4: any accepted time column -> ``Datetime(us, UTC)``; ``DataError`` naming the
    column and the first bad value otherwise. Zoned values (a zoned datetime, or ISO text with an
    offset) that are all 00:00 local time are dates: 00:00 UTC of that local date (yfinance
    writes daily bars as America/New_York midnight)."""
    name = s.name
    if s.null_count():
        raise DataError(f"{where}: time column {name!r}: empty cell in row {int(s.is_null().arg_max()) + 2}")
    dt = s.dtype
    if isinstance(dt, pl.Date):
        return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dt, pl.Datetime):
        if dt.time_zone is None or (s.dt.time() == time(0)).all():  # naive, or local midnights (dates)
            s = s.dt.replace_time_zone(None).dt.replace_time_zone("UTC")
        else:
            s = s.dt.convert_time_zone("UTC")
        return s.dt.cast_time_unit("us")
    if dt.is_integer():
        return _epoch_us(s).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dt == pl.String:
        t = s.str.strip_chars()
        if t.str.contains(r"^-?\d+$").all():
            return _epoch_us(t.cast(pl.Int64)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        if t.str.contains(MIDNIGHT_WITH_OFFSET).all():
            t = t.str.slice(0, 10)
        uniq = t.unique(maintain_order=True)
        out = []
        for text in uniq.to_list():
            try:
                out.append(_iso_us(text))
            except ValueError:
                raise DataError(f"{where}: time column {name!r}: cannot parse {text!r} as a date or time") from None
        us = t.replace_strict(uniq, pl.Series(out, dtype=pl.Int64), return_dtype=pl.Int64)
        return us.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    raise DataError(f"{where}: time column {name!r} has type {dt} (first value {s[0]!r}); expected dates, times or epoch integers")


def _numbers(s: pl.Series) -> pl.Series:
    """Rule 7: cells -> Float64; empty, null markers and non-numbers -> null; NaN -> null."""
    if s.dtype == pl.String:
        t = s.str.strip_chars()
        t = pl.select(pl.when(t.str.to_lowercase().is_in(NULL_MARKERS)).then(None).otherwise(t)).to_series()
        s = t.cast(pl.Float64, strict=False)
    elif s.dtype.is_numeric():
        s = s.cast(pl.Float64)
    else:  # booleans, dates, lists...: not numbers
        s = pl.Series(s.name, [None] * s.len(), dtype=pl.Float64)
    return s.fill_nan(None)


def read_file(path: str | Path, start: datetime | None = None, end: datetime | None = None,
              adjust: bool = True) -> list[FilePart]:
    """Read one bar file (contract 2, rules 1-9) into one ``FilePart`` per symbol, in order of
    first appearance. ``start``/``end`` (inclusive, UTC) select the rows used.

    Raises ``DataError`` naming the file for: an unsupported extension, a missing or unreadable
    file, two columns meaning the same thing, no time column, missing price columns, a bad
    time cell, an empty or invalid symbol.
    """
    path = Path(path)
    where = str(path)
    raw = _read_raw(path)
    tcol, by = _columns(raw, where)
    missing = [c for c in PRICE_COLUMNS if c not in by]
    if missing:
        raise DataError(f"{where}: missing price column(s) {', '.join(missing)}")
    ts = parse_times(raw[tcol], where) if raw.height else pl.Series("timestamp", [], dtype=pl.Datetime("us", "UTC"))
    cols = {"timestamp": ts.alias("timestamp")}
    for c in PRICE_COLUMNS:
        cols[c] = _numbers(raw[by[c]]).alias(c)
    cols["volume"] = _numbers(raw[by["volume"]]).alias("volume") if "volume" in by else pl.Series("volume", [0.0] * raw.height)
    use_adj = adjust and "adj_close" in by
    cols["adj"] = _numbers(raw[by["adj_close"]]).alias("adj") if use_adj else pl.Series("adj", [None] * raw.height, dtype=pl.Float64)
    adjusted = True if use_adj else (False if "adj_close" in by else None)
    cols["no_volume"] = pl.Series("no_volume", [("volume" not in by)] * raw.height, dtype=pl.Boolean)
    df = pl.DataFrame(list(cols.values()))
    df = df.with_columns(_fault(use_adj))  # once per file, not per symbol
    warn = [] if "volume" in by else [Issue("no_volume_column", f"{where}: no volume column; volume set to 0")]
    if "symbol" in by:
        sym = raw[by["symbol"]].cast(pl.String).str.strip_chars().str.to_uppercase()
        empty = sym.is_null() | (sym == "")
        if empty.any():
            raise DataError(f"{where}: empty symbol cell in row {int(empty.arg_max()) + 2}")
        df = df.with_columns(sym.alias("__symbol"))
    else:
        df = df.with_columns(pl.lit(path.stem.strip().upper()).alias("__symbol"))
    if start is not None:
        df = df.filter(pl.col("timestamp") >= start)
    if end is not None:
        df = df.filter(pl.col("timestamp") <= end)
    if df.height == 0 and "symbol" not in by:
        return [FilePart(check_symbol(path.stem, where), where, df.drop("__symbol"), adjusted, warn)]
    parts = []
    for (name,), part in df.partition_by("__symbol", as_dict=True, maintain_order=True).items():
        parts.append(FilePart(check_symbol(name, where), where, part.drop("__symbol"), adjusted, list(warn)))
    return parts


def adjusted_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Rule 8: store columns with ``open high low close`` x ``adj / close`` where ``adj`` is set."""
    factor = pl.when(pl.col("adj").is_not_null()).then(pl.col("adj") / pl.col("close")).otherwise(1.0)
    has_adj = frame["adj"].null_count() < frame.height
    if not has_adj:
        return frame.select(COLUMNS)
    return frame.with_columns([(pl.col(c) * factor).alias(c) for c in PRICE_COLUMNS]).select(COLUMNS)


def _row_fault(row: dict, use_adj: bool) -> str | None:
    """Rule 11 price/volume faults of one row (the first found), or None."""
    for c in PRICE_COLUMNS:
        v = row[c]
        if v is None:
            return f"missing {c}"
        if not np.isfinite(v):
            return f"infinite {c}"
        if v <= 0:
            return f"non-positive {c} {fmt_price(v)}"
    if use_adj:
        a = row["adj"]
        if a is None:
            return "missing adj_close"
        if not np.isfinite(a) or a <= 0:
            return f"non-positive adj_close {fmt_price(a)}"
    if row["high"] < row["low"]:
        return f"high {fmt_price(row['high'])} below low {fmt_price(row['low'])}"
    if row["volume"] is not None and row["volume"] < 0:
        return f"negative volume {fmt_price(row['volume'])}"
    return None


def _fault(use_adj: bool) -> pl.Expr:
    """Rule 11 row faults (prices, adj_close, high < low, negative volume) as one Boolean."""
    checks = [pl.col(c).is_null() | ~pl.col(c).is_finite() | (pl.col(c) <= 0) for c in PRICE_COLUMNS]
    if use_adj:
        checks.append(pl.col("adj").is_null() | ~pl.col("adj").is_finite() | (pl.col("adj") <= 0))
    checks += [(pl.col("high") < pl.col("low")).fill_null(False), (pl.col("volume") < 0).fill_null(False)]
    return pl.any_horizontal(checks).fill_null(True).alias("fault")


def part_error(part: FilePart) -> tuple[int, str] | None:
    """Rule 11 on one file's rows of a symbol, in file order: (row index, reason) of the first
    offending row, or None. Reasons: ``duplicate timestamp``, ``timestamp not increasing``,
    ``missing <col>``, ``infinite <col>``, ``non-positive <col> <v>``, ``missing adj_close``,
    ``non-positive adj_close <v>``, ``high <h> below low <l>``, ``negative volume <v>``."""
    f = part.frame
    if f.height == 0:
        return None
    use_adj = part.adjusted is True
    bad = f["fault"].to_numpy()
    us = f["timestamp"].dt.epoch("us").to_numpy()
    order = np.concatenate(([False], np.diff(us) <= 0))
    hit = np.flatnonzero(bad | order)
    if hit.size == 0:
        return None
    i = int(hit[0])
    reason = _row_fault(f.row(i, named=True), use_adj)
    if reason is None:
        reason = "duplicate timestamp" if us[i] == us[i - 1] else f"timestamp not increasing (previous row {fmt_time(int(us[i - 1]))})"
    return i, reason


def _daily(us: np.ndarray) -> bool:
    return bool(us.size) and bool((us % (86400 * _US) == 0).all())


def _warnings(sym: str, frame: pl.DataFrame, src: np.ndarray, sources: list[str], raw: pl.DataFrame) -> list[Issue]:
    """Rule 12 warnings of a valid symbol (sorted frame; ``src`` the file index of each row;
    ``raw`` the same rows' ``volume`` before missing cells became 0, and ``no_volume``). The
    gap warning (spacings longer than both 5 x the median spacing and 4 calendar days) is
    ``gap_warning``; a sparse symbol's is added by ``sparse_gap_warning`` once its timeframe is known."""
    us = frame["timestamp"].dt.epoch("us").to_numpy()
    daily = _daily(us)
    out = []

    def first(mask: np.ndarray, kind: str, what: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            i = int(idx[0])
            out.append(Issue(kind, f"{sources[src[i]]}: {sym}: {idx.size:,} {what} (first {fmt_time(int(us[i]), daily)})", sym))

    o, h, lo, c = (frame[k].to_numpy() for k in PRICE_COLUMNS)
    first((np.minimum(o, c) < lo) | (np.maximum(o, c) > h), "outside_range", "bar(s) with open or close outside low..high")
    no_col = raw["no_volume"].to_numpy()
    first(raw["volume"].is_null().to_numpy(), "missing_volume", "missing volume cell(s) set to 0")
    first((raw["volume"].to_numpy() == 0) & ~no_col, "zero_volume", "zero-volume bar(s)")
    if us.size > 1:
        gap = gap_warning(sym, us, src, sources, float(np.median(np.diff(us))) / _US)
        if gap is not None:
            out.append(gap)
    return out


def gap_warning(sym: str, us: np.ndarray, src: np.ndarray, sources: list[str], step_seconds: float) -> Issue | None:
    """Rule 12: the ``gap`` warning of a symbol whose sorted bar times are ``us`` (epoch
    microseconds, ``src`` the file index of each), or None: spacings longer than both 5 x
    ``step_seconds`` (the median spacing; a sparse symbol's timeframe's spacing) and 4 days."""
    d = np.diff(us)
    gap = d > max(GAP_MIN_SECONDS * _US, GAP_MEDIANS * step_seconds * _US)
    if not gap.any():
        return None
    k = int(np.argmax(np.where(gap, d, 0)))
    return Issue("gap", f"{sources[src[k + 1]]}: {sym}: {int(gap.sum()):,} gap(s) in the bars (largest "
                        f"{d[k] / 86400e6:.1f} days after {fmt_time(int(us[k]), _daily(us))})", sym)


def raw_symbol_frames(parts: list[FilePart]) -> dict[str, tuple[pl.DataFrame, list[str]]]:
    """Group file parts by symbol: ``{symbol: (adjusted raw rows in file order, files)}``
    (no checks; for ``validate --data``)."""
    out: dict[str, tuple[list[pl.DataFrame], list[str]]] = {}
    for p in parts:
        frames, srcs = out.setdefault(p.symbol, ([], []))
        frames.append(adjusted_frame(p.frame))
        srcs.append(p.source)
    return {s: (pl.concat(fs), srcs) for s, (fs, srcs) in out.items()}


def load_bars(paths: list[str | Path], symbols: list[str] | tuple[str, ...] = (), start: datetime | None = None,
              end: datetime | None = None, adjust: bool = True, keep_suspicious: bool = False) -> Loaded:
    """Contract 2 over several files: the bars every slice uses.

    ``symbols``: the symbols the user named (only those are loaded; a named symbol absent
    from the files, or whose data breaks rule 11 or 13, raises ``DataError``). With none named,
    every symbol of the files is loaded and an invalid one is excluded with an ``excluded``
    warning; ``DataError`` when none is left (the symbol's fault when there was one symbol; else
    with the exclusions as the error's ``warnings``). A timestamp of one symbol in two files raises
    ``DataError`` naming both files (rule 10). ``keep_suspicious`` turns rule 13 into a warning.
    """
    named = list(dict.fromkeys(symbols))
    parts: dict[str, list[FilePart]] = {}
    for p in paths:
        for part in read_file(p, start, end, adjust):
            if not named or part.symbol in named:
                parts.setdefault(part.symbol, []).append(part)
    absent = [s for s in named if s not in parts]
    if absent:
        raise DataError(f"not in {', '.join(str(p) for p in paths)}: {' '.join(absent)}")
    bars: list[SymbolBars] = []
    warnings: list[Issue] = []
    seen: set[str] = set()
    rng = " in the --start/--end range" if start is not None or end is not None else ""
    for sym in (named or list(parts)):
        ps = parts[sym]
        sources = [p.source for p in ps]
        problem = None
        if sum(p.frame.height for p in ps) == 0:
            problem = f"{sources[0]}: {sym}: no rows{rng}"
        for p in ps:
            if problem is None and (err := part_error(p)) is not None:
                us = p.frame["timestamp"].dt.epoch("us").to_numpy()
                problem = f"{p.source}: {sym} {fmt_time(int(us[err[0]]), _daily(us))}: {err[1]}"
        merged = raw = src = None
        if problem is None:
            frames = [p.frame.with_columns(pl.lit(i, dtype=pl.Int32).alias("__src")) for i, p in enumerate(ps)]
            both = pl.concat(frames).sort("timestamp", maintain_order=True)
            dup = both["timestamp"].is_duplicated()
            if dup.any():
                row = both.filter(dup).head(2)
                t = fmt_time(int(row["timestamp"].dt.epoch("us")[0]), _daily(both["timestamp"].dt.epoch("us").to_numpy()))
                raise DataError(f"{sym} {t}: in both {sources[row['__src'][0]]} and {sources[row['__src'][1]]}")
            src = both["__src"].to_numpy()
            raw = both.select("volume", "no_volume")
            merged = adjusted_frame(both.with_columns(pl.col("volume").fill_null(0.0)))
            us = merged["timestamp"].dt.epoch("us").to_numpy()
            lows = merged.select(pl.min_horizontal(PRICE_COLUMNS)).to_series().to_numpy()
            sus = first_suspicious(lows, merged["close"].to_numpy())
            if sus is not None:
                text = f"{sources[src[sus[0]]]}: {sym} {fmt_time(int(us[sus[0]]), _daily(us))}: {sus[1]}"
                if keep_suspicious:
                    warnings.append(Issue("suspicious", f"{text} (kept: --keep-suspicious)", sym))
                else:
                    problem = text
        if problem is not None:
            if named:
                raise DataError(problem)
            warnings.append(Issue("excluded", f"{problem}; symbol excluded", sym))
            continue
        sb = SymbolBars(sym, merged, sources, ps[0].adjusted, [w for p in ps for w in p.warnings], src)
        sb.warnings += _warnings(sym, merged, src, sources, raw)
        for w in sb.warnings:
            if w.kind != "no_volume_column" or w.text not in seen:  # once per file, not per symbol
                seen.add(w.text)
                warnings.append(w)
        bars.append(sb)
    if not bars:  # one line: the first excluded symbol's reason (file order), then how many more
        excluded = [w for w in warnings if w.kind == "excluded"]
        more = len(excluded) - 1
        raise DataError(excluded[0].text.removesuffix("; symbol excluded")
                        + (f" (and {more:,} more symbol{'s' if more > 1 else ''} excluded)" if more else ""))
    return Loaded(bars, warnings)
