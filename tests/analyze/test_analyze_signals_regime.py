"""Strategy signal rules (against plain per-bar loops) and regime rules."""

from __future__ import annotations

import numpy as np
import pytest
from analyze_helpers import make_bars, random_walk
from hypothesis import given, settings
from hypothesis import strategies as st

from slices.analyze.errors import AnalyzeError
from slices.analyze.regime import RegimeParams, current_run, expanding_percentile, realised_vol, regimes
from slices.analyze.signals import current_signals, symbol_targets
from slices.analyze.strategies import STRATEGIES, resolve_params


def strategy_positions(name, bars, long_only=False):
    """Targets of a built-in with its default parameters (after the long-only rule when asked)."""
    strat, params = resolve_params(name, {})
    return symbol_targets(strat, params, bars, "X", allow_short=not long_only)


def builtins():
    return [resolve_params(n, {}) for n in STRATEGIES]

# ----------------------------------------------------------------------------------------------
# golden loops: the rules of the brief, one bar at a time


def mean(x):
    return sum(x) / len(x)


def pstd(x):
    m = mean(x)
    return (sum((v - m) ** 2 for v in x) / len(x)) ** 0.5


def loop_simple_ma(c, long_only=False):
    pos, out = 0, []
    for t in range(len(c)):
        if t >= 30:
            f0, s0 = mean(c[t - 10 : t]), mean(c[t - 30 : t])
            f1, s1 = mean(c[t - 9 : t + 1]), mean(c[t - 29 : t + 1])
            if f0 < s0 and f1 > s1:
                pos = 1
            elif f0 > s0 and f1 < s1:
                pos = 0 if long_only else -1
        out.append(pos)
    return out


def loop_momentum(c):
    out = []
    for t in range(len(c)):
        if t < 20:
            out.append(0)
            continue
        r = c[t] / c[t - 20] - 1
        out.append(1 if r > 0 else -1 if r < 0 else 0)
    return out


def loop_mean_reversion(c):
    pos, out = 0, []
    for t in range(len(c)):
        if t >= 19:
            w = c[t - 19 : t + 1]
            sd = pstd(w)
            if sd > 0:
                z = (c[t] - mean(w)) / sd
                if pos == 0:
                    pos = 1 if z < -2 else -1 if z > 2 else 0
                elif pos == 1:
                    pos = -1 if z > 2 else 0 if abs(z) < 0.5 else 1
                else:
                    pos = 1 if z < -2 else 0 if abs(z) < 0.5 else -1
        out.append(pos)
    return out


def loop_atr(h, l, c, n):
    tr = [None] + [max(h[t] - l[t], abs(h[t] - c[t - 1]), abs(l[t] - c[t - 1])) for t in range(1, len(c))]
    out = [None] * len(c)
    a = mean(tr[1 : n + 1])
    out[n] = a
    for t in range(n + 1, len(c)):
        a = (a * (n - 1) + tr[t]) / n
        out[t] = a
    return out


def loop_volatility(h, l, c):
    atr = loop_atr(h, l, c, 14)
    pos, out = 0, []
    for t in range(len(c)):
        if t >= 19 and atr[t] is not None:
            m = mean(c[t - 19 : t + 1])
            up, dn = m + 2 * atr[t], m - 2 * atr[t]
            if pos == 0:
                pos = 1 if c[t] > up else -1 if c[t] < dn else 0
            elif pos == 1:
                pos = -1 if c[t] < dn else 0 if c[t] < m else 1
            else:
                pos = 1 if c[t] > up else 0 if c[t] > m else -1
        out.append(pos)
    return out


def loop_breakout(h, l, c):
    pos, out = 0, []
    for t in range(len(c)):
        if t >= 20:
            hh, ll = max(h[t - 20 : t]), min(l[t - 20 : t])
            xh, xl = max(h[t - 10 : t]), min(l[t - 10 : t])
            if pos == 0:
                pos = 1 if c[t] > hh else -1 if c[t] < ll else 0
            elif pos == 1:
                pos = -1 if c[t] < ll else 0 if c[t] < xl else 1
            else:
                pos = 1 if c[t] > hh else 0 if c[t] > xh else -1
        out.append(pos)
    return out


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 100_000), st.floats(0.005, 0.05))
def test_strategies_match_rules(seed, vol):
    b = make_bars(random_walk(250, seed=seed, vol=vol), seed=seed)
    h, l, c = (b[x].to_list() for x in ("high", "low", "close"))
    assert strategy_positions("simple_ma", b).tolist() == loop_simple_ma(c)
    assert strategy_positions("simple_ma", b, long_only=True).tolist() == loop_simple_ma(c, True)
    assert strategy_positions("momentum", b).tolist() == loop_momentum(c)
    assert strategy_positions("mean_reversion", b).tolist() == loop_mean_reversion(c)
    assert strategy_positions("volatility", b).tolist() == loop_volatility(h, l, c)
    assert strategy_positions("breakout", b).tolist() == loop_breakout(h, l, c)


