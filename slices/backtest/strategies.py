"""Strategies of the backtest slice (this slice's own copy) and the indicators they need.

A strategy maps one symbol's bars to a **target position** per bar, computed on that bar's
close: +1 long, -1 short, 0 flat (int8 array, same length as the bars). The engine trades only
where the target changes, filling at the next bar's open; so a signal on bar t can never be
filled before t+1. Every function here is causal: its value at bar t uses bars 0..t only (the
no-lookahead property is tested for each strategy).

All indicators are vectorised numpy (no per-bar Python loop). Values are NaN during warm-up,
and a strategy is flat while its indicators are warming up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# ----------------------------------------------------------------------------- indicators
def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values (inclusive of t); NaN for t < n-1.

    Each window is averaged on its own (no running sum), so flat windows and ties are exact and
    rounding does not accumulate over long series.
    """
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).mean(axis=1)
    return out


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation (ddof=0) of the last ``n`` values; NaN for t < n-1.

    Two-pass per window (deviations from the window mean), so a flat window is exactly 0.
    """
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).std(axis=1)
    return out


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Maximum of the last ``n`` values (inclusive of t); NaN for t < n-1."""
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).max(axis=1)
    return out


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Minimum of the last ``n`` values (inclusive of t); NaN for t < n-1."""
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).min(axis=1)
    return out


def shift(x: np.ndarray, k: int = 1) -> np.ndarray:
    """``x`` delayed by ``k`` bars (value at t is x[t-k]); NaN for the first ``k`` bars."""
    out = np.full(x.shape, np.nan)
    if k < x.size:
        out[k:] = x[: x.size - k]
    return out


def ema_recursive(x: np.ndarray, alpha: float, seed_at: int, seed: float, block: int = 64) -> np.ndarray:
    """Recursive exponential smoothing y[t] = (1-alpha) y[t-1] + alpha x[t] for t > seed_at,
    with y[seed_at] = seed and NaN before; vectorised in blocks with the closed form
    y[s+k] = d^k (y[s] + alpha * sum_{j=1..k} d^-j x[s+j]), d = 1 - alpha.

    Blocks are at most 64 long and short enough that d^-block <= 1e30, so float64 keeps ~1e-13
    relative precision on non-negative inputs (true ranges, prices); alpha = 1 copies x.
    """
    out = np.full(x.shape, np.nan)
    if seed_at >= x.size:
        return out
    out[seed_at] = seed
    d = 1.0 - alpha
    if d <= 0.0:
        out[seed_at + 1 :] = x[seed_at + 1 :]
        return out
    block = int(min(block, max(1, 69.0 / -np.log(d)))) if d < 1.0 else block
    j = np.arange(1, block + 1, dtype=float)
    inv, fwd = d**-j, d**j
    s = seed_at
    while s < x.size - 1:
        k = min(block, x.size - 1 - s)
        acc = np.cumsum(alpha * x[s + 1 : s + 1 + k] * inv[:k])
        out[s + 1 : s + 1 + k] = fwd[:k] * (out[s] + acc)
        s += k
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range max(high-low, |high-close[t-1]|, |low-close[t-1]|); NaN at t=0 (TA-Lib TRANGE)."""
    prev = shift(close)
    return np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))  # NaN at t=0 propagates


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Average true range, Wilder's smoothing, as TA-Lib ATR: first value at t=n is the mean of
    TR[1..n]; then ATR[t] = (ATR[t-1] (n-1) + TR[t]) / n. Units: price. Source: J. Welles Wilder,
    New Concepts in Technical Trading Systems (1978); TA-Lib ta_ATR.c.
    """
    tr = true_range(high, low, close)
    if tr.size <= n:
        return np.full(tr.shape, np.nan)
    return ema_recursive(tr, 1.0 / n, n, float(np.mean(tr[1 : n + 1])))


# ----------------------------------------------------------------------------- signal helpers
def _ffill_state(events: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN event value forward; 0 before the first event."""
    idx = np.where(~np.isnan(events), np.arange(events.size), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, events[np.maximum(idx, 0)], 0.0)


