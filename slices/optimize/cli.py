"""Command line of the optimize slice: ``python -m slices.optimize search|walk-forward|portfolio|kelly``.

Bad input: one line ``error: ...`` on stderr and exit code 2, never a traceback (only with
``--debug``). Ctrl-C during a search keeps what is done (exit code 130).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .bars import TIMEFRAMES, DataError

SIZINGS = ("equal-weight", "fixed-fraction", "atr-risk")
OBJECTIVE_CHOICES = ("sharpe", "sortino", "calmar", "cagr", "total_return", "sqn", "profit_factor", "-max_drawdown")
COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"


class _Group(click.Group):
    """A click group whose usage errors and data errors are one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = sys.argv[1:] if args is None else args
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            msg = " ".join(exc.format_message().split())
            click.echo(f"error: {msg}" + (f"; {COMMA_HINT}" if "unexpected extra argument" in msg else ""), err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except (DataError, ValueError) as exc:
            if "--debug" in argv:
                import traceback

                traceback.print_exception(exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
        except Exception as exc:
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

def symbol_list(values) -> list[str] | None:
    """``--symbols`` values (repeatable, each a comma list) as one list; None when not given."""
    if not values:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()] or [""]


def _apply(opts: list):
    def deco(f):
        for opt in reversed(opts):
            f = opt(f)
        return f
    return deco


DATA_OPTIONS = [
    click.option("--symbols", "-s", "symbols", multiple=True, help="Symbols, a comma list (repeatable) [default: all in the data]."),
    click.option("--data", "data", multiple=True, type=click.Path(), help="CSV/TXT/Parquet bar file (repeatable; SLICES.md contract 2)."),
    click.option("--store", default=None, help="Bar store root [default: $GPT_TRADER_STORE or ~/.gpt-trader/store]."),
    click.option("--timeframe", "-t", default=None, type=click.Choice(TIMEFRAMES), help="Bar timeframe [store: 1d; --data: inferred]."),
    click.option("--start", default=None, help="First bar, YYYY-MM-DD or ISO-8601, UTC (inclusive)."),
    click.option("--end", default=None, help="Last bar, YYYY-MM-DD or ISO-8601, UTC (inclusive)."),
    click.option("--no-adjust", is_flag=True, help="Do not scale OHLC by adj_close/close in --data files."),
    click.option("--keep-suspicious", is_flag=True, help="Use suspicious series with a warning instead of leaving them out."),
]

COST_OPTIONS = [
    click.option("--cash", default=100_000.0, show_default=True, type=float, help="Starting cash, currency."),
    click.option("--commission", default=0.0005, show_default=True, type=float, help="Commission, fraction of traded value."),
    click.option("--slippage-bps", default=2.0, show_default=True, type=float, help="Slippage against the trader, basis points."),
    click.option("--allow-short/--long-only", default=False, show_default=True, help="Allow short positions."),
    click.option("--whole-shares/--fractional", default=True, show_default=True, help="Round quantities down to whole units."),
    click.option("--sizing", default="equal-weight", show_default=True, type=click.Choice(SIZINGS), help="Position sizing (as the backtest)."),
    click.option("--fraction", default=None, type=float, help="fixed-fraction / atr-risk fraction of equity."),
    click.option("--stop-loss-atr", default=None, type=float, help="Stop-loss distance, ATR multiples."),
    click.option("--take-profit-atr", default=None, type=float, help="Take-profit distance, ATR multiples."),
    click.option("--atr-window", default=14, show_default=True, type=int, help="ATR window, bars."),
    click.option("--max-position-pct", default=100.0, show_default=True, type=float, help="Max position value, percent of equity."),
    click.option("--max-drawdown", default=None, type=float, help="Halt at this drawdown (fraction)."),
    click.option("--leverage", default=1.0, show_default=True, type=float, help="Weights strategies: max sum of |weights|."),
    click.option("--rebalance-threshold", default=0.0, show_default=True, type=float, help="Weights strategies: skip smaller trades (fraction of equity)."),
]

SEARCH_OPTIONS = [
    click.option("--strategy", default="simple_ma", show_default=True, help="Built-in name, PATH.py, package.module[:attr] (contract 5)."),
    click.option("--param", "space", multiple=True, help="k=start:stop:step (inclusive), k=a,b,c or k=v (repeatable)."),
    click.option("--constraint", "constraints", multiple=True, help='A condition over the parameters, e.g. "fast < slow" (repeatable).'),
    click.option("--method", default="grid", show_default=True, type=click.Choice(["grid", "random", "bayes"]), help="Search method."),
    click.option("--trials", default=100, show_default=True, type=int, help="random/bayes: combinations to try."),
    click.option("--seed", default=None, type=int, help="Random seed (random and bayes are reproducible with it)."),
    click.option("--objective", default="sharpe", show_default=True, type=click.Choice(OBJECTIVE_CHOICES), help="Metric to maximise (-max_drawdown: the smallest drawdown)."),
    click.option("--min-trades", default=1, show_default=True, type=int, help="Combinations with fewer trades are not eligible."),
    click.option("--cscv", default=16, show_default=True, type=int, help="Blocks S for the PBO by CSCV (even)."),
    click.option("--jobs", "-j", default=None, type=int, help="Local processes [default: all cores]."),
    click.option("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786 (instead of local processes)."),
    *DATA_OPTIONS,
    *COST_OPTIONS,
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    click.option("--debug", is_flag=True, help="Tracebacks on unexpected errors."),
]


def settings_from(kw: dict):
    """A SearchSettings from the parsed search options."""
    from .engine import Config
    from .evaluate import DataSpec
    from .search import SearchSettings

    cfg = Config(**{k: kw[k] for k in ("cash", "commission", "slippage_bps", "allow_short", "whole_shares", "sizing",
                                       "fraction", "stop_loss_atr", "take_profit_atr", "atr_window", "max_position_pct",
                                       "max_drawdown", "leverage", "rebalance_threshold")})
    spec = DataSpec(symbol_list(kw["symbols"]), list(kw["data"]) or None, kw["store"], kw["timeframe"], kw["start"],
                    kw["end"], not kw["no_adjust"], kw["keep_suspicious"])
    return SearchSettings(kw["strategy"], list(kw["space"]), list(kw["constraints"]), kw["method"], kw["trials"],
                          kw["seed"], kw["objective"], kw["min_trades"], kw["cscv"], kw["jobs"], kw["scheduler"], cfg, spec)


def echo_notes(report) -> None:
    for line in report.notes:
        click.echo(line, err=True)
    echo_warnings(report.warnings, report.findings)


def _pct(x) -> str:
    return "—" if x is None else f"{x * 100:,.2f}%"


def _num(x) -> str:
    return "—" if x is None else f"{x:,.2f}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Parameter search with overfitting statistics, walk-forward, portfolio weights and Kelly sizing."""


@cli.command()
@_apply(SEARCH_OPTIONS)
@click.option("--out", "-o", default="runs/optimize-search", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted search in the same --out (same options).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]), help="table or json (best.json on stdout).")
def search(out, resume, no_report, fmt, quiet, debug, **kw):
    """Search strategy parameters; write results.parquet, best.json and report.html."""
    from .search import check_settings, run_search, write_search
    from .strategies import resolve_params

    s = settings_from(kw)
    strat, _ = resolve_params(s.strategy, {})
    dims, _ = check_settings(s, strat)
    result, prep = run_search(s, out=Path(out), resume=resume, quiet=quiet, strat=strat)
    if result.complete and result.rejected and not result.params:
        raise ValueError(result.rejected[0][1])  # validate refused every combination: nothing was searched
    echo_notes(prep.report)
    if result.rejected:
        click.echo(f"note: {len(result.rejected):,} combination(s) rejected by {strat.label} "
                   f"(first: {result.rejected[0][1]})", err=True)
    doc = write_search(Path(out), s, strat, prep, result, dims, report=not no_report)
    if not result.complete:
        click.echo(f"warning: interrupted: {len(result.params):,} combination(s) done and written to {out}; "
                   f"continue with the same command and --resume", err=True)
    if fmt == "json":
        click.echo(json.dumps(doc | {"output": str(out)}, indent=2, default=str))
    else:
        click.echo(search_summary(doc, out))
    if doc["params"] is None:
        click.echo(f"warning: no eligible combination (defined {s.objective} and at least {s.min_trades} trade(s))", err=True)
    return 130 if not result.complete else 0


