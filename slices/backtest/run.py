"""One backtest run from options to result files (SLICES.md contract 3).

:func:`backtest` loads and validates bars, computes the strategy's targets, simulates the
portfolio and computes metrics; :func:`write_outputs` writes metrics.json, trades.parquet,
equity.parquet and report.html.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from .bars import DataError, LoadReport, fmt_price, fmt_ts, load_bars
from .engine import Config, Panel, Result, check_lookahead, compute_targets, compute_weights, simulate, simulate_weights
from .metrics import all_metrics, equity_metrics, periods_per_year, symbol_equity
from .strategies import resolve_params

UTC_US = pl.Datetime("us", "UTC")


@dataclass
class Outcome:
    """A finished run: settings, bars, the engine's result and the tables and metrics to write.

    ``equity``: equity.parquet frame; ``trades``: trades.parquet frame; ``portfolio``: metric ->
    value; ``per_symbol``: symbol -> metric -> value; ``benchmark``: buy-and-hold metrics.
    """

    run: dict
    bars: pl.DataFrame
    panel: Panel
    result: Result
    equity: pl.DataFrame
    trades: pl.DataFrame
    portfolio: dict
    per_symbol: dict
    benchmark: dict
    report: LoadReport


def backtest(
    strategy: str = "simple_ma",
    symbols: list[str] | None = None,
    *,
    params: dict[str, str] | None = None,
    data: list[str] | None = None,
    store: str | None = None,
    timeframe: str | None = None,
    start: str | None = None,
    end: str | None = None,
    adjust: bool = True,
    keep_suspicious: bool = False,
    config: Config | None = None,
    lookahead_check: bool = False,
) -> Outcome:
    """Run one backtest. ``strategy``: a built-in name, a ``.py`` file, ``package.module`` or
    ``package.module:attribute`` (SLICES.md contract 5); ``lookahead_check``: first run
    :func:`.engine.check_lookahead` (its note goes into the report's notes).

    Raises DataError for bad data and ValueError for bad settings (unknown strategy or parameter,
    a bad strategy file or output, invalid config, an option of the other strategy form);
    messages are one line, ready to print."""
    cfg = config or Config()
    cfg.check()
    strat, p = resolve_params(strategy, params or {})
    cfg.check_form(strat.form, strat.label)
    bars, report = load_bars(symbols, timeframe, store=store, data=data, start=start, end=end, adjust=adjust,
                             keep_suspicious=keep_suspicious)
    need = strat.needed_bars(p)
    if cfg.stop_loss_atr or cfg.take_profit_atr or cfg.sizing == "atr-risk":
        need = max(need, cfg.atr_window + 1)
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:
        msgs = [f"{s}: {n:,} bars from {t:%Y-%m-%d}, fewer than the {need:,} that {strat.label} needs" for s, n, t in short.iter_rows()]
        if symbols is not None or short.height == counts.height:
            raise DataError(msgs[0] + " (use a longer --start/--end span or smaller --param windows)")
        for (s, _, _), m in zip(short.iter_rows(), msgs):
            report.warn("excluded", s, m + "; symbol excluded")
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    panel = Panel.from_bars(bars)
    if lookahead_check:
        report.notes.append(check_lookahead(panel, strat, p))
    if strat.form == "weights":
        weights, weight_warnings = compute_weights(panel, strat, p, cfg.allow_short, cfg.leverage)
        report.warnings.extend(weight_warnings)
        res = simulate_weights(panel, weights, cfg)
    else:
        targets, atrs = compute_targets(panel, strat, p, cfg.allow_short, cfg.atr_window)
        res = simulate(panel, targets, atrs, cfg)
    ann = periods_per_year(report.timeframe, panel.timestamps)
    ts = pl.Series("timestamp", panel.timestamps).dt.replace_time_zone("UTC")

    # buy and hold: cash split equally, each symbol bought at its first close, no costs
    first_row = np.argmax(~np.isnan(panel.close), axis=0)  # every symbol has at least one bar
    first_close = panel.close[first_row, np.arange(len(panel.symbols))]
    rel = np.where(np.isnan(res.close_ff), 1.0, res.close_ff / first_close)
    alloc = cfg.cash / len(panel.symbols)
    bench = alloc * rel.sum(axis=1)
    last_close = res.close_ff[-1]

    trades = _trades_frame(res, panel)
    equity = pl.DataFrame({
        "timestamp": ts, "equity": res.equity, "cash": res.cash, "gross_exposure": res.gross,
        "drawdown": res.equity / np.maximum.accumulate(res.equity) - 1.0, "benchmark": bench,
    })
    portfolio = all_metrics(
        res.equity, ann, float(np.mean(res.gross > 0)), trades["pnl"].to_numpy(), trades["return_pct"].to_numpy() / 100,
        float(bench[-1] / cfg.cash - 1),
    )
    per_symbol = {}
    sym_eq = symbol_equity(alloc, res.qty, res.sym_cash, res.close_ff, res.fills)  # README "Per-symbol returns"
    for j, sym in enumerate(panel.symbols):
        t = trades.filter(pl.col("symbol") == sym)
        per_symbol[sym] = all_metrics(
            sym_eq[:, j], ann, float(np.mean(res.qty[:, j] != 0)), t["pnl"].to_numpy(), t["return_pct"].to_numpy() / 100,
            float(last_close[j] / first_close[j] - 1),
        )
    _engine_warnings(res, panel, alloc, report)
    run = {
        "strategy": strat.name, "strategy_spec": strategy, "strategy_form": strat.form, "params": p, "symbols": panel.symbols, "timeframe": report.timeframe,
        "start": str(ts[0]), "end": str(ts[-1]), "bars": len(ts), "periods_per_year": ann,
        "data": [str(d) for d in data] if data else None, "store": store, "adjust": adjust,
        **{k: v for k, v in asdict(cfg).items()},
    }
    return Outcome(run, bars, panel, res, equity, trades, portfolio, per_symbol, equity_metrics(bench, ann), report)


SKIP_REASONS = {"no cash": "no cash left", "below one share": "size below one share", "no ATR": "ATR not available yet"}


def _engine_warnings(res: Result, panel: Panel, alloc: float, report: LoadReport) -> None:
    """Warnings from the simulation: the engine's notes (a bar index shown as its date), entry
    signals not taken by reason (kind ``untaken``), and the symbols that never traded because one
    share costs more than their allocation (kind ``never_traded``)."""
    stamps = pl.Series(panel.timestamps).dt.replace_time_zone("UTC")
    for note in res.notes:
        report.warn("halt" if "halt" in note else "engine", "",
                    re.sub(r"on bar (\d+)", lambda m: "on " + fmt_ts(stamps[int(m.group(1))]), note))
    if not res.skipped:
        return
    by_reason: dict[str, list[tuple[int, int]]] = {}
    for b, j, why in res.skipped:
        by_reason.setdefault(why, []).append((b, j))
    parts = [f"{len(v):,} {SKIP_REASONS.get(k, k)} (first {panel.symbols[v[0][1]]} {fmt_ts(stamps[v[0][0]])})"
             for k, v in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))]
    report.warn("untaken", "", f"{len(res.skipped):,} entry signal(s) not taken: {'; '.join(parts)}")
    traded = {f["symbol"] for f in res.fills}
    first_skip: dict[int, int] = {}
    for b, j in by_reason.get("below one share", []):
        first_skip.setdefault(j, b)
    small = sorted(j for j in first_skip if j not in traded)
    if small:
        names = ", ".join(f"{panel.symbols[j]} ({fmt_price(float(panel.open[first_skip[j], j]))})" for j in small[:12])
        more = f" and {len(small) - 12:,} more" if len(small) > 12 else ""
        report.warn("never_traded", "", f"{len(small):,} symbol(s) never traded: one share cost more than the position "
                    f"size allowed ({alloc:,.2f} per symbol at the start): {names}{more}")


def _trades_frame(res: Result, panel: Panel) -> pl.DataFrame:
    schema = {
        "symbol": pl.String, "side": pl.String, "quantity": pl.Float64, "entry_time": UTC_US, "entry_price": pl.Float64,
        "exit_time": UTC_US, "exit_price": pl.Float64, "pnl": pl.Float64, "return_pct": pl.Float64,
        "commission": pl.Float64, "exit_reason": pl.String, "is_open": pl.Boolean,
    }
    if not res.trades:
        return pl.DataFrame(schema=schema)
    t = res.trades
    stamps = panel.timestamps
    df = pl.DataFrame({
        "symbol": [panel.symbols[x["symbol"]] for x in t],
        "side": [x["side"] for x in t],
        "quantity": [float(x["quantity"]) for x in t],
        "entry_time": stamps[[x["entry_bar"] for x in t]],
        "entry_price": [float(x["entry_price"]) for x in t],
        "exit_time": stamps[[x["exit_bar"] for x in t]],
        "exit_price": [float(x["exit_price"]) for x in t],
        "pnl": [float(x["pnl"]) for x in t],
        "return_pct": [float(x["return_pct"]) for x in t],
        "commission": [float(x["commission"]) for x in t],
        "exit_reason": [x["exit_reason"] for x in t],
        "is_open": [bool(x["is_open"]) for x in t],
    })
    return df.with_columns(pl.col("entry_time", "exit_time").dt.replace_time_zone("UTC")).cast(schema).sort("entry_time", "symbol", maintain_order=True)


def default_out_dir(strategy: str) -> Path:
    """A new folder ``./runs/backtest-<UTC yyyymmdd-HHMMSS>-<strategy>`` (suffixed if it exists);
    characters other than letters, digits, ``_ . -`` in the strategy name become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", strategy) or "strategy"
    base = Path("runs") / f"backtest-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{safe}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def metrics_document(o: Outcome) -> dict:
    """The metrics.json document: run settings, portfolio and per-symbol metrics, warnings."""
    return {"run": o.run, "portfolio": o.portfolio, "benchmark": o.benchmark, "per_symbol": o.per_symbol, "warnings": o.report.warnings}


RUN_FILES = ("metrics.json", "trades.parquet", "equity.parquet", "report.html")
"""The contract-3 files of a run folder; a run removes those of a previous run it does not write."""


def write_outputs(o: Outcome, out: Path, report: bool = True) -> Path:
    """Write metrics.json, trades.parquet, equity.parquet and (if ``report``) report.html into
    ``out`` (created). The folder holds one run: a contract-3 file left by a previous run that
    this run does not write (report.html with ``report=False``) is removed; no other file is
    touched. Returns the report path (or the folder without a report)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES[3:] if not report else ():
        if (out / name).is_file():
            (out / name).unlink()
    (out / "metrics.json").write_text(json.dumps(metrics_document(o), indent=2, default=str))
    o.trades.write_parquet(out / "trades.parquet")
    o.equity.write_parquet(out / "equity.parquet")
    if not report:
        return out
    from .report import write_report  # only runs that write a report pay for building it

    prices = {k[0]: v.drop("symbol") for k, v in o.bars.partition_by("symbol", as_dict=True).items()}
    title = f"{o.run['strategy']} backtest"
    return write_report(out / "report.html", title=title, run=o.run, metrics=o.portfolio, per_symbol=o.per_symbol,
                        equity=o.equity, trades=o.trades, prices=prices, warnings=o.report.warnings)


__all__ = ["Outcome", "backtest", "write_outputs", "default_out_dir", "metrics_document", "DataError"]
