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
import polars as pl

from .bars import TIMEFRAMES, DataError, fmt_ts
from .engine import SIZINGS, Config
from .strategies import STRATEGIES


class _Group(click.Group):
    """A click group whose usage errors and data errors are one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            click.echo(f"error: {_usage_message(exc)}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except (DataError, ValueError) as exc:
            if "--debug" in (sys.argv[1:] if args is None else args):  # the strategy's own traceback, if any
                import traceback

                traceback.print_exception(exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
        except Exception as exc:  # a bug, not bad input: one line unless --debug asks for the traceback
            if "--debug" in (sys.argv[1:] if args is None else args):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (run again with --debug for the traceback)",
                       err=True)
            sys.exit(2)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"


def _usage_message(exc: click.exceptions.UsageError) -> str:
    """One line; a stray extra argument (``--symbols AAPL MSFT``) gets the comma-list hint."""
    msg = " ".join(exc.format_message().split())
    return f"{msg}; {COMMA_HINT}" if "unexpected extra argument" in msg else msg


def symbol_list(values: tuple[str, ...] | list[str] | None) -> list[str] | None:
    """``--symbols`` values (repeatable, each a comma list) as one list; None when not given."""
    if not values:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()] or [""]


def _data_options() -> list:
    """The options naming the bars of a run (shared by ``run`` and ``bars``)."""
    return [
        click.option("--symbols", "-s", "symbols", multiple=True,
                     help="Symbols, a comma list (repeatable) [default: all in the data]."),
        click.option("--data", "data", multiple=True, type=click.Path(),
                     help="CSV/TXT/Parquet bar file (repeatable; SLICES.md contract 2); replaces the store."),
        click.option("--store", default=None, help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store]."),
        click.option("--timeframe", "-t", default=None, type=click.Choice(TIMEFRAMES),
                     help="Bar timeframe: the store folder [default 1d]; with --data it must match the bars "
                          "[default: inferred]."),
        click.option("--start", default=None, help="First bar, YYYY-MM-DD or ISO-8601, UTC (inclusive)."),
        click.option("--end", default=None, help="Last bar, YYYY-MM-DD or ISO-8601, UTC (inclusive)."),
        click.option("--no-adjust", is_flag=True, help="Do not scale OHLC by adj_close/close in --data files."),
        click.option("--keep-suspicious", is_flag=True,
                     help="Use suspicious series (sub-penny prices, close jumps over x5) with a warning instead of "
                          "leaving them out."),
    ]


def _apply(opts: list):
    """Decorate a command with click options, in the order given."""
    def deco(f):
        for opt in reversed(opts):
            f = opt(f)
        return f
    return deco


def _run_options(f):
    opts = [
        click.option("--strategy", default="simple_ma", show_default=True,
                     help="Built-in name (see `strategies`), strategy file PATH.py, package.module or package.module:attr."),
        *_data_options(),
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
        click.option("--leverage", default=1.0, show_default=True, type=float,
                     help="Weights strategies: max sum of |weights| per row; buys may borrow up to (L-1) x equity."),
        click.option("--rebalance-threshold", default=0.0, show_default=True, type=float,
                     help="Weights strategies: skip trades smaller than this fraction of equity."),
        click.option("--check-lookahead", is_flag=True,
                     help="First recompute the strategy on truncated histories; error if a value depends on later bars."),
        click.option("--debug", is_flag=True, help="Show the traceback of an error raised inside a strategy."),
        click.option("--out", "-o", default=None, type=click.Path(file_okay=False), help="Output folder [default: a new folder under ./runs/]."),
        click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]),
                     help="table: summary; json: metrics.json on stdout."),
        click.option("--no-report", is_flag=True, help="Skip report.html (faster)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    return _apply(opts)(f)


class Progress:
    """Progress bars on stderr for a run's stages (``__call__(stage, done, total)``), one bar per
    stage, only when stderr is a terminal and not ``quiet`` (SLICES.md command-line style); a
    stage of a single step or an unknown total draws nothing."""

    def __init__(self, quiet: bool):
        self.on = not quiet and sys.stderr.isatty()
        self.stage, self.bar, self.done = None, None, 0

    def __enter__(self) -> "Progress":
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.on or total < 2:
            return
        if stage != self.stage:
            self._close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=total, label=stage, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __exit__(self, *exc) -> None:
        self._close()


@click.group(cls=_Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
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
        no_adjust, out, fmt, no_report, leverage=1.0, rebalance_threshold=0.0, check_lookahead=False, debug=False,
        keep_suspicious=False, quiet=False):
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
                 max_drawdown=max_drawdown, leverage=leverage, rebalance_threshold=rebalance_threshold)
    sym_list = symbol_list(symbols)
    with Progress(quiet) as bar:
        outcome = backtest(strategy, sym_list, params=overrides, data=list(data) or None, store=store,
                           timeframe=timeframe, start=start, end=end, adjust=not no_adjust,
                           keep_suspicious=keep_suspicious, config=cfg, lookahead_check=check_lookahead, progress=bar)
    echo_report(outcome.report, "all listed in metrics.json")
    folder = Path(out) if out else default_out_dir(outcome.run["strategy"])
    written = write_outputs(outcome, folder, report=not no_report)
    if fmt == "json":
        click.echo(json.dumps(metrics_document(outcome) | {"output": str(written)}, indent=2, default=str))
    else:
        click.echo(summary(outcome, written, folder))


@cli.command("bars")
@_apply(_data_options())
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False),
              help="Write the bars to this .parquet file [default: a summary per symbol on stdout].")
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]),
              help="Summary: table, or json (keys in the README).")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
def bars_command(symbols, data, store, timeframe, start, end, no_adjust, keep_suspicious, out, fmt, debug):
    """Load and check bars exactly as `run` does (SLICES.md contracts 1 and 2).

    With --out, write the long frame the run would simulate: symbol, timestamp (UTC), open, high,
    low, close, volume, sorted by symbol then timestamp. Without it, one line per symbol: first,
    last, bars, timeframe.
    """
    from .bars import load_bars

    frame, report = load_bars(symbol_list(symbols), timeframe, store=store, data=list(data) or None, start=start,
                              end=end, adjust=not no_adjust, keep_suspicious=keep_suspicious)
    echo_report(report, "all listed with -f json")
    if out:
        if Path(out).suffix.lower() not in (".parquet", ".pq"):
            raise DataError(f"--out {out}: use a .parquet file name")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(out)
    per = frame.group_by("symbol", maintain_order=True).agg(
        pl.col("timestamp").first().alias("first"), pl.col("timestamp").last().alias("last"), pl.len().alias("bars"))
    rows = [(s, fmt_ts(a), fmt_ts(b), n) for s, a, b, n in per.iter_rows()]
    if fmt == "json":
        doc = {"timeframe": report.timeframe, "output": out,
               "symbols": {s: {"first": a, "last": b, "bars": n} for s, a, b, n in rows},
               "excluded": report.excluded, "warnings": report.warnings}
        click.echo(json.dumps(doc, indent=2))
    elif out:
        click.echo(f"{len(rows):,} symbol(s), {frame.height:,} bars ({report.timeframe}) written to {out}")
    else:
        w = max(len("symbol"), *(len(s) for s, *_ in rows)) + 2
        click.echo(f"{'symbol':<{w}}{'first':<22}{'last':<22}{'bars':>9}  timeframe")
        for s, a, b, n in rows:
            click.echo(f"{s:<{w}}{a:<22}{b:<22}{n:>9,}  {report.timeframe}")


def _pct(x) -> str:
    return "—" if x is None else f"{x * 100:,.2f}%"


def _num(x) -> str:
    return "—" if x is None else f"{x:,.2f}"


def _param_text(v) -> str:
    """A parameter value as --param takes it: numbers with :g, bools true/false, text as is."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


