"""Command line of the analyze slice: ``python -m slices.analyze {indicators,regime,risk,report}``."""

from __future__ import annotations

import functools
import sys

import click

from slices.analyze import indicators as ind
from slices.analyze.bars import BarRequest, data_symbols, is_intraday, load_bars, periods_per_year
from slices.analyze.errors import AnalyzeError
from slices.analyze.output import (
    check_out,
    frame_records,
    frame_table,
    frame_table_transposed,
    stamp,
    table,
    to_json,
    write_series,
    write_text,
)
from slices.analyze.regime import RegimeParams, current_run, regimes
from slices.analyze.report import REPORT_COLUMNS, market_report, report_html, risk_html, risk_tables
from slices.analyze.risk import parse_floats, parse_weights, risk_report


def bar_options(func):
    """The options every command shares: bar source, range, timeframe, format and output file."""
    options = [
        click.option(
            "--store",
            type=click.Path(file_okay=False),
            default=None,
            help="Bar-store root (else $GPT_TRADER_STORE, else ~/.gpt-trader/store); missing symbols fall back to the embedded sample.",
        ),
        click.option(
            "--data",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Bar file (CSV or Parquet, SLICES.md contract 2); repeatable. Replaces the store.",
        ),
        click.option("--no-adjust", is_flag=True, help="With --data: do not scale OHLC by adj_close/close."),
        click.option("--start", default=None, help="First bar (YYYY-MM-DD or ISO datetime, UTC)."),
        click.option("--end", default=None, help="Last bar, inclusive (YYYY-MM-DD or ISO datetime, UTC)."),
        click.option("--timeframe", default="1d", show_default=True, help="Store timeframe: 1m 5m 15m 1h 1d."),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True),
        click.option("--out", default=None, help="Write the result to a file (see the command's help for extensions)."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        req = BarRequest(
            store=kwargs.pop("store"),
            data=tuple(kwargs.pop("data")),
            start=kwargs.pop("start"),
            end=kwargs.pop("end"),
            timeframe=kwargs.pop("timeframe"),
            adjust=not kwargs.pop("no_adjust"),
        )
        try:
            return func(*args, req=req, **kwargs)
        except AnalyzeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # e.g. --out not writable
            click.echo(f"error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
            sys.exit(2)

    return wrapper


def _symbols(symbols: tuple[str, ...], req: BarRequest, single: bool = False) -> list[str]:
    syms = [s.upper() for s in symbols]
    if not syms and req.data:
        syms = data_symbols(req)
        if single and len(syms) != 1:
            raise AnalyzeError(f"--data holds {len(syms)} symbols; name one")
    if not syms:
        raise AnalyzeError("name at least one symbol (e.g. AAPL; sample symbols work without a store)")
    if len(set(syms)) != len(syms):
        raise AnalyzeError(f"duplicate symbol in {' '.join(syms)}")
    return syms


class _Group(click.Group):
    """Click group whose usage errors (unknown option, bad option value) are one ``error:`` line, exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """GPT-Trader analyze: indicators, regimes, risk and market reports.

    Bars come from the bar store (SLICES.md contract 1), falling back to the embedded sample,
    or from files given with --data (contract 2). Examples:

    \b
      python -m slices.analyze indicators AAPL -i rsi:14 -i macd:12:26:9
      python -m slices.analyze regime MSFT
      python -m slices.analyze risk AAPL MSFT JPM --weights AAPL=0.5,MSFT=0.3,JPM=0.2
      python -m slices.analyze report AAPL MSFT --out report.html
    """


@cli.command()
@click.argument("symbol", required=False)
@click.option(
    "--indicator",
    "-i",
    "specs",
    multiple=True,
    metavar="NAME[:P1[:P2..]]",
    help=f"Indicator (repeatable; default: the standard set). Names: {', '.join(ind.REGISTRY)}.",
)
@click.option(
    "--rows",
    default=None,
    type=click.IntRange(1),
    help="Last bars shown in table format [default: 10; 5 for wide frames, shown as one line per column].",
)
@bar_options
def indicators(symbol, specs, rows, fmt, out, req):
    """Bars of SYMBOL with indicator columns (TA-Lib definitions).

    Columns are the indicator name and its parameters joined by underscores (sma_20, rsi_14,
    macd_12_26_9, bbands_upper_20_2, ...). --out takes .parquet or .csv.
    """
    path = check_out(out, "series")
    sym = _symbols((symbol,) if symbol else (), req, single=True)[0]
    bars = load_bars([sym], req)[sym]
    if specs:
        parsed = [ind.parse_spec(s) for s in specs]
        strict = True
    else:
        parsed, strict = ind.standard_specs(is_intraday(bars)), False
    frame = ind.compute(bars, parsed, sym, strict=strict)
    if path:
        write_series(frame, path)
        click.echo(f"wrote {frame.height} rows x {frame.width} columns to {path}", err=True)
    if fmt == "json":
        click.echo(to_json({"symbol": sym, "columns": frame.columns, "rows": frame_records(frame)}))
    elif not path:
        wide = frame.width > 12  # wide (standard set): one line per column, the last bars across
        shown = min(rows or (5 if wide else 10), frame.height)
        click.echo(
            f"{sym}: {frame.height} bars {frame['timestamp'][0]:%Y-%m-%d} .. {frame['timestamp'][-1]:%Y-%m-%d}; last {shown}:"
        )
        click.echo(frame_table_transposed(frame, shown) if wide else frame_table(frame, shown))


@cli.command()
@click.argument("symbol", required=False)
@click.option("--trend-window", default=200, show_default=True, type=int, help="Long moving average (bars).")
@click.option(
    "--slope-window", default=20, show_default=True, type=int, help="Bars over which the MA slope is measured."
)
@click.option(
    "--slope-threshold",
    default=0.01,
    show_default=True,
    type=float,
    help="MA rise (fraction over the slope window) for bull; minus it for bear.",
)
@click.option("--vol-window", default=20, show_default=True, type=int, help="Realised-volatility window (returns).")
@click.option(
    "--low-pct", default=0.25, show_default=True, type=float, help="Percentile under which volatility is low."
)
@click.option(
    "--high-pct", default=0.75, show_default=True, type=float, help="Percentile over which volatility is high."
)
@click.option(
    "--min-history", default=60, show_default=True, type=int, help="Realised-vol values needed before a vol regime."
)
@click.option("--rows", default=10, show_default=True, type=click.IntRange(1), help="Rows shown in table format.")
@bar_options
def regime(
    symbol, trend_window, slope_window, slope_threshold, vol_window, low_pct, high_pct, min_history, rows, fmt, out, req
):
    """Per-bar trend (bull/bear/sideways) and volatility (low/normal/high) regimes of SYMBOL,
    with the current regimes and how long they have lasted. --out takes .parquet or .csv."""
    path = check_out(out, "series")
    params = RegimeParams(trend_window, slope_window, slope_threshold, vol_window, low_pct, high_pct, min_history)
    params.check()
    sym = _symbols((symbol,) if symbol else (), req, single=True)[0]
    bars = load_bars([sym], req)[sym]
    frame = regimes(bars, params, periods_per_year(bars), sym)
    current = {
        "trend": current_run(frame["trend"], frame["timestamp"]),
        "volatility": current_run(frame["vol_regime"], frame["timestamp"]),
    }
    if path:
        write_series(frame, path)
        click.echo(f"wrote {frame.height} rows to {path}", err=True)
    if fmt == "json":
        click.echo(
            to_json({"symbol": sym, "params": params.__dict__, "current": current, "rows": frame_records(frame)})
        )
    elif not path:
        click.echo(frame_table(frame, rows))
        for key, cur in current.items():
            click.echo(
                f"{sym} current {key} regime: {cur['regime']} for {cur['bars']} bars (since {stamp(cur['since'])})"
            )


@cli.command()
@click.argument("symbols", nargs=-1)
@click.option("--weights", default=None, help="SYM=w,... (default: equal weights); must sum to 1 unless --normalize.")
@click.option("--normalize", is_flag=True, help="Rescale --weights to sum to 1.")
@click.option("--confidence", default="0.95,0.99", show_default=True, help="Confidence levels, comma-separated.")
@click.option("--horizon", default="1,5", show_default=True, help="Horizons in bars, comma-separated.")
@click.option(
    "--value",
    default=1_000_000.0,
    show_default=True,
    type=float,
    help="Portfolio value (currency) for the *_value columns.",
)
@click.option("--simulations", default=10_000, show_default=True, type=click.IntRange(100), help="Monte Carlo draws.")
@click.option("--seed", default=42, show_default=True, type=click.IntRange(0), help="Monte Carlo seed (>= 0).")
@bar_options
def risk(symbols, weights, normalize, confidence, horizon, value, simulations, seed, fmt, out, req):
    """VaR/CVaR (historical, Gaussian, Cornish-Fisher, Monte Carlo), stress tests, correlation,
    volatility, beta and drawdowns of a portfolio of SYMBOLS. --out takes .json or .html."""
    path = check_out(out, "report")
    confidences = parse_floats(confidence, "--confidence", 0.5, 1.0)
    horizons = parse_floats(horizon, "--horizon", 1, 0, integer=True)
    if not value > 0:
        raise AnalyzeError("--value must be > 0")
    syms = _symbols(symbols, req)
    w = parse_weights(weights, syms, normalize)
    bars = load_bars(syms, req)
    ppy = periods_per_year(next(iter(bars.values())))
    result = risk_report(bars, w, confidences, horizons, value, simulations, seed, ppy)
    if path:
        write_text(risk_html(result) if path.suffix.lower() in (".html", ".htm") else to_json(result), path)
        click.echo(f"wrote {path}", err=True)
    if fmt == "json":
        click.echo(to_json(result))
    elif not path:
        _print_risk(result)


def _print_risk(r: dict) -> None:
    p = r["portfolio"]
    click.echo(
        f"portfolio {' '.join(r['symbols'])}: {r['bars']} common bars {r['start'][:10]} .. {r['end'][:10]}, "
        f"value {r['value']:,.0f}; Monte Carlo {r['monte_carlo']['simulations']} draws, seed {r['monte_carlo']['seed']}"
    )
    click.echo(
        f"volatility {p['volatility']:.4f} (annualised), max drawdown {p['max_drawdown']:.4f} "
        f"({stamp(p['peak'])} -> {stamp(p['trough'])}, {p['duration_bars']} bars, recovered {stamp(p['recovery']) if p['recovery'] else 'no'})"
    )
    for title, rows, columns in risk_tables(r):
        click.echo()
        click.echo(table(rows, columns, title))
    c = r["correlation"]
    if len(c["symbols"]) >= 2:
        order = c["cluster_order"]
        idx = [c["symbols"].index(s) for s in order]
        rows = [{"": order[a], **{order[b]: c["matrix"][i][j] for b, j in enumerate(idx)}} for a, i in enumerate(idx)]
        click.echo()
        click.echo(table(rows, ["", *order], "Correlation (cluster order)"))


@cli.command()
@click.argument("symbols", nargs=-1)
@click.option("--long-only", is_flag=True, help="Strategy signals without short positions.")
@bar_options
def report(symbols, long_only, fmt, out, req):
    """Market report of SYMBOLS: last close, regimes, RSI, MACD, 52-week range, ATR, the five
    strategies' current signals and 1-bar VaR 95 %. --out takes .json or .html (self-contained)."""
    path = check_out(out, "report")
    syms = _symbols(symbols, req)
    bars = load_bars(syms, req)
    ppy = periods_per_year(next(iter(bars.values())))
    rep = market_report(bars, ppy, long_only)
    if path:
        write_text(report_html(rep, bars) if path.suffix.lower() in (".html", ".htm") else to_json(rep), path)
        click.echo(f"wrote {path}", err=True)
    if fmt == "json":
        click.echo(to_json(rep))
    elif not path:
        click.echo(table(rep["symbols"], REPORT_COLUMNS))


def main() -> None:
    """Console entry point."""
    cli(prog_name="python -m slices.analyze")
