"""Strategies of the optimize slice (its own copy of the backtest slice's) and the indicators they need.

A strategy maps one symbol's bars to a **target position** per bar, computed on that bar's
close: +1 long, -1 short, 0 flat (int8 array, same length as the bars). The engine trades only
where the target changes, filling at the next bar's open; so a signal on bar t can never be
filled before t+1. Every function here is causal: its value at bar t uses bars 0..t only (the
no-lookahead property is tested for each strategy).

All indicators are vectorised numpy (no per-bar Python loop). Values are NaN during warm-up,
and a strategy is flat while its indicators are warming up.
"""
from __future__ import annotations

import functools
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# ----------------------------------------------------------------------------- indicator cache
_CACHE: dict | None = None


@contextmanager
def indicator_cache(store: dict | None = None) -> Iterator[dict]:
    """Within this block every memoised indicator (:func:`sma`, :func:`rolling_std`,
    :func:`rolling_max`, :func:`rolling_min`, :func:`atr`) is computed once per distinct input
    arrays and window: a sweep over 75 (fast, slow) pairs computes 5 + 15 SMAs, not 150. The key
    holds the identity of the input arrays and the cache keeps them alive, so an identity is never
    reused for other data; cached outputs are read-only. ``store``: a dict to keep the entries in
    (reused across blocks, e.g. every batch of one sweep); a new one by default. Outside the block
    nothing is cached."""
    global _CACHE
    old, _CACHE = _CACHE, ({} if store is None else store)
    try:
        yield _CACHE
    finally:
        _CACHE = old


def _memo(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        if _CACHE is None:
            return fn(*args)
        key = (fn.__name__, *(("id", id(a)) if isinstance(a, np.ndarray) else a for a in args))
        hit = _CACHE.get(key)
        if hit is None:
            out = fn(*args)
            out.flags.writeable = False
            hit = _CACHE[key] = (args, out)
        return hit[1]
    return wrapper


# ----------------------------------------------------------------------------- indicators
@_memo
def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values (inclusive of t); NaN for t < n-1.

    Each window is averaged on its own (no running sum), so flat windows and ties are exact and
    rounding does not accumulate over long series.
    """
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).mean(axis=1)
    return out


@_memo
def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation (ddof=0) of the last ``n`` values; NaN for t < n-1.

    Two-pass per window (deviations from the window mean), so a flat window is exactly 0.
    """
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).std(axis=1)
    return out


