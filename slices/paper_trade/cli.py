"""Command line of the paper_trade slice: ``python -m slices.paper_trade <command>``.

Commands: ``run`` (replay or follow; resumes a session), ``sessions``, ``status``, ``orders``,
``fills``, ``trades``, ``equity``, ``report``, ``stop``, ``remove``, ``strategies``. Bad input: one
line ``error: ...`` on stderr and exit code 2, never a traceback (only with ``--debug``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from .bars import TIMEFRAMES, DataError
from .engine import SIZINGS
from .ledger import LedgerError

COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"
CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Group(click.Group):
    """A click group whose usage, data and ledger errors are one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            msg = " ".join(exc.format_message().split())
            click.echo(f"error: {msg}" + (f"; {COMMA_HINT}" if "unexpected extra argument" in msg else ""), err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except (DataError, ValueError, LedgerError) as exc:
            if "--debug" in argv:
                import traceback

                traceback.print_exception(exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
        except Exception as exc:  # a bug, not bad input
            if "--debug" in argv:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (run again with --debug for the traceback)", err=True)
            sys.exit(2)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv



SUMMARISED = {  # warning kinds shown as one line with a count when they concern several symbols (SLICES.md style)
    "zero_volume": "zero-volume bars", "ohlc": "open/close outside low..high", "gap": "gaps in the bars",
    "missing_volume": "missing volume set to 0",
}


def echo_warnings(warnings: list[str], findings: list[tuple[str, str, str]]) -> None:
    """Warnings on stderr, as every slice prints them (SLICES.md "Command-line style"): each in
    full (exclusions, untaken signals and every other kind), except the kinds of
    :data:`SUMMARISED` (``findings``: the loader's ``(kind, symbol, text)``), shown as one line per
    kind when several symbols have them: ``warning: 14 symbols with zero-volume bars (AET, ...)``."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for kind, sym, text in findings:
        if kind in SUMMARISED:
            grouped.setdefault(kind, []).append((sym, text))
    summarised = {text for items in grouped.values() if len(items) > 1 for _, text in items}
    for text in warnings:
        if text not in summarised:
            click.echo(f"warning: {text}", err=True)
    for kind, items in grouped.items():
        if len(items) > 1:
            syms = [s for s, _ in items if s]
            names = ", ".join(syms[:6]) + (", ..." if len(syms) > 6 else "")
            what = f"{len(syms):,} symbols" if syms else f"{len(items):,} files"
            click.echo(f"warning: {what} with {SUMMARISED[kind]}" + (f" ({names})" if syms else ""), err=True)

def _symbols(values) -> list[str] | None:
    if not values:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()] or [""]


_ledgers_opt = click.option("--ledgers", default=None, type=click.Path(file_okay=False),
                            help="Ledger root [default: $GPT_TRADER_LEDGERS or ~/.gpt-trader/ledgers].")
_format_opt = click.option("--format", "-f", "fmt", default="table", show_default=True,
                           type=click.Choice(["table", "json"]), help="table for people, json (one document) for programs.")
_debug_opt = click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")


@click.group(cls=_Group, context_settings=CONTEXT)
def cli() -> None:
    """Paper trading: run a strategy forward against a simulated broker, crash-safe.

    Every session keeps its orders, fills, positions and equity in a SQLite ledger
    (<ledgers>/paper/<session>.sqlite, SLICES.md contract 4).
    """


# ----------------------------------------------------------------------------- run
_RUN_SETTINGS = {  # click parameter name -> settings key
    "strategy": "strategy", "params": "params", "symbols": "symbols", "timeframe": "timeframe", "mode": "mode",
    "start": "start", "end": "end", "data": "data", "store": "store", "no_adjust": "adjust",
    "keep_suspicious": "keep_suspicious", "cash": "cash", "commission": "commission", "slippage_bps": "slippage_bps",
    "allow_short": "allow_short", "whole_shares": "whole_shares", "sizing": "sizing", "fraction": "fraction",
    "stop_loss_atr": "stop_loss_atr", "take_profit_atr": "take_profit_atr", "atr_window": "atr_window",
    "max_position_pct": "max_position_pct", "max_drawdown": "max_drawdown", "max_volume_pct": "max_volume_pct",
    "leverage": "leverage", "rebalance_threshold": "rebalance_threshold",
}


def _setting(name: str, value):
    if name == "params":
        out = {}
        for item in value or ():
            if "=" not in item:
                raise ValueError(f"--param {item!r}: expected key=value")
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
        return out
    if name == "symbols":  # the session trades them in sorted order
        syms = _symbols(value)
        return sorted({x.strip().upper() for x in syms}) if syms and syms != [""] else syms
    if name == "data":
        return [str(Path(p).expanduser().resolve()) for p in value] if value else []
    if name == "store":
        return str(Path(value).expanduser().resolve()) if value else None
    if name == "no_adjust":
        return not value
    return value


@cli.command(context_settings=CONTEXT)
@click.option("--session", required=True, help="Session name (letters, digits, _ . -); an existing session resumes.")
@click.option("--strategy", default="simple_ma", show_default=True,
              help="Built-in name (see `strategies`), strategy file PATH.py, package.module or package.module:attr.")
@click.option("--param", "params", multiple=True, help="Strategy parameter k=v (repeatable).")
@click.option("--symbols", "-s", "symbols", multiple=True, help="Symbols, a comma list (repeatable) [default: all in the data].")
@click.option("--timeframe", "-t", default=None, type=click.Choice(TIMEFRAMES), help="Bar timeframe [default 1d; inferred with --data].")
@click.option("--replay/--follow", "mode", default=True, show_default=True,
              help="replay: the stored bars, then stop; follow: act on new bars as they land in the store.")
@click.option("--start", default=None, help="First bar, YYYY-MM-DD or ISO-8601, UTC (inclusive). With --follow: replay from here first.")
@click.option("--end", default=None, help="Last bar, YYYY-MM-DD or ISO-8601, UTC (inclusive; replay).")
@click.option("--speed", default=None, type=float, help="Replay pace, bars per second [default: as fast as possible].")
@click.option("--poll", default=5.0, show_default=True, type=float, help="--follow: seconds between looks at the store.")
@click.option("--data", "data", multiple=True, type=click.Path(), help="CSV/TXT/Parquet bar file (repeatable; contract 2); replay only.")
@click.option("--store", default=None, help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store].")
@click.option("--no-adjust", is_flag=True, help="Do not scale OHLC by adj_close/close in --data files.")
@click.option("--keep-suspicious", is_flag=True, help="Use suspicious series with a warning instead of leaving them out.")
@click.option("--cash", default=100_000.0, show_default=True, type=float, help="Starting cash, currency.")
@click.option("--commission", default=0.0005, show_default=True, type=float, help="Commission, fraction of traded value.")
@click.option("--slippage-bps", default=2.0, show_default=True, type=float, help="Slippage against the trader, basis points.")
@click.option("--allow-short/--long-only", default=False, show_default=True, help="Allow short positions.")
@click.option("--whole-shares/--fractional", default=True, show_default=True, help="Round quantities down to whole units.")
@click.option("--sizing", default="equal-weight", show_default=True, type=click.Choice(SIZINGS),
              help="equal-weight: equity / number of symbols; fixed-fraction: --fraction of equity; atr-risk: risk --fraction of equity to the ATR stop.")
@click.option("--fraction", default=None, type=float, help="fixed-fraction: fraction of equity per position [0.10]; atr-risk: fraction risked per trade [0.01].")
@click.option("--stop-loss-atr", default=None, type=float, help="Stop-loss distance, ATR multiples (a bracket stop order).")
@click.option("--take-profit-atr", default=None, type=float, help="Take-profit distance, ATR multiples (a bracket limit order).")
@click.option("--atr-window", default=14, show_default=True, type=int, help="ATR window for stops and atr-risk, bars.")
@click.option("--max-position-pct", default=100.0, show_default=True, type=float, help="Max position value, percent of equity.")
@click.option("--max-drawdown", default=None, type=float, help="Halt: close all and stop trading at this drawdown (fraction, e.g. 0.25).")
@click.option("--max-volume-pct", default=None, type=float, help="A fill takes at most this percent of the bar's volume; the rest stays open.")
@click.option("--leverage", default=1.0, show_default=True, type=float,
              help="Weights strategies: max sum of |weights| per row; buys may borrow up to (L-1) x equity.")
@click.option("--rebalance-threshold", default=0.0, show_default=True, type=float,
              help="Weights strategies: skip trades smaller than this fraction of equity.")
@_ledgers_opt
@click.option("--force-new", is_flag=True,
              help="Start the session again (its ledger is emptied), with its stored settings except the options given.")
@click.option("--exit-after-idle", default=None, type=float, help="--follow: stop after this many seconds without a new bar.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_format_opt
@_debug_opt
@click.pass_context
def run(ctx, session, speed, poll, ledgers, force_new, exit_after_idle, quiet, fmt, debug, **opts):
    """Run (or resume) a paper-trading session and write its ledger bar by bar."""
    from .session import run_session

    given, defaults = {}, {}
    for name, key in _RUN_SETTINGS.items():
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            given[key] = _setting(name, opts[name])
        defaults[key] = _setting(name, _param_default(ctx, name))
    defaults["mode"] = "replay"
    if "mode" in given:
        given["mode"] = "replay" if opts["mode"] else "follow"
    progress = None
    if not quiet and sys.stderr.isatty():
        def progress(done, total):
            if total:
                if done == total or done % 25 == 0:
                    click.echo(f"\r{session}: bar {done:,}/{total:,}", err=True, nl=done == total)
            else:
                click.echo(f"\r{session}: {done:,} new bar(s)", err=True, nl=False)
    res = run_session(session, given, defaults, ledgers=ledgers, force_new=force_new, speed=speed, poll=poll,
                      progress=progress, max_idle=exit_after_idle)
    for line in res.report.notes:
        click.echo(line if line.startswith("note:") else f"note: {line}", err=True)
    echo_warnings(res.report.warnings, res.report.findings)
    doc = _status(res.path)
    doc["bars_processed"] = res.bars_done
    doc["resumed"] = res.resumed
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"Session {session}: {'resumed, ' if res.resumed else ''}{res.bars_done:,} bar(s) processed, {res.status}")
        click.echo(_status_text(doc))


def _param_default(ctx: click.Context, name: str):
    for p in ctx.command.params:
        if p.name == name:
            d = p.get_default(ctx)
            if not isinstance(d, (str, int, float, bool, tuple, list, type(None))):  # click's "unset" sentinel
                d = None
            return () if p.multiple and d is None else d
    raise KeyError(name)


# ----------------------------------------------------------------------------- readers
def _open(ledgers, session):
    from .ledger import ledgers_root, open_reader, read_meta, session_path

    path = session_path(ledgers_root(ledgers), session)
    conn = open_reader(path)
    return path, conn, read_meta(conn)


def _running_pid(path: Path) -> int | None:
    """The pid of the process holding the session's lock, or None when no process holds it."""
    from filelock import FileLock, Timeout

    lock_path = path.with_suffix(".lock")
    if not lock_path.exists():
        return None
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            return int(path.with_suffix(".pid").read_text().strip())
        except (OSError, ValueError):
            return -1
    except OSError:
        return None
    lock.release()
    return None


def _status(path: Path) -> dict:
    from .ledger import open_reader, read_meta
    from .readers import status_doc

    conn = open_reader(path)
    try:
        return status_doc(conn, read_meta(conn), _running_pid(path))
    finally:
        conn.close()


def _money(x) -> str:
    return "—" if x is None else f"{x:,.2f}"


def _pct(x) -> str:
    return "—" if x is None else f"{x * 100:,.2f}%"


def _num(x) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.6g}"


def _when(t) -> str:
    if not t:
        return "—"
    t = str(t)
    return t[:10] if t[10:26] in ("T00:00:00.000000", "") else t[:19] + "Z"


def _status_text(d: dict) -> str:
    hb = d["heartbeat_age_s"]
    lines = [
        f"  status        {d['status']}{' (pid ' + str(d['pid']) + ')' if d['pid'] else ''}   trading {d['trading_state']}",
        f"  strategy      {d['strategy']}  {d['timeframe']}  {len(d['symbols'])} symbol(s)  mode {d['mode']}",
        f"  cash          {_money(d['cash'])}",
        f"  equity        {_money(d['equity'])}   return {_pct(d['total_return'])}   drawdown {_pct(d['drawdown'])}",
        f"  last bar      {_when(d['last_bar_time'])}   heartbeat {'—' if hb is None else f'{hb:,.1f} s ago'}",
        f"  positions     {len(d['positions'])}   open orders {len(d['open_orders'])}   pending signals {len(d['pending_signals'])}",
    ]
    for p in d["positions"]:
        lines.append(f"    {p['symbol']:<8} {_num(p['qty']):>12} @ {_num(p['avg_price'])}  mark {_num(p['mark_price'])}  "
                     f"value {_money(p['market_value'])}  unrealized {_money(p['unrealized_pnl'])}")
    for o in d["open_orders"]:
        px = o["limit_price"] or o["stop_price"]
        lines.append(f"    order {o['id']}  {o['side']} {_num(o['qty'] - o['filled_qty'])} {o['type']}"
                     f"{' @ ' + _num(px) if px else ''}  ({o['reason']})")
    for p in d["pending_signals"]:
        if "weight" in p:
            lines.append(f"    pending {p['symbol']} weight {p['weight']:.4g} from {_when(p['signal_time'])}: "
                         "rebalanced at its next open")
        else:
            lines.append(f"    pending {p['symbol']} target {p['target']:+d} from {_when(p['signal_time'])}: enters at its next open")
    return "\n".join(lines)


@cli.command(context_settings=CONTEXT)
@_ledgers_opt
@_format_opt
def sessions(ledgers, fmt):
    """List the paper sessions in the ledger folder."""
    from .ledger import LedgerError, ledgers_root, list_sessions

    root = ledgers_root(ledgers)
    docs = []
    for path in list_sessions(root):
        try:
            d = _status(path)
            docs.append({k: d[k] for k in ("session", "status", "trading_state", "strategy", "symbols", "timeframe", "mode",
                                           "equity", "total_return", "last_bar_time", "heartbeat_age_s", "pid")})
        except LedgerError as exc:
            docs.append({"session": path.stem, "status": "unreadable", "error": str(exc)})
    if fmt == "json":
        click.echo(json.dumps({"ledgers": str(root), "sessions": docs}, indent=2, default=str))
        return
    if not docs:
        click.echo(f"no paper sessions in {root / 'paper'}")
        return
    ws = max(len("session"), *(len(d["session"]) for d in docs)) + 2  # names and strategy paths shown whole
    wt = max(len("strategy"), *(len(str(d.get("strategy"))) for d in docs)) + 2
    click.echo(f"{'session':<{ws}}{'status':<12}{'strategy':<{wt}}{'symbols':>7}{'equity':>16}{'return':>10}  last bar")
    for d in docs:
        if "error" in d:
            click.echo(f"{d['session']:<{ws}}unreadable  {d['error']}")
            continue
        st = d["status"].split(" ")[0]
        click.echo(f"{d['session']:<{ws}}{st:<12}{str(d['strategy']):<{wt}}{len(d['symbols']):>7,}"
                   f"{_money(d['equity']):>16}{_pct(d['total_return']):>10}  {_when(d['last_bar_time'])}")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@_format_opt
def status(session, ledgers, fmt):
    """Cash, equity, drawdown, positions, open orders, last bar and heartbeat age of a session."""
    path, conn, _ = _open(ledgers, session)
    conn.close()
    d = _status(path)
    if fmt == "json":
        click.echo(json.dumps(d, indent=2, default=str))
    else:
        click.echo(f"Session {session}  ({path})")
        click.echo(_status_text(d))


def _table_command(name: str, what: str):
    @click.argument("session")
    @_ledgers_opt
    @_format_opt
    @click.option("--out", "-o", default=None, type=click.Path(dir_okay=False), help="Write a .parquet or .csv file instead.")
    @click.option("--rows", "-n", default=50, show_default=True, type=click.IntRange(min=0),
                  help="Table: show the last N rows (0: all).")
    def command(session, ledgers, fmt, out, rows):
        from . import readers

        _, conn, meta = _open(ledgers, session)
        try:
            df = {"orders": readers.orders_frame, "fills": readers.fills_frame, "equity": readers.equity_frame,
                  "trades": lambda c: readers.trades_frame(c, meta), "events": readers.events_frame}[name](conn)
        finally:
            conn.close()
        if out:
            suffix = Path(out).suffix.lower()
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            if suffix in (".parquet", ".pq"):
                df.write_parquet(out)
            elif suffix == ".csv":
                df.write_csv(out)
            else:
                raise ValueError(f"--out {out}: use a .parquet or .csv file")
            click.echo(f"note: {df.height:,} {name} row(s) written to {out}", err=True)
            return
        if fmt == "json":
            import polars as pl

            iso = df.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
            click.echo(json.dumps({"session": session, name: iso.to_dicts()}, indent=2, default=str))
            return
        click.echo(_format_table(df, rows))

    command.__doc__ = what
    return cli.command(name, context_settings=CONTEXT)(command)


def _format_table(df, rows: int) -> str:
    import polars as pl

    if df.height == 0:
        return "(none)"
    shown = df.tail(rows) if rows and df.height > rows else df
    cols = [c for c in shown.columns if c not in ("broker_id", "data")]
    money = {"cash", "equity", "gross_exposure", "benchmark", "pnl", "commission", "realized_pnl"}
    pct = {"drawdown"}
    text = []
    for c in cols:
        s = shown[c]
        if s.dtype == pl.Datetime("us", "UTC"):
            vals = [_when(v.isoformat().replace("+00:00", "") + ("" if v.microsecond else ".000000")) if v else "—" for v in s]
        elif s.dtype == pl.Float64:
            f = _money if c in money else _pct if c in pct else (lambda v: f"{v:,.2f}%" if v is not None else "—") \
                if c == "return_pct" else _num
            vals = [f(v) for v in s]
        else:
            vals = ["—" if v is None else str(v) for v in s]
        text.append(vals)
    widths = [max(len(c), *(len(v) for v in vals)) for c, vals in zip(cols, text)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    for i in range(shown.height):
        lines.append("  ".join(text[k][i].rjust(widths[k]) for k in range(len(cols))))
    if shown.height < df.height:
        lines.append(f"(last {shown.height:,} of {df.height:,} rows; --rows 0 for all)")
    return "\n".join(lines)


_table_command("orders", "Every order of a session: id, symbol, side, type, qty, prices, status, fills, reason.")
_table_command("fills", "Every fill of a session: order, symbol, side, qty, price, commission, time.")
_table_command("trades", "Round trips derived from the fills (FIFO per symbol), as backtest's trades.parquet.")
_table_command("equity", "One row per bar: equity, cash, gross exposure, drawdown, buy-and-hold benchmark.")
_table_command("events", "The session's event log: start, stop, resume, halt, reject, data_gap ...")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False), help="report.html path [default: ./runs/paper-<session>/report.html].")
@click.option("--digest", "digest_fmt", default="text", show_default=True, type=click.Choice(["text", "json", "none"]),
              help="Also print the daily digest (text or JSON) on stdout.")