def search_summary(doc: dict, out) -> str:
    s = doc["search"]
    lines = [f"Search    {doc['strategy']}  {s['method']}  {s['combinations']:,} combination(s) "
             f"({s['eligible']:,} eligible, {s['rejected']:,} rejected)  objective {doc['objective']}",
             f"Data      {len(s['symbols'])} symbol(s)  {s['timeframe']}  {s['start'][:10]} .. {s['end'][:10]}  ({s['bars']:,} bars)"]
    if doc["params"] is not None:
        m, o = doc["metrics"], doc["overfitting"]
        params = ", ".join(f"{k}={v}" for k, v in doc["params"].items())
        dsr, pbo = o["deflated_sharpe"]["dsr"], o["pbo"]["pbo"]
        lines += ["", f"Best      {params}",
                  f"          total return {_pct(m['total_return'])}  CAGR {_pct(m['cagr'])}  Sharpe {_num(m['sharpe'])}  "
                  f"max drawdown {_pct(m['max_drawdown'])}  trades {m['n_trades']:,}",
                  f"Overfit   deflated Sharpe {_pct(dsr)} (probability the true Sharpe > 0 after {o['deflated_sharpe']['n_trials']:,} trials)  "
                  f"PBO {_pct(pbo)}" + (f" ({o['pbo']['error']})" if o['pbo'].get('error') else f" (CSCV, S={o['pbo']['splits']})"),
                  f"Backtest  {doc['command']}"]
    lines += ["", f"Output: {out}"]
    return "\n".join(lines)