@_memo
def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Maximum of the last ``n`` values (inclusive of t); NaN for t < n-1."""
    out = np.full(x.shape, np.nan)
    if n <= x.size:
        out[n - 1 :] = sliding_window_view(x, n).max(axis=1)
    return out


@_memo
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


@_memo
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


# ----------------------------------------------------------------------------- strategy objects
PARAM_KINDS = (bool, int, float, str)  # parameter types; bool first, as True is an int too


class StrategyError(ValueError):
    """A bad strategy, parameter or strategy output: a one-line message naming the strategy (its
    built-in name, file or module), the symbol and the bar where it applies. When the strategy's
    own code raised, the original exception is the ``__cause__`` (shown with ``--debug``)."""


@dataclass(frozen=True)
class Param:
    """A strategy parameter: default value, type (``bool int float str``: the default's type in a
    strategy file), lower bound (built-ins only, checked by :meth:`Strategy.check`), description."""

    default: object
    kind: type
    minimum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class Strategy:
    """A strategy, built-in or loaded from a file or module (SLICES.md contract 5); both have the
    same interface.

    ``name``: NAME (file stem or module name by default); ``label``: how messages name it (the
    built-in name, or the file/module exactly as given to ``--strategy``); ``description``: one
    line; ``params``: name -> :class:`Param`; ``lookback(params) -> int``: bars needed before the
    first signal; ``validate(params)``: raises ValueError with a one-line message, or None;
    exactly one of ``targets(bars, params) -> (T,)`` in {-1, 0, 1} (per-symbol signal form) and
    ``weights(panel, params) -> (T, N)`` fractions of equity (portfolio form). Built-ins also keep
    their raw signal function ``fn(open, high, low, close, params) -> int8 (T,)``.
    """

    name: str
    description: str
    params: dict[str, Param]
    lookback: Callable[[dict], int]
    fn: Callable[..., np.ndarray] | None = None
    targets: Callable[[dict, dict], object] | None = None
    weights: Callable[[dict, dict], object] | None = None
    validate: Callable[[dict], None] | None = None
    label: str = ""
    source: str = "built-in"

    @property
    def form(self) -> str:
        """``targets`` (per-symbol signal) or ``weights`` (portfolio weights)."""
        return "weights" if self.weights is not None else "targets"

    @property
    def PARAMS(self) -> dict:  # noqa: N802 - the name a strategy file uses
        """name -> default, as a strategy file declares them."""
        return {k: p.default for k, p in self.params.items()}

    def check(self, params: dict) -> None:
        """Apply the lower bounds, then ``validate``. Raises StrategyError ``<label>: <message>``."""
        for k, spec in self.params.items():
            if spec.minimum is not None and params[k] < spec.minimum:
                raise StrategyError(f"{self.label}: --param {k}={params[k]}: must be >= {spec.minimum:g}")
        if self.validate is None:
            return
        try:
            self.validate(params)
        except ValueError as exc:
            raise StrategyError(f"{self.label}: {one_line(exc)}") from exc
        except Exception as exc:
            raise StrategyError(f"{self.label}: validate: {type(exc).__name__}: {one_line(exc)}") from exc

    def needed_bars(self, params: dict) -> int:
        """``lookback(params)`` checked to be an integer >= 0 (StrategyError otherwise)."""
        try:
            n = self.lookback(params)
        except Exception as exc:
            raise StrategyError(f"{self.label}: lookback: {type(exc).__name__}: {one_line(exc)}") from exc
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise StrategyError(f"{self.label}: lookback(params) must return an integer >= 0 (got {n!r})")
        return int(n)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def fmt_bar_time(t: np.datetime64) -> str:
    """``2020-01-10`` for a bar at 00:00 UTC, else ``2020-01-10T14:30:00Z`` (command-line style)."""
    s = str(np.datetime64(t, "s"))
    return s[:10] if s.endswith("T00:00:00") else s + "Z"


def parse_param(label: str, key: str, text: str, spec: Param):
    """``--param key=text`` parsed to the parameter's type (SLICES.md contract 5): int accepts
    integer text only (``5``, not ``5.5``), float any finite number, bool
    ``true/false/1/0/yes/no`` (any case), str the text. Raises StrategyError naming both."""
    t = text.strip()
    where = f"--param {key}={text}"
    if spec.kind is bool:
        low = t.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise StrategyError(f"{where}: expected true/false/1/0/yes/no ({label}: {key} is a bool)")
    if spec.kind is int:
        if not re.fullmatch(r"[+-]?[0-9]+", t):
            raise StrategyError(f"{where}: expected an integer ({label}: {key} is an int)")
        return int(t)
    if spec.kind is float:
        try:
            value = float(t)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise StrategyError(f"{where}: expected a finite number ({label}: {key} is a float)")
        return value
    return text


def resolve_params(name: str, overrides: dict[str, str]) -> tuple[Strategy, dict]:
    """Resolve ``--strategy`` (a built-in name, a ``.py`` file, ``package.module`` or
    ``package.module:attribute``; SLICES.md contract 5) and merge ``overrides`` (the texts of
    ``--param k=v``) into its defaults, parsed to each parameter's type; then check them.

    Returns (strategy, params). Raises StrategyError (a ValueError) with a one-line message naming
    the strategy: unknown strategy, bad file, undeclared parameter, wrong type, failed validate.
    """
    strat = STRATEGIES.get(name)
    if strat is None:
        from .strategy_files import load_strategy  # files and modules only: keeps start-up light

        strat = load_strategy(name)
    params = strat.PARAMS
    for key, text in overrides.items():
        if key not in strat.params:
            has = f"has {', '.join(strat.params)}" if strat.params else "it takes no parameters"
            raise StrategyError(f"--param {key}={text}: {strat.label} has no parameter {key!r} ({has})")
        params[key] = parse_param(strat.label, key, text, strat.params[key])
    strat.check(params)
    return strat, params


def call_targets(strat: Strategy, bars: dict, params: dict) -> np.ndarray:
    """Run ``strat.targets`` on one symbol's ``bars`` (SLICES.md contract 5: read-only 1-D arrays
    ``open high low close volume`` float64, ``timestamp`` datetime64[us], and ``symbol``) and
    check the result: any bool, integer or float array (or list) of length T with values in
    {-1, 0, 1}. Returns int8 (T,). Raises StrategyError naming the strategy, the symbol and the
    first bad bar; an exception inside the strategy becomes
    ``<label>: <SYMBOL>: <ExceptionType>: <message>`` with the exception as ``__cause__``."""
    sym, T = bars["symbol"], bars["close"].size
    where = f"{strat.label}: {sym}"
    out = _call(strat.targets, bars, params, where)
    if isinstance(out, np.ndarray) and out.dtype == np.int8 and out.shape == (T,):
        a = out  # the built-ins' own dtype: only the values need checking
    else:
        a = _numeric(out, where, "targets", f"({T},), one value per bar")
        if a.shape != (T,):
            raise StrategyError(f"{where}: targets returned shape {a.shape}; expected ({T},), one value per bar")
    bad = (a != 0) & (a != 1) & (a != -1)
    if bad.any():
        i = int(np.argmax(bad))
        v = a[i]
        what = "NaN" if a.dtype.kind == "f" and np.isnan(v) else f"value {v.item()!r}"
        raise StrategyError(f"{where}: targets returned {what} at bar {i} ({fmt_bar_time(bars['timestamp'][i])}); "
                            "targets must be -1, 0 or 1")
    return a.astype(np.int8, copy=False)


def call_weights(strat: Strategy, panel: dict, params: dict) -> np.ndarray:
    """Run ``strat.weights`` on the ``panel`` (SLICES.md contract 5: read-only (T, N) arrays
    ``open high low close volume``, ``timestamp`` (T,), ``symbols`` N names) and check the
    result: a bool, integer or float (T, N) array; NaN means "no change", infinities are an
    error. Returns a float64 copy. Raises StrategyError naming the strategy, the bar and the symbol."""
    T, N = panel["close"].shape
    where = f"{strat.label}: weights"
    a = _numeric(_call(strat.weights, panel, params, where), where, "weights", f"({T}, {N}), bars x symbols")
    if a.shape != (T, N):
        raise StrategyError(f"{where}: returned shape {a.shape}; expected ({T}, {N}), bars x symbols")
    a = a.astype(np.float64)  # always a copy
    inf = np.isinf(a)
    if inf.any():
        t, j = np.argwhere(inf)[0]
        raise StrategyError(f"{where}: infinite weight for {panel['symbols'][j]} at {fmt_bar_time(panel['timestamp'][t])}")
    return a


def _call(fn, data: dict, params: dict, where: str):
    try:
        return fn(data, params)
    except Exception as exc:
        hint = ""
        if isinstance(exc, ValueError) and "read-only" in str(exc):
            hint = " (the bars arrays are read-only: work on a copy, e.g. close = bars['close'].copy())"
        raise StrategyError(f"{where}: {type(exc).__name__}: {one_line(exc)}{hint}") from exc


def _numeric(out, where: str, what: str, expected: str) -> np.ndarray:
    """``out`` as an array of bools, integers or floats, else StrategyError naming what came back."""
    try:
        a = np.asarray(out)
    except Exception:  # ragged lists and the like
        raise StrategyError(f"{where}: {what} returned {type(out).__name__} that is not an array; expected {expected}") from None
    if a.dtype.kind not in "biuf":
        got = "None" if out is None else f"dtype {a.dtype}" if isinstance(out, np.ndarray) or a.dtype.kind != "O" else type(out).__name__
        if a.dtype.kind == "O" and out is not None and not isinstance(out, np.ndarray):
            got = f"{type(out).__name__} of non-numbers"
        raise StrategyError(f"{where}: {what} returned {got}; expected numbers, shape {expected}")
    return a


# ----------------------------------------------------------------------------- built-in strategies
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


def _builtin(name, description, params, lookback, fn, validate=None) -> Strategy:
    """A built-in as a strategy object: ``targets(bars, params)`` calls ``fn`` on the bars' prices."""
    def targets(bars, p):
        return fn(bars["open"], bars["high"], bars["low"], bars["close"], p)
    return Strategy(name, description, params, lookback, fn=fn, targets=targets, validate=validate, label=name)