def test_signals_on_clear_trends():
    up = make_bars(np.linspace(100, 200, 120), spread=0.001)
    sig = current_signals(up, "UP", builtins(), allow_short=True)
    assert sig["momentum"] == "long" and sig["breakout"] == "long"
    down = make_bars(np.linspace(200, 100, 120), spread=0.001)
    sig = current_signals(down, "DOWN", builtins(), allow_short=True)
    assert sig["momentum"] == "short" and sig["breakout"] == "short"
    sig_lo = current_signals(down, "DOWN", builtins(), allow_short=False)
    assert "short" not in sig_lo.values() and sig_lo["momentum"] == "flat"
    few = make_bars(np.linspace(100, 110, 15))
    assert set(current_signals(few, "FEW", builtins(), allow_short=True).values()) == {"n/a"}
    assert list(sig) == list(STRATEGIES)


# ----------------------------------------------------------------------------------------------
# regimes


def test_trend_regimes_follow_documented_rule():
    n = 400
    rising = make_bars(100 * np.exp(np.linspace(0, 0.8, n)), spread=0.001)
    falling = make_bars(100 * np.exp(np.linspace(0, -0.8, n)), spread=0.001)
    flat = make_bars(100 + np.sin(np.arange(n) / 3.0), spread=0.001)
    p = RegimeParams()
    assert regimes(rising, p, 252)["trend"][-1] == "bull"
    assert regimes(falling, p, 252)["trend"][-1] == "bear"
    assert regimes(flat, p, 252)["trend"][-1] == "sideways"
    reg = regimes(rising, p, 252)
    assert reg["trend"][: p.trend_window + p.slope_window - 1].null_count() == p.trend_window + p.slope_window - 1
    # rule check on a random walk, bar by bar
    rw = make_bars(random_walk(500, seed=4, vol=0.015))
    r = regimes(rw, p, 252)
    c, ma, slope, trend = (r[x].to_list() for x in ("close", "ma_200", "ma_slope", "trend"))
    for t in range(219, 500):
        want = (
            "bull" if c[t] > ma[t] and slope[t] > 0.01 else "bear" if c[t] < ma[t] and slope[t] < -0.01 else "sideways"
        )
        assert trend[t] == want
        assert slope[t] == pytest.approx(ma[t] / ma[t - 20] - 1)


def test_expanding_percentile_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    x[:5] = np.nan
    got = expanding_percentile(x)
    for t in range(5, 300):
        hist = x[5 : t + 1]
        assert got[t] == pytest.approx(np.mean(hist <= x[t]))
    assert np.isnan(got[:5]).all()


def test_realised_vol_brute_force():
    c = random_walk(60, seed=2)
    rv = realised_vol(c, 20, 252)
    r = np.diff(np.log(c))
    assert np.isnan(rv[:20]).all()
    assert rv[35] == pytest.approx(np.std(r[15:35], ddof=1) * np.sqrt(252))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(300, 449))
def test_regimes_have_no_lookahead(seed, cut):
    b = make_bars(random_walk(450, seed=seed))
    full, part = regimes(b, RegimeParams(), 252), regimes(b.head(cut), RegimeParams(), 252)
    assert part["trend"].to_list() == full["trend"].to_list()[:cut]
    assert part["vol_regime"].to_list() == full["vol_regime"].to_list()[:cut]


def test_vol_regime_thresholds():
    rng = np.random.default_rng(1)
    calm = rng.normal(0, 0.005, 300)
    wild = rng.normal(0, 0.05, 60)
    b = make_bars(100 * np.exp(np.cumsum(np.concatenate([calm, wild]))))
    r = regimes(b, RegimeParams(), 252)
    assert r["vol_regime"][-1] == "high"
    pct = r["rvol_pct"].to_numpy()
    vol = r["vol_regime"].to_list()
    for t in range(len(vol)):
        if vol[t] is not None:
            assert vol[t] == ("low" if pct[t] < 0.25 else "high" if pct[t] > 0.75 else "normal")
    assert vol[:79].count(None) == 79  # 20 returns + 60 values of history needed


def test_current_run_and_errors():
    b = make_bars(random_walk(100))
    with pytest.raises(AnalyzeError, match="100 bars, regime needs at least 220"):
        regimes(b, RegimeParams(), 252, "XYZ")
    with pytest.raises(AnalyzeError, match="percentiles"):
        RegimeParams(low_pct=0.8, high_pct=0.2).check()
    import polars as pl

    labels = pl.Series(["bull", "bear", "bear", "bear"])
    ts = b["timestamp"].head(4)
    assert current_run(labels, ts) == {"regime": "bear", "bars": 3, "since": ts[1].isoformat()}


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(250, 440), st.floats(0.3, 3.0))
def test_rewriting_future_bars_leaves_past_regimes_unchanged(seed, cut, factor):
    """A crash or a boom after bar ``cut`` changes no trend, volatility, or percentile value up to ``cut``."""
    import polars as pl

    b = make_bars(random_walk(450, seed=seed))
    tail = pl.int_range(pl.len()) > cut
    shocked = b.with_columns(
        pl.when(tail).then(pl.col(c) * factor * (1 + 0.05 * pl.int_range(pl.len()).sin())).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )
    x, y = regimes(b, RegimeParams(), 252), regimes(shocked, RegimeParams(), 252)
    for col in ("trend", "vol_regime", "rvol_pct", "rvol_20", "ma_200", "ma_slope"):
        assert x[col].head(cut + 1).equals(y[col].head(cut + 1)), col
