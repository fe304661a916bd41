"""Command line of the data slice: ``python -m slices.data COMMAND``.

Exit codes: 0 success; 1 ``validate --strict`` found an error-severity fault; 2 bad input or a
failed operation (one line ``error: ...`` on stderr, no traceback).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
import polars as pl

from slices.data.errors import DataError
from slices.data.loader import read_bar_file
from slices.data.providers import make_provider, provider_chain
from slices.data.schema import TIMEFRAMES, check_symbol, infer_timeframe
from slices.data.service import (
    SymbolReport,
    Target,
    fetch_symbols,
    import_files,
    record_validation,
    update_symbols,
    validate_targets,
)
from slices.data.store import SAMPLE_ROOT, Store, atomic_write_bytes, resolve_root, utc_now
from slices.data.validate import SEVERITIES, parse_asof, summarize

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]


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
    """Click group that turns ``DataError`` into one stderr line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DataError as exc:
            fail(str(exc).replace("\n", " "))
        except OSError as exc:  # unwritable store or export target, disk full, ...
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            fail("interrupted; the store is unchanged except for completed symbols")


def store_option(f):
    """``--store DIR`` (else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``)."""
    return click.option("--store", "store", type=click.Path(file_okay=False), default=None,
                        help="Store root (default: $GPT_TRADER_STORE, else ~/.gpt-trader/store).")(f)


def timeframe_option(default: str | None):
    """``--timeframe/-t`` restricted to the store's timeframes."""
    return click.option("--timeframe", "-t", type=click.Choice(TIMEFRAMES), default=default,
                        show_default=default is not None, help="Bar timeframe.")


