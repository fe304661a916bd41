"""Command line of the backtest slice: ``python -m slices.backtest [run|strategies]``.

With no command it runs the default backtest (simple_ma on every daily symbol of the store, or of
the embedded sample when the store is empty). Bad input: one line ``error: ...`` on stderr and
exit code 2, never a traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .bars import TIMEFRAMES, DataError
from .engine import SIZINGS, Config
from .strategies import STRATEGIES

MAX_WARNINGS_SHOWN = 8


class _Group(click.Group):
    """A click group whose usage errors and data errors are one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except (DataError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def _run_options(f):
    opts = [
        click.option("--strategy", default="simple_ma", show_default=True, help="Strategy name (see `strategies`)."),
        click.option("--symbols", default=None, help="Comma list of symbols [default: all in the data]."),
        click.option("--data", "data", multiple=True, type=click.Path(), help="CSV/Parquet bar file (repeatable); replaces the store."),
        click.option("--store", default=None, help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store]."),
        click.option("--timeframe", default="1d", show_default=True, type=click.Choice(TIMEFRAMES), help="Bar timeframe of the store."),
        click.option("--start", default=None, help="First bar, YYYY-MM-DD (inclusive)."),
        click.option("--end", default=None, help="Last bar, YYYY-MM-DD (inclusive)."),
        click.option("--param", "params", multiple=True, help="Strategy parameter k=v (repeatable)."),
        click.option("--cash", default=100_000.0, show_default=True, type=float, help="Starting cash, currency."),
        click.option("--commission", default=0.0005, show_default=True, type=float, help="Commission, fraction of traded value."),
        click.option("--slippage-bps", default=2.0, show_default=True, type=float, help="Slippage against the trader, basis points."),
        click.option("--allow-short/--long-only", default=False, show_default=True, help="Allow short positions."),
        click.option("--whole-shares/--fractional", default=True, show_default=True, help="Round quantities down to whole units."),
        click.option("--sizing", default="equal-weight", show_default=True, type=click.Choice(SIZINGS),
                     help="equal-weight: equity / number of symbols; fixed-fraction: --fraction of equity; atr-risk: risk --fraction of equity to the ATR stop."),
        click.option("--fraction", default=None, type=float,
                     help="fixed-fraction: fraction of equity per position [0.10]; atr-risk: fraction of equity risked per trade [0.01]."),
        click.option("--stop-loss-atr", default=None, type=float, help="Stop-loss distance, ATR multiples."),
        click.option("--take-profit-atr", default=None, type=float, help="Take-profit distance, ATR multiples."),
        click.option("--atr-window", default=14, show_default=True, type=int, help="ATR window for stops and atr-risk, bars."),
        click.option("--max-position-pct", default=100.0, show_default=True, type=float, help="Max position value, percent of equity."),
        click.option("--max-drawdown", default=None, type=float, help="Halt: close all and stop trading at this drawdown (fraction, e.g. 0.25)."),
        click.option("--no-adjust", is_flag=True, help="Do not scale OHLC by adj_close/close in --data files."),
        click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder [default: a new folder under ./runs/]."),
        click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]),
                     help="table: summary; json: metrics.json on stdout."),
        click.option("--no-report", is_flag=True, help="Skip report.html (faster)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Backtest strategies on historical bars, with costs and risk rules.

    With no command: the default backtest on the store (or the embedded sample).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@cli.command()
@_run_options
def run(strategy, symbols, data, store, timeframe, start, end, params, cash, commission, slippage_bps, allow_short,
        whole_shares, sizing, fraction, stop_loss_atr, take_profit_atr, atr_window, max_position_pct, max_drawdown,
        no_adjust, out, fmt, no_report):
    """Run a backtest and write metrics.json, trades.parquet, equity.parquet and report.html."""
    from .run import backtest, default_out_dir, metrics_document, write_outputs

    overrides = {}
    for item in params:
        if "=" not in item:
            raise ValueError(f"--param {item!r}: expected key=value")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    cfg = Config(cash=cash, commission=commission, slippage_bps=slippage_bps, allow_short=allow_short,
                 whole_shares=whole_shares, sizing=sizing, fraction=fraction, stop_loss_atr=stop_loss_atr,
                 take_profit_atr=take_profit_atr, atr_window=atr_window, max_position_pct=max_position_pct,
                 max_drawdown=max_drawdown)
    sym_list = [s for s in symbols.split(",") if s.strip()] if symbols is not None else None
    outcome = backtest(strategy, sym_list, params=overrides, data=list(data) or None, store=store, timeframe=timeframe,
                       start=start, end=end, adjust=not no_adjust, config=cfg)
    for line in outcome.report.notes:
        click.echo(line, err=True)
    warns = outcome.report.warnings
    for line in warns[:MAX_WARNINGS_SHOWN]:
        click.echo(f"warning: {line}", err=True)
    if len(warns) > MAX_WARNINGS_SHOWN:
        click.echo(f"warning: ... and {len(warns) - MAX_WARNINGS_SHOWN} more (all listed in metrics.json)", err=True)
    folder = Path(out) if out else default_out_dir(strategy)
    written = write_outputs(outcome, folder, report=not no_report)
    if fmt == "json":
        click.echo(json.dumps(metrics_document(outcome) | {"output": str(written)}, indent=2, default=str))
    else:
        click.echo(summary(outcome, written))


def _pct(x) -> str:
    return "—" if x is None else f"{x * 100:,.2f}%"


def _num(x) -> str:
    return "—" if x is None else f"{x:,.2f}"


def summary(o, written: Path) -> str:
    """The human summary table: period, return, CAGR, Sharpe, max drawdown, trades, vs buy-and-hold."""
    m, b, r = o.portfolio, o.benchmark, o.run
    params = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
    n_open = int(o.trades["is_open"].sum()) if o.trades.height else 0
    syms = r["symbols"]
    names = ", ".join(syms) if len(syms) <= 6 else f"{', '.join(syms[:5])} and {len(syms) - 5} more"
    rows = [
        ("", "Strategy", "Buy & hold"),
        ("Total return", _pct(m["total_return"]), _pct(b["total_return"])),
        ("CAGR", _pct(m["cagr"]), _pct(b["cagr"])),
        ("Sharpe ratio", _num(m["sharpe"]), _num(b["sharpe"])),
        ("Max drawdown", _pct(m["max_drawdown"]), _pct(b["max_drawdown"])),
        ("Volatility (ann.)", _pct(m["volatility"]), _pct(b["volatility"])),
        ("Final equity", _num(m["final_equity"]), _num(b["final_equity"])),
        ("Exposure", _pct(m["exposure"]), "100.00%"),
        ("Trades", f"{m['n_trades']} ({n_open} open)", ""),
        ("Win rate", _pct(m["win_rate"]), ""),
        ("Profit factor", _num(m["profit_factor"]), ""),
    ]
    width = max(len(a) for a, _, _ in rows) + 2
    lines = [
        f"Backtest  {r['strategy']}({params})  {r['timeframe']}  {len(syms)} symbol(s): {names}",
        f"Period    {r['start'][:10]} .. {r['end'][:10]}  ({r['bars']:,} bars)   cash {r['cash']:,.0f}  "
        f"commission {r['commission']:g}  slippage {r['slippage_bps']:g} bps  {r['sizing']}"
        f"{'  shorts allowed' if r['allow_short'] else '  long only'}",
        "",
    ]
    lines += [f"{a:<{width}}{b_:>16}{c:>16}" for a, b_, c in rows]
    lines += ["", f"Report: {written}"]
    return "\n".join(lines)


@cli.command()
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def strategies(fmt):
    """List strategies with their parameters, defaults and description."""
    if fmt == "json":
        doc = {n: {"description": s.description, "params": {k: {"default": p.default, "help": p.help} for k, p in s.params.items()}}
               for n, s in STRATEGIES.items()}
        click.echo(json.dumps(doc, indent=2))
        return
    for name, s in STRATEGIES.items():
        click.echo(f"{name:<16}{s.description}")
        for k, p in s.params.items():
            click.echo(f"    --param {k}={p.default:<8g} {p.help}")
