"""Store operations behind the commands: fetch, update (backfill/prepend), import, validate.

Each write re-reads the stored series under the store lock, merges and replaces the file
atomically, so concurrent runs never lose bars and never write a half file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from slices.data import calendars
from slices.data.errors import DataError, EmptyResponseError, ProviderError
from slices.data.loader import Issue, gap_warning, load_bars
from slices.data.providers import Bars, Provider, RetryPolicy, bar_step, fetch_with_failover, no_provider_usable
from slices.data.schema import NOMINAL_SECONDS, check_symbol, infer_timeframes, store_timeframe
from slices.data.store import SAMPLE_ROOT, Store, iso, merge_bars, utc_now
from slices.data.validate import Finding, Rules, summarize, validate_frame

DEFAULT_SPAN = {"1d": timedelta(days=5 * 365), "1h": timedelta(days=729), "15m": timedelta(days=59),
                "5m": timedelta(days=59), "1m": timedelta(days=7)}


@dataclass
class SymbolReport:
    """Outcome for one symbol: rows added, totals after the write, provider, warnings, error;
    ``note`` is the summary table's short remark, ``notes`` are full ``note:`` lines (failover)."""

    symbol: str
    timeframe: str
    provider: str = ""
    rows: int = 0
    total: int = 0
    first: datetime | None = None
    last: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    note: str = ""
    notes: list[str] = field(default_factory=list)


def last_complete_bar(symbol: str, timeframe: str, now: datetime) -> datetime:
    """Open time of the newest bar that is complete at ``now``.

    Daily: 00:00 UTC of the last session whose close has passed (XNYS, or FX 24/5, by
    ``calendars.calendar_for``); intraday: bars whose open + length <= now. Fetching only
    complete bars means ``update`` never stores a half-formed bar that it would not refetch.
    """
    if timeframe == "1d":
        code = calendars.calendar_for(symbol)
        d = calendars.last_completed_session(code, now)
        if d is None:
            d = now.date()
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    step = bar_step(timeframe)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    n = (now - epoch) // step
    return epoch + (n - 1) * step


def _stop_if_unusable(exc: ProviderError, done: int, total: int) -> None:
    """Raise ``DataError`` (ends the run with one line) when no provider can serve anything."""
    if no_provider_usable(exc):
        left = total - done - 1
        tail = f"; stopped, {left} more symbol(s) not attempted" if left > 0 else ""
        raise DataError(f"no provider usable: {exc}{tail}") from None


def _meta(old: dict, provider: str, adjusted: bool | None, source: str, now: datetime) -> dict:
    providers = sorted(set(old.get("providers", [])) | {provider})
    return {
        "provider": provider,
        "providers": providers,
        "adjusted": adjusted,
        "source": source,
        "fetched_at": iso(now),
        "created_at": old.get("created_at") or iso(now),
    }


def _totals(rep: SymbolReport, df: pl.DataFrame) -> SymbolReport:
    """Fill the report's totals (rows, first and last bar) from the stored frame."""
    rep.total = df.height
    rep.first = df["timestamp"].min() if df.height else None
    rep.last = df["timestamp"].max() if df.height else None
    return rep


def write_merged(store: Store, symbol: str, timeframe: str, new: pl.DataFrame, mode: str,
                 provider: str, adjusted: bool | None, source: str) -> tuple[int, pl.DataFrame]:
    """Under the store lock: re-read the series, merge ``new`` (``merge_bars`` mode), write it
    atomically with refreshed metadata. Returns (rows added or replaced, stored frame)."""
    with store.lock():
        old = store.read(timeframe, symbol) if store.has(timeframe, symbol) else None
        old_meta = store.meta(timeframe, symbol) if old is not None else {}
        merged = merge_bars(old, new, mode)
        if mode == "extend":
            added = merged.height - (old.height if old is not None else 0)
        else:
            added = new.height
        if added or old is None:
            store.write(timeframe, symbol, merged, _meta(old_meta, provider, adjusted, source, utc_now()))
        return added, merged


def _each(pairs: list[tuple[str, str]], work: Callable[[SymbolReport], None],
          progress: Callable[[str], None] | None, stop: Callable[[], bool] | None = None) -> list[SymbolReport]:
    """Run ``work(report)`` for each ``(timeframe, symbol)``, one report per pair.

    A provider or data failure of one symbol is recorded in ``report.error`` and the next
    symbol goes on, except when no provider is usable at all (offline, no keys): then
    ``DataError`` ends the run (symbols already written stay written). When ``stop()`` turns
    true the remaining pairs are skipped (checked before each symbol, so a started write
    always completes); the result then has fewer reports than pairs.
    """
    out = []
    for i, (tf, sym) in enumerate(pairs):
        if stop is not None and stop():
            break
        rep = SymbolReport(sym, tf)
        try:
            work(rep)
        except ProviderError as exc:
            _stop_if_unusable(exc, i, len(pairs))
            rep.error = str(exc)
        except DataError as exc:
            rep.error = str(exc)
        out.append(rep)
        if progress:
            progress(sym)
    return out


