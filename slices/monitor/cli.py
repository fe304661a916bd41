"""Command line of the monitor slice: ``python -m slices.monitor <command>``.

Commands: ``serve`` (dashboard, API, health, metrics, alerts), ``check`` (evaluate the rules once,
for cron), ``rules`` (print the default rules, or check a rules file), ``digest`` (the daily
digest), ``sessions`` (list the sessions), ``ack`` (acknowledge critical events). Bad input: one
line ``error: ...`` on stderr and exit code 2, never a traceback (only with ``--debug``).
"""
from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

import click

from .common import MonitorError, age_text, db_path, human_time, ledgers_root, money, pct, runs_root, store_root, utcnow

CONTEXT = {"help_option_names": ["-h", "--help"]}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN_ENV = "GPT_TRADER_MONITOR_TOKEN"


class _Group(click.Group):
    """A click group whose usage and input errors are one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except MonitorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            if "--debug" in argv:
                raise
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


def _common(f):
    """--ledgers --store --runs --db --rules --stale-after --debug."""
    for opt in reversed([
        click.option("--ledgers", default=None, type=click.Path(file_okay=False),
                     help="Ledger root [default: $GPT_TRADER_LEDGERS or ~/.gpt-trader/ledgers]."),
        click.option("--store", default=None, type=click.Path(file_okay=False),
                     help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store]."),
        click.option("--runs", default=None, type=click.Path(file_okay=False),
                     help="Backtest run folders [default: $GPT_TRADER_RUNS or ./runs]."),
        click.option("--db", default=None, type=click.Path(dir_okay=False),
                     help="The monitor's own SQLite file [default: $GPT_TRADER_MONITOR_DB or ~/.gpt-trader/monitor/monitor.sqlite]."),
        click.option("--rules", "rules_file", default=None, type=click.Path(dir_okay=False),
                     help="Alert rules TOML file over the defaults (see `rules`)."),
        click.option("--stale-after", default=None, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds after which a heartbeat or the store's newest bar is stale [default: 3 bar intervals]."),
        click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors."),
    ]):
        f = opt(f)
    return f


def _monitor(ledgers, store, runs, db, rules_file, stale_after):
    from .rules import load_rules
    from .service import Monitor

    return Monitor(ledgers_root(ledgers), store_root(store), runs_root(runs), db_path(db), load_rules(rules_file),
                   stale_after=stale_after)


_format_opt = click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]),
                           help="table for people, json (one document) for programs.")


@click.group(cls=_Group, context_settings=CONTEXT)
def cli() -> None:
    """Monitor: health, Prometheus metrics, alerts and a live dashboard over the trading sessions.

    Reads the session ledgers (SLICES.md contract 4), backtest run folders (contract 3) and the
    bar store (contract 1), read-only; keeps alert history in its own SQLite file.
    """


# ----------------------------------------------------------------------------- serve
@cli.command(context_settings=CONTEXT)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything but loopback needs --token.")
@click.option("--token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="Bearer token required on every route but /healthz.")
@click.option("--refresh", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="Seconds between the pages' live updates.")
@click.option("--no-alerts", is_flag=True, help="Do not evaluate the rules or send alerts in the background.")
@click.option("--cache-ttl", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="At most how many seconds an API, fragment or /metrics answer is reused while no "
                   "ledger changed (a commit shows on the next request; 0: never reuse).")
@_common
def serve(port, host, token, refresh, no_alerts, cache_ttl, ledgers, store, runs, db, rules_file, stale_after, debug):
    """Serve the dashboard, the JSON API, /healthz, /readyz and /metrics; evaluate the alert
    rules every `settings.interval` seconds and send alerts."""
    import uvicorn

    from .web import create_app

    loopback = host in LOOPBACK
    if not loopback and not token:
        raise MonitorError(f"--host {host}: binding anything but 127.0.0.1/localhost/::1 needs --token "
                           f"(or ${TOKEN_ENV}); every route but /healthz then requires it")
    if token is not None and len(token) < 16:
        raise MonitorError("--token: use at least 16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    mon = _monitor(ledgers, store, runs, db, rules_file, stale_after)
    mon.alerts  # open (create) the database now: a bad --db is an error before serving
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(2048)  # connections queue from now on, so the URL printed below works at once
    except OSError as exc:
        raise MonitorError(f"--host {host} --port {port}: cannot bind ({exc.strerror or exc})") from None
    bound = sock.getsockname()[1]
    hosts = None if (token and not loopback) else {"127.0.0.1", "localhost", "::1", "[::1]", host}
    app = create_app(mon, token=token, hosts=hosts, refresh=refresh, evaluate_alerts=not no_alerts,
                     cache_ttl=cache_ttl)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"note: serving http://{shown}:{bound}/ (ledgers {mon.ledgers}, store {mon.store}, runs {mon.runs}, "
               f"db {mon.db}){'; token required' if token else ''}", err=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])


# ----------------------------------------------------------------------------- check
@cli.command(context_settings=CONTEXT)
@click.option("--no-send", is_flag=True, help="Only print: do not record state or send through the channels.")
@_format_opt
@_common
def check(no_send, fmt, ledgers, store, runs, db, rules_file, stale_after, debug):
    """Evaluate the rules once, print what fires and exit 1 when anything does (for cron).

    New conditions and resolutions are sent through the rules' webhook and e-mail channels
    (once per condition, with the cooldown) unless --no-send.
    """
    mon = _monitor(ledgers, store, runs, db, rules_file, stale_after)
    if no_send:
        conds, notes = mon.conditions(), []
    else:
        conds, notes = mon.run_alerts(log=False)
    if fmt == "json":
        click.echo(json.dumps({"time": mon.clock().isoformat(), "firing": [c.as_dict() for c in conds],
                               "sent": [n.as_dict() for n in notes]}, indent=2, default=str))
    else:
        for c in conds:
            click.echo(f"{c.severity:<8} {c.rule:<16} {c.message}")
        if not conds:
            click.echo("ok: no alert condition holds")
    return 1 if conds else 0


# ----------------------------------------------------------------------------- rules
@cli.command(context_settings=CONTEXT)
@click.option("--rules", "rules_file", default=None, type=click.Path(dir_okay=False),
              help="Check this rules file and show the effective rules.")
@_format_opt
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def rules(rules_file, fmt, debug):
    """Print the default rules (a TOML file to copy), or check a rules file and show the
    effective rules."""
    from .rules import DEFAULT_RULES, describe_rules, load_rules

    cfg = load_rules(rules_file)
    if fmt == "json":
        safe = json.loads(json.dumps(cfg))
        for hook in safe["channels"]["webhook"]:
            hook["url"] = hook["url"].split("://", 1)[0] + "://" + hook["url"].split("://", 1)[1].split("/", 1)[0] + "/..."
        click.echo(json.dumps(safe, indent=2))
        return 0
    if rules_file is None:
        click.echo(DEFAULT_RULES, nl=False)
        return 0
    for r in describe_rules(cfg):
        click.echo(f"{r['rule']:<16} {'on ' if r['enabled'] else 'off'} {r['severity']:<8} {r['settings']}")
    ch = cfg["channels"]
    click.echo(f"channels: log {'on' if ch['log'] else 'off'}, {len(ch['webhook']):,} webhook(s), "
               f"e-mail {'to ' + ', '.join(ch['email']['to']) if ch['email'] else 'off'}")
    return 0


# ----------------------------------------------------------------------------- digest
@cli.command(context_settings=CONTEXT)
@click.option("--day", default=None, help="UTC day YYYY-MM-DD [default: yesterday].")
@click.option("--as", "fmt", default="markdown", show_default=True, type=click.Choice(["markdown", "html", "email"]),
              help="markdown or html on stdout (or --out); email: send through the rules' [channels.email].")
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False), help="Write the digest to this file.")
@click.option("--ledgers", default=None, type=click.Path(file_okay=False),
              help="Ledger root [default: $GPT_TRADER_LEDGERS or ~/.gpt-trader/ledgers].")
@click.option("--rules", "rules_file", default=None, type=click.Path(dir_okay=False), help="Rules file with [channels.email].")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def digest(day, fmt, out, ledgers, rules_file, debug):
    """Write the daily digest: per session P&L, fills and risk events of one UTC day."""
    from . import digest as D
    from .channels import ChannelError, send_email
    from .rules import load_rules

    day = D.parse_day(day) if day else (utcnow() - timedelta(days=1)).date().isoformat()
    cfg = load_rules(rules_file) if (rules_file or fmt == "email") else None
    if fmt == "email" and not cfg["channels"]["email"]:
        raise MonitorError("--as email: the rules file has no [channels.email] (pass --rules FILE)")
    rows = D.collect(ledgers_root(ledgers), day)
    if fmt == "email":
        try:
            send_email(cfg["channels"]["email"], f"GPT-Trader daily digest {day}", D.markdown(day, rows), D.html(day, rows))
        except ChannelError as exc:
            raise MonitorError(str(exc)) from None
        click.echo(f"note: digest {day} sent to {', '.join(cfg['channels']['email']['to'])}", err=True)
        return 0
    text = D.markdown(day, rows) if fmt == "markdown" else D.html(day, rows)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"note: digest {day} written to {out}", err=True)
    else:
        click.echo(text, nl=False)
    return 0


# ----------------------------------------------------------------------------- sessions
@cli.command(context_settings=CONTEXT)
@_format_opt
@_common
def sessions(fmt, ledgers, store, runs, db, rules_file, stale_after, debug):
    """List every paper and live session: status, equity, day P&L, drawdown, heartbeat age."""
    from .web import public_summary

    mon = _monitor(ledgers, store, runs, db, rules_file, stale_after)
    rows = mon.sessions()
    if fmt == "json":
        click.echo(json.dumps({"sessions": [public_summary(s) for s in rows]}, indent=2, default=str))
        return 0
    if not rows:
        click.echo(f"no sessions under {mon.ledgers}")
    for s in rows:
        if "error" in s:
            click.echo(f"{s['id']:<28} unreadable: {s['error']}")
            continue
        click.echo(f"{s['id']:<28} {s.get('status') or '':<8} {s.get('trading_state') or '':<9} "
                   f"equity {money(s.get('equity')):>14}  day {money(s.get('day_pnl')):>12} {pct(s.get('day_return')):>8}  "
                   f"dd {pct(s.get('drawdown')):>8}  heartbeat {age_text(s.get('heartbeat_age'))}{' STALE' if s.get('stale') else ''}"
                   f"  last bar {human_time(s.get('last_bar_time'))}")
    return 0


# ----------------------------------------------------------------------------- ack
@cli.command(context_settings=CONTEXT)
@click.option("--session", "session_id", required=True, help="Session as KIND/NAME (paper/demo) or NAME (paper first).")
@click.option("--event", "event_ids", multiple=True, type=int, help="Critical event id (repeatable) [default: all of the session].")
@_common
def ack(session_id, event_ids, ledgers, store, runs, db, rules_file, stale_after, debug):
    """Acknowledge a session's critical events, so /readyz stops failing on them."""
    from . import ledgers as L

    mon = _monitor(ledgers, store, runs, db, rules_file, stale_after)
    kind, _, name = session_id.rpartition("/")
    refs = [L.find(mon.ledgers, k, name) for k in ([kind] if kind else list(L.KINDS))]
    ref = next((r for r in refs if r is not None), None)
    if ref is None:
        raise MonitorError(f"--session {session_id}: no such session under {mon.ledgers}")
    raw = L.read_summary(ref)
    if "error" in raw:
        raise MonitorError(raw["error"])
    crit = raw["critical"]
    wanted = [c for c in crit if not event_ids or c["id"] in event_ids]
    missing = sorted(set(event_ids) - {c["id"] for c in crit})
    if missing:
        raise MonitorError(f"--event {missing[0]}: {ref.id} has no critical event with that id")
    now = mon.clock()
    for c in wanted:
        mon.alerts.ack(ref.kind, ref.name, c["id"], c["time"], now)
    click.echo(f"acknowledged {len(wanted):,} critical event(s) of {ref.id}")
    return 0


def main() -> None:  # pragma: no cover - console entry
    cli(prog_name="python -m slices.monitor")


if __name__ == "__main__":  # pragma: no cover
    main()