SUMMARISED = {  # warning kinds shown as one line with a count when they concern several symbols
    "zero_volume": "zero-volume bars", "ohlc": "open/close outside low..high", "gap": "gaps in the bars",
    "missing_volume": "missing volume set to 0",
}


def echo_report(report, where: str) -> None:
    """Notes, then warnings on stderr. Exclusions, untaken signals, the halt and every other
    warning in full; the kinds of :data:`SUMMARISED` as one line per kind when several symbols
    have them (``warning: 14 symbols with zero-volume bars (AAPL, ...); <where>``)."""
    for line in report.notes:
        click.echo(line, err=True)
    grouped: dict[str, list[tuple[str, str]]] = {}
    for kind, sym, text in report.findings:
        if kind in SUMMARISED:
            grouped.setdefault(kind, []).append((sym, text))
    summarised = {text for items in grouped.values() for _, text in items}
    for text in report.warnings:
        if text not in summarised:
            click.echo(f"warning: {text}", err=True)
    for kind, items in grouped.items():
        if len(items) == 1:
            click.echo(f"warning: {items[0][1]}", err=True)
            continue
        syms = [s for s, _ in items if s]
        names = ", ".join(syms[:6]) + (", ..." if len(syms) > 6 else "")
        what = f"{len(syms):,} symbols" if syms else f"{len(items):,} files"
        click.echo(f"warning: {what} with {SUMMARISED[kind]}" + (f" ({names})" if syms else "") + f"; {where}", err=True)


