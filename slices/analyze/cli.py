"""Command line of the analyze slice:
``python -m slices.analyze {indicators,regime,risk,report,signals}``."""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback

import click
import numpy as np
import polars as pl

from slices.analyze import indicators as ind
from slices.analyze.bars import TIMEFRAMES, BarRequest, is_intraday, load, periods_per_year
from slices.analyze.errors import AnalyzeError, held, info, warn_grouped
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
from slices.analyze.output import fmt as cell_text
from slices.analyze.regime import RegimeParams, current_run, regimes
from slices.analyze.strategies import StrategyError

COMMA_HINT = "hint: --symbols takes one comma list: --symbols AAPL,MSFT"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def common_options(func):
    """Options every command shares: symbols, bar source, range, timeframe, checks, format,
    output file, --debug and --quiet. Errors become one ``error:`` line and exit code 2."""
    options = [
        click.argument("symbols", nargs=-1),
        click.option(
            "--symbols",
            "-s",
            "symbol_lists",
            multiple=True,
            metavar="A,B",
            help="Symbols, one comma list (repeatable). Positional symbols work too. Default with --data: all of its symbols.",
        ),
        click.option(
            "--store",
            type=click.Path(),
            default=None,
            help="Bar-store root (else $GPT_TRADER_STORE, else ~/.gpt-trader/store; only the default store falls back to the embedded sample).",
        ),
        click.option(
            "--data",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Bar file (.csv .txt .parquet .pq, SLICES.md contract 2); repeatable. Replaces the store.",
        ),
        click.option("--no-adjust", is_flag=True, help="With --data: do not scale OHLC by adj_close/close."),
        click.option("--start", default=None, help="First bar, inclusive (YYYY-MM-DD or ISO-8601, UTC)."),
        click.option("--end", default=None, help="Last bar, inclusive (YYYY-MM-DD or ISO-8601, UTC)."),
        click.option(
            "--timeframe",
            "-t",
            type=click.Choice(TIMEFRAMES),
            default=None,
            help="Bar timeframe. Store: default 1d. --data: inferred from the bar spacing and must agree when given.",
        ),
        click.option(
            "--keep-suspicious",
            is_flag=True,
            help="Use suspicious series (sub-penny prices, 5x close jumps) with a warning instead of refusing them.",
        ),
        click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True),
        click.option("--out", "-o", default=None, help="Write the result to a file (see the command's help for extensions)."),
        click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug")
        req = BarRequest(
            store=kwargs.pop("store"),
            data=tuple(kwargs.pop("data")),
            start=kwargs.pop("start"),
            end=kwargs.pop("end"),
            timeframe=kwargs.pop("timeframe"),
            adjust=not kwargs.pop("no_adjust"),
            keep_suspicious=kwargs.pop("keep_suspicious"),
        )
        names = [*kwargs.pop("symbols"), *kwargs.pop("symbol_lists")]
        try:
            with held():  # nothing reaches stderr before an error line
                return func(*args, names=names, req=req, **kwargs)
        except (AnalyzeError, StrategyError) as exc:
            if debug and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__, file=sys.stderr)
            _fail(str(exc))
        except OSError as exc:  # e.g. --out not writable
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}")
        except Exception as exc:
            if debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _fail(f"unexpected {type(exc).__name__}: {first} (run again with --debug for the traceback)", 1)

    return wrapper


@contextlib.contextmanager
def progress(items, label: str, quiet: bool):
    """Iterate ``items`` with a progress bar on stderr, only when stderr is a terminal, there is
    more than one item and ``--quiet`` is not given."""
    if quiet or len(items) < 2 or not sys.stderr.isatty():
        yield items
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield bar