def _store_bars(store: Store, rep: SymbolReport, bars: Bars, provider: str, mode: str) -> None:
    """Merge fetched bars into the store and record provider, warnings, notes and totals."""
    rep.provider = provider
    rep.warnings += bars.warnings
    if bars.failed_over:
        rep.note = "failover from " + ",".join(bars.failed_over)
    rep.notes += bars.notes
    rep.rows, merged = write_merged(store, rep.symbol, rep.timeframe, bars.frame, mode, provider, True, provider)
    _totals(rep, merged)


def fetch_symbols(
    store: Store, symbols: Iterable[str], timeframe: str, start: datetime | None, end: datetime | None,
    providers: list[Provider], retry: RetryPolicy | None = None, now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SymbolReport]:
    """Download each symbol (with failover) and merge it into the store (the fetched range
    replaces stored bars in that range; bars outside it are kept).

    Default range: ``DEFAULT_SPAN[timeframe]`` back from the last complete bar. Per-symbol
    failures are handled by ``_each``.
    """
    now = now or utc_now()

    def work(rep: SymbolReport) -> None:
        sym = rep.symbol
        b = end or last_complete_bar(sym, timeframe, now)
        a = start or (b - DEFAULT_SPAN[timeframe])
        if a > b:
            raise DataError(f"{sym}: start {a:%Y-%m-%d %H:%M} is after end {b:%Y-%m-%d %H:%M}")
        bars, pname = fetch_with_failover(providers, sym, timeframe, a, b, retry)
        if bars.frame.height == 0:
            raise EmptyResponseError(f"{sym} {timeframe}: {pname}: no bars in the requested range")
        _store_bars(store, rep, bars, pname, "replace_range")

    return _each([(timeframe, check_symbol(s)) for s in symbols], work, progress)