@cli.command("walk-forward")
@_apply(SEARCH_OPTIONS)
@click.option("--train", required=True, help="Training window, e.g. 2y, 18m, 52w, 300d.")
@click.option("--test", "test_span", required=True, help="Test window, e.g. 6m.")
@click.option("--step", default=None, help="Step between folds [default: --test].")
@click.option("--anchored", is_flag=True, help="Anchored (growing) training windows instead of rolling ones.")
@click.option("--purge", default=0, show_default=True, type=int, help="Bars dropped at the end of each training window.")
@click.option("--out", "-o", default="runs/optimize-walk-forward", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]), help="table or json (walk_forward.json on stdout).")
def walk_forward_command(train, test_span, step, anchored, purge, out, no_report, fmt, quiet, debug, **kw):
    """Walk-forward: search on each training window, trade the best on the next test window."""
    from .walkforward import write_walk_forward, walk_forward

    s = settings_from(kw)
    wf = walk_forward(s, train, test_span, step, anchored, purge, quiet=quiet)
    echo_notes(wf["prep"].report)
    doc = write_walk_forward(Path(out), s, wf, report=not no_report)
    if fmt == "json":
        click.echo(json.dumps(doc | {"output": str(out)}, indent=2, default=str))
        return
    click.echo(f"Walk-forward  {s.strategy}  {'anchored' if anchored else 'rolling'}  train {train}  test {test_span}"
               f"  step {step or test_span}  purge {purge}  objective {s.objective}")
    click.echo(f"{'fold':>4}  {'train':<23}  {'test':<23}  {'params':<28}{'IS CAGR':>10}{'OOS CAGR':>10}{'OOS Sharpe':>11}")
    for r in doc["folds"]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) if r["params"] else "(none eligible)"
        click.echo(f"{r['fold']:>4}  {r['train_start'][:10]}..{r['train_end'][:10]}  {r['test_start'][:10]}..{r['test_end'][:10]}  "
                   f"{params:<28}{_pct(r['is']['cagr'] if r['is'] else None):>10}{_pct(r['oos']['cagr'] if r['oos'] else None):>10}"
                   f"{_num(r['oos']['sharpe'] if r['oos'] else None):>11}")
    m = doc["oos_metrics"]
    click.echo(f"\nOut of sample (stitched)  total return {_pct(m['total_return'])}  CAGR {_pct(m['cagr'])}  "
               f"Sharpe {_num(m['sharpe'])}  max drawdown {_pct(m['max_drawdown'])}  trades {m['n_trades']:,}")
    click.echo(f"Walk-forward efficiency   {_num(doc['wfe'])} (OOS CAGR / mean IS CAGR {_pct(doc['is_cagr_mean'])})")
    click.echo(f"\nOutput: {out}")