class _Group(click.Group):
    """Click group whose usage errors (unknown option, bad option value) are one ``error:`` line,
    exit code 2; a comma list in the wrong place gets the ``--symbols`` hint."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            message = exc.format_message().replace("\n", " ")
            commas = any(a.startswith(",") or a.endswith(",") for a in argv)
            if commas or "extra argument" in message:
                message += f"; {COMMA_HINT}"
            _fail(message)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """GPT-Trader analyze: indicators, regimes, risk, market reports and strategy signals.

    Bars come from the bar store (SLICES.md contract 1; only the default store falls back to the
    embedded sample) or from files given with --data (contract 2). Examples:

    \b
      python -m slices.analyze indicators AAPL -i rsi:14 -i macd:12:26:9
      python -m slices.analyze regime -s MSFT,AAPL
      python -m slices.analyze risk AAPL MSFT JPM --weights AAPL=0.5,MSFT=0.3,JPM=0.2
      python -m slices.analyze report AAPL MSFT --out report.html
      python -m slices.analyze signals AAPL --strategy simple_ma --param fast=5
    """


def _header(sym: str, frame: pl.DataFrame, shown: int) -> str:
    return f"{sym}: {frame.height:,} bars {stamp(frame['timestamp'][0])} .. {stamp(frame['timestamp'][-1])}; last {shown}:"


INDICATOR_BATCH = 64  # symbols computed together (one progress-bar step); 32-64 measured fastest (smaller temporaries)


@cli.command()
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
    "-n",
    default=None,
    type=click.IntRange(1),
    help="Last bars shown per symbol in table format [default: 10; 5 for wide frames, shown as one line per column].",
)
@common_options
def indicators(names, specs, rows, fmt, out, req, quiet):
    """Bars of SYMBOLS with indicator columns (TA-Lib definitions), long format.

    Columns: symbol, timestamp, open, high, low, close, volume, then the indicator name and its
    parameters joined by underscores (sma_20, rsi_14, macd_12_26_9, bbands_upper_20_2, ...).
    --out takes .parquet, .pq or .csv.
    """
    path = check_out(out, "series")
    loaded = load(names, req)
    if specs:
        parsed, strict = [ind.parse_spec(s) for s in specs], True
    else:
        parsed, strict = ind.standard_specs(is_intraday(loaded.timeframe)), False
    skipped: list = []
    computed = []
    syms = list(loaded.bars)
    # batches of symbols computed together (each symbol's values do not depend on its batch)
    batches = [syms[i : i + INDICATOR_BATCH] for i in range(0, len(syms), INDICATOR_BATCH)]
    with progress(batches, "indicators", quiet) as items:
        for batch in items:
            computed.append(ind.compute_many({s: loaded.bars[s] for s in batch}, parsed, strict=strict, skipped=skipped))
    _warn_skipped(skipped)
    ind_columns = [c for s in parsed for c in s.columns]
    base = pl.concat([b.select(pl.lit(s).alias("symbol"), pl.all()) for s, b in loaded.bars.items()], rechunk=True)
    frame = base.hstack([pl.Series(c, np.concatenate([a[c] for a in computed]), dtype=pl.Float64) for c in ind_columns])
    if syms != sorted(syms):  # long format: sorted by symbol, timestamp (each symbol's bars already are)
        frame = frame.sort("symbol", "timestamp", maintain_order=True)
    columns = frame.columns
    if path:
        write_series(frame, path)
        info(f"wrote {frame.height:,} rows x {frame.width} columns ({len(syms):,} symbols) to {path}")
    if fmt == "json":
        click.echo(
            to_json({"symbols": syms, "timeframe": loaded.timeframe, "columns": columns, "rows": frame_records(frame)})
        )
    elif not path:
        wide = len(columns) - 1 > 12  # wide (standard set): one line per column, the last bars across
        blocks = []
        for (sym,), f in frame.partition_by("symbol", as_dict=True, include_key=False, maintain_order=True).items():
            shown = min(rows or (5 if wide else 10), f.height)
            blocks.append(_header(sym, f, shown) + "\n" + (frame_table_transposed(f, shown) if wide else frame_table(f, shown)))
        click.echo("\n\n".join(blocks))


def _warn_skipped(skipped: list) -> None:
    by_symbol: dict[str, list[str]] = {}
    for sym, text in skipped:
        by_symbol.setdefault(sym, []).append(text)
    warn_grouped("too few bars for part of the standard set (those columns left empty)", [(s, len(v)) for s, v in by_symbol.items()])


@cli.command()
@click.option("--trend-window", default=200, show_default=True, type=int, help="Long moving average (bars).")
@click.option("--slope-window", default=20, show_default=True, type=int, help="Bars over which the MA slope is measured.")
@click.option(
    "--slope-threshold",
    default=0.01,
    show_default=True,
    type=float,
    help="MA rise (fraction over the slope window) for bull; minus it for bear.",
)
@click.option("--vol-window", default=20, show_default=True, type=int, help="Realised-volatility window (returns).")
@click.option("--low-pct", default=0.25, show_default=True, type=float, help="Percentile under which volatility is low.")
@click.option("--high-pct", default=0.75, show_default=True, type=float, help="Percentile over which volatility is high.")
@click.option("--min-history", default=60, show_default=True, type=int, help="Realised-vol values needed before a vol regime.")
@click.option("--rows", "-n", default=10, show_default=True, type=click.IntRange(1), help="Rows shown per symbol in table format.")
@common_options
def regime(
    names, trend_window, slope_window, slope_threshold, vol_window, low_pct, high_pct, min_history, rows, fmt, out, req, quiet
):
    """Per-bar trend (bull/bear/sideways) and volatility (low/normal/high) regimes of SYMBOLS,
    with the current regimes and how long they have lasted. Long format (a symbol column).
    --out takes .parquet, .pq or .csv."""
    path = check_out(out, "series")
    params = RegimeParams(trend_window, slope_window, slope_threshold, vol_window, low_pct, high_pct, min_history)
    params.check()
    loaded = load(names, req)
    frames: dict[str, pl.DataFrame] = {}
    short: list[tuple[str, int]] = []
    with progress(list(loaded.bars.items()), "regimes", quiet) as items:
        for sym, bars in items:
            if names or bars.height >= params.min_bars:
                ppy = periods_per_year(bars, loaded.timeframe)
                frames[sym] = regimes(bars, params, ppy, sym)
            else:
                short.append((sym, bars.height))
    warn_grouped(f"fewer bars than the {params.min_bars} regimes need; symbol skipped", short)
    if not frames:
        raise AnalyzeError(f"no symbol has the {params.min_bars} bars regimes need")
    current = {
        sym: {"trend": current_run(f["trend"], f["timestamp"]), "volatility": current_run(f["vol_regime"], f["timestamp"])}
        for sym, f in frames.items()
    }
    frame = pl.concat([f.select(pl.lit(s).alias("symbol"), pl.all()) for s, f in frames.items()]).sort(
        "symbol", "timestamp", maintain_order=True
    )
    if path:
        write_series(frame, path)
        info(f"wrote {frame.height:,} rows ({len(frames):,} symbols) to {path}")
    if fmt == "json":
        click.echo(
            to_json(
                {
                    "symbols": list(frames),
                    "timeframe": loaded.timeframe,
                    "params": params.__dict__,
                    "current": current,
                    "rows": frame_records(frame),
                }
            )
        )
    elif not path:
        blocks = []
        for sym, f in frames.items():
            lines = [frame_table(f, rows)]
            for key, cur in current[sym].items():
                lines.append(
                    f"{sym} current {key} regime: {cur['regime']} for {cur['bars']:,} bars (since {stamp(cur['since'])})"
                )
            blocks.append("\n".join(lines))
        click.echo("\n\n".join(blocks))


@cli.command()
@click.option("--weights", default=None, help="SYM=w,... (default: equal weights); must sum to 1 unless --normalize.")
@click.option("--normalize", is_flag=True, help="Rescale --weights to sum to 1.")
@click.option("--confidence", default="0.95,0.99", show_default=True, help="Confidence levels, comma-separated.")
@click.option("--horizon", default="1,5", show_default=True, help="Horizons in bars, comma-separated.")
@click.option("--value", default=1_000_000.0, show_default=True, type=float, help="Portfolio value (currency) for the *_value columns.")
@click.option("--simulations", default=10_000, show_default=True, type=click.IntRange(100), help="Monte Carlo draws.")
@click.option("--seed", default=42, show_default=True, type=click.IntRange(0), help="Monte Carlo seed (>= 0).")
@common_options
def risk(names, weights, normalize, confidence, horizon, value, simulations, seed, fmt, out, req, quiet):
    """VaR/CVaR (historical, Gaussian, Cornish-Fisher, Boudt's modified ES, Monte Carlo), stress
    tests, correlation, volatility, beta and drawdowns of a portfolio of SYMBOLS.
    --out takes .json or .html."""
    from slices.analyze.report import risk_html
    from slices.analyze.risk import align, parse_floats, parse_weights, risk_report

    path = check_out(out, "report")
    confidences = parse_floats(confidence, "--confidence", 0.5, 1.0)
    horizons = parse_floats(horizon, "--horizon", 1, 0, integer=True)
    if not value > 0:
        raise AnalyzeError("--value must be > 0")
    loaded = load(names, req)
    syms = list(loaded.bars)
    w = parse_weights(weights, syms, normalize)
    al = align(loaded.bars)
    ppy = periods_per_year(al.timestamps, loaded.timeframe)
    result = risk_report(loaded.bars, w, confidences, horizons, value, simulations, seed, ppy, aligned=al)
    result["timeframe"] = loaded.timeframe
    if path:
        write_text(risk_html(result) if path.suffix.lower() in (".html", ".htm") else to_json(result), path)
        info(f"wrote {path}")
    if fmt == "json":
        click.echo(to_json(result))
    elif not path:
        _print_risk(result)


def _print_risk(r: dict) -> None:
    from slices.analyze.report import risk_tables

    p = r["portfolio"]
    click.echo(
        f"portfolio {' '.join(r['symbols'])}: {r['bars']:,} common bars {stamp(r['start'])} .. {stamp(r['end'])}, "
        f"value {r['value']:,.2f}; Monte Carlo {r['monte_carlo']['simulations']:,} draws, seed {r['monte_carlo']['seed']}"
    )
    click.echo(
        f"volatility {p['volatility']:.2%} (annualised, {r['periods_per_year']:,.2f} bars a year), "
        f"max drawdown {p['max_drawdown']:.2%} ({stamp(p['peak'])} -> {stamp(p['trough'])}, recovered "
        f"{stamp(p['recovery']) if p['recovery'] else 'no'}), longest drawdown {p['duration_bars']:,} bars"
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


def _param_pairs(params: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in params:
        if "=" not in item:
            raise AnalyzeError(f"--param {item}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def _strategies(refs: tuple[str, ...], params: tuple[str, ...]):
    """Resolve ``--strategy`` values (default: the five built-ins) with ``--param`` overrides,
    which need exactly one strategy. Returns ``[(strategy, params)]``."""
    from slices.analyze.strategies import STRATEGIES, resolve_params

    pairs = _param_pairs(params)
    if pairs and len(refs) != 1:
        raise AnalyzeError("--param applies to one strategy: give exactly one --strategy with it")
    return [resolve_params(ref, pairs) for ref in (refs or tuple(STRATEGIES))]


@cli.command()
@click.option(
    "--strategy",
    "strategy_refs",
    multiple=True,
    metavar="NAME|PATH.py|MODULE[:ATTR]",
    help="Strategy whose current signal is shown (repeatable; default: the five built-ins with default parameters).",
)
@click.option("--param", "params", multiple=True, metavar="K=V", help="Strategy parameter (repeatable; needs exactly one --strategy).")
@click.option("--allow-short", is_flag=True, help="Show short signals (-1); without it a short target means flat.")
@click.option("--long-only", is_flag=True, hidden=True, help="Kept for compatibility: long-only is the default.")
@common_options
def report(names, strategy_refs, params, allow_short, long_only, fmt, out, req, quiet):
    """Market report of SYMBOLS: last close, regimes, RSI, MACD, 52-week range, ATR, the current
    signal of each strategy and 1-bar VaR 95 %. --out takes .json or .html (self-contained)."""
    from slices.analyze.report import market_report, report_columns, report_html

    path = check_out(out, "report")
    strategies = _strategies(strategy_refs, params)
    loaded = load(names, req)
    first = next(iter(loaded.bars.values()))
    ppy = periods_per_year(first, loaded.timeframe)
    rep = market_report(loaded.bars, ppy, strategies, allow_short and not long_only)
    rep["timeframe"] = loaded.timeframe
    if path:
        write_text(report_html(rep, loaded.bars) if path.suffix.lower() in (".html", ".htm") else to_json(rep), path)
        info(f"wrote {path}")
    if fmt == "json":
        click.echo(to_json(rep))
    elif not path:
        click.echo(table(rep["symbols"], report_columns(rep)))


@cli.command()
@click.option(
    "--strategy",
    "strategy_ref",
    required=True,
    metavar="NAME|PATH.py|MODULE[:ATTR]",
    help="Built-in name (simple_ma momentum mean_reversion volatility breakout), a strategy file or a module (SLICES.md contract 5).",
)
@click.option("--param", "params", multiple=True, metavar="K=V", help="Strategy parameter (repeatable).")
@click.option("--allow-short", is_flag=True, help="Keep short targets (-1) and negative weights; without it they mean flat / 0.")
@click.option(
    "--leverage",
    default=None,
    type=click.FloatRange(1.0),
    help="Weights form: the largest sum of |weights| allowed in a row [default: 1].",
)
@click.option("--rows", "-n", default=10, show_default=True, type=click.IntRange(1), help="Last bars shown per symbol in table format.")
@common_options
def signals(names, strategy_ref, params, allow_short, leverage, rows, fmt, out, req, quiet):
    """Per-bar signals of a strategy on SYMBOLS (SLICES.md contract 5): columns symbol,
    timestamp, close and target (int8 -1/0/1, after the long-only rule) for the signal form, or
    weight (float) for the weights form. --out takes .parquet, .pq or .csv."""
    from slices.analyze.signals import strategy_signals

    path = check_out(out, "series")
    ((strat, prm),) = _strategies((strategy_ref,), params)
    if leverage is not None and strat.form == "targets":  # contract 5: an option of the other form is an error
        raise AnalyzeError(f"--leverage applies to weights (portfolio) strategies only; {strat.label} is a targets strategy")
    loaded = load(names, req)
    frame = strategy_signals(strat, prm, loaded.bars, allow_short, leverage or 1.0)
    value = "weight" if strat.form == "weights" else "target"
    if path:
        write_series(frame, path)
        info(f"wrote {frame.height:,} rows ({len(loaded.bars):,} symbols) to {path}")
    if fmt == "json":
        click.echo(
            to_json(
                {
                    "strategy": strat.name,
                    "source": strat.source,
                    "form": strat.form,
                    "params": prm,
                    "allow_short": allow_short,
                    "timeframe": loaded.timeframe,
                    "symbols": list(loaded.bars),
                    "columns": frame.columns,
                    "rows": frame_records(frame),
                }
            )
        )
    elif not path:
        blocks = []
        for (sym,), part in frame.partition_by("symbol", as_dict=True, maintain_order=True).items():
            shown = min(rows, part.height)
            if value == "weight":
                set_rows = part.filter(pl.col(value).is_not_null() & pl.col(value).is_not_nan())
                current = (
                    f"{cell_text(set_rows[value][-1], value)} (set on {stamp(set_rows['timestamp'][-1])})"
                    if set_rows.height
                    else "none yet"
                )
            else:
                run = current_run(part[value], part["timestamp"])
                current = f"{run['regime']} for {run['bars']:,} bars (since {stamp(run['since'])})"
            blocks.append(
                _header(sym, part, shown) + "\n" + frame_table(part.drop("symbol"), shown) + f"\n{sym} current {value}: {current}"
            )
        click.echo(f"{strat.name} ({strat.form}) {', '.join(f'{k}={v}' for k, v in prm.items())}")
        click.echo("\n\n".join(blocks))


def main() -> None:
    """Console entry point."""
    cli(prog_name="python -m slices.analyze")