@click.option("--day", default=None, help="Digest day YYYY-MM-DD [default: the day of the last bar].")
@click.option("--no-html", is_flag=True, help="Only the digest, no report.html.")
def report(session, ledgers, out, digest_fmt, day, no_html):
    """Write a self-contained HTML report (equity vs buy-and-hold, drawdown, trades, positions)
    and print the daily digest (today's fills, P&L, exposure, risk events)."""
    from .readers import digest_doc
    from .report import digest_text, write_session_report

    path, conn, meta = _open(ledgers, session)
    try:
        if not no_html:
            target = Path(out) if out else Path("runs") / f"paper-{session}" / "report.html"
            write_session_report(conn, meta, target)
            click.echo(f"note: report written to {target}", err=True)
        if digest_fmt != "none":
            d = digest_doc(conn, meta, day)
            click.echo(json.dumps(d, indent=2, default=str) if digest_fmt == "json" else digest_text(d))
    finally:
        conn.close()


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--wait", default=10.0, show_default=True, type=float, help="Seconds to wait for the session to stop (0: do not wait).")
def stop(session, ledgers, wait):
    """Ask a running session to stop after its current bar (SIGTERM does the same)."""
    import time

    from .ledger import ledgers_root, session_path
    from .session import stop_file

    path = session_path(ledgers_root(ledgers), session)
    if not path.exists():
        raise ValueError(f"{path}: no such session ledger")
    pid = _running_pid(path)
    if pid is None:
        click.echo(f"session {session} is not running")
        return
    stop_file(path).write_text("stop\n")
    end = time.monotonic() + wait
    while wait and time.monotonic() < end:
        if _running_pid(path) is None:
            click.echo(f"session {session} stopped (pid {pid})")
            return
        time.sleep(0.05)
    click.echo(f"stop requested for session {session} (pid {pid}); it stops after its current bar")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