def _utc(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt


def _fmt(dt, timeframe: str = "1d") -> str:
    if dt is None:
        return "-"
    return dt.strftime("%Y-%m-%d" if timeframe == "1d" else "%Y-%m-%d %H:%M")


def table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Plain fixed-width text table (numbers right-aligned when listed in ``right``)."""
    right = right or set()
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(vals)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _read_series(store: Store, symbol: str, timeframe: str) -> tuple[pl.DataFrame, Store]:
    """The series from the store, else from the embedded sample (with the contract's note)."""
    symbol = check_symbol(symbol)
    if store.has(timeframe, symbol):
        return store.read(timeframe, symbol), store
    sample = Store(SAMPLE_ROOT, read_only=True)
    if store.root.resolve() != SAMPLE_ROOT and sample.has(timeframe, symbol):
        note(f"{symbol} {timeframe} not in store {store.root}; using embedded sample")
        return sample.read(timeframe, symbol), sample
    raise DataError(f"{symbol} {timeframe} not in store {store.root}")


@contextmanager
def _progress(n: int, label: str, file=None):
    """A progress bar on ``file`` (default stderr) for several symbols when it is a terminal;
    yields a ``step(symbol)`` callback (a no-op otherwise)."""
    file = file if file is not None else sys.stderr
    if n < 2 or not file.isatty():
        yield lambda _sym: None
        return
    with click.progressbar(length=n, label=label, file=file, item_show_func=lambda s: s) as bar:
        yield lambda sym: bar.update(1, sym)


def _summary(reports: list[SymbolReport], kind: str) -> None:
    rows = []
    for r in reports:
        if r.error:
            continue
        rows.append([r.symbol, r.timeframe, r.provider or "-", r.rows, r.total, _fmt(r.first, r.timeframe),
                     _fmt(r.last, r.timeframe), len(r.warnings), r.note])
    if rows:
        click.echo(table(["symbol", "tf", "provider", kind, "total", "first", "last", "warnings", "note"], rows, {3, 4, 7}))


def _messages(reports: list[SymbolReport]) -> None:
    """Print each report's warnings (``warning:``) and notes (``note:``) on stderr."""
    for r in reports:
        for w in r.warnings:
            warn(w)
        for n in r.notes:
            note(n)


def _emit(reports: list[SymbolReport], kind: str) -> None:
    _messages(reports)
    _summary(reports, kind)
    failed = [r for r in reports if r.error]
    for r in failed:
        click.echo(f"error: {r.error}", err=True)
    if failed:
        sys.exit(2)


@click.group(cls=SliceGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """GPT-Trader data slice: fetch, store, validate and keep market data current.

    Store layout and schema: SLICES.md contract 1. Every command takes --store DIR.
    """


@cli.command()
@click.argument("symbols", nargs=-1, required=True)
@click.option("--start", type=click.DateTime(DATE_FORMATS), default=None, metavar="DATE",
              help="First bar, YYYY-MM-DD[THH:MM] UTC (default: 5 years daily, 729 days 1h, 59 days 15m/5m, 7 days 1m).")
@click.option("--end", type=click.DateTime(DATE_FORMATS), default=None, metavar="DATE",
              help="Last bar, YYYY-MM-DD[THH:MM] UTC (default: the last complete bar).")
@timeframe_option("1d")
@click.option("--provider", type=click.Choice(["yahoo", "alpaca", "auto"]), default="auto", show_default=True,
              help="auto: primary ($GPT_TRADER_PROVIDER, default yahoo), then the other on errors.")
@store_option
def fetch(symbols, start, end, timeframe, provider, store):
    """Download SYMBOLS and write them to the store."""
    st = Store(resolve_root(store))
    st.check_writable()
    providers = [make_provider(n) for n in provider_chain(provider)]
    syms = [check_symbol(s) for s in symbols]
    with _progress(len(syms), "fetching") as step:
        reports = fetch_symbols(st, syms, timeframe, _utc(start), _utc(end), providers, progress=step)
    _emit(reports, "rows")


@cli.command()
@click.argument("symbols", nargs=-1)
@timeframe_option(None)
@click.option("--provider", type=click.Choice(["stored", "yahoo", "alpaca", "auto"]), default="stored", show_default=True,
              help="stored: the provider recorded for the symbol first, the other on errors.")
@click.option("--prepend", is_flag=True, help="Extend history backwards instead of forwards.")
@click.option("--start", type=click.DateTime(DATE_FORMATS), default=None, metavar="DATE",
              help="With --prepend: how far back, YYYY-MM-DD (default: the timeframe's fetch span).")
@store_option
def update(symbols, timeframe, provider, prepend, start, store):
    """Bring stored symbols (default: all) up to date from their last bar; no stored bar is
    refetched. With --prepend, extend their history backwards instead."""
    if start is not None and not prepend:
        raise DataError("update --start needs --prepend (a forward update always starts after the last stored bar)")
    st = Store(resolve_root(store))
    st.check_writable()
    tfs = [timeframe] if timeframe else st.timeframes()
    wanted = [check_symbol(s) for s in symbols]
    pairs = [(tf, s) for tf in tfs for s in (wanted or st.symbols(tf)) if st.has(tf, s)]
    missing = [s for s in wanted if not any(p[1] == s for p in pairs)]
    if missing:
        raise DataError(f"not in store {st.root}: {' '.join(missing)} (use fetch first)")
    if not pairs:
        note(f"store {st.root} holds no symbols; nothing to update")
        return

    def providers_for(meta: dict):
        if provider == "stored":
            stored = meta.get("provider")
            return [make_provider(n) for n in provider_chain("auto", stored if stored in ("yahoo", "alpaca") else None)]
        return [make_provider(n) for n in provider_chain(provider)]

    with _progress(len(pairs), "updating") as step:
        reports = update_symbols(st, pairs, providers_for, prepend=prepend, start=_utc(start), progress=step)
    _emit(reports, "added")


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@timeframe_option(None)
@click.option("--no-adjust", is_flag=True, help="Do not apply adj_close / close to open/high/low/close.")
@store_option
def import_(paths, timeframe, no_adjust, store):
    """Import CSV or Parquet bar files (per-symbol or long format; SLICES.md contract 2)."""
    st = Store(resolve_root(store))
    reports = import_files(st, paths, timeframe, adjust=not no_adjust)
    _messages(reports)
    if len(reports) > 20:
        total = sum(r.rows for r in reports)
        click.echo(f"imported {len(reports)} symbols, {total} rows into {st.root} "
                   f"({sum(len(r.warnings) for r in reports)} warnings)")
    else:
        _summary(reports, "rows")


@cli.command("list")
@store_option
def list_(store):
    """Symbols per timeframe: rows, first and last bar, provider, last update, last validation."""
    st = Store(resolve_root(store))
    val = st.validation()
    rows = []
    for tf in st.timeframes():
        for sym in st.symbols(tf):
            e = st.entry(tf, sym)
            v = val.get(tf, {}).get(sym, {})
            rows.append([tf, sym, e.rows, _fmt(e.first, tf), _fmt(e.last, tf), e.meta.get("provider", "-"),
                         e.meta.get("fetched_at", "-"), v.get("last_validated", "-")])
    if not rows:
        note(f"store {st.root} is empty")
        return
    click.echo(table(["tf", "symbol", "rows", "first", "last", "provider", "updated", "validated"], rows, {2}))


@cli.command()
@click.argument("symbol")
@timeframe_option("1d")
@click.option("--tail", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Number of last bars.")
@store_option
def show(symbol, timeframe, tail, store):
    """Show the last bars of SYMBOL and its metadata."""
    st = Store(resolve_root(store))
    symbol = check_symbol(symbol)
    df, src = _read_series(st, symbol, timeframe)
    meta = src.meta(timeframe, symbol)
    click.echo(f"{symbol} {timeframe}: {df.height} bars {_fmt(df['timestamp'].min(), timeframe)}.."
               f"{_fmt(df['timestamp'].max(), timeframe)}; provider {meta.get('provider', '-')}, "
               f"adjusted {({True: 'yes', False: 'no', None: 'unknown'}).get(meta.get('adjusted'), '-')}, updated {meta.get('fetched_at', '-')}")
    rows = [[_fmt(r[0], timeframe)] + [f"{x:.6g}" for x in r[1:5]] + [f"{r[5]:.0f}"] for r in df.tail(tail).iter_rows()]
    click.echo(table(["timestamp", "open", "high", "low", "close", "volume"], rows, {1, 2, 3, 4, 5}))


@cli.command()
@click.argument("symbol")
@click.option("--to", "to", required=True, type=click.Path(dir_okay=False), help="Target file: .csv, .parquet or .pq.")
@timeframe_option("1d")
@store_option
def export(symbol, to, timeframe, store):
    """Export SYMBOL's bars to CSV or Parquet (store schema; re-importable)."""
    st = Store(resolve_root(store))
    symbol = check_symbol(symbol)
    df, _ = _read_series(st, symbol, timeframe)
    path = Path(to)
    ext = path.suffix.lower()
    if ext == ".csv":
        atomic_write_bytes(path, lambda tmp: df.write_csv(tmp))
    elif ext in (".parquet", ".pq"):
        atomic_write_bytes(path, lambda tmp: df.write_parquet(tmp))
    else:
        raise DataError(f"{path}: unsupported extension {path.suffix!r} (use .csv, .parquet or .pq)")
    click.echo(f"wrote {df.height} bars of {symbol} {timeframe} to {path}")


@cli.command()
@click.argument("symbol")
@timeframe_option(None)
@store_option
def remove(symbol, timeframe, store):
    """Remove SYMBOL from the store (all timeframes unless --timeframe)."""
    st = Store(resolve_root(store))
    sym = check_symbol(symbol)
    tfs = [timeframe] if timeframe else [tf for tf in TIMEFRAMES if st.has(tf, sym)]
    if not tfs or not all(st.has(tf, sym) for tf in tfs):
        raise DataError(f"{sym} {timeframe or ''} not in store {st.root}".replace("  ", " "))
    with st.lock():
        for tf in tfs:
            st.remove(tf, sym)
    click.echo(f"removed {sym} ({' '.join(tfs)}) from {st.root}")


@cli.command()
@click.argument("symbols", nargs=-1)
@click.option("--data", "data", multiple=True, type=click.Path(),
              help="Validate bar files directly (repeatable); SYMBOLS then select symbols from them.")
@timeframe_option(None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one line per finding and a summary; json: every finding with start/end/count.")
@click.option("--strict", is_flag=True, help="Exit 1 when an error-severity finding exists.")
@click.option("--asof", default="now", show_default=True,
              help="Reference time for the stale-series check: now, none, or a date (UTC).")
@click.option("--calendar", default="auto", show_default=True,
              help="auto (FX pairs: FX 24/5, else XNYS), XNYS, FX, none, or an exchange_calendars code.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Table rows to print (0: all).")
@click.option("--no-adjust", is_flag=True, help="With --data: do not apply adj_close.")
@store_option
def validate(symbols, data, timeframe, fmt, strict, asof, calendar, limit, no_adjust, store):
    """Integrity report: calendar gaps, duplicates, bad prices, OHLC, zero-volume and stale runs,
    outlier returns, sub-penny prices, stale series.

    Checks SYMBOLS (default: every stored series; the embedded sample when the store is empty),
    or with --data the files' symbols (all, or those named in SYMBOLS)."""
    try:
        asof_dt = parse_asof(asof)
    except ValueError:
        raise DataError(f"--asof {asof!r}: use now, none or a date like 2020-01-10") from None
    st = Store(resolve_root(store))
    wanted = [check_symbol(s) for s in symbols]
    targets: list[Target] = []
    if data:
        for path in data:
            for ls in read_bar_file(path, adjust=not no_adjust):
                if wanted and ls.symbol not in wanted:
                    continue
                for w in ls.warnings:
                    warn(w)
                tf = timeframe or infer_timeframe(ls.frame["timestamp"], f"{path}: {ls.symbol}")
                targets.append(Target(ls.symbol, tf, ls.frame, str(path)))
        absent = [s for s in wanted if not any(t.symbol == s for t in targets)]
        if absent:
            raise DataError(f"not in {', '.join(data)}: {' '.join(absent)}")
    else:
        if not wanted and not st.timeframes():
            note(f"store {st.root} is empty; validating the embedded sample")
            st = Store(SAMPLE_ROOT, read_only=True)
        tfs = [timeframe] if timeframe else st.timeframes()
        for tf in tfs:
            for sym in wanted or st.symbols(tf):
                if st.has(tf, sym):
                    targets.append(Target(sym, tf, st.read(tf, sym), "store"))
        for sym in wanted:
            if not any(t.symbol == sym for t in targets):
                tf = timeframe or "1d"
                df, src = _read_series(st, sym, tf)
                targets.append(Target(sym, tf, df, "store" if src is st else "sample"))
    findings = validate_targets(targets, calendar, asof_dt)
    record_validation(st, targets, findings, utc_now())
    counts = summarize(findings)
    if fmt == "json":
        click.echo(json.dumps({
            "asof": asof_dt.strftime("%Y-%m-%dT%H:%M:%SZ") if asof_dt else None,
            "series": len(targets), "summary": counts,
            "findings": [f.to_dict() for f in findings]}, indent=1))
    else:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        shown = sorted(findings, key=lambda f: order[f.severity])
        if limit:
            shown = shown[:limit]
        rows = [[f.severity, f.symbol, f.timeframe, f.kind, f.message] for f in shown]
        if rows:
            click.echo(table(["severity", "symbol", "tf", "kind", "message"], rows))
        if len(shown) < len(findings):
            click.echo(f"... {len(findings) - len(shown)} more findings (use --limit 0 or --format json)")
        by_kind: dict[str, int] = {}
        for f in findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
        click.echo(f"{len(targets)} series: {counts['error']} errors, {counts['warning']} warnings, "
                   f"{counts['info']} info" + (f" ({kinds})" if kinds else ""))
    if strict and counts["error"]:
        sys.exit(1)


def main() -> None:
    """Console entry: run the click group."""
    cli(prog_name="python -m slices.data")