def _validate_simple_ma(p: dict) -> None:
    if p["fast"] >= p["slow"]:
        raise ValueError(f"needs fast < slow (got fast={p['fast']}, slow={p['slow']})")


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        _builtin(
            "simple_ma", "Fast/slow simple-moving-average crossover; trades only on a cross",
            {"fast": Param(10, int, 1, "fast SMA length, bars"), "slow": Param(30, int, 2, "slow SMA length, bars")},
            lambda p: int(p["slow"]) + 1, simple_ma, _validate_simple_ma,
        ),
        _builtin(
            "momentum", "Rate of change over a lookback against a threshold: long above, short below",
            {"lookback": Param(20, int, 1, "ROC lookback, bars"), "threshold": Param(0.0, float, 0.0, "ROC threshold, fraction")},
            lambda p: int(p["lookback"]) + 1, momentum,
        ),
        _builtin(
            "mean_reversion", "Bollinger z-score: enter beyond the band, exit on reversion toward the mean",
            {
                "window": Param(20, int, 2, "SMA/std window, bars"),
                "z_entry": Param(2.0, float, 0.0, "entry |z|, standard deviations"),
                "z_exit": Param(0.5, float, 0.0, "exit |z|, standard deviations"),
            },
            lambda p: int(p["window"]), mean_reversion,
        ),
        _builtin(
            "volatility", "Keltner/ATR volatility breakout around an SMA; exit back through the SMA",
            {
                "window": Param(20, int, 1, "SMA window, bars"),
                "atr_window": Param(14, int, 1, "ATR window, bars"),
                "k": Param(2.0, float, 0.0, "band width, ATR multiples"),
            },
            lambda p: max(int(p["window"]), int(p["atr_window"]) + 1), volatility,
        ),
        _builtin(
            "breakout", "Donchian channel breakout; exit on the opposite (shorter) channel",
            {"window": Param(20, int, 1, "entry channel, bars"), "exit_window": Param(10, int, 1, "exit channel, bars")},
            lambda p: max(int(p["window"]), int(p["exit_window"])) + 1, breakout,
        ),
    ]
}
