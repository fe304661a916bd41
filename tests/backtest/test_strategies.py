"""Strategies and indicators against naive per-bar reference implementations written from the
documented rules (strategies.py docstrings), on random series."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slices.backtest import strategies as S


@st.composite
def ohlc(draw, n=st.integers(2, 120)):
    size = draw(n)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = 100 * np.exp(np.cumsum(rng.normal(0, draw(st.sampled_from([0.001, 0.02, 0.08])), size)))
    o = c * np.exp(rng.normal(0, 0.01, size))
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.02, size))
    l = np.minimum(o, c) * (1 - rng.uniform(0, 0.02, size))
    return o, h, l, c


def naive_atr(h, l, c, n):
    tr = [math.nan] + [max(h[t] - l[t], abs(h[t] - c[t - 1]), abs(l[t] - c[t - 1])) for t in range(1, len(c))]
    out = [math.nan] * len(c)
    if len(c) > n:
        out[n] = sum(tr[1 : n + 1]) / n
        for t in range(n + 1, len(c)):
            out[t] = (out[t - 1] * (n - 1) + tr[t]) / n
    return np.array(out)


@given(ohlc(), st.integers(1, 30))
def test_rolling_windows_match_naive(bars, n):
    _, h, l, c = bars
    for t in range(len(c)):
        w = c[max(0, t - n + 1) : t + 1]
        if t < n - 1:
            assert math.isnan(S.sma(c, n)[t])
            continue
        assert S.sma(c, n)[t] == pytest.approx(np.mean(w), rel=1e-9)
        assert S.rolling_std(c, n)[t] == pytest.approx(np.std(w), rel=1e-6, abs=1e-9 * c[t])
        assert S.rolling_max(h, n)[t] == max(h[t - n + 1 : t + 1])
        assert S.rolling_min(l, n)[t] == min(l[t - n + 1 : t + 1])


@given(ohlc(), st.integers(1, 30))
def test_atr_matches_wilders_recursion(bars, n):
    _, h, l, c = bars
    np.testing.assert_allclose(S.atr(h, l, c, n), naive_atr(h, l, c, n), rtol=1e-10, equal_nan=True)


def test_ema_recursive_is_precise_over_long_series():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 5, 30_000)
    for alpha in (1 / 14, 2 / 3, 0.999):
        y, ref = S.ema_recursive(x, alpha, 10, 1.0), [1.0]
        for v in x[11:]:
            ref.append((1 - alpha) * ref[-1] + alpha * v)
        np.testing.assert_allclose(y[10:], ref, rtol=1e-10)


def naive_state(long_in, short_in, long_out, short_out):
    state, out = 0, []
    for t in range(len(long_in)):
        if long_in[t]:
            state = 1
        elif short_in[t]:
            state = -1
        elif (state == 1 and long_out[t]) or (state == -1 and short_out[t]):
            state = 0
        out.append(state)
    return np.array(out)


def naive_targets(name, o, h, l, c, p):
    n = len(c)
    if name == "simple_ma":
        f, s = int(p["fast"]), int(p["slow"])
        fast = [np.mean(c[t - f + 1 : t + 1]) if t >= f - 1 else math.nan for t in range(n)]
        slow = [np.mean(c[t - s + 1 : t + 1]) if t >= s - 1 else math.nan for t in range(n)]
        state, out = 0, []
        for t in range(n):
            if t >= 1 and fast[t - 1] < slow[t - 1] and fast[t] > slow[t]:
                state = 1
            elif t >= 1 and fast[t - 1] > slow[t - 1] and fast[t] < slow[t]:
                state = -1
            out.append(state)
        return np.array(out)
    if name == "momentum":
        k, thr = int(p["lookback"]), p["threshold"]
        roc = [c[t] / c[t - k] - 1 if t >= k else math.nan for t in range(n)]
        return np.array([1 if r > thr else -1 if r < -thr else 0 for r in roc])
    if name == "mean_reversion":
        w = int(p["window"])
        z = []
        for t in range(n):
            if t < w - 1:
                z.append(math.nan)
                continue
            win = c[t - w + 1 : t + 1]
            sd = np.std(win)
            z.append((c[t] - np.mean(win)) / sd if sd > 1e-12 * c[t] else 0.0)
        z = np.array(z)
        ok = ~np.isnan(z)
        inside = ok & (np.abs(z) < p["z_exit"])
        return naive_state(ok & (z < -p["z_entry"]), ok & (z > p["z_entry"]), inside, inside)
    if name == "volatility":
        w = int(p["window"])
        mid = np.array([np.mean(c[t - w + 1 : t + 1]) if t >= w - 1 else math.nan for t in range(n)])
        band = p["k"] * naive_atr(h, l, c, int(p["atr_window"]))
        ok = ~np.isnan(mid) & ~np.isnan(band)
        return naive_state(ok & (c > mid + band), ok & (c < mid - band), c < mid, c > mid)
    if name == "breakout":
        w, m = int(p["window"]), int(p["exit_window"])
        up = np.array([max(h[t - w : t]) if t >= w else math.nan for t in range(n)])
        dn = np.array([min(l[t - w : t]) if t >= w else math.nan for t in range(n)])
        xl = np.array([min(l[t - m : t]) if t >= m else math.nan for t in range(n)])
        xs = np.array([max(h[t - m : t]) if t >= m else math.nan for t in range(n)])
        return naive_state(c > up, c < dn, c < xl, c > xs)
    raise AssertionError(name)


PARAMS = {
    "simple_ma": st.fixed_dictionaries({"fast": st.integers(1, 5), "slow": st.integers(6, 15)}),
    "momentum": st.fixed_dictionaries({"lookback": st.integers(1, 10), "threshold": st.sampled_from([0.0, 0.02])}),
    "mean_reversion": st.fixed_dictionaries({"window": st.integers(2, 15), "z_entry": st.sampled_from([0.8, 1.7]),
                                             "z_exit": st.sampled_from([0.0, 0.45])}),
    "volatility": st.fixed_dictionaries({"window": st.integers(1, 15), "atr_window": st.integers(1, 10),
                                         "k": st.sampled_from([0.0, 0.5, 2.0])}),
    "breakout": st.fixed_dictionaries({"window": st.integers(1, 15), "exit_window": st.integers(1, 8)}),
}


@pytest.mark.parametrize("name", sorted(S.STRATEGIES))
@given(bars=ohlc(), data=st.data())
def test_strategy_targets_match_the_documented_rule(name, bars, data):
    p = data.draw(PARAMS[name])
    o, h, l, c = bars
    got = S.STRATEGIES[name].fn(o, h, l, c, p)
    assert got.dtype == np.int8 and got.shape == c.shape
    assert set(np.unique(got)) <= {-1, 0, 1}
    np.testing.assert_array_equal(got, naive_targets(name, o, h, l, c, p))


def test_resolve_params_validates_names_and_values():
    strat, p = S.resolve_params("simple_ma", {"fast": "5", "slow": "20"})
    assert p == {"fast": 5, "slow": 20} and strat.lookback(p) == 21
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        S.resolve_params("nope", {})
    with pytest.raises(ValueError, match="has no parameter 'window'"):
        S.resolve_params("simple_ma", {"window": "3"})
    with pytest.raises(ValueError, match="expected an integer"):
        S.resolve_params("simple_ma", {"fast": "2.5"})
    with pytest.raises(ValueError, match="must be >= 1"):
        S.resolve_params("momentum", {"lookback": "0"})
    with pytest.raises(ValueError, match="fast < slow"):
        S.resolve_params("simple_ma", {"fast": "30", "slow": "10"})