def summary(o, written: Path, folder: Path | None = None) -> str:
    """The human summary table: period, return, CAGR, Sharpe, max drawdown, trades, vs buy-and-hold."""
    m, b, r = o.portfolio, o.benchmark, o.run
    params = ", ".join(f"{k}={_param_text(v)}" for k, v in r["params"].items())
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
        ("Trades", f"{m['n_trades']:,} ({n_open:,} open)", ""),
        ("Win rate", _pct(m["win_rate"]), ""),
        ("Profit factor", _num(m["profit_factor"]), ""),
    ]
    width = max(len(a) for a, _, _ in rows) + 2
    lines = [
        f"Backtest  {r['strategy']}({params})  {r['timeframe']}  {len(syms)} symbol(s): {names}",
        f"Period    {fmt_ts(o.equity['timestamp'][0])} .. {fmt_ts(o.equity['timestamp'][-1])}  ({r['bars']:,} bars)   cash {r['cash']:,.0f}  "
        f"commission {r['commission']:g}  slippage {r['slippage_bps']:g} bps  {r['sizing']}"
        f"{'  shorts allowed' if r['allow_short'] else '  long only'}",
        "",
    ]
    lines += [f"{a:<{width}}{b_:>16}{c:>16}" for a, b_, c in rows]
    lines += ["", f"Report: {written}" if folder is None or written != folder else f"Output: {folder}"]
    return "\n".join(lines)


@cli.command()
@click.option("--strategy", "spec", default=None,
              help="Show one strategy: a built-in name, PATH.py, package.module or package.module:attr.")
@click.option("--format", "-f", "fmt", default="table", type=click.Choice(["table", "json"]), help="table or json.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error raised while loading a strategy.")
def strategies(spec, fmt, debug):
    """List the built-in strategies (name, form, parameters with defaults, description), or with
    --strategy show one strategy's name, description, form and parameters (name, type, default)."""
    if spec is not None:
        from .strategies import resolve_params

        strat, _ = resolve_params(spec, {})
        doc = strategy_doc(strat) | {"spec": spec}
        if fmt == "json":
            click.echo(json.dumps(doc, indent=2))
            return
        rows = [("name", doc["name"]), ("strategy", spec), ("source", doc["source"]),
                ("form", f"{doc['form']} ({'per-symbol signal' if doc['form'] == 'targets' else 'portfolio weights'})"),
                ("description", doc["description"] or "—")]
        for key, value in rows:
            click.echo(f"{key:<13}{value}")
        params = doc["params"]
        if not params:
            click.echo(f"{'params':<13}none")
            return
        width = max(len(k) for k in params) + 2
        click.echo(f"{'params':<13}{'name':<{width}}{'type':<7}default")
        for k, p in params.items():
            click.echo(f"{'':<13}{k:<{width}}{p['type']:<7}{_param_text(p['default'])}")
        return
    docs = {n: strategy_doc(s) for n, s in STRATEGIES.items()}
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2))
        return
    table = [("name", "form", "params", "description")]
    table += [(n, d["form"], " ".join(f"{k}={_param_text(p['default'])}" for k, p in d["params"].items()), d["description"])
              for n, d in docs.items()]
    widths = [max(len(row[i]) for row in table) + 2 for i in range(3)]
    for row in table:
        click.echo("".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + row[3])


def strategy_doc(strat) -> dict:
    """The `strategies -f json` document of one strategy: ``name``, ``form`` (targets|weights),
    ``description``, ``source`` (``built-in`` or the file/module path), ``params``: name ->
    ``{"default", "type" (bool|int|float|str), "help"}``."""
    return {
        "name": strat.name, "form": strat.form, "description": strat.description, "source": strat.source,
        "params": {k: {"default": p.default, "type": p.kind.__name__, "help": p.help} for k, p in strat.params.items()},
    }