def remove(session, ledgers):
    """Delete a session's ledger (refused while the session runs)."""
    from filelock import FileLock, Timeout

    from .ledger import ledgers_root, session_path

    path = session_path(ledgers_root(ledgers), session)
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), path.with_suffix(".pid"), path.with_suffix(".stop")]
    if not any(f.exists() for f in files):
        raise ValueError(f"{path}: no such session ledger")
    lock = FileLock(str(path.with_suffix(".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LedgerError(f"session {session} is running (pid {_running_pid(path)}); stop it first") from None
    try:
        for f in files:
            f.unlink(missing_ok=True)
    finally:
        lock.release()
        path.with_suffix(".lock").unlink(missing_ok=True)
    click.echo(f"session {session} removed ({path})")


@cli.command(context_settings=CONTEXT)
@_format_opt
def strategies(fmt):
    """List the built-in strategies with their parameters and defaults."""
    from .strategies import STRATEGIES

    if fmt == "json":
        click.echo(json.dumps({n: {"description": s.description, "params": {k: {"default": p.default, "help": p.help}
                                                                               for k, p in s.params.items()}}
                               for n, s in STRATEGIES.items()}, indent=2))
        return
    for name, s in STRATEGIES.items():
        click.echo(f"{name:<16}{s.description}")
        for k, p in s.params.items():
            click.echo(f"    --param {k}={p.default!s:<8} {p.help}")


# Every command takes --debug (SLICES.md command-line style); _Group.main reads it from argv and
# shows the traceback of an unexpected error, so the commands themselves never see the flag.
for _cmd in cli.commands.values():
    if not any(p.name == "debug" for p in _cmd.params):
        _cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                        help="Show tracebacks of unexpected errors."))
