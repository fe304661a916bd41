"""The five strategies' signal rules (this slice's own copy), computed on each bar's close.

Positions: +1 long, -1 short, 0 flat. Each strategy is written as four boolean event arrays
(enter long, enter short, exit long, exit short) run through one state machine
(:func:`positions`): when flat, an entry opens a position; when in a position, the opposite
entry reverses it (or only closes it when long-only) and the exit event closes it. Before a
strategy's warm-up no event fires (NaN comparisons are False), so it is flat.

Rules (defaults as in the strategies' definitions):

- ``simple_ma`` (fast=10, slow=30): SMA cross; up-cross ``fast[t-1] < slow[t-1]`` and
  ``fast[t] > slow[t]`` goes long, down-cross short (flat when long-only); flat until the first cross.
- ``momentum`` (lookback=20, threshold=0): ``ROC = close[t]/close[t-lookback] - 1``; long when
  ``ROC > threshold``, short when ``ROC < -threshold``, else flat.
- ``mean_reversion`` (window=20, z_entry=2, z_exit=0.5): ``z = (close - SMA)/std`` (ddof=0); long
  when ``z < -z_entry``, short when ``z > z_entry``, exit when ``|z| < z_exit``.
- ``volatility`` (window=20, atr_window=14, k=2): Keltner-style breakout around ``SMA(window)`` with
  Wilder ATR; long when ``close > SMA + k ATR``, short when ``close < SMA - k ATR``; a long exits
  when the close falls below the SMA, a short when it rises above it.
- ``breakout`` (window=20, exit_window=10): Donchian; long when ``close`` is above the highest
  high of the previous ``window`` bars (bar t excluded), short when below the lowest low; a long
  exits when ``close`` is below the lowest low of the previous ``exit_window`` bars, a short
  mirrored.
"""

from __future__ import annotations

import numpy as np

from slices.analyze.indicators import atr, rolling_max, rolling_min, rolling_std, sma

STRATEGIES = ("simple_ma", "momentum", "mean_reversion", "volatility", "breakout")
LABELS = {1: "long", -1: "short", 0: "flat"}


def positions(enter_long, enter_short, exit_long, exit_short, long_only: bool = False) -> np.ndarray:
    """Run the entry/exit state machine; inputs are equal-length bool arrays, output int8 positions."""
    el, es, xl, xs = (np.asarray(a, dtype=bool).tolist() for a in (enter_long, enter_short, exit_long, exit_short))
    out = np.zeros(len(el), dtype=np.int8)
    pos = 0
    short = 0 if long_only else -1
    for t in range(len(el)):
        if pos == 0:
            if el[t]:
                pos = 1
            elif es[t]:
                pos = short
        elif pos == 1:
            if es[t]:
                pos = short
            elif xl[t]:
                pos = 0
        else:
            if el[t]:
                pos = 1
            elif xs[t]:
                pos = 0
        out[t] = pos
    return out


def _shift(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[k:] = x[:-k]
    return out


def _events(strategy: str, high: np.ndarray, low: np.ndarray, close: np.ndarray):
    with np.errstate(invalid="ignore", divide="ignore"):
        if strategy == "simple_ma":
            fast, slow = sma(close, 10), sma(close, 30)
            pf, ps = _shift(fast), _shift(slow)
            up = (pf < ps) & (fast > slow)
            down = (pf > ps) & (fast < slow)
            never = np.zeros(len(close), dtype=bool)
            return up, down, never, never
        if strategy == "momentum":
            r = close / _shift(close, 20) - 1.0
            return r > 0.0, r < -0.0, ~(r > 0.0), ~(r < -0.0)
        if strategy == "mean_reversion":
            z = (close - sma(close, 20)) / rolling_std(close, 20)
            flat = np.abs(z) < 0.5
            return z < -2.0, z > 2.0, flat, flat
        if strategy == "volatility":
            mid, a = sma(close, 20), atr(high, low, close, 14)
            return close > mid + 2.0 * a, close < mid - 2.0 * a, close < mid, close > mid
        if strategy == "breakout":
            hh, ll = _shift(rolling_max(high, 20)), _shift(rolling_min(low, 20))
            xh, xl = _shift(rolling_max(high, 10)), _shift(rolling_min(low, 10))
            return close > hh, close < ll, close < xl, close > xh
    raise KeyError(strategy)


def strategy_positions(
    strategy: str, high: np.ndarray, low: np.ndarray, close: np.ndarray, long_only: bool = False
) -> np.ndarray:
    """Per-bar positions (int8, +1/-1/0) of one strategy with its default parameters.

    ``high``, ``low``, ``close``: float arrays of length T (oldest first). Raises KeyError for an
    unknown strategy name.
    """
    el, es, xl, xs = _events(strategy, high, low, close)
    return positions(el, es, xl, xs, long_only)


def warmup(strategy: str) -> int:
    """Bars a strategy needs before its first possible signal."""
    return {"simple_ma": 31, "momentum": 21, "mean_reversion": 20, "volatility": 20, "breakout": 21}[strategy]


def current_signals(high: np.ndarray, low: np.ndarray, close: np.ndarray, long_only: bool = False) -> dict[str, str]:
    """State of each strategy at the last bar: ``long``, ``short``, ``flat``, or ``n/a`` (too few bars)."""
    out = {}
    for name in STRATEGIES:
        if len(close) < warmup(name):
            out[name] = "n/a"
        else:
            out[name] = LABELS[int(strategy_positions(name, high, low, close, long_only)[-1])]
    return out