@cli.command()
@_apply(DATA_OPTIONS)
@click.option("--method", default="max-sharpe", show_default=True,
              type=click.Choice(["max-sharpe", "min-volatility", "efficient-return", "efficient-risk", "risk-parity", "hrp",
                                 "min-cvar", "inverse-volatility", "equal"]), help="Optimisation method.")
@click.option("--target", default=None, type=float, help="efficient-return: annual return; efficient-risk: annual volatility (fractions).")
@click.option("--allow-short", is_flag=True, help="Weights in [-1, 1] instead of [0, 1].")
@click.option("--min-weight", default=None, type=float, help="Lower bound per symbol (fraction).")
@click.option("--max-weight", default=None, type=float, help="Upper bound per symbol (fraction).")
@click.option("--cov", "cov_kind", default="sample", show_default=True, type=click.Choice(["sample", "ledoit-wolf"]), help="Covariance estimator.")
@click.option("--returns", "returns_kind", default="geometric", show_default=True, type=click.Choice(["geometric", "arithmetic"]), help="Expected returns.")
@click.option("--risk-free", default=0.0, show_default=True, type=float, help="Risk-free rate, fraction per year.")
@click.option("--frontier", "with_frontier", is_flag=True, help="Add the efficient frontier plot to report.html.")
@click.option("--rebalance", default=None, type=click.Choice(["monthly", "yearly"]),
              help="Also write portfolio_strategy.py, a weights strategy file (contract 5) rebalancing to these weights.")
