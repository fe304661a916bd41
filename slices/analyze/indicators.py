"""Technical indicators with TA-Lib's definitions (warm-up, seeding and smoothing included).

Every function takes float64 numpy arrays of shape ``(T,)`` (one value per bar, oldest first) or
``(N, T)`` (N symbols, one per row, each from its own first bar, NaN after its last) and returns
arrays of the same shape with NaN during warm-up, working along the last axis. The first valid
index equals TA-Lib's lookback (``TA_<NAME>_Lookback``) for the TA-Lib indicators. Rolling
windows are summed window by window (``numpy.lib.stride_tricks`` or in-order sums); recursive
smoothers (EMA, Wilder) use :func:`linear_recursion` (a first-order IIR filter in blocks).
:func:`compute_many` computes many symbols at once, each exactly as it would be alone.

Sources: TA-Lib 0.4/0.6 C sources (ta_func/ta_*.c, https://ta-lib.org) for SMA, EMA, WMA, RSI,
MACD, BBANDS, ATR/TRANGE, ADX/PLUS_DI/MINUS_DI, STOCH, WILLR, CCI, ROCP, OBV, MFI; J. Welles
Wilder, *New Concepts in Technical Trading Systems* (1978) for RSI/ATR/ADX; Donchian channel
(Richard Donchian); Keltner channel in its modern form (EMA +- k ATR, L. Raschke); VWAP as the
volume-weighted typical price (cumulative within each session).

Units: moving averages, bands, channels, ATR and VWAP are in price units; RSI, ADX, +DI, -DI,
stochastic, MFI are index points in [0, 100]; Williams %R is in [-100, 0]; CCI is unbounded
points; ``roc`` is a fraction (TA-Lib ROCP; TA-Lib's ROC is 100 times it); OBV is in volume units.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from slices.analyze.errors import AnalyzeError, warn

# --------------------------------------------------------------------------------------------
# building blocks
#
# Every function below takes arrays of shape (T,) (one series) or (N, T) (N series, one per row,
# each left-aligned: its first bar in column 0, NaN after its last bar) and works along the last
# axis. Every operation is either elementwise or a reduction over the contiguous last axis of one
# row, so a row's values are bit-for-bit the same whether it is computed alone or in a batch of any
# size (tests/analyze/test_analyze_indicators.py::test_batch_equals_each_symbol_alone).


def _nan(shape) -> np.ndarray:
    return np.full(shape, np.nan)


def rolling_sum(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Sum of ``x[t-n+1..t]``, valid from index ``start + n - 1`` (values before ``start`` ignored).

    Each window is summed on its own (``x[t-n+1] + ... + x[t]`` in that order), so the rounding
    error stays that of an ``n``-term sum: a running cumulative sum would carry the error of the
    whole series (about 1e-10 on 30,000 one-minute bars, enough to turn a zero stochastic into a
    negative number), and a NaN (e.g. a missing volume) would spoil every later value.
    """
    out = _nan(x.shape)
    m = x.shape[-1] - start - n + 1
    if m <= 0:
        return out
    acc = x[..., start : start + m].copy()
    for i in range(1, n):
        acc += x[..., start + i : start + i + m]
    out[..., start + n - 1 :] = acc
    return out


