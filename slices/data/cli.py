"""Command line of the data slice: ``python -m slices.data COMMAND``.

Exit codes: 0 success; 1 ``validate --strict`` found an error-severity fault; 2 bad input, a
usage error or a failed operation (one line ``error: ...`` on stderr, no traceback unless
``--debug``). Style: SLICES.md "Command-line style".
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import polars as pl

from slices.data.errors import DataError
from slices.data.loader import Issue, raw_symbol_frames, read_file
from slices.data.providers import RetryPolicy, make_provider, provider_chain
from slices.data.schema import TIMEFRAMES, check_symbol, fmt_price, fmt_time, infer_timeframes
from slices.data.service import (
    SymbolReport,
    Target,
    WatchStopped,
    fetch_symbols,
    import_files,
    record_validation,
    update_symbols,
    validate_targets,
    watch_loop,
)
from slices.data.store import SAMPLE_ROOT, Store, atomic_write_bytes, iso, open_store, utc_now
from slices.data.validate import SEVERITIES, parse_asof, summarize

COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"
MANY_WARNINGS = 10  # more than this many warnings are summarised by kind
WARNING_LABELS = {
    "no_volume_column": "files without a volume column",
    "missing_volume": "series with missing volume cells",
    "outside_range": "series with open or close outside low..high",
    "zero_volume": "series with zero-volume bars",
    "gap": "series with gaps",
    "suspicious": "suspicious series kept",
    "provider": "provider warnings",
}


def warn(msg: str) -> None:
    """Print ``warning: msg`` on stderr."""
    click.echo(f"warning: {msg}", err=True)


def note(msg: str) -> None:
    """Print ``note: msg`` on stderr."""
    click.echo(f"note: {msg}", err=True)


def fail(msg: str) -> None:
    """Print ``error: msg`` on stderr and exit 2."""
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


class SliceGroup(click.Group):
    """Click group: ``DataError``, file-system and usage errors become one stderr line and exit
    code 2; unexpected exceptions too, unless ``--debug`` asks for the traceback."""

    argv: list[str] = []

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DataError as exc:
            # "AAPL, MSFT" split by the shell: a token that starts or ends with a comma
            split = any(a.endswith(",") or a.startswith(",") for a in self.argv)
            for w in exc.warnings:
                warn(w)
            fail(str(exc).replace("\n", " ") + (f"; {COMMA_HINT}" if split else ""))
        except OSError as exc:  # unwritable store or export target, disk full, ...
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            fail("interrupted; the store is unchanged except for completed symbols")
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("debug"):
                raise
            first = (str(exc).splitlines() or [""])[0][:200]
            fail(f"unexpected {type(exc).__name__}: {first} (run with --debug for the traceback)")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = self.argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            hint = f"; {COMMA_HINT}" if any("," in a for a in argv) else ""
            fail(f"{where}{exc.format_message()} (-h for help){hint}")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.exceptions.Abort:
            fail("aborted")
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


class When(click.ParamType):
    """``--start``/``--end``: ``YYYY-MM-DD`` or ISO-8601, UTC unless an offset is given. A bare
    date as ``--end`` means the whole day (inclusive)."""

    name = "date"

    def __init__(self, end: bool = False):
        self.end = end

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
        except ValueError:
            self.fail(f"{value!r}: use YYYY-MM-DD or an ISO-8601 time like 2020-01-02T14:30:00Z", param, ctx)
        dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
        if self.end and len(text) <= 10:
            dt += timedelta(days=1) - timedelta(microseconds=1)
        return dt


class Interval(click.ParamType):
    """``update --watch``: seconds between cycles, ``60``, ``30s``, ``5m``, ``1h`` or ``1.5m``
    (at least 1 second). Converts to seconds (float)."""

    name = "interval"
    UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            secs = float(value)
        else:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", str(value).strip().lower())
            if not m:
                self.fail(f"{value!r}: use seconds or a number with s, m or h (60, 30s, 5m, 1h)", param, ctx)
            secs = float(m.group(1)) * self.UNITS[m.group(2)]
        if not secs >= 1:
            self.fail(f"{value!r}: the interval must be at least 1 second", param, ctx)
        return secs


def _set_debug(ctx, _param, value):
    if value:
        ctx.meta["debug"] = True


def common(f):
    """``--debug`` (tracebacks on unexpected errors); on the group and every command."""
    return click.option("--debug", is_flag=True, expose_value=False, callback=_set_debug,
                        help="Show the traceback of an unexpected error.")(f)


def store_option(f):
    """``--store DIR`` (else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``)."""
    return click.option("--store", "store", default=None, metavar="DIR",
                        help="Store root (default: $GPT_TRADER_STORE, else ~/.gpt-trader/store).")(f)


def timeframe_option(default: str | None, help_text: str = "Bar timeframe."):
    """``--timeframe/-t`` restricted to the store's timeframes."""
    return click.option("--timeframe", "-t", type=click.Choice(TIMEFRAMES), default=default,
                        show_default=default is not None, help=help_text)


