"""Command line of the live_trade slice: ``python -m slices.live_trade <command>``.

Commands: ``run``, ``status``, ``orders``, ``fills``, ``positions``, ``events``, ``halt``,
``resume``, ``flatten``, ``reconcile``, ``report``, ``check-keys``. Bad input: one line
``error: ...`` on stderr and exit code 2, never a traceback (only with ``--debug``). The API keys
are read from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` only and never printed.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .bars import TIMEFRAMES, DataError
from .broker import Rejected, Unavailable
from .ledger import LedgerError
from .risk import Limits

COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"
CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Group(click.Group):
    """A click group whose usage, data, broker and ledger errors are one line and exit code 2."""

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
        except (DataError, ValueError, LedgerError, Rejected, Unavailable) as exc:
            if "--debug" in argv:
                import traceback

                traceback.print_exception(exc)
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
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
    return [s.strip().upper() for v in values for s in v.split(",") if s.strip()] or [""]


_ledgers_opt = click.option("--ledgers", default=None, type=click.Path(file_okay=False),
                            help="Ledger root [default: $GPT_TRADER_LEDGERS or ~/.gpt-trader/ledgers].")
_format_opt = click.option("--format", "-f", "fmt", default="table", show_default=True,
                           type=click.Choice(["table", "json"]), help="table for people, json (one document) for programs.")
_debug_opt = click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
_base_url_opt = click.option("--base-url", default=None,
                             help="Trading API base URL (alpaca-py url_override) [default: $APCA_API_BASE_URL or Alpaca's].")
_stream_url_opt = click.option("--stream-url", default=None,
                               help="trade_updates websocket URL [default: $APCA_API_STREAM_URL or Alpaca's].")
_timeout_opt = click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds per broker request.")
_retries_opt = click.option("--retries", default=4, show_default=True, type=int,
                            help="Retries of a transient broker error (timeout, 429, 5xx); 4xx are never retried.")


@click.group(cls=_Group, context_settings=CONTEXT)
def cli() -> None:
    """Live trading: the strategy you backtested, against your Alpaca account, with hard safety limits.

    Every session keeps its orders, fills, positions, equity and events in a SQLite ledger
    (<ledgers>/live/<session>.sqlite, SLICES.md contract 4). Without --account a session is a
    dry run: everything runs, nothing is sent.
    """


def _alpaca(account: str, base_url: str | None, timeout: float, retries: int, on_wait=None,
            data_url: str | None = None, feed: str = "iex"):
    from .broker import Alpaca, endpoint, keys_from_env

    keys = keys_from_env()
    return keys, Alpaca(keys, paper=account != "live", base_url=endpoint(base_url, "APCA_API_BASE_URL"),
                        timeout=timeout, attempts=retries + 1, on_wait=on_wait,
                        data_url=endpoint(data_url, "APCA_API_DATA_URL"), feed=feed)


# ----------------------------------------------------------------------------- run
@cli.command(context_settings=CONTEXT)
@click.option("--session", required=True, help="Session name (letters, digits, _ . -); an existing session resumes.")
@click.option("--strategy", default="simple_ma", show_default=True,
              help="Built-in name, strategy file PATH.py, package.module or package.module:attr (contract 5).")
@click.option("--param", "params", multiple=True, help="Strategy parameter k=v (repeatable).")
@click.option("--symbols", "-s", "symbols", multiple=True, help="Symbols, a comma list (repeatable); required with --account.")
@click.option("--timeframe", "-t", default=None, type=click.Choice(TIMEFRAMES), help="Bar timeframe [default 1d].")
@click.option("--follow/--replay", "follow", default=True, show_default=True,
              help="follow: act on new bars as they land in the store; replay (dry runs only): the stored bars, then stop.")
@click.option("--start", default=None, help="First bar, YYYY-MM-DD or ISO-8601, UTC (inclusive).")
@click.option("--end", default=None, help="Last bar (replay), YYYY-MM-DD or ISO-8601, UTC (inclusive).")
@click.option("--data", "data", multiple=True, type=click.Path(), help="CSV/TXT/Parquet bar file (repeatable; contract 2); replay only.")
@click.option("--store", default=None, help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store].")
@click.option("--keep-suspicious", is_flag=True, help="Use suspicious series with a warning instead of leaving them out.")
@click.option("--no-adjust", is_flag=True, help="--data files: do not apply an adj_close column to the prices (contract 2).")
@click.option("--bars", "bars_from", default="store", show_default=True, type=click.Choice(["store", "alpaca"]),
              help="Where new bars come from: the bar store (--follow), or Alpaca's market-data stream (needs --account; "
                   "1-minute bars aggregated to --timeframe up to 1h).")
@click.option("--execution", default="market", show_default=True,
              help="market (one order per signal), or twap:<window>[:<children>] / vwap:<window>[:<children>] "
                   "(e.g. twap:10m: 5 child orders over 10 minutes).")
@click.option("--account", default=None, type=click.Choice(["paper", "live"]),
              help="Alpaca account to trade [default: none, a dry run]. live also needs --confirm-live.")
@click.option("--confirm-live", is_flag=True, help="Confirm trading real money with --account live.")
@click.option("--dry-run", is_flag=True, help="Run everything (signals, risk checks, ledger) but send no order.")
@_base_url_opt
@_stream_url_opt
@click.option("--data-url", default=None,
              help="Market-data API base URL (latest trades for the price band) [default: $APCA_API_DATA_URL or Alpaca's].")
@click.option("--data-stream-url", default=None,
              help="Market-data websocket URL for --bars alpaca [default: $APCA_API_DATA_STREAM_URL or Alpaca's for --feed].")
@click.option("--feed", default="iex", show_default=True, type=click.Choice(["iex", "sip"]),
              help="Alpaca market-data feed (sip needs a subscription).")
@click.option("--adopt", is_flag=True, help="At start, take the broker's positions and open orders when they differ from the ledger.")
@click.option("--cash", default=100_000.0, show_default=True, type=float, help="Dry run without an account: starting cash.")
@click.option("--allow-short/--long-only", default=False, show_default=True, help="Allow short positions.")
@click.option("--leverage", default=None, type=float,
              help="Weights strategies only: rows may sum (in |w|) up to L; buys may use cash + (L - 1) x equity [default 1].")
@click.option("--rebalance-threshold", default=None, type=float,
              help="Weights strategies only: skip a rebalance order smaller than this fraction of equity [default 0].")
@click.option("--fractional", is_flag=True, default=None,
              help="Weights strategies only: target quantities in fractional shares (1e-6) instead of whole shares.")
@click.option("--max-order-notional", default=1_000.0, show_default=True, type=float, help="Max value of one order, currency.")
@click.option("--max-position-pct", default=10.0, show_default=True, type=float, help="Max position value, percent of equity.")
@click.option("--max-gross-pct", default=50.0, show_default=True, type=float, help="Max gross exposure, percent of equity.")
@click.option("--max-daily-loss-pct", default=2.0, show_default=True, type=float,
              help="Halt (cancel open orders) when equity falls this percent below the day's starting equity.")
@click.option("--flatten-on-halt", is_flag=True, help="Also close every position when the daily-loss limit halts.")
@click.option("--max-orders-per-minute", default=10, show_default=True, type=int, help="Order-rate limit (rolling 60 s).")
@click.option("--max-open-orders", default=10, show_default=True, type=int, help="Max working orders at once.")
@click.option("--price-band-pct", default=5.0, show_default=True, type=float,
              help="Refuse an order whose price is more than this percent from the last trade (fat finger).")
@click.option("--atr-window", default=14, show_default=True, type=int, help="ATR circuit breaker window, bars.")
@click.option("--max-atr-pct", default=10.0, show_default=True, type=float,
              help="ATR / price above this percent on any symbol: trading state reducing.")
@click.option("--stale-after", default=None, type=float,
              help="Seconds without a new bar during market hours before entries stop [default: 3 bar intervals].")
@click.option("--allow-symbols", default=None, help="Symbol allowlist, a comma list [default: the session's symbols].")
@click.option("--poll", default=5.0, show_default=True, type=float, help="Seconds between looks at the store, orders and clock.")
@click.option("--reconcile-every", default=300.0, show_default=True, type=float, help="Seconds between reconciliations.")
@click.option("--exit-after-idle", default=None, type=float, help="Stop after this many seconds without a new bar.")
@_timeout_opt
@_retries_opt
@_ledgers_opt
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@_format_opt
@_debug_opt
def run(session, strategy, params, symbols, timeframe, follow, start, end, data, store, keep_suspicious, no_adjust,
        bars_from, execution, account, confirm_live, dry_run, base_url, stream_url, data_url, data_stream_url, feed, adopt, cash, allow_short, leverage, rebalance_threshold, fractional, max_order_notional, max_position_pct,
        max_gross_pct, max_daily_loss_pct, flatten_on_halt, max_orders_per_minute, max_open_orders, price_band_pct,
        atr_window, max_atr_pct, stale_after, allow_symbols, poll, reconcile_every, exit_after_idle, timeout, retries,
        ledgers, quiet, fmt, debug):
    """Run (or resume) a live session: paper or live account, or a dry run."""
    from .broker import BarStream, TradeUpdates, endpoint
    from .execution import parse_execution
    from .ledger import ledgers_root, session_path
    from .session import run_session

    path = session_path(ledgers_root(ledgers), session)
    syms = _symbols(symbols)
    if not follow and account and not dry_run:
        raise ValueError("--replay replays stored bars; it needs --dry-run (or no --account): live orders are placed "
                         "only on new bars (--follow)")
    if data and follow:
        raise ValueError("--data files are replayed: add --replay (dry runs only); --follow reads the bar store")
    if account and not syms:
        raise ValueError("--symbols: name the symbols to trade with --account (e.g. --symbols AAPL,MSFT)")
    if not poll > 0 or not reconcile_every > 0:
        raise ValueError("--poll and --reconcile-every must be > 0 seconds")
    parse_execution(execution)
    if bars_from == "alpaca":
        if not account:
            raise ValueError("--bars alpaca needs --account (Alpaca's market data needs the keys); add --dry-run to "
                             "send nothing")
        if not follow:
            raise ValueError("--bars alpaca streams new bars: it cannot be used with --replay")
        if (timeframe or "1d") not in ("1m", "5m", "15m", "30m", "1h"):
            raise ValueError(f"--bars alpaca: --timeframe {timeframe or '1d'}: the stream's 1-minute bars are aggregated "
                             "to 1m, 5m, 15m, 30m or 1h; pass one of these")
    alpaca = keys = None
    if account:
        keys, alpaca = _alpaca(account, base_url, timeout, retries, data_url=data_url, feed=feed)
        if account == "live" and not confirm_live:
            acct = alpaca.account()
            raise ValueError(f"--account live trades real money on Alpaca account {acct.account_number}: "
                             "add --confirm-live to proceed")
    def on_start():
        if not account:
            click.echo("note: no --account: a dry run (signals, risk checks and the ledger; nothing is sent)", err=True)
    dry = dry_run or not account
    limits = Limits(max_order_notional, max_position_pct, max_gross_pct, max_daily_loss_pct, max_orders_per_minute,
                    max_open_orders, price_band_pct, atr_window, max_atr_pct, stale_after,
                    _symbols([allow_symbols]) if allow_symbols else None, flatten_on_halt)
    s = {"strategy": strategy, "params": _params(params), "symbols": syms, "timeframe": timeframe,
         "mode": "follow" if follow else "replay", "start": start, "end": end,
         "data": [str(Path(p).expanduser().resolve()) for p in data], "store": store,
         "keep_suspicious": keep_suspicious, "adjust": not no_adjust, "bars": bars_from, "execution": execution,
         "data_url": endpoint(data_url, "APCA_API_DATA_URL"), "feed": feed,
         "data_stream_url": endpoint(data_stream_url, "APCA_API_DATA_STREAM_URL"), "account": account, "dry_run": dry, "cash": cash,
         "allow_short": allow_short, "leverage": leverage, "rebalance_threshold": rebalance_threshold,
         "fractional": fractional or None, "base_url": endpoint(base_url, "APCA_API_BASE_URL"),
         "stream_url": endpoint(stream_url, "APCA_API_STREAM_URL"), "poll": poll, "reconcile_every": reconcile_every}
    if alpaca is not None:
        from .session import Session  # noqa: F401 (import check before the lock)

        def on_wait(msg):
            click.echo(f"warning: {msg}", err=True)
        alpaca.on_wait = on_wait
    factory = None
    if account and not dry:
        factory = lambda: TradeUpdates(keys, account != "live", s["stream_url"])  # noqa: E731
    bars_factory = None
    if bars_from == "alpaca":
        bars_factory = lambda syms: BarStream(keys, syms, s["data_stream_url"], feed)  # noqa: E731
    progress = None
    if not quiet and sys.stderr.isatty():
        def progress(done, total):
            click.echo(f"\r{session}: {done:,}{'/' + format(total, ',') if total else ''} bar(s)", err=True, nl=False)
    res = run_session(session, s, limits, ledgers_path=path, alpaca=alpaca, updates_factory=factory, adopt=adopt,
                      poll=poll, reconcile_every=reconcile_every, max_idle=exit_after_idle, progress=progress,
                      bars_factory=bars_factory, on_start=on_start)
    for line in res.notes:
        click.echo(line if line.startswith("note:") else f"note: {line}", err=True)
    echo_warnings(res.warnings, res.findings)
    doc = _status(path)
    doc["bars_processed"] = res.bars_done
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"Session {session}: {'dry run, ' if res.dry_run else ''}{res.bars_done:,} bar(s) processed, "
                   f"{res.status}, trading {res.trading_state}")
        click.echo(_status_text(doc))


def _params(values) -> dict:
    out = {}
    for item in values or ():
        if "=" not in item:
            raise ValueError(f"--param {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# ----------------------------------------------------------------------------- readers
def _path(ledgers, session) -> Path:
    from .ledger import ledgers_root, session_path

    path = session_path(ledgers_root(ledgers), session)
    if not path.exists():
        raise ValueError(f"{path}: no such live session ledger")
    return path


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
    """Percent with two decimals; a value that rounds to zero prints ``0.00%`` (never ``-0.00%``)."""
    return "—" if x is None else f"{round(x * 100, 2) + 0.0:,.2f}%"


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
    acct = "dry run" + (f" ({d['account']} account for the clock)" if d["account"] else "") if d["dry_run"] \
        else f"{d['account']} account"
    lines = [
        f"  status        {d['status']}{' (pid ' + str(d['pid']) + ')' if d['pid'] else ''}   trading {d['trading_state']}"
        + (f" ({d['state_reason']})" if d["state_reason"] else ""),
        f"  strategy      {d['strategy']}  {d['timeframe']}  {len(d['symbols'])} symbol(s)  {acct}",
        f"  equity        {_money(d['equity'])}   cash {_money(d['cash'])}   drawdown {_pct(d['drawdown'])}",
        f"  last bar      {_when(d['last_bar_time'])}   heartbeat {'—' if hb is None else f'{hb:,.1f} s ago'}",
        f"  positions     {len(d['positions'])}"
        + (f" held, {len(d['virtual_positions'])} intended (dry run)" if d["virtual_positions"] else "")
        + f"   open orders {len(d['open_orders'])}",
    ]
    for p in d["positions"]:
        lines.append(f"    {p['symbol']:<8} {_num(p['qty']):>12} @ {_num(p['avg_price'])}  mark {_num(p['mark_price'])}")
    for sym, q in d["virtual_positions"].items():
        lines.append(f"    {sym:<8} {_num(q):>12} (dry run: intended, not held)")
    for o in d["open_orders"]:
        lines.append(f"    order {o['id']}  {o['side']} {_num(o['qty'] - o['filled_qty'])} {o['type']}  ({o['reason']})")
    return "\n".join(lines)


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@_format_opt
def status(session, ledgers, fmt):
    """Trading state, equity, positions, open orders, last bar and heartbeat age of a session."""
    path = _path(ledgers, session)
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
    @click.option("--rows", "-n", default=50, show_default=True, type=int, help="Table: show the last N rows (0: all).")
    def command(session, ledgers, fmt, out, rows):
        from . import readers
        from .ledger import open_reader

        conn = open_reader(_path(ledgers, session))
        try:
            df = {"orders": readers.orders_frame, "fills": readers.fills_frame, "positions": readers.positions_frame,
                  "events": readers.events_frame, "trades": readers.trades_frame}[name](conn)
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
            click.echo(f"{df.height:,} {name} row(s) written to {out}", err=True)
            return
        if fmt == "json":
            click.echo(json.dumps({"session": session, name: df.to_dicts()}, indent=2, default=str))
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
    text = []
    for c in cols:
        s = shown[c]
        if s.dtype == pl.Datetime("us", "UTC"):
            vals = ["—" if v is None else v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in s]
        elif s.dtype == pl.Float64:
            vals = [(_money if c in ("realized_pnl", "commission", "pnl") else _num)(v) for v in s]
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


_table_command("orders", "Every order of a session: client order id, symbol, side, type, qty, status, fills, reason.")
_table_command("fills", "Every fill of a session (from the trade_updates stream and order look-ups).")
_table_command("positions", "The session's positions (from its fills, or adopted from the broker).")
_table_command("events", "The event log: start, stop, resume, halt, state, risk_block, reject, reconcile, data_gap ...")
_table_command("trades", "Round trips derived from the fills (FIFO per symbol), as backtest's trades.parquet.")


# ----------------------------------------------------------------------------- kill switch
def _set_offline_state(path: Path, state: str, kind: str, message: str) -> None:
    """The session is not running: take its lock briefly and store the trading state."""
    from .ledger import Writer, now_iso, set_meta

    w = Writer(path)
    try:
        with w.transaction() as cur:
            cur.execute("INSERT INTO events(time, level, kind, message, data) VALUES(?, ?, ?, ?, ?)",
                        (now_iso(), "critical" if state == "halted" else "info", kind, message, "{}"))
            set_meta(cur, {"trading_state": state})
    finally:
        w.close()


def _wait_state(path: Path, want: str, wait: float) -> bool:
    from .ledger import open_reader, read_meta

    end = time.monotonic() + wait
    while time.monotonic() < end:
        conn = open_reader(path)
        try:
            if read_meta(conn).get("trading_state") == want:
                return True
        finally:
            conn.close()
        time.sleep(0.05)
    return False


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--wait", default=5.0, show_default=True, type=float, help="Seconds to wait for the running session to confirm.")
def halt(session, ledgers, wait):
    """Kill switch: cancel every open order and stop trading (state halted) until `resume`.

    Writes <ledgers>/live/<session>.HALT; the running session acts on it within one second. A
    file named HALT in <ledgers>/live/ halts every live session."""
    from .session import control_files

    path = _path(ledgers, session)
    control_files(path)["halt"].write_text("halt\n")
    pid = _running_pid(path)
    if pid is None:
        _set_offline_state(path, "halted", "halt", "halted by the halt command (session not running)")
        click.echo(f"session {session} halted (not running: it starts halted until `resume`)")
    elif _wait_state(path, "halted", wait):
        click.echo(f"session {session} halted (pid {pid}): open orders canceled, no new orders")
    else:
        click.echo(f"halt requested for session {session} (pid {pid}); not confirmed within {wait:g} s")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--wait", default=5.0, show_default=True, type=float, help="Seconds to wait for the running session to confirm.")
def resume(session, ledgers, wait):
    """Leave the halted (or reducing) state: trading active again."""
    from .session import control_files

    path = _path(ledgers, session)
    files = control_files(path)
    if files["halt_all"].exists():
        raise ValueError(f"{files['halt_all']} halts every live session: remove it first")
    files["halt"].unlink(missing_ok=True)
    pid = _running_pid(path)
    if pid is None:
        _set_offline_state(path, "active", "resume", "resumed by the resume command (session not running)")
        click.echo(f"session {session} resumed (not running: it starts active)")
        return
    files["resume"].write_text("resume\n")
    if _wait_state(path, "active", wait):
        click.echo(f"session {session} resumed (pid {pid}): trading active")
    else:
        click.echo(f"resume requested for session {session} (pid {pid}); not confirmed within {wait:g} s")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--wait", default=5.0, show_default=True, type=float, help="Seconds to wait for the running session to confirm.")
def flatten(session, ledgers, wait):
    """Cancel open orders and close every position of the running session (state reducing until `resume`)."""
    from .session import control_files

    path = _path(ledgers, session)
    pid = _running_pid(path)
    if pid is None:
        raise ValueError(f"session {session} is not running: flatten needs the running session to send the orders")
    control_files(path)["flatten"].write_text("flatten\n")
    end = time.monotonic() + wait
    while time.monotonic() < end and control_files(path)["flatten"].exists():
        time.sleep(0.05)
    click.echo(f"flatten {'done' if not control_files(path)['flatten'].exists() else 'requested'} for session "
               f"{session} (pid {pid}): see `orders {session}`")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--account", default="paper", show_default=True, type=click.Choice(["paper", "live"]), help="Alpaca account.")
@_base_url_opt
@click.option("--adopt", is_flag=True, help="Take the broker's state into the ledger (session not running).")
@_timeout_opt
@_retries_opt
@_format_opt
def reconcile(session, ledgers, account, base_url, adopt, timeout, retries, fmt):
    """Compare the session's ledger with the broker's positions and open orders (exit 1 on differences)."""
    from .ledger import Writer
    from .session import Session

    path = _path(ledgers, session)
    _, alpaca = _alpaca(account, base_url, timeout, retries)
    pid = _running_pid(path)
    if pid is not None:
        raise ValueError(f"session {session} is running (pid {pid}); it reconciles itself every --reconcile-every")
    w = Writer(path)
    try:
        meta = w.meta()
        s = json.loads(meta["settings"])
        s["symbols"] = json.loads(meta["symbols"])
        sess = Session(session, path, w, s, Limits(), None, {}, alpaca, bool(s.get("dry_run")))
        sess.restore(meta)
        try:
            lines = sess.reconcile(adopt, startup=True)
        except ValueError as exc:
            lines = str(exc).split(": broker and ledger differ: ", 1)[-1].split("; pass --adopt")[0].split("; ")
            _reconcile_out(session, lines, False, fmt)
            sys.exit(1)
    finally:
        w.close()
    _reconcile_out(session, lines, adopt and bool(lines), fmt)


def _reconcile_out(session, lines, adopted, fmt):
    if fmt == "json":
        click.echo(json.dumps({"session": session, "differences": lines, "adopted": adopted}, indent=2))
    elif not lines:
        click.echo(f"session {session}: broker and ledger agree")
    else:
        click.echo(f"session {session}: {len(lines):,} difference(s){' (adopted)' if adopted else ''}")
        for line in lines:
            click.echo(f"  {line}")


@cli.command(context_settings=CONTEXT)
@click.argument("session")
@_ledgers_opt
@click.option("--day", default=None, help="Digest day YYYY-MM-DD [default: the day of the last bar].")
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False),
              help="report.html path [default: ./runs/live-<session>/report.html].")
@click.option("--no-html", is_flag=True, help="Only the digest, no report.html.")
@_format_opt
def report(session, ledgers, day, out, no_html, fmt):
    """Write a self-contained offline HTML report (equity vs buy-and-hold, drawdown, prices with
    entries and exits, trades, positions, warnings) and print the daily digest (that day's fills,
    P&L, exposure and risk events)."""
    from .ledger import open_reader, read_meta
    from .readers import digest_doc

    conn = open_reader(_path(ledgers, session))
    try:
        meta = read_meta(conn)
        if not no_html:
            from .report import write_session_report

            target = Path(out) if out else Path("runs") / f"live-{session}" / "report.html"
            write_session_report(conn, meta, target)
            click.echo(f"report written to {target}", err=True)
        d = digest_doc(conn, meta, day)
    finally:
        conn.close()
    if fmt == "json":
        click.echo(json.dumps(d, indent=2, default=str))
        return
    click.echo(f"Session {session}  day {d['day'] or '—'}  trading {d.get('trading_state') or '—'}")
    click.echo(f"  equity {_money(d.get('equity'))}   P&L {_money(d.get('pnl'))}   return {_pct(d.get('return'))}   "
               f"exposure {_pct(d.get('exposure'))}   drawdown {_pct(d.get('drawdown'))}")
    click.echo(f"  fills {len(d['fills']):,}")
    for f in d["fills"]:
        click.echo(f"    {_when(f['time'])}  {f['side']} {_num(f['qty'])} {f['symbol']} @ {_num(f['price'])}  ({f['reason']})")
    click.echo(f"  risk events {len(d['events']):,}")
    for e in d["events"]:
        click.echo(f"    {e['level']:<8} {e['kind']:<11} {e['message']}")


@cli.command("check-keys", context_settings=CONTEXT)
@click.option("--account", default="paper", show_default=True, type=click.Choice(["paper", "live"]), help="Alpaca account.")
@_base_url_opt
@_timeout_opt
@_retries_opt
@_format_opt
def check_keys(account, base_url, timeout, retries, fmt):
    """One line: account number and status, equity, buying power, whether trading is blocked."""
    _, alpaca = _alpaca(account, base_url, timeout, retries)
    a = alpaca.account()
    blocked = bool(a.trading_blocked or a.account_blocked or a.trade_suspended_by_user)
    status = getattr(a.status, "value", a.status)
    if fmt == "json":
        click.echo(json.dumps({"account": account, "account_number": a.account_number, "status": status,
                               "equity": float(a.equity or 0), "buying_power": float(a.buying_power or 0),
                               "trading_blocked": blocked}))
        return
    click.echo(f"{account} account {a.account_number}: {status}, equity {float(a.equity or 0):,.2f}, buying power "
               f"{float(a.buying_power or 0):,.2f}, trading {'BLOCKED' if blocked else 'allowed'}")
    return 1 if blocked else 0


# Every command takes --debug (SLICES.md command-line style); _Group.main reads it from argv and
# shows the traceback of an unexpected error, so the commands themselves never see the flag.
for _cmd in cli.commands.values():
    if not any(p.name == "debug" for p in _cmd.params):
        _cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                        help="Show tracebacks of unexpected errors."))
