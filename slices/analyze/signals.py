"""Strategy signals per bar (SLICES.md contract 5) on loaded bars: the ``signals`` command and
the report's current signals. Strategies come from :mod:`.strategies` (built-ins, files, modules).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from slices.analyze.errors import AnalyzeError, warn
from slices.analyze.strategies import (
    Strategy,
    StrategyError,
    bar_dict,
    call_targets,
    call_weights,
    fmt_bar_time,
    long_only,
    panel_dict,
)

LABELS = {1: "long", -1: "short", 0: "flat"}


def check_history(strat: Strategy, need: int, bars: dict[str, pl.DataFrame]) -> None:
    """AnalyzeError naming the first symbol (alphabetically) with fewer than ``need`` bars
    (``lookback(params)``), in the backtest's words (SLICES.md contract 5)."""
    for symbol in sorted(bars):
        b = bars[symbol]
        if b.height < need:
            since = f" from {b['timestamp'][0]:%Y-%m-%d}" if b.height else ""
            raise AnalyzeError(f"{symbol}: {b.height:,} bars{since}, fewer than the {need:,} that {strat.label} needs "
                               "(use a longer --start/--end span or smaller --param windows)")


def symbol_targets(strat: Strategy, params: dict, bars: pl.DataFrame, symbol: str, allow_short: bool) -> np.ndarray:
    """Targets (int8, T) of a signal-form strategy on one symbol's bars, after the long-only rule
    unless ``allow_short``. Raises StrategyError for a bad return or an exception inside the
    strategy, AnalyzeError when the symbol has fewer bars than ``lookback(params)``."""
    check_history(strat, strat.needed_bars(params), {symbol: bars})
    t = call_targets(strat, bar_dict(bars, symbol), params)
    return t if allow_short else long_only(t)


def strategy_signals(
    strat: Strategy, params: dict, bars: dict[str, pl.DataFrame], allow_short: bool, leverage: float = 1.0
) -> pl.DataFrame:
    """Per-bar signals of ``strat`` on ``{SYMBOL: bars}`` as a long frame sorted by symbol, timestamp.

    Signal form: columns ``symbol timestamp close target`` (Int8, -1/0/1; -1 only with
    ``allow_short``). Weights form: ``symbol timestamp close weight`` (Float64 fraction of equity,
    NaN = no change; negative weights become 0 without ``allow_short``, with one warning counting
    them), on each symbol's own bars. A weights row whose sum of |weights| exceeds ``leverage``
    (+1e-9) is a StrategyError naming its time (SLICES.md contract 5; the backtest's wording).
    """
    if strat.form == "targets":
        parts = [
            b.select(pl.lit(s).alias("symbol"), "timestamp", "close").with_columns(
                pl.Series("target", symbol_targets(strat, params, b, s, allow_short), dtype=pl.Int8)
            )
            for s, b in bars.items()
        ]
        return pl.concat(parts).sort("symbol", "timestamp", maintain_order=True)
    check_history(strat, strat.needed_bars(params), bars)
    panel = panel_dict(bars)
    w = call_weights(strat, panel, params)
    if not allow_short:
        neg = np.nan_to_num(w, nan=0.0) < 0
        if neg.any():
            warn(f"{strat.label}: {int(neg.sum()):,} negative weights set to 0 (pass --allow-short to keep them)")
            w[neg] = 0.0
    gross = np.nansum(np.abs(w), axis=1)
    over = np.flatnonzero(gross > leverage + 1e-9)
    if over.size:
        t = int(over[0])
        how = "--leverage L allows up to L" if leverage == 1 else f"--leverage {leverage:g}"
        raise StrategyError(
            f"{strat.label}: weights row {t} ({fmt_bar_time(panel['timestamp'][t])}): sum of |weights| "
            f"{gross[t]:.6g} exceeds {leverage:g} ({how})"
        )
    wide = pl.DataFrame(
        {"timestamp": pl.Series(panel["timestamp"]).dt.replace_time_zone("UTC"), **{s: w[:, j] for j, s in enumerate(panel["symbols"])}}
    )
    long = wide.unpivot(index="timestamp", variable_name="symbol", value_name="weight")
    parts = [b.select(pl.lit(s).alias("symbol"), "timestamp", "close") for s, b in bars.items()]
    out = pl.concat(parts).join(long, on=["symbol", "timestamp"], how="left")
    return out.with_columns(pl.col("weight").fill_null(float("nan"))).sort("symbol", "timestamp", maintain_order=True)


def last_weights(strategies: list[tuple[Strategy, dict]], bars: dict[str, pl.DataFrame], allow_short: bool) -> dict:
    """``{strategy name: {SYMBOL: last weight}}`` of the weights-form strategies on the panel of all ``bars``."""
    out: dict[str, dict[str, float]] = {}
    for strat, params in strategies:
        if strat.form == "weights":
            frame = strategy_signals(strat, params, bars, allow_short)
            last = frame.group_by("symbol", maintain_order=True).agg(pl.col("weight").last())
            out[strat.name] = dict(last.iter_rows())
    return out


def current_signals(
    bars: pl.DataFrame,
    symbol: str,
    strategies: list[tuple[Strategy, dict]],
    allow_short: bool,
    weights: dict | None = None,
) -> dict[str, str]:
    """The last bar's signal of each strategy: ``long``/``short``/``flat`` (signal form), or
    ``n/a`` when the symbol has fewer bars than the strategy's lookback; for the weights form the
    symbol's last weight from ``weights`` (:func:`last_weights`) as ``w=0.25`` (``n/a`` when NaN)."""
    out: dict[str, str] = {}
    for strat, params in strategies:
        if strat.form == "weights":
            w = (weights or {}).get(strat.name, {}).get(symbol)
            out[strat.name] = "n/a" if w is None or w != w else f"w={w:.2f}"
        elif bars.height < strat.needed_bars(params):
            out[strat.name] = "n/a"
        else:
            out[strat.name] = LABELS[int(symbol_targets(strat, params, bars, symbol, allow_short)[-1])]
    return out


__all__ = ["LABELS", "StrategyError", "current_signals", "last_weights", "strategy_signals", "symbol_targets"]