@click.option("--out", "-o", default="runs/optimize-portfolio", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]), help="table or json (weights.json on stdout).")
@click.option("--debug", is_flag=True, help="Tracebacks on unexpected errors.")
def portfolio(symbols, data, store, timeframe, start, end, no_adjust, keep_suspicious, method, target, allow_short,
              min_weight, max_weight, cov_kind, returns_kind, risk_free, with_frontier, rebalance, out, no_report, fmt, debug):
    """Portfolio weights from the symbols' returns; write weights.json and weights.parquet."""
    import polars as pl

    from .bars import load_bars
    from .engine import Panel
    from .metrics import periods_per_year
    from .portfolio import frontier, optimise, returns_of, strategy_file

    bars, report = load_bars(symbol_list(symbols), timeframe, store=store, data=list(data) or None, start=start, end=end,
                             adjust=not no_adjust, keep_suspicious=keep_suspicious)
    echo_notes(report)
    panel = Panel.from_bars(bars)
    r = returns_of(panel.close)
    ppy = periods_per_year(report.timeframe, panel.timestamps)
    res = optimise(method, r, ppy, returns_kind=returns_kind, cov_kind=cov_kind, allow_short=allow_short,
                   min_weight=min_weight, max_weight=max_weight, target=target, rf=risk_free)
    weights = {s: float(w) for s, w in zip(panel.symbols, res["weights"])}
    doc = {"method": method, "weights": weights, "expected_return": res["expected_return"], "volatility": res["volatility"],
           "sharpe": res["sharpe"], "covariance": cov_kind, "returns": returns_kind, "risk_free": risk_free,
           "periods_per_year": ppy, "start": str(panel.timestamps[0])[:10], "end": str(panel.timestamps[-1])[:10],
           "rows": int(r.shape[0]), "warnings": report.warnings}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.json").write_text(json.dumps(doc, indent=2))
    pl.DataFrame({"symbol": list(weights), "weight": list(weights.values())}).write_parquet(folder / "weights.parquet")
    if rebalance:
        (folder / "portfolio_strategy.py").write_text(strategy_file(weights, method, rebalance, doc["start"], doc["end"]))
    if not no_report:
        from .report import portfolio_report

        lo = min_weight if min_weight is not None else (-1.0 if allow_short else 0.0)
        hi = max_weight if max_weight is not None else 1.0
        curve = frontier(res["mu"], res["cov"], [(lo, hi)] * len(weights)) if with_frontier else []
        portfolio_report(folder / "report.html", doc, curve)
    if fmt == "json":
        click.echo(json.dumps(doc | {"output": str(folder)}, indent=2))
        return
    click.echo(f"Portfolio  {method}  {len(weights)} symbol(s)  {doc['start']} .. {doc['end']}  ({doc['rows']:,} return rows)  "
               f"covariance {cov_kind}  returns {returns_kind}")
    for s_, w in sorted(weights.items(), key=lambda kv: -abs(kv[1])):
        click.echo(f"  {s_:<10}{w * 100:>8.2f}%")
    click.echo(f"Expected return {_pct(doc['expected_return'])}  volatility {_pct(doc['volatility'])}  Sharpe {_num(doc['sharpe'])}")
    if rebalance:
        click.echo(f"Strategy file: {folder / 'portfolio_strategy.py'} (python -m slices.backtest run --strategy "
                   f"{folder / 'portfolio_strategy.py'} --symbols {','.join(weights)})")
    click.echo(f"Output: {folder}")


@cli.command()
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False), help="A backtest run folder (contract 3).")
@click.option("--trades", default=None, type=click.Path(dir_okay=False), help="A trades.parquet file (contract 3).")
@click.option("--fraction", default=0.5, show_default=True, type=float, help="Fractional Kelly multiplier (0.5 = half Kelly).")
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]), help="table or json.")
@click.option("--debug", is_flag=True, help="Tracebacks on unexpected errors.")
def kelly(run_dir, trades, fraction, fmt, debug):
    """Kelly sizing from a strategy's trades: full and fractional."""
    import polars as pl

    from .kelly import kelly_sizes

    if (run_dir is None) == (trades is None):
        raise ValueError("give exactly one of --run DIR and --trades FILE")
    path = Path(trades) if trades else Path(run_dir) / "trades.parquet"
    if not path.is_file():
        raise DataError(f"{path}: no such trades file")
    try:
        frame = pl.read_parquet(path, columns=["pnl", "return_pct"])
    except Exception as exc:
        raise DataError(f"{path}: not a trades.parquet (contract 3): {exc}") from None
    doc = kelly_sizes(frame["return_pct"].to_numpy() / 100, frame["pnl"].to_numpy(), fraction) | {"trades_file": str(path)}
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"Kelly  {doc['n_trades']:,} trades  win rate {_pct(doc['win_rate'])}  payoff ratio {_num(doc['payoff_ratio'])}")
    click.echo(f"  full Kelly (W - (1 - W) / R)       {_pct(doc['kelly'])}")
    click.echo(f"  growth-optimal (max mean log)      {_pct(doc['kelly_growth'])}")
    click.echo(f"  x{fraction:g} fractional                   {_pct(doc['fractional'])}")