def update_symbols(
    store: Store, pairs: Iterable[tuple[str, str]], providers_for: Callable[[dict], list[Provider]],
    retry: RetryPolicy | None = None, prepend: bool = False, start: datetime | None = None,
    now: datetime | None = None, progress: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[SymbolReport]:
    """Bring stored series up to date without refetching stored bars.

    For each ``(timeframe, symbol)``: request from one bar after the last stored bar to the
    last complete bar (or, with ``prepend``, from ``start`` - default ``DEFAULT_SPAN`` before
    the first bar - to one bar before the first stored bar) and append only bars outside the
    stored range. ``providers_for(meta)`` chooses the providers from the stored metadata.
    An empty answer means "nothing new" (not an error). ``stop`` (watch mode): see ``_each``.
    """
    now = now or utc_now()

    def work(rep: SymbolReport) -> None:
        sym, tf = rep.symbol, rep.timeframe
        cur = store.entry(tf, sym)
        rep.provider = cur.meta.get("provider", "")
        rep.total, rep.first, rep.last = cur.rows, cur.first, cur.last
        step = bar_step(tf)
        if prepend:
            a, b = start or (cur.first - DEFAULT_SPAN[tf]), cur.first - step
        else:
            a, b = cur.last + step, last_complete_bar(sym, tf, now)
        if a > b:
            rep.note = "nothing before start" if prepend else "up to date"
            return
        try:
            bars, pname = fetch_with_failover(providers_for(cur.meta), sym, tf, a, b, retry)
        except EmptyResponseError:
            rep.note = "no new bars"
            return
        if cur.meta.get("provider") not in (None, "", pname, "import"):
            rep.warnings.append(f"{sym} {tf}: stored bars came from {cur.meta.get('provider')}, new bars from {pname}")
        _store_bars(store, rep, bars, pname, "extend")

    return _each(list(pairs), work, progress, stop)


class WatchStopped(DataError):
    """Raised inside a watch cycle by the retry backoff's sleep when a stop was asked for: the
    symbol being fetched is abandoned before anything of it is written. A ``DataError``, so
    ``_each`` records it as that symbol's error and its stop check then ends the cycle."""

    MESSAGE = "stopped while waiting to retry"


def watch_loop(cycle: Callable[[int], None], interval: float, stop: Callable[[], bool],
               wait: Callable[[float], object], max_cycles: int | None = None,
               clock: Callable[[], float] | None = None) -> int:
    """Run ``cycle(n)`` for n = 1, 2, ... every ``interval`` seconds until ``stop()`` is true or
    ``max_cycles`` cycles have run; returns the number of cycles started.

    Fixed rate: cycle n is due ``(n - 1) * interval`` seconds after the first one; a cycle that
    overruns its slot makes the next one start at once (missed slots are skipped, never made
    up). Between cycles ``wait(seconds)`` is called once with the time left, at most
    ``interval`` (the command line passes ``threading.Event.wait``: it returns when the time
    is up or at once when a SIGTERM/SIGINT handler sets the event).
    """
    import time

    clock = clock or time.monotonic
    n = 0
    due = clock()
    while not stop():
        n += 1
        cycle(n)
        if max_cycles is not None and n >= max_cycles:
            break
        due = max(due + interval, clock())
        left = min(due - clock(), interval)
        if left > 0 and not stop():
            wait(left)
    return n


def import_files(store: Store, paths: Iterable[str | Path], timeframe: str | None = None,
                 adjust: bool = True, symbols: Iterable[str] = (), start: datetime | None = None,
                 end: datetime | None = None, keep_suspicious: bool = False) -> tuple[list[SymbolReport], list[Issue]]:
    """Import bar files into the store: exactly what contract 2 yields (``loader.load_bars``).

    Every file is read and checked before anything is written: a reading fault, a named symbol
    that breaks rule 11 or 13, a timeframe that disagrees with ``timeframe`` or that the store
    cannot hold raises ``DataError`` and leaves the store untouched. Unnamed invalid symbols
    are excluded (an ``excluded`` warning) and never touch their stored bars. Per symbol, the
    imported bars replace the stored bars of the same timestamps; the rest is kept.
    Returns (one report per imported symbol, every warning).
    """
    paths = list(paths)
    loaded = load_bars(paths, list(symbols), start, end, adjust, keep_suspicious)
    where = {sb.symbol: f"{', '.join(sb.sources)}: {sb.symbol}" for sb in loaded.bars}
    sparse: dict[str, str] = {}
    tfs = infer_timeframes({sb.symbol: sb.frame["timestamp"] for sb in loaded.bars}, where, sparse)
    for sb in loaded.bars:  # a sparse symbol's gaps, measured against its timeframe's spacing
        if sb.symbol in sparse:
            gap = gap_warning(sb.symbol, sb.frame["timestamp"].dt.epoch("us").to_numpy(), sb.src, sb.sources,
                              NOMINAL_SECONDS[sparse[sb.symbol]])
            if gap is not None:
                sb.warnings.append(gap)
                loaded.warnings.append(gap)
    # a single bar has no spacing: it is 1d unless -t says otherwise
    staged = [(sb, store_timeframe(timeframe if timeframe and sb.frame.height < 2 else tfs[sb.symbol], timeframe,
                                   where[sb.symbol])) for sb in loaded.bars]
    out = []
    with store.lock():
        for sb, tf in staged:
            rep = SymbolReport(sb.symbol, tf, provider="import", warnings=[w.text for w in sb.warnings])
            rep.rows, merged = write_merged(store, sb.symbol, tf, sb.frame, "upsert", "import", sb.adjusted,
                                            ", ".join(sb.sources))
            out.append(_totals(rep, merged))
    return out, loaded.warnings


@dataclass
class Target:
    """One series to validate: where it comes from and its raw bars."""

    symbol: str
    timeframe: str
    frame: pl.DataFrame
    origin: str


def validate_targets(targets: list[Target], calendar: str, asof: datetime | None, rules: Rules | None = None,
                     keep_suspicious: bool = False) -> list[Finding]:
    """Run ``validate_frame`` over every target; findings in target order."""
    out: list[Finding] = []
    for t in targets:
        out.extend(validate_frame(t.frame, t.symbol, t.timeframe, calendar, asof, rules, keep_suspicious))
    return out


def record_validation(store: Store, targets: list[Target], findings: list[Finding], now: datetime) -> bool:
    """Write ``last_validated`` and counts for store targets to ``<root>/meta/validation.json``.

    Skipped (returns False) for the read-only embedded sample or an unwritable store.
    """
    if store.read_only or store.root.resolve() == SAMPLE_ROOT:
        return False
    by: dict[tuple[str, str], list[Finding]] = {(t.timeframe, t.symbol): [] for t in targets if t.origin == "store"}
    if not by:
        return False
    for f in findings:
        if (f.timeframe, f.symbol) in by:
            by[(f.timeframe, f.symbol)].append(f)
    recs = {}
    for key, fs in by.items():
        s = summarize(fs)
        recs[key] = {"last_validated": iso(now), "errors": s["error"], "warnings": s["warning"], "infos": s["info"]}
    try:
        with store.lock(timeout=10):
            store.record_validation(recs)
    except (DataError, OSError):
        return False
    return True