def symbols_option(f):
    """``--symbols/-s A,B`` (comma list, repeatable)."""
    return click.option("--symbols", "-s", "symbol_lists", multiple=True, metavar="A,B",
                        help="Symbols, comma-separated (repeatable).")(f)


def format_option(f):
    """``--format/-f table|json``."""
    return click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="table for people, json for programs (keys in the README).")(f)


def range_options(f):
    """``--start``/``--end`` (inclusive, UTC)."""
    f = click.option("--end", type=When(end=True), default=None, metavar="DATE",
                     help="Last bar, inclusive: YYYY-MM-DD (the whole day) or ISO-8601, UTC.")(f)
    return click.option("--start", type=When(), default=None, metavar="DATE",
                        help="First bar, inclusive: YYYY-MM-DD or ISO-8601, UTC.")(f)


def gather_symbols(*groups) -> list[str]:
    """Positional symbols and ``--symbols`` lists, split on commas, checked (``check_symbol``
    before any path is built), upper-cased, de-duplicated in order."""
    out: list[str] = []
    for group in groups:
        for item in group or ():
            for part in item.split(","):
                if part.strip():
                    sym = check_symbol(part)
                    if sym not in out:
                        out.append(sym)
    return out


def required_symbols(command: str, *groups) -> list[str]:
    """``gather_symbols``, with ``DataError`` when none is named."""
    syms = gather_symbols(*groups)
    if not syms:
        raise DataError(f"{command}: name at least one symbol (SYMBOLS or --symbols A,B)")
    return syms


def _count(n: int) -> str:
    return f"{n:,}"