def entries_exits(
    long_in: np.ndarray, short_in: np.ndarray, long_out: np.ndarray, short_out: np.ndarray
) -> np.ndarray:
    """Vectorised state machine from boolean entry and exit conditions.

    An entry bar sets the state (+1 or -1; long wins if both); while in a state, the first bar
    meeting that state's exit condition (and no entry) sets it to 0 until the next entry.
    Computed without a loop: the state since the last entry is carried forward, and the state is
    0 wherever the last exit bar is later than the last entry bar.
    """
    n = long_in.size
    ev = np.where(long_in, 1.0, np.where(short_in, -1.0, np.nan))
    state = _ffill_state(ev)
    is_ev = ~np.isnan(ev)
    exit_now = ~is_ev & (((state == 1) & long_out) | ((state == -1) & short_out))
    pos = np.arange(n)
    last_ev = np.maximum.accumulate(np.where(is_ev, pos, -1))
    last_exit = np.maximum.accumulate(np.where(exit_now, pos, -1))
    return np.where(last_exit > last_ev, 0, state).astype(np.int8)


# ----------------------------------------------------------------------------- strategies
@dataclass(frozen=True)
class Param:
    """A strategy parameter: default value, type (int or float), lower bound, description."""

    default: float
    kind: type
    minimum: float
    help: str


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, parameters, one-line description, the number of bars its
    indicators need (``lookback(params)``) and its signal function
    ``fn(open, high, low, close, params) -> int8 target in {-1, 0, +1}`` (per bar, on the close)."""

    name: str
    description: str
    params: dict[str, Param]
    lookback: Callable[[dict], int]
    fn: Callable[..., np.ndarray]


def simple_ma(o, h, l, c, p) -> np.ndarray:
    """Fast/slow SMA crossover. Cross up at t: fast[t-1] < slow[t-1] and fast[t] > slow[t] -> +1;
    cross down mirrored -> -1. The position changes only on a cross; flat until the first cross."""
    fast, slow = sma(c, int(p["fast"])), sma(c, int(p["slow"]))
    f1, s1 = shift(fast), shift(slow)
    up = (f1 < s1) & (fast > slow)
    down = (f1 > s1) & (fast < slow)
    return _ffill_state(np.where(up, 1.0, np.where(down, -1.0, np.nan))).astype(np.int8)


def momentum(o, h, l, c, p) -> np.ndarray:
    """Rate of change ROC[t] = close[t] / close[t-lookback] - 1 (a fraction).
    Long while ROC > threshold, short while ROC < -threshold, else flat."""
    n = int(p["lookback"])
    roc = c / shift(c, n) - 1.0
    thr = float(p["threshold"])
    return np.where(roc > thr, 1, np.where(roc < -thr, -1, 0)).astype(np.int8)


def mean_reversion(o, h, l, c, p) -> np.ndarray:
    """Bollinger z-score z = (close - SMA(window)) / std(window, ddof=0).
    Enter long when z < -z_entry, short when z > z_entry; exit when |z| < z_exit.
    Source: J. Bollinger, Bollinger on Bollinger Bands (2001)."""
    n = int(p["window"])
    sd = rolling_std(c, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (c - sma(c, n)) / sd, 0.0)
    ze, zx = float(p["z_entry"]), float(p["z_exit"])
    warm = np.isnan(sd)
    inside = (np.abs(z) < zx) & ~warm
    return entries_exits((z < -ze) & ~warm, (z > ze) & ~warm, inside, inside)


def volatility(o, h, l, c, p) -> np.ndarray:
    """Keltner-channel volatility breakout: mid = SMA(close, window), band = k * ATR(atr_window)
    (Wilder). Long when close > mid + band, short when close < mid - band; exit a long when the
    close falls back below mid, a short when it rises above mid. Source: C. Keltner (1960),
    ATR variant by L. Bressert / Raschke."""
    mid = sma(c, int(p["window"]))
    band = float(p["k"]) * atr(h, l, c, int(p["atr_window"]))
    warm = np.isnan(mid) | np.isnan(band)
    return entries_exits((c > mid + band) & ~warm, (c < mid - band) & ~warm, c < mid, c > mid)


def breakout(o, h, l, c, p) -> np.ndarray:
    """Donchian channel breakout (turtle rules): long when the close exceeds the highest high of
    the previous ``window`` bars (bar t excluded), short when it falls below the lowest low;
    exit a long below the lowest low of the previous ``exit_window`` bars, a short above the
    highest high. Source: R. Donchian; Faith, Way of the Turtle (2007)."""
    n, m = int(p["window"]), int(p["exit_window"])
    upper, lower = shift(rolling_max(h, n)), shift(rolling_min(l, n))
    xl, xs = shift(rolling_min(l, m)), shift(rolling_max(h, m))
    return entries_exits(c > upper, c < lower, c < xl, c > xs)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy(
            "simple_ma", "Fast/slow simple-moving-average crossover; trades only on a cross",
            {"fast": Param(10, int, 1, "fast SMA length, bars"), "slow": Param(30, int, 2, "slow SMA length, bars")},
            lambda p: int(p["slow"]) + 1, simple_ma,
        ),
        Strategy(
            "momentum", "Rate of change over a lookback against a threshold: long above, short below",
            {"lookback": Param(20, int, 1, "ROC lookback, bars"), "threshold": Param(0.0, float, 0.0, "ROC threshold, fraction")},
            lambda p: int(p["lookback"]) + 1, momentum,
        ),
        Strategy(
            "mean_reversion", "Bollinger z-score: enter beyond the band, exit on reversion toward the mean",
            {
                "window": Param(20, int, 2, "SMA/std window, bars"),
                "z_entry": Param(2.0, float, 0.0, "entry |z|, standard deviations"),
                "z_exit": Param(0.5, float, 0.0, "exit |z|, standard deviations"),
            },
            lambda p: int(p["window"]), mean_reversion,
        ),
        Strategy(
            "volatility", "Keltner/ATR volatility breakout around an SMA; exit back through the SMA",
            {
                "window": Param(20, int, 1, "SMA window, bars"),
                "atr_window": Param(14, int, 1, "ATR window, bars"),
                "k": Param(2.0, float, 0.0, "band width, ATR multiples"),
            },
            lambda p: max(int(p["window"]), int(p["atr_window"]) + 1), volatility,
        ),
        Strategy(
            "breakout", "Donchian channel breakout; exit on the opposite (shorter) channel",
            {"window": Param(20, int, 1, "entry channel, bars"), "exit_window": Param(10, int, 1, "exit channel, bars")},
            lambda p: max(int(p["window"]), int(p["exit_window"])) + 1, breakout,
        ),
    ]
}


def resolve_params(name: str, overrides: dict[str, str]) -> tuple[Strategy, dict]:
    """Look up a strategy and merge ``overrides`` (strings from ``--param k=v``) into its defaults.

    Raises ValueError naming the unknown strategy, unknown parameter, or a bad value.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy: unknown strategy {name!r} (one of {', '.join(STRATEGIES)})")
    strat = STRATEGIES[name]
    params = {k: p.default for k, p in strat.params.items()}
    for key, text in overrides.items():
        if key not in strat.params:
            raise ValueError(f"--param: {name} has no parameter {key!r} (has {', '.join(strat.params)})")
        spec = strat.params[key]
        try:
            value = float(text)
            if not math.isfinite(value) or abs(value) > 1e9:
                raise ValueError(f"--param {key}={text}: must be a finite number below 1e9")
            if spec.kind is int:
                if value != int(value):
                    raise ValueError(f"--param {key}={text}: expected an integer")
                value = int(value)
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith("--param") else f"--param {key}={text}: expected a number") from None
        if value < spec.minimum:
            raise ValueError(f"--param {key}={text}: must be >= {spec.minimum:g}")
        params[key] = value
    if name == "simple_ma" and params["fast"] >= params["slow"]:
        raise ValueError(f"--param: simple_ma needs fast < slow (got fast={params['fast']}, slow={params['slow']})")
    return strat, params
