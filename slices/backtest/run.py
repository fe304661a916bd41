"""One backtest run from options to result files (SLICES.md contract 3).

:func:`backtest` loads and validates bars, computes the strategy's targets, simulates the
portfolio and computes metrics; :func:`write_outputs` writes metrics.json, trades.parquet,
equity.parquet and report.html.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from .bars import DataError, LoadReport, load_bars
from .engine import Config, Panel, Result, compute_targets, simulate
from .metrics import all_metrics, equity_metrics, periods_per_year
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
    timeframe: str = "1d",
    start: str | None = None,
    end: str | None = None,
    adjust: bool = True,
    config: Config | None = None,
) -> Outcome:
    """Run one backtest. Raises DataError for bad data and ValueError for bad settings
    (unknown strategy or parameter, invalid config); messages are one line, ready to print."""
    cfg = config or Config()
    cfg.check()
    strat, p = resolve_params(strategy, params or {})
    bars, report = load_bars(symbols, timeframe, store=store, data=data, start=start, end=end, adjust=adjust)
    need = strat.lookback(p)
    if cfg.stop_loss_atr or cfg.take_profit_atr or cfg.sizing == "atr-risk":
        need = max(need, cfg.atr_window + 1)
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:
        msgs = [f"{s}: {n} bars from {t:%Y-%m-%d}, fewer than the {need} that {strategy} needs" for s, n, t in short.iter_rows()]
        if symbols is not None or short.height == counts.height:
            raise DataError(msgs[0] + " (use a longer --start/--end span or smaller --param windows)")
        report.warnings.extend(m + "; symbol excluded" for m in msgs)
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    panel = Panel.from_bars(bars)
    targets, atrs = compute_targets(panel, strat, p, cfg.allow_short, cfg.atr_window)
    res = simulate(panel, targets, atrs, cfg)
    ann = periods_per_year(panel.timestamps)
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
    for j, sym in enumerate(panel.symbols):
        sym_eq = alloc + res.sym_cash[:, j] + res.qty[:, j] * np.nan_to_num(res.close_ff[:, j])
        t = trades.filter(pl.col("symbol") == sym)
        per_symbol[sym] = all_metrics(
            sym_eq, ann, float(np.mean(res.qty[:, j] != 0)), t["pnl"].to_numpy(), t["return_pct"].to_numpy() / 100,
            float(last_close[j] / first_close[j] - 1),
        )
    report.warnings.extend(res.notes)
    if res.skipped:
        report.warnings.append(f"{res.skipped} entry signal(s) not taken: no cash left, size below one share, or ATR unavailable")
    run = {
        "strategy": strategy, "params": p, "symbols": panel.symbols, "timeframe": timeframe,
        "start": str(ts[0]), "end": str(ts[-1]), "bars": len(ts), "periods_per_year": ann,
        "data": [str(d) for d in data] if data else None, "store": store, "adjust": adjust,
        **{k: v for k, v in asdict(cfg).items()},
    }
    return Outcome(run, bars, panel, res, equity, trades, portfolio, per_symbol, equity_metrics(bench, ann), report)


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
    return df.with_columns(pl.col("entry_time", "exit_time").dt.replace_time_zone("UTC")).cast(schema).sort("entry_time", "symbol")


def default_out_dir(strategy: str) -> Path:
    """A new folder ``./runs/backtest-<UTC yyyymmdd-HHMMSS>-<strategy>`` (suffixed if it exists)."""
    base = Path("runs") / f"backtest-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{strategy}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def metrics_document(o: Outcome) -> dict:
    """The metrics.json document: run settings, portfolio and per-symbol metrics, warnings."""
    return {"run": o.run, "portfolio": o.portfolio, "benchmark": o.benchmark, "per_symbol": o.per_symbol, "warnings": o.report.warnings}


def write_outputs(o: Outcome, out: Path, report: bool = True) -> Path:
    """Write metrics.json, trades.parquet, equity.parquet and (if ``report``) report.html into
    ``out`` (created). Returns the report path (or the folder without a report)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics_document(o), indent=2, default=str))
    o.trades.write_parquet(out / "trades.parquet")
    o.equity.write_parquet(out / "equity.parquet")
    if not report:
        return out
    from .report import write_report  # only runs that write a report pay for building it

    prices = {k[0]: v.drop("symbol") for k, v in o.bars.partition_by("symbol", as_dict=True).items()}
    title = f"{o.run['strategy']} backtest"
    return write_report(out / "report.html", title=title, run=o.run, metrics=o.portfolio, per_symbol=o.per_symbol,
                        equity=o.equity, trades=o.trades, prices=prices)


__all__ = ["Outcome", "backtest", "write_outputs", "default_out_dir", "metrics_document", "DataError"]