def sma(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Simple moving average of ``n`` values; TA-Lib SMA (lookback ``n-1``).

    Each window is averaged on its own (``sliding_window_view(...).mean``), exactly as the
    backtest slice's SMA, so the strategies' targets here are bit-identical to the backtest's.
    """
    out = _nan(x.shape)
    if x.shape[-1] - start >= n:
        out[..., start + n - 1 :] = _windows(x, n, start).mean(axis=-1)
    return out


def _windows(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    return sliding_window_view(x[..., start:], n, axis=-1)


def _rolling_extreme(x: np.ndarray, n: int, start: int, pick) -> np.ndarray:
    """``pick`` (``np.maximum``/``np.minimum``) over ``x[t-n+1..t]`` by doubling: windows of 1, 2,
    4, ... values, then two overlapping ones of the largest width cover ``n``. Exact (a maximum
    has no rounding) and NaN-propagating like ``ndarray.max``, in log2(n) array operations."""
    out = _nan(x.shape)
    v = x[..., start:]
    m = v.shape[-1] - n + 1
    if m <= 0:
        return out
    r, w = v, 1  # r[..., j] = pick over v[j .. j+w-1]
    while 2 * w <= n:
        r = pick(r[..., : r.shape[-1] - w], r[..., w:])
        w *= 2
    out[..., start + n - 1 :] = pick(r[..., :m], r[..., n - w : n - w + m])
    return out


def rolling_max(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Highest of ``x[t-n+1..t]`` (TA-Lib MAX), valid from ``start + n - 1``."""
    return _rolling_extreme(x, n, start, np.maximum)


def rolling_min(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Lowest of ``x[t-n+1..t]`` (TA-Lib MIN), valid from ``start + n - 1``."""
    return _rolling_extreme(x, n, start, np.minimum)


def rolling_std(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Population standard deviation (ddof=0) of ``x[t-n+1..t]`` (TA-Lib STDDEV with nbdev 1), two-pass."""
    out = _nan(x.shape)
    if x.shape[-1] - start >= n:
        rows, flat = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
        step = max(1, 2**18 // (x.shape[-1] * n))  # rows at a time: numpy's deviations temporary stays small
        for r in range(0, rows.shape[0], step):
            flat[r : r + step, start + n - 1 :] = _windows(rows[r : r + step], n, start).std(axis=-1)
    return out


def linear_recursion(x: np.ndarray, b: float, a: float, y0, block: int = 64) -> np.ndarray:
    """First-order recursion ``y[t] = b x[t] + a y[t-1]`` along the last axis with ``y[-1] = y0``
    (a number, or one per row), ``0 <= a <= 1`` (the filter ``scipy.signal.lfilter([b], [1, -a],
    x, zi=[a y0])``), in pure numpy.

    The series is cut into blocks of ``block`` bars at fixed positions. Within each block the
    recursion runs bar by bar from 0 for all blocks (and rows) at once (``block`` steps of array
    operations); the value before each block then follows block by block, and each block adds it
    times ``a^(i+1)``. Only elementwise operations, so every row is computed exactly as it would
    be alone, and no factor ever grows (agrees with the per-bar recursion to about 1e-15
    relative). A NaN input makes every later output NaN, as the recursive filter does.
    (Pure numpy instead of scipy: importing ``scipy.signal`` costs about as much as computing the
    standard indicator set for 482 symbols.)
    """
    n = x.shape[-1]
    if n == 0:
        return np.empty(x.shape)
    rows = x.reshape(-1, n)
    blocks = -(-n // block)
    padded = np.zeros((rows.shape[0], blocks * block))
    padded[:, :n] = rows
    steps = np.ascontiguousarray(padded.reshape(rows.shape[0], blocks, block).transpose(2, 0, 1))
    acc = b * steps[0]
    steps[0] = acc
    for i in range(1, block):  # each block started from 0, bar by bar
        acc = b * steps[i] + a * acc
        steps[i] = acc
    powers = a ** np.arange(1, block + 1, dtype=float)
    before = np.empty((rows.shape[0], blocks))
    prev = np.broadcast_to(np.asarray(y0, dtype=float).reshape(-1), (rows.shape[0],))
    for k in range(blocks):  # the value before each block
        before[:, k] = prev
        prev = steps[-1, :, k] + prev * powers[-1]
    steps += before[None] * powers[:, None, None]
    return steps.transpose(1, 2, 0).reshape(rows.shape[0], -1)[:, :n].reshape(x.shape)


def smooth(x: np.ndarray, n: int, k: float, start: int = 0) -> np.ndarray:
    """Exponential smoother ``y[t] = y[t-1] + k (x[t] - y[t-1])`` seeded with the SMA of the first ``n`` values.

    The seed ``y[start+n-1] = mean(x[start:start+n])`` is TA-Lib's default (classic) seeding.
    ``k = 2/(n+1)`` gives TA-Lib EMA; ``k = 1/n`` gives Wilder's smoothing (RSI, ATR, ADX).
    Values before ``start`` are ignored; output is NaN before ``start + n - 1``.
    """
    out = _nan(x.shape)
    first = start + n - 1
    if first >= x.shape[-1]:
        return out
    seed = np.mean(x[..., start : first + 1], axis=-1)
    out[..., first] = seed
    if first + 1 < x.shape[-1]:
        out[..., first + 1 :] = linear_recursion(x[..., first + 1 :], k, 1.0 - k, seed)
    return out


def ema(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Exponential moving average, ``k = 2/(n+1)``, SMA seed; TA-Lib EMA (lookback ``n-1``)."""
    return smooth(x, n, 2.0 / (n + 1), start)


def wma(x: np.ndarray, n: int) -> np.ndarray:
    """Linearly weighted moving average, weights ``1..n`` (newest heaviest); TA-Lib WMA (lookback ``n-1``)."""
    out = _nan(x.shape)
    if x.shape[-1] >= n:
        w = np.arange(1, n + 1, dtype=float)
        out[..., n - 1 :] = _windows(x, n) @ w / w.sum()
    return out


def _diff(x: np.ndarray) -> np.ndarray:
    """``x[t] - x[t-1]`` along the last axis, NaN at index 0."""
    d = _nan(x.shape)
    d[..., 1:] = np.diff(x, axis=-1)
    return d


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """TA-Lib TRANGE: ``max(high-low, |high-close[t-1]|, |low-close[t-1]|)``, NaN at index 0."""
    tr = _nan(close.shape)
    if close.shape[-1] > 1:
        pc, h, lo = close[..., :-1], high[..., 1:], low[..., 1:]
        tr[..., 1:] = np.maximum(h - lo, np.maximum(np.abs(h - pc), np.abs(lo - pc)))
    return tr


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder RSI; TA-Lib RSI (lookback ``n``).

    ``avg_gain``/``avg_loss`` are Wilder-smoothed (k = 1/n) close-to-close gains and losses,
    seeded with their mean over the first ``n`` changes; ``RSI = 100 avg_gain / (avg_gain +
    avg_loss)``, 0 when both are 0 (TA-Lib). Points in [0, 100].
    """
    d = _diff(close)
    gain = smooth(np.where(d > 0, d, 0.0), n, 1.0 / n, start=1)
    loss = smooth(np.where(d < 0, -d, 0.0), n, 1.0 / n, start=1)
    tot = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, 100.0 * gain / tot, np.where(np.isnan(tot), np.nan, 0.0))


def macd(close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib MACD: ``line = EMA_fast - EMA_slow``, ``signal = EMA_signal(line)``, ``hist = line - signal``.

    As in TA-Lib, both EMAs start at index ``slow-1`` (the fast EMA is seeded with the mean of
    ``close[slow-fast .. slow-1]``, not of the first ``fast`` closes) and all three outputs are
    NaN before ``slow + signal - 2`` (TA-Lib's lookback).
    """
    line = ema(close, fast, start=slow - fast) - ema(close, slow)
    sig = ema(line, signal, start=slow - 1)
    line[..., : min(slow + signal - 2, line.shape[-1])] = np.nan
    return line, sig, line - sig


def bbands(close: np.ndarray, n: int, k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib BBANDS with SMA: ``middle = SMA_n``, ``upper/lower = middle +- k * std_n`` (population std)."""
    mid = sma(close, n)
    sd = rolling_std(close, n)
    return mid + k * sd, mid, mid - k * sd


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Wilder ATR; TA-Lib ATR (lookback ``n``): TRANGE smoothed with k = 1/n, seeded with the mean of TR[1..n]."""
    return smooth(true_range(high, low, close), n, 1.0 / n, start=1)


def _wilder_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder running sum used by TA-Lib's DI/ADX: ``S[n-1] = sum(x[1..n-1])``, ``S[t] = S[t-1] (1 - 1/n) + x[t]``."""
    out = _nan(x.shape)
    if x.shape[-1] <= n:
        return out
    seed = np.sum(x[..., 1:n], axis=-1)
    out[..., n:] = linear_recursion(x[..., n:], 1.0, 1.0 - 1.0 / n, seed)
    return out


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder ADX, +DI and -DI; TA-Lib ADX (lookback ``2n-1``), PLUS_DI / MINUS_DI (lookback ``n``).

    ``+DM = up`` if ``up > down`` and ``up > 0`` else 0, ``-DM = down`` if ``down > up`` and
    ``down > 0`` else 0 (``up = high - high[t-1]``, ``down = low[t-1] - low``); ``+DI = 100
    S(+DM)/S(TR)`` with Wilder running sums S; ``DX = 100 |+DI - -DI| / (+DI + -DI)``; ADX is
    the mean of the first ``n`` DX values, then Wilder-smoothed (k = 1/n). Returns
    ``(adx, plus_di, minus_di)`` in points. Where +DI + -DI = 0, DX is taken as 0 (TA-Lib keeps
    the previous ADX there; this only differs on perfectly flat data).
    """
    up = _diff(high)
    dn = -_diff(low)
    pdm = np.where((up > 0) & (up > dn), up, 0.0)
    mdm = np.where((dn > 0) & (dn > up), dn, 0.0)
    tr = true_range(high, low, close)
    s_tr = _wilder_sum(tr, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi = np.where(s_tr > 0, 100.0 * _wilder_sum(pdm, n) / s_tr, np.where(np.isnan(s_tr), np.nan, 0.0))
        mdi = np.where(s_tr > 0, 100.0 * _wilder_sum(mdm, n) / s_tr, np.where(np.isnan(s_tr), np.nan, 0.0))
        tot = pdi + mdi
        dx = np.where(tot > 0, 100.0 * np.abs(pdi - mdi) / tot, np.where(np.isnan(tot), np.nan, 0.0))
    return smooth(dx, n, 1.0 / n, start=n), pdi, mdi


def stoch(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int, slowk: int, slowd: int
) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib STOCH with SMA smoothing: ``fast %K = 100 (close - LL_fastk) / (HH_fastk - LL_fastk)``
    (0 when HH = LL), ``%K = SMA_slowk(fast %K)``, ``%D = SMA_slowd(%K)``; both NaN before TA-Lib's
    lookback ``fastk + slowk + slowd - 3``. Returns ``(k, d)`` in points [0, 100]."""
    hh = rolling_max(high, fastk)
    ll = rolling_min(low, fastk)
    rng = hh - ll
    with np.errstate(invalid="ignore", divide="ignore"):
        fk = np.where(rng > 0, 100.0 * (close - ll) / rng, np.where(np.isnan(rng), np.nan, 0.0))
    k = sma(fk, slowk, start=fastk - 1)
    d = sma(k, slowd, start=fastk + slowk - 2)
    k[..., : min(fastk + slowk + slowd - 3, k.shape[-1])] = np.nan
    return k, d


def willr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib WILLR: ``-100 (HH_n - close) / (HH_n - LL_n)``, 0 when HH = LL; points in [-100, 0]."""
    hh = rolling_max(high, n)
    ll = rolling_min(low, n)
    rng = hh - ll
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rng > 0, -100.0 * (hh - close) / rng, np.where(np.isnan(rng), np.nan, 0.0))


def cci(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib CCI (Lambert 1980): ``(TP - SMA_n(TP)) / (0.015 * MD)``, ``TP = (h+l+c)/3``,
    ``MD`` the mean absolute deviation of TP from its current SMA over the window (summed oldest
    first, as TA-Lib); 0 when MD = 0 or TP = SMA (TA-Lib). A deviation within 8 ulp of TP counts
    as 0: otherwise a window of typical prices equal up to rounding gives noise such as +-133
    (TA-Lib returns 0 there)."""
    tp = (high + low + close) / 3.0
    out = _nan(tp.shape)
    m = tp.shape[-1] - n + 1
    if m > 0:
        mean = sma(tp, n)[..., n - 1 :]
        md = np.abs(tp[..., :m] - mean)
        for i in range(1, n):
            md += np.abs(tp[..., i : i + m] - mean)
        md /= n
        dev = tp[..., n - 1 :] - mean
        tiny = 8 * np.finfo(float).eps * np.abs(tp[..., n - 1 :])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., n - 1 :] = np.where((md > tiny) & (np.abs(dev) > tiny), dev / (0.015 * md), 0.0)
    return out


def roc(close: np.ndarray, n: int) -> np.ndarray:
    """Rate of change as a fraction: ``close[t] / close[t-n] - 1`` (TA-Lib ROCP, lookback ``n``)."""
    out = _nan(close.shape)
    if close.shape[-1] > n:
        out[..., n:] = (close[..., n:] - close[..., :-n]) / close[..., :-n]
    return out


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """TA-Lib OBV: starts at ``volume[0]``; adds the volume on an up close, subtracts it on a down close."""
    step = np.sign(_diff(close)) * volume
    step[..., 0] = volume[..., 0]
    return np.cumsum(step, axis=-1)


def mfi(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib MFI (lookback ``n``): money flow ``TP * volume`` counted positive when TP rises, negative
    when it falls, summed over the last ``n`` bars; ``MFI = 100 pos / (pos + neg)``, 0 when
    ``pos + neg < 1`` (TA-Lib). A TP change within 8 ulp of TP counts as no change (floating-point
    ties). Points in [0, 100]."""
    tp = (high + low + close) / 3.0
    flow = tp * volume
    d = _diff(tp)
    d[..., 0] = 0.0
    # A change within floating-point rounding of TP counts as no change, so the result does not
    # depend on how (h+l+c)/3 is rounded (TA-Lib builds differ on such 1-ulp ties).
    d[np.abs(d) <= 8 * np.finfo(float).eps * tp] = 0.0
    pos = rolling_sum(np.where(d > 0, flow, 0.0), n, start=1)
    neg = rolling_sum(np.where(d < 0, flow, 0.0), n, start=1)
    tot = pos + neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot >= 1.0, 100.0 * pos / tot, np.where(np.isnan(tot), np.nan, 0.0))


def vwap(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, session: np.ndarray | None, n: int | None
) -> np.ndarray:
    """Volume-weighted average of the typical price ``TP = (h+l+c)/3``.

    With ``n``: rolling over the last ``n`` bars. Otherwise cumulative within each session
    (``session`` holds one integer label per bar, e.g. the bar's calendar date), resetting at
    the first bar of each session. Where the volume sum is 0, the TP itself is returned.
    Not in TA-Lib; the standard definition (e.g. Berkowitz, Logue & Noser, 1988).
    """
    tp = (high + low + close) / 3.0
    pv = tp * volume
    if n is not None:
        num = rolling_sum(pv, n)
        den = rolling_sum(volume, n)
    else:
        # running sums within each session: cumulative sums minus their value before the session's
        # first bar; a NaN (missing volume, which the loader warns about) spoils only the rest of its session
        bad = np.isnan(pv)
        sums = [np.cumsum(v, axis=-1) for v in (np.where(bad, 0.0, pv), np.where(bad, 0.0, volume), bad.astype(float))]
        t = tp.shape[-1]
        if session is not None and t > 1:
            first = np.zeros(tp.shape, dtype=np.int64)  # 1 + index of the bar before each bar's session start
            first[..., 1:] = np.where(session[..., 1:] != session[..., :-1], np.arange(1, t), 0)
            first = np.maximum.accumulate(first, axis=-1)
            sums = [
                s - np.where(first > 0, np.take_along_axis(s, np.maximum(first - 1, 0), axis=-1), 0.0) for s in sums
            ]
        num, den = sums[0], np.where(sums[2] > 0, np.nan, sums[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.where(np.isnan(den), np.nan, tp))


def donchian(high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Donchian channel over the last ``n`` bars including the current one: ``(upper, middle, lower)``
    = ``(HH_n, (HH_n + LL_n)/2, LL_n)``."""
    up = rolling_max(high, n)
    lo = rolling_min(low, n)
    return up, (up + lo) / 2.0, lo


def keltner(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int, k: float, atr_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keltner channel (modern form): ``middle = EMA_n(close)``, ``upper/lower = middle +- k ATR_atr_n``
    (TA-Lib EMA and ATR). Returns ``(upper, middle, lower)``."""
    mid = ema(close, n)
    a = atr(high, low, close, atr_n)
    return mid + k * a, mid, mid - k * a


# --------------------------------------------------------------------------------------------
# registry, specs and naming


@dataclass(frozen=True)
class Param:
    """One indicator parameter: name, type (int or float), default and minimum allowed value."""

    name: str
    kind: type
    default: float
    minimum: float


@dataclass(frozen=True)
class Indicator:
    """Registry entry: parameters, output column stems, lookback (first valid index) and compute function."""

    name: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    lookback: Callable[..., int]
    compute: Callable[..., tuple[np.ndarray, ...]]
    summary: str


def _p(name, kind, default, minimum):
    return Param(name, kind, default, minimum)


REGISTRY: dict[str, Indicator] = {
    ind.name: ind
    for ind in [
        Indicator(
            "sma",
            (_p("window", int, 20, 1),),
            ("sma",),
            lambda w: w - 1,
            lambda b, w: (sma(b["close"], w),),
            "simple moving average of close",
        ),
        Indicator(
            "ema",
            (_p("window", int, 20, 1),),
            ("ema",),
            lambda w: w - 1,
            lambda b, w: (ema(b["close"], w),),
            "exponential moving average of close (SMA seed)",
        ),
        Indicator(
            "wma",
            (_p("window", int, 20, 1),),
            ("wma",),
            lambda w: w - 1,
            lambda b, w: (wma(b["close"], w),),
            "linearly weighted moving average of close",
        ),
        Indicator(
            "rsi",
            (_p("window", int, 14, 2),),
            ("rsi",),
            lambda w: w,
            lambda b, w: (rsi(b["close"], w),),
            "Wilder relative strength index, points 0..100",
        ),
        Indicator(
            "macd",
            (_p("fast", int, 12, 2), _p("slow", int, 26, 2), _p("signal", int, 9, 1)),
            ("macd", "macd_signal", "macd_hist"),
            lambda f, s, g: s + g - 2,
            lambda b, f, s, g: macd(b["close"], f, s, g),
            "MACD line, signal and histogram (price units)",
        ),
        Indicator(
            "bbands",
            (_p("window", int, 20, 2), _p("k", float, 2.0, 0.0)),
            ("bbands_upper", "bbands_middle", "bbands_lower"),
            lambda w, k: w - 1,
            lambda b, w, k: bbands(b["close"], w, k),
            "Bollinger bands: SMA +- k population std",
        ),
        Indicator(
            "atr",
            (_p("window", int, 14, 1),),
            ("atr",),
            lambda w: w,
            lambda b, w: (atr(b["high"], b["low"], b["close"], w),),
            "Wilder average true range (price units)",
        ),
        Indicator(
            "adx",
            (_p("window", int, 14, 2),),
            ("adx", "plus_di", "minus_di"),
            lambda w: 2 * w - 1,
            lambda b, w: adx(b["high"], b["low"], b["close"], w),
            "Wilder ADX with +DI and -DI, points 0..100",
        ),
        Indicator(
            "stoch",
            (_p("fastk", int, 14, 1), _p("slowk", int, 3, 1), _p("slowd", int, 3, 1)),
            ("stoch_k", "stoch_d"),
            lambda a, b_, c: a + b_ + c - 3,
            lambda b, a, k, d: stoch(b["high"], b["low"], b["close"], a, k, d),
            "slow stochastic %K and %D, points 0..100",
        ),
        Indicator(
            "willr",
            (_p("window", int, 14, 2),),
            ("willr",),
            lambda w: w - 1,
            lambda b, w: (willr(b["high"], b["low"], b["close"], w),),
            "Williams %R, points -100..0",
        ),
        Indicator(
            "cci",
            (_p("window", int, 20, 2),),
            ("cci",),
            lambda w: w - 1,
            lambda b, w: (cci(b["high"], b["low"], b["close"], w),),
            "commodity channel index, points",
        ),
        Indicator(
            "roc",
            (_p("window", int, 10, 1),),
            ("roc",),
            lambda w: w,
            lambda b, w: (roc(b["close"], w),),
            "rate of change close/close[t-n]-1, fraction",
        ),
        Indicator(
            "obv",
            (),
            ("obv",),
            lambda: 0,
            lambda b: (obv(b["close"], b["volume"]),),
            "on-balance volume (volume units)",
        ),
        Indicator(
            "mfi",
            (_p("window", int, 14, 2),),
            ("mfi",),
            lambda w: w,
            lambda b, w: (mfi(b["high"], b["low"], b["close"], b["volume"], w),),
            "money flow index, points 0..100",
        ),
        Indicator(
            "vwap",
            (_p("window", int, 0, 0),),
            ("vwap",),
            lambda w: max(w - 1, 0),
            lambda b, w: (vwap(b["high"], b["low"], b["close"], b["volume"], b["session"], w or None),),
            "VWAP of typical price; no parameter: per session; vwap:N rolling N bars",
        ),
        Indicator(
            "donchian",
            (_p("window", int, 20, 1),),
            ("donchian_upper", "donchian_middle", "donchian_lower"),
            lambda w: w - 1,
            lambda b, w: donchian(b["high"], b["low"], w),
            "Donchian channel (highest high, lowest low)",
        ),
        Indicator(
            "keltner",
            (_p("window", int, 20, 1), _p("k", float, 2.0, 0.0), _p("atr_window", int, 10, 1)),
            ("keltner_upper", "keltner_middle", "keltner_lower"),
            lambda w, k, a: max(w - 1, a),
            lambda b, w, k, a: keltner(b["high"], b["low"], b["close"], w, k, a),
            "Keltner channel EMA +- k ATR",
        ),
    ]
}


@dataclass(frozen=True)
class Spec:
    """A parsed ``NAME[:p1[:p2...]]`` request with every parameter filled in."""

    name: str
    params: tuple

    @property
    def indicator(self) -> Indicator:
        return REGISTRY[self.name]

    @property
    def text(self) -> str:
        return ":".join([self.name, *(_fmt(p) for p in self.params)])

    @property
    def columns(self) -> list[str]:
        """Output column names: lower-case output stem and parameters joined by underscores."""
        shown = [p for p in self.params if not (self.name == "vwap" and p == 0)]
        return ["_".join([stem, *(_fmt(p) for p in shown)]) for stem in self.indicator.outputs]

    @property
    def lookback(self) -> int:
        """Index of the first valid value (TA-Lib's lookback)."""
        return self.indicator.lookback(*self.params)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_spec(text: str) -> Spec:
    """Parse ``NAME[:params]`` (e.g. ``sma:50``, ``macd:12:26:9``, ``bbands:20:2``).

    Missing trailing parameters take their defaults. Raises AnalyzeError for an unknown name,
    too many parameters, a non-numeric value, a value under its minimum, or ``macd`` with
    ``fast >= slow``.
    """
    parts = [p.strip() for p in text.strip().split(":")]
    name = parts[0].lower()
    if name not in REGISTRY:
        raise AnalyzeError(f"unknown indicator {parts[0]!r} (known: {', '.join(REGISTRY)})")
    ind = REGISTRY[name]
    given = parts[1:]
    if len(given) > len(ind.params):
        raise AnalyzeError(
            f"indicator {text!r}: {name} takes at most {len(ind.params)} parameter(s) "
            f"({', '.join(p.name for p in ind.params) or 'none'})"
        )
    values = []
    for i, prm in enumerate(ind.params):
        if i < len(given) and given[i] != "":
            try:
                raw = float(given[i])
            except ValueError:
                raise AnalyzeError(
                    f"indicator {text!r}: parameter {prm.name} must be a number, got {given[i]!r}"
                ) from None
            if prm.kind is int and raw != int(raw):
                raise AnalyzeError(f"indicator {text!r}: parameter {prm.name} must be an integer, got {given[i]!r}")
            value = prm.kind(raw)
        else:
            value = prm.kind(prm.default)
        if not np.isfinite(value) or value < prm.minimum:
            raise AnalyzeError(
                f"indicator {text!r}: parameter {prm.name} must be >= {_fmt(prm.kind(prm.minimum))}, got {given[i]!r}"
            )
        values.append(value)
    if name == "macd" and values[0] >= values[1]:
        raise AnalyzeError(f"indicator {text!r}: fast period must be shorter than slow period")
    return Spec(name, tuple(values))


def standard_specs(intraday: bool) -> list[Spec]:
    """The default indicator set (``vwap`` per session on intraday bars, ``vwap:20`` on daily bars)."""
    texts = [
        "sma:20",
        "sma:50",
        "ema:20",
        "wma:20",
        "rsi:14",
        "macd:12:26:9",
        "bbands:20:2",
        "atr:14",
        "adx:14",
        "stoch:14:3:3",
        "willr:14",
        "cci:20",
        "roc:10",
        "obv",
        "mfi:14",
        "vwap" if intraday else "vwap:20",
        "donchian:20",
        "keltner:20:2:10",
    ]
    return [parse_spec(t) for t in texts]


def bar_arrays(bars: pl.DataFrame) -> dict[str, np.ndarray]:
    """Numpy views of the bar columns plus ``session`` (calendar-date ordinal of each bar)."""
    arrays = {c: bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    micros = bars["timestamp"].dt.epoch("us").to_numpy()
    arrays["session"] = micros // 86_400_000_000  # UTC calendar day number
    return arrays


def compute_many(
    bars: dict[str, pl.DataFrame], specs: list[Spec], strict: bool = True, skipped: list | None = None
) -> dict[str, np.ndarray]:
    """The indicator outputs of ``specs`` for several symbols at once, as ``{column: float64 array}``
    in spec order, each array the symbols' values one after the other (in ``bars`` order, each
    symbol's T_i bars in order: the rows of the long format).

    The symbols' bars are laid out as an (N, max T_i) matrix, one row per symbol from its own
    first bar (NaN after its last), and every indicator runs on all rows at once; a row's values
    are exactly those of the symbol computed alone (every operation is elementwise or within one
    row). With ``strict``, a symbol with no more bars than a spec's lookback raises AnalyzeError
    (the first such symbol, in order, naming the bar count); otherwise its columns are NaN and it
    is reported: appended to ``skipped`` as ``(symbol, spec text)`` when a list is given, else as
    one warning per symbol.
    """
    symbols = list(bars)
    lengths = np.array([bars[s].height for s in symbols], dtype=np.int64)
    short = {spec.text: lengths <= spec.lookback for spec in specs}
    missed: dict[str, list[str]] = {}
    for i, sym in enumerate(symbols):
        for spec in specs:
            if short[spec.text][i]:
                if strict:
                    raise AnalyzeError(
                        f"{sym}: {lengths[i]:,} bars, indicator {spec.text} needs at least {spec.lookback + 1:,}"
                    )
                missed.setdefault(sym, []).append(spec.text)
    for sym, texts in missed.items():
        if skipped is not None:
            skipped.extend((sym, text) for text in texts)
        else:
            warn(f"{sym}: only {bars[sym].height:,} bars; {', '.join(texts)} left empty (too few bars)")
    total = int(lengths.sum())
    if not symbols or total == 0:
        return {col: np.empty(0) for spec in specs for col in spec.columns}
    width = int(lengths.max())
    # the cells of the (N, width) matrix holding bars: row-major, they are the long-format rows
    held = np.arange(width) < lengths[:, None]
    columns = bar_arrays(pl.concat([bars[s] for s in symbols], how="vertical_relaxed", rechunk=True))
    arrays = {}
    for key, values in columns.items():
        matrix = np.full(held.shape, np.nan) if key != "session" else np.zeros(held.shape, np.int64)
        matrix[held] = values
        arrays[key] = matrix
    new: dict[str, np.ndarray] = {}
    for spec in specs:
        rows_short = short[spec.text]
        if rows_short.all():
            outputs = [_nan((len(symbols), width)) for _ in spec.columns]
        else:
            outputs = spec.indicator.compute(arrays, *spec.params)
        for col, values in zip(spec.columns, outputs):
            values[rows_short] = np.nan
            new[col] = values[held]
    return new


def compute_arrays(
    bars: pl.DataFrame, specs: list[Spec], symbol: str = "", strict: bool = True, skipped: list | None = None
) -> dict[str, np.ndarray]:
    """The indicator outputs of ``specs`` on one symbol's ``bars`` as ``{column: float64 array (T,)}``
    in spec order (:func:`compute_many` with one symbol; see :func:`compute` for ``strict`` and
    ``skipped``)."""
    return compute_many({symbol: bars}, specs, strict, skipped)


def compute(
    bars: pl.DataFrame, specs: list[Spec], symbol: str = "", strict: bool = True, skipped: list | None = None
) -> pl.DataFrame:
    """Return ``bars`` with one Float64 column per indicator output (names from :attr:`Spec.columns`).

    ``bars`` has the bar-store schema (``timestamp open high low close volume``), T rows.
    With ``strict``, a spec whose lookback needs more bars than available raises AnalyzeError
    (naming the symbol and the bar count); otherwise its columns are all NaN and it is reported:
    appended to ``skipped`` as ``(symbol, spec text)`` when a list is given, else as a warning.
    """
    new = compute_arrays(bars, specs, symbol, strict, skipped)
    return bars.hstack([pl.Series(k, v, dtype=pl.Float64) for k, v in new.items()])