def table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Plain fixed-width text table (numbers right-aligned when listed in ``right``)."""
    right = right or set()
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(vals)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _json(doc) -> None:
    click.echo(json.dumps(doc, indent=1))


def _t(dt, timeframe: str) -> str | None:
    return None if dt is None else fmt_time(dt, timeframe == "1d")


def emit_warnings(issues: list[Issue]) -> None:
    """Warnings on stderr: each one when there are few, else one line per kind with counts and
    the first; symbol exclusions are always shown one by one."""
    excluded = [i for i in issues if i.kind == "excluded"]
    rest = [i for i in issues if i.kind != "excluded"]
    if len(rest) <= MANY_WARNINGS:
        for i in rest:
            warn(i.text)
    else:
        kinds: dict[str, list[Issue]] = {}
        for i in rest:
            kinds.setdefault(i.kind, []).append(i)
        for kind, group in kinds.items():
            label = WARNING_LABELS.get(kind, kind)
            if len(group) == 1:
                warn(group[0].text)
            else:
                warn(f"{_count(len(group))} {label}; first: {group[0].text}")
    for i in excluded:
        warn(i.text)


def _display(root: Path) -> str:
    try:
        return "~/" + str(root.expanduser().relative_to(Path.home()))
    except ValueError:
        return str(root)


def _sample() -> Store:
    return Store(SAMPLE_ROOT, read_only=True)


def _falls_back(st: Store) -> bool:
    return not st.named and st.root.resolve() != SAMPLE_ROOT


def _read_series(store: Store, symbol: str, timeframe: str) -> tuple[pl.DataFrame, Store]:
    """The series from the store; for the default store only, else from the embedded sample
    (with the contract's note). ``DataError`` when neither has it."""
    symbol = check_symbol(symbol)
    if store.has(timeframe, symbol):
        return store.read(timeframe, symbol), store
    sample = _sample()
    if _falls_back(store) and sample.has(timeframe, symbol):
        note(f"{symbol} {timeframe} from the embedded sample (not in the default store {_display(store.root)})")
        return sample.read(timeframe, symbol), sample
    raise DataError(f"{symbol} {timeframe} not in store {store.root}")


def _timeframes_of(store: Store, symbol: str, timeframe: str | None) -> list[str]:
    """``[timeframe]``, or every timeframe the symbol exists in (store, or the sample for the
    default store); ``DataError`` when it exists in none."""
    if timeframe:
        return [timeframe]
    tfs = [tf for tf in TIMEFRAMES if store.has(tf, symbol) or (_falls_back(store) and _sample().has(tf, symbol))]
    if not tfs:
        raise DataError(f"{symbol} not in store {store.root}" + (" nor in the embedded sample" if _falls_back(store) else ""))
    return tfs


@contextmanager
def _progress(n: int, label: str, file=None, quiet: bool = False):
    """A progress bar on ``file`` (default stderr) for several symbols when it is a terminal;
    yields a ``step(symbol)`` callback (a no-op otherwise or with ``--quiet``)."""
    file = file if file is not None else sys.stderr
    if quiet or n < 2 or not file.isatty():
        yield lambda _sym: None
        return
    with click.progressbar(length=n, label=label, file=file, item_show_func=lambda s: s) as bar:
        yield lambda sym: bar.update(1, sym)


def _report_dict(r: SymbolReport, kind: str) -> dict:
    return {"symbol": r.symbol, "timeframe": r.timeframe, "provider": r.provider or None, kind: r.rows,
            "total": r.total, "first": _t(r.first, r.timeframe), "last": _t(r.last, r.timeframe),
            "warnings": r.warnings, "note": r.note or None, "error": r.error}


def _summary(reports: list[SymbolReport], kind: str) -> None:
    rows = []
    for r in reports:
        if r.error:
            continue
        rows.append([r.symbol, r.timeframe, r.provider or "-", _count(r.rows), _count(r.total), _t(r.first, r.timeframe) or "-",
                     _t(r.last, r.timeframe) or "-", _count(len(r.warnings)), r.note])
    if rows:
        click.echo(table(["symbol", "tf", "provider", kind, "total", "first", "last", "warnings", "note"], rows, {3, 4, 7}))


def _emit(reports: list[SymbolReport], kind: str, fmt: str, root: Path) -> None:
    """Print fetch/update results: warnings and notes on stderr, the table or JSON on stdout,
    one ``error:`` line per failed symbol (exit 2 when any failed)."""
    emit_warnings([Issue("provider", w, r.symbol) for r in reports for w in r.warnings])
    for r in reports:
        for n in r.notes:
            note(n)
    if fmt == "json":
        _json({"store": str(root), "results": [_report_dict(r, kind) for r in reports]})
    else:
        _summary(reports, kind)
    failed = [r for r in reports if r.error]
    for r in failed:
        click.echo(f"error: {r.error}", err=True)
    if failed:
        sys.exit(2)


@contextmanager
def _creating(st: Store):
    """Note when a writing command that succeeded created the named store folder."""
    existed = st.root.exists()
    yield  # on an error nothing is noted: the error line is the only line on stderr
    if not existed and st.root.is_dir():
        note(f"created store {st.root}")


@click.group(cls=SliceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@common
def cli():
    """GPT-Trader data slice: fetch, store, validate and keep market data current.

    Store layout and schema: SLICES.md contract 1. Every command takes --store DIR.
    """


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@range_options
@timeframe_option("1d")
@click.option("--provider", type=click.Choice(["yahoo", "alpaca", "auto"]), default="auto", show_default=True,
              help="auto: primary ($GPT_TRADER_PROVIDER, default yahoo), then the other on errors.")
@format_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@store_option
@common
def fetch(symbols, symbol_lists, start, end, timeframe, provider, fmt, quiet, store):
    """Download SYMBOLS and write them to the store (default range: 5 years daily, 729 days
    1h, 59 days 15m/5m, 7 days 1m, up to the last complete bar)."""
    syms = required_symbols("fetch", symbols, symbol_lists)
    st = open_store(store, writing=True)
    st.check_writable()
    providers = [make_provider(n) for n in provider_chain(provider)]
    with _creating(st), _progress(len(syms), "fetching", quiet=quiet) as step:
        reports = fetch_symbols(st, syms, timeframe, start, end, providers, progress=step)
    _emit(reports, "rows", fmt, st.root)


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@timeframe_option(None, "Only this timeframe (default: every stored one).")
@click.option("--provider", type=click.Choice(["stored", "yahoo", "alpaca", "auto"]), default="stored", show_default=True,
              help="stored: the provider recorded for the symbol first, the other on errors.")
@click.option("--prepend", is_flag=True, help="Extend history backwards instead of forwards.")
@click.option("--start", type=When(), default=None, metavar="DATE",
              help="With --prepend: how far back, YYYY-MM-DD (default: the timeframe's fetch span).")
@click.option("--watch", type=Interval(), default=None, metavar="INTERVAL",
              help="Keep the store current: update every INTERVAL (60, 30s, 5m, 1h) until Ctrl-C or SIGTERM; "
                   "one summary line per cycle on stderr.")
@click.option("--max-cycles", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --watch: stop after N cycles.")
@format_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@store_option
@common
def update(symbols, symbol_lists, timeframe, provider, prepend, start, watch, max_cycles, fmt, quiet, store):
    """Bring stored symbols (default: all) up to date from their last bar; no stored bar is
    refetched. With --prepend, extend their history backwards instead. With --watch, repeat
    every INTERVAL until stopped (Ctrl-C or SIGTERM end it cleanly, exit 0)."""
    if start is not None and not prepend:
        raise DataError("update --start needs --prepend (a forward update always starts after the last stored bar)")
    if watch is not None and prepend:
        raise DataError("update --watch cannot be used with --prepend (a watch appends new bars)")
    if max_cycles is not None and watch is None:
        raise DataError("update --max-cycles needs --watch")
    wanted = gather_symbols(symbols, symbol_lists)
    st = open_store(store, writing=True)
    st.check_writable()
    pairs = _update_pairs(st, wanted, timeframe)
    if not pairs:
        if watch is not None:
            raise DataError(f"store {st.root} holds no symbols to watch (use fetch first)")
        note(f"store {st.root} holds no symbols; nothing to update")
        return

    def providers_for(meta: dict):
        if provider == "stored":
            stored = meta.get("provider")
            return [make_provider(n) for n in provider_chain("auto", stored if stored in ("yahoo", "alpaca") else None)]
        return [make_provider(n) for n in provider_chain(provider)]

    if watch is not None:
        _watch(st, wanted, timeframe, providers_for, watch, max_cycles, fmt, quiet)
        return
    with _progress(len(pairs), "updating", quiet=quiet) as step:
        reports = update_symbols(st, pairs, providers_for, prepend=prepend, start=start, progress=step)
    _emit(reports, "added", fmt, st.root)


def _update_pairs(st: Store, wanted: list[str], timeframe: str | None) -> list[tuple[str, str]]:
    """``(timeframe, symbol)`` pairs to update: the ``wanted`` symbols (every stored one when
    none is named) in ``timeframe`` or every stored timeframe. ``DataError`` naming the wanted
    symbols the store lacks."""
    tfs = [timeframe] if timeframe else st.timeframes()
    pairs = [(tf, s) for tf in tfs for s in (wanted or st.symbols(tf)) if st.has(tf, s)]
    missing = [s for s in wanted if not any(p[1] == s for p in pairs)]
    if missing:
        raise DataError(f"not in store {st.root}: {' '.join(missing)} (use fetch first)")
    return pairs


WATCH_LISTED = 10  # a watch cycle line names each series up to this many, then counts them


@contextmanager
def _stop_on_signals():
    """Yield ``(event, got)``: the first SIGINT (Ctrl-C) or SIGTERM sets ``event`` and appends
    its name to ``got``; the earlier handlers are put back at once, so a second Ctrl-C
    interrupts immediately. The handlers are restored on exit (no-op outside the main thread)."""
    stop, got, prev = threading.Event(), [], {}

    def restore():
        for sig, h in prev.items():
            signal.signal(sig, h)

    def handler(signum, _frame):
        got.append(signal.Signals(signum).name)
        stop.set()
        restore()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            prev[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
    try:
        yield stop, got
    finally:
        restore()


def _pause(stop: threading.Event, seconds: float) -> None:
    """Wait between watch cycles; returns at once when a stop signal sets ``stop``."""
    stop.wait(seconds)


def _cycle_line(when, pairs: list[tuple[str, str]], reports: list[SymbolReport]) -> str:
    """The per-cycle summary, e.g. ``watch: 2026-11-22T14:31:00Z: AAPL +1 bar, MSFT up to date``
    (the timeframe is named when several are watched; more than ``WATCH_LISTED`` series are
    counted instead of named)."""
    several = len({tf for tf, _ in pairs}) > 1

    def name(tf, sym):
        return f"{sym} {tf}" if several else sym

    def outcome(r):
        if r.error == WatchStopped.MESSAGE:
            return "stopped"
        if r.error:
            return "failed"
        if r.rows:
            return f"+{_count(r.rows)} bar{'s' if r.rows != 1 else ''}"
        return r.note or "up to date"

    if len(reports) <= WATCH_LISTED:
        parts = [f"{name(r.timeframe, r.symbol)} {outcome(r)}" for r in reports]
    else:
        new = [r for r in reports if r.rows and not r.error]
        failed = [r for r in reports if r.error]
        parts = [f"{_count(len(new))} series +{_count(sum(r.rows for r in new))} bars",
                 f"{_count(len(reports) - len(new) - len(failed))} unchanged"]
        if failed:
            shown = ", ".join(name(r.timeframe, r.symbol) for r in failed[:5])
            parts.append(f"{_count(len(failed))} failed ({shown}{', ...' if len(failed) > 5 else ''})")
    if len(reports) < len(pairs):
        parts.append(f"stopped before {name(*pairs[len(reports)])}")
    return f"watch: {iso(when)}: " + (", ".join(parts) or "nothing done")


def _watch(st: Store, wanted: list[str], timeframe: str | None, providers_for, interval: float,
           max_cycles: int | None, fmt: str, quiet: bool) -> None:
    """``update --watch``: run a forward update every ``interval`` seconds (``watch_loop``).

    Each cycle re-lists the series when no symbol is named (series fetched meanwhile join),
    writes provider warnings and failover notes, one ``warning:`` per failed symbol (the watch
    goes on; each fetch retries as ``update`` does, and a stop ends the backoff wait), the
    summary line on stderr and, with ``--format json``, one JSON object per line on stdout.
    SIGINT/SIGTERM stop it before the next symbol (a started write completes; writes are
    atomic renames), with ``note: stopped ...``; it returns normally (exit 0).
    """
    with _stop_on_signals() as (stop, got):

        def backoff(seconds: float) -> None:
            if stop.wait(seconds):
                raise WatchStopped(WatchStopped.MESSAGE)

        retry = RetryPolicy(sleep=backoff)

        def cycle(n: int) -> None:
            when = utc_now()
            pairs: list[tuple[str, str]] = []
            try:
                pairs = _update_pairs(st, wanted, timeframe)
                with _progress(len(pairs), "updating", quiet=quiet) as step:
                    reports = update_symbols(st, pairs, providers_for, retry=retry, now=when, progress=step,
                                             stop=stop.is_set)
            except DataError as exc:  # no provider usable (offline, keys), a symbol removed, lock timeout
                warn(f"{exc}; trying again in the next cycle")
                click.echo(f"watch: {iso(when)}: cycle failed", err=True)
                if fmt == "json":
                    click.echo(json.dumps({"cycle": n, "time": iso(when), "store": str(st.root), "results": [],
                                           "error": str(exc)}))
                return
            emit_warnings([Issue("provider", w, r.symbol) for r in reports for w in r.warnings])
            for r in reports:
                for line in r.notes:
                    note(line)
                if r.error and r.error != WatchStopped.MESSAGE:
                    warn(f"{r.error}; trying again in the next cycle")
            click.echo(_cycle_line(when, pairs, reports), err=True)
            if fmt == "json":
                click.echo(json.dumps({"cycle": n, "time": iso(when), "store": str(st.root),
                                       "results": [_report_dict(r, "added") for r in reports], "error": None}))

        every = f"{interval:g} s" if interval < 60 else f"{interval / 60:g} min" if interval < 3600 else f"{interval / 3600:g} h"
        note(f"watching {st.root} every {every}; Ctrl-C or SIGTERM stops after the current symbol")
        n = watch_loop(cycle, interval, stop.is_set, lambda s: _pause(stop, s), max_cycles)
    why = f"by {got[0]}" if got else "(--max-cycles)"
    note(f"stopped {why} after {_count(n)} cycle{'s' if n != 1 else ''}; every write completed")


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@symbols_option
@range_options
@timeframe_option(None, "Expected timeframe (default: inferred from the bar spacing).")
@click.option("--no-adjust", is_flag=True, help="Do not apply adj_close / close to open/high/low/close.")
@click.option("--keep-suspicious", is_flag=True, help="Import suspicious series (sub-penny prices, x5 close jumps) with a warning.")
@format_option
@store_option
@common
def import_(paths, symbol_lists, start, end, timeframe, no_adjust, keep_suspicious, fmt, store):
    """Import CSV/TXT or Parquet bar files (per-symbol or long format) exactly as SLICES.md
    contract 2 reads them. Nothing is written unless every named symbol is valid; unnamed
    invalid symbols are excluded with a warning."""
    wanted = gather_symbols(symbol_lists)
    st = open_store(store, writing=True)
    st.check_writable()
    with _creating(st):
        reports, issues = import_files(st, paths, timeframe, adjust=not no_adjust, symbols=wanted, start=start,
                                       end=end, keep_suspicious=keep_suspicious)
    emit_warnings(issues)
    excluded = [i for i in issues if i.kind == "excluded"]
    total = sum(r.rows for r in reports)
    if fmt == "json":
        _json({"store": str(st.root), "imported": [_report_dict(r, "rows") for r in reports],
               "excluded": [{"symbol": i.symbol, "reason": i.text} for i in excluded],
               "rows": total, "warnings": [i.text for i in issues if i.kind != "excluded"]})
    elif len(reports) > 20:
        click.echo(f"imported {_count(len(reports))} symbols, {_count(total)} rows into {st.root} "
                   f"({_count(len(excluded))} excluded, {_count(len(issues) - len(excluded))} warnings)")
    else:
        _summary(reports, "rows")


@cli.command("list")
@format_option
@store_option
@common
def list_(fmt, store):
    """Symbols per timeframe: rows, first and last bar, provider, last update, last validation."""
    st = open_store(store)
    val = st.validation()
    series = []
    for tf in st.timeframes():
        for sym in st.symbols(tf):
            e = st.entry(tf, sym)
            v = val.get(tf, {}).get(sym, {})
            series.append({"timeframe": tf, "symbol": sym, "rows": e.rows, "first": _t(e.first, tf), "last": _t(e.last, tf),
                           "provider": e.meta.get("provider"), "updated": e.meta.get("fetched_at"),
                           "validated": v.get("last_validated")})
    if fmt == "json":
        _json({"store": str(st.root), "series": series})
        return
    if not series:
        note(f"store {st.root} is empty" + (" (commands fall back to the embedded sample)" if _falls_back(st) else ""))
        return
    rows = [[s["timeframe"], s["symbol"], _count(s["rows"]), s["first"], s["last"], s["provider"] or "-",
             s["updated"] or "-", s["validated"] or "-"] for s in series]
    click.echo(table(["tf", "symbol", "rows", "first", "last", "provider", "updated", "validated"], rows, {2}))


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@timeframe_option(None, "Timeframe (default: every one the symbol has).")
@click.option("--rows", "-n", "--tail", "rows", type=click.IntRange(min=0), default=10, show_default=True,
              help="Number of last bars (--tail is an alias).")
@format_option
@store_option
@common
def show(symbols, symbol_lists, timeframe, rows, fmt, store):
    """Show metadata and the last bars of each symbol."""
    syms = required_symbols("show", symbols, symbol_lists)
    st = open_store(store)
    docs = []
    for sym in syms:
        for tf in _timeframes_of(st, sym, timeframe):
            df, src = _read_series(st, sym, tf)
            meta = src.meta(tf, sym)
            tail = df.tail(rows) if rows else df.clear()
            docs.append({"symbol": sym, "timeframe": tf, "source": "store" if src is st else "sample", "rows": df.height,
                         "first": _t(df["timestamp"].min(), tf), "last": _t(df["timestamp"].max(), tf), "meta": meta,
                         "bars": [{"timestamp": _t(r["timestamp"], tf), **{k: r[k] for k in ("open", "high", "low", "close", "volume")}}
                                  for r in tail.iter_rows(named=True)]})
    if fmt == "json":
        _json({"series": docs})
        return
    adjusted = {True: "yes", False: "no", None: "unknown"}
    for i, d in enumerate(docs):
        if i:
            click.echo("")
        m = d["meta"]
        click.echo(f"{d['symbol']} {d['timeframe']}: {_count(d['rows'])} bars {d['first']}..{d['last']}; "
                   f"provider {m.get('provider', '-')}, adjusted {adjusted.get(m.get('adjusted'), '-')}, "
                   f"updated {m.get('fetched_at', '-')}")
        body = [[b["timestamp"]] + [fmt_price(b[k]) for k in ("open", "high", "low", "close")] + [f"{b['volume']:,.0f}"]
                for b in d["bars"]]
        click.echo(table(["timestamp", "open", "high", "low", "close", "volume"], body, {1, 2, 3, 4, 5}))


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@click.option("--out", "-o", "--to", "out", required=True, type=click.Path(dir_okay=False),
              help="Target file: .csv, .parquet or .pq (--to is an alias).")
@timeframe_option(None, "Timeframe (default: the only one the symbol has).")
@store_option
@common
def export(symbols, symbol_lists, out, timeframe, store):
    """Export one symbol's bars to CSV or Parquet (store schema; re-importable unchanged)."""
    syms = gather_symbols(symbols, symbol_lists)
    if len(syms) != 1:
        raise DataError(f"export takes one symbol, got {len(syms)}{': ' + ' '.join(syms) if syms else ''}")
    sym = syms[0]
    st = open_store(store)
    tfs = _timeframes_of(st, sym, timeframe)
    if len(tfs) > 1:
        raise DataError(f"{sym} has several timeframes ({' '.join(tfs)}); choose one with -t")
    df, _ = _read_series(st, sym, tfs[0])
    path = Path(out)
    ext = path.suffix.lower()
    if ext == ".csv":
        atomic_write_bytes(path, lambda tmp: df.write_csv(tmp))
    elif ext in (".parquet", ".pq"):
        atomic_write_bytes(path, lambda tmp: df.write_parquet(tmp))
    else:
        raise DataError(f"{path}: unsupported extension {path.suffix!r} (use .csv, .parquet or .pq)")
    click.echo(f"wrote {_count(df.height)} bars of {sym} {tfs[0]} to {path}")


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@timeframe_option(None, "Only this timeframe (default: all).")
@store_option
@common
def remove(symbols, symbol_lists, timeframe, store):
    """Remove symbols from the store (all timeframes unless --timeframe)."""
    syms = required_symbols("remove", symbols, symbol_lists)
    st = open_store(store)
    plan = []
    for sym in syms:
        tfs = [timeframe] if timeframe else [tf for tf in TIMEFRAMES if st.has(tf, sym)]
        if not tfs or not all(st.has(tf, sym) for tf in tfs):
            raise DataError(f"{sym} {timeframe or ''} not in store {st.root}".replace("  ", " "))
        plan.append((sym, tfs))
    with st.lock():
        for sym, tfs in plan:
            for tf in tfs:
                st.remove(tf, sym)
    for sym, tfs in plan:
        click.echo(f"removed {sym} ({' '.join(tfs)}) from {st.root}")


def _data_targets(data, wanted, timeframe, start, end, adjust) -> list[Target]:
    """``validate --data``: the files' raw rows per symbol (all, or the ``wanted`` ones)."""
    parts = [p for path in data for p in read_file(path, start, end, adjust)]
    seen: set[str] = set()
    for p in parts:
        for w in p.warnings:
            if w.text not in seen:
                seen.add(w.text)
                warn(w.text)
    frames = raw_symbol_frames(parts)
    absent = [s for s in wanted if s not in frames]
    if absent:
        raise DataError(f"not in {', '.join(data)}: {' '.join(absent)}")
    frames = {s: v for s, v in frames.items() if not wanted or s in wanted}
    where = {s: f"{', '.join(srcs)}: {s}" for s, (_, srcs) in frames.items()}
    tfs = infer_timeframes({s: df["timestamp"] for s, (df, _) in frames.items()}, where)
    targets = []
    for sym, (df, srcs) in frames.items():
        if timeframe and df.height < 2:  # a single bar has no spacing
            tfs[sym] = timeframe
        if timeframe and timeframe != tfs[sym]:
            raise DataError(f"{where[sym]}: the bars are {tfs[sym]}, not {timeframe} (--timeframe)")
        targets.append(Target(sym, tfs[sym], df, ", ".join(srcs)))
    return targets


def _store_targets(st: Store, wanted, timeframe, start, end) -> tuple[list[Target], Store]:
    """``validate`` on the store: the named symbols in every timeframe they have (or ``-t``),
    else every stored series; an empty default store validates the embedded sample."""
    if not wanted and not st.timeframes():
        if _falls_back(st):
            note(f"store {_display(st.root)} is empty; validating the embedded sample")
            st = _sample()
        else:
            note(f"store {st.root} holds no bars; nothing to validate")
    pairs = [(tf, s) for tf in ([timeframe] if timeframe else st.timeframes()) for s in st.symbols(tf)]
    if wanted:
        pairs = [(tf, s) for s in wanted for tf in _timeframes_of(st, s, timeframe)]
    targets = []
    for tf, sym in pairs:
        df, src = _read_series(st, sym, tf)
        if start is not None or end is not None:
            df = df.filter(pl.col("timestamp").is_between(start or datetime.min.replace(tzinfo=timezone.utc),
                                                           end or datetime.max.replace(tzinfo=timezone.utc)))
        targets.append(Target(sym, tf, df, "store" if src is st else "sample"))
    return targets, st


@cli.command()
@click.argument("symbols", nargs=-1)
@symbols_option
@click.option("--data", "data", multiple=True, type=click.Path(),
              help="Validate bar files directly (repeatable); symbols then select from them.")
@range_options
@timeframe_option(None, "Only this timeframe (with --data: the files' bars must be it).")
@format_option
@click.option("--strict", is_flag=True, help="Exit 1 when an error-severity finding exists.")
@click.option("--asof", default="now", show_default=True,
              help="Reference time for the stale-series check: now, none, or a date (UTC).")
@click.option("--calendar", default="auto", show_default=True,
              help="auto (FX pairs: FX 24/5, else XNYS), XNYS, FX, none, or an exchange_calendars code.")
@click.option("--rows", "-n", "--limit", "limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Table rows to print (0: all; --limit is an alias).")
@click.option("--no-adjust", is_flag=True, help="With --data: do not apply adj_close.")
@click.option("--keep-suspicious", is_flag=True, help="Report suspicious series as warnings, not errors.")
@store_option
@common
def validate(symbols, symbol_lists, data, start, end, timeframe, fmt, strict, asof, calendar, limit, no_adjust,
             keep_suspicious, store):
    """Integrity report: calendar gaps, duplicates, bad prices, OHLC, zero-volume and stale runs,
    outlier returns, suspicious series, stale series.

    Checks the named symbols in every timeframe they have (default: every stored series; the
    embedded sample when the default store is empty), or with --data the files' symbols (all,
    or the named ones)."""
    try:
        asof_dt = parse_asof(asof)
    except ValueError:
        raise DataError(f"--asof {asof!r}: use now, none or a date like 2020-01-10") from None
    wanted = gather_symbols(symbols, symbol_lists)
    if data:
        st = None
        targets = _data_targets(data, wanted, timeframe, start, end, not no_adjust)
    else:
        targets, st = _store_targets(open_store(store), wanted, timeframe, start, end)
    findings = validate_targets(targets, calendar, asof_dt, keep_suspicious=keep_suspicious)
    if st is not None:
        record_validation(st, targets, findings, utc_now())
    counts = summarize(findings)
    if fmt == "json":
        _json({"asof": fmt_time(asof_dt, False) if asof_dt else None, "series": len(targets), "summary": counts,
               "findings": [f.to_dict() for f in findings]})
    else:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        shown = sorted(findings, key=lambda f: order[f.severity])
        if limit:
            shown = shown[:limit]
        rows = [[f.severity, f.symbol, f.timeframe, f.kind, f.message] for f in shown]
        if rows:
            click.echo(table(["severity", "symbol", "tf", "kind", "message"], rows))
        if len(shown) < len(findings):
            click.echo(f"... {_count(len(findings) - len(shown))} more findings (use --rows 0 or --format json)")
        by_kind: dict[str, int] = {}
        for f in findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        kinds = ", ".join(f"{k} {_count(n)}" for k, n in sorted(by_kind.items()))
        click.echo(f"{_count(len(targets))} series: {_count(counts['error'])} errors, {_count(counts['warning'])} warnings, "
                   f"{_count(counts['info'])} info" + (f" ({kinds})" if kinds else ""))
    if strict and counts["error"]:
        sys.exit(1)


def main() -> None:
    """Console entry: run the click group."""
    cli(prog_name="python -m slices.data")
