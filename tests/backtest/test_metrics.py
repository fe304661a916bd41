"""Metrics against their definitions (empyrical, backtesting.py, Van Tharp), computed independently."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slices.backtest import metrics as M


@st.composite
def equity_curves(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(3, 400))
    r = rng.normal(draw(st.sampled_from([-0.001, 0.0, 0.001])), draw(st.sampled_from([0.002, 0.02])), n - 1)
    return 1000 * np.concatenate(([1.0], np.cumprod(1 + r)))


@given(equity_curves(), st.sampled_from([252.0, 52.0, 6048.0]))
def test_equity_metrics_follow_empyrical(eq, ann):
    m = M.equity_metrics(eq, ann)
    r = [eq[i] / eq[i - 1] - 1 for i in range(1, len(eq))]
    mean = sum(r) / len(r)
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
    assert m["total_return"] == pytest.approx(eq[-1] / eq[0] - 1, rel=1e-12)
    assert m["cagr"] == pytest.approx((eq[-1] / eq[0]) ** (ann / len(r)) - 1, rel=1e-9)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(ann), rel=1e-9)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(ann), rel=1e-9)
    downside = math.sqrt(sum(min(x, 0) ** 2 for x in r) / len(r)) * math.sqrt(ann)
    if downside > 0:
        assert m["sortino"] == pytest.approx(mean * ann / downside, rel=1e-9)
    # duration (SLICES.md shared definitions, changed from "longest run of bars below a peak"):
    # bars from a peak to the first bar that regains it, or to the last bar when never regained
    peak, peak_i, mdd, longest = eq[0], 0, 0.0, 0
    for i, v in enumerate(eq):
        if v >= peak:
            if i - peak_i > 1 or (i - peak_i == 1 and eq[i - 1] < peak):
                longest = max(longest, i - peak_i)
            peak, peak_i = v, i
        mdd = min(mdd, v / peak - 1)
    if eq[-1] < peak:
        longest = max(longest, len(eq) - 1 - peak_i)
    assert m["max_drawdown"] == pytest.approx(mdd, abs=1e-15)
    assert m["max_drawdown_duration"] == longest
    if mdd < 0:
        assert m["calmar"] == pytest.approx(m["cagr"] / abs(mdd), rel=1e-9)


def test_flat_equity_has_no_ratio():
    m = M.equity_metrics(np.full(10, 100.0), 252)
    assert m["total_return"] == 0 and m["max_drawdown"] == 0 and m["max_drawdown_duration"] == 0
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None


def test_trade_metrics_by_hand():
    pnl = np.array([100.0, -50.0, 30.0, -20.0])
    ret = np.array([0.10, -0.05, 0.03, -0.02])
    m = M.trade_metrics(pnl, ret)
    assert m["n_trades"] == 4 and m["win_rate"] == 0.5
    assert m["best_trade"] == 0.10 and m["worst_trade"] == -0.05 and m["avg_trade"] == pytest.approx(0.015)
    assert m["profit_factor"] == pytest.approx(130 / 70)
    assert m["expectancy"] == pytest.approx(15.0)
    assert m["sqn"] == pytest.approx(2 * 15 / np.std(pnl, ddof=1))
    assert m["kelly"] == pytest.approx(0.5 - 0.5 / (65 / 35))


def test_trade_metrics_without_trades_or_losses():
    assert M.trade_metrics(np.array([]), np.array([]))["win_rate"] is None
    m = M.trade_metrics(np.array([5.0, 7.0]), np.array([0.01, 0.02]))
    assert m["profit_factor"] is None and m["kelly"] == 1.0


def test_periods_per_year_by_timeframe():
    # Changed with SLICES.md shared definitions: periods come from the timeframe (1d 252, 1w 52,
    # 1mo 12) and, intraday, from the data's own bars per year (it was 252 x bars per day).
    day = np.datetime64("2020-01-06", "us") + np.arange(30) * np.timedelta64(1, "D")
    assert M.periods_per_year("1d", day) == 252
    assert M.periods_per_year("1w", day) == 52
    assert M.periods_per_year("1mo", day) == 12
    # round the clock hourly bars: 24 x 365.25 per year
    hours = np.datetime64("2020-01-06", "us") + np.arange(24 * 10) * np.timedelta64(1, "h")
    assert M.periods_per_year("1h", hours) == pytest.approx(24 * 365.25)
    # 24/5 FX: 120 bars a week over 4 weeks (Sunday 22:00 to Friday 22:00 UTC)
    weeks = np.concatenate([np.datetime64("2020-01-05T22:00", "us") + np.timedelta64(7 * w, "D")
                            + np.arange(120) * np.timedelta64(1, "h") for w in range(4)])
    n, span_s = weeks.size, (weeks[-1] - weeks[0]) / np.timedelta64(1, "s")
    assert M.periods_per_year("1h", weeks) == pytest.approx((n - 1) * 365.25 * 86400 / span_s)
    assert 120 * 52 < M.periods_per_year("1h", weeks) < 24 * 365.25
    # duplicates do not count twice
    assert M.periods_per_year("1h", np.concatenate([hours, hours])) == pytest.approx(24 * 365.25)


@pytest.mark.parametrize("equity, duration", [
    ([1, 2, 1, 1, 1, 2], 4),  # the SLICES.md example: peak at bar 1, regained at bar 5
    ([1, 2, 3], 0),
    ([3, 2, 1], 2),  # never regained: to the last bar
    ([1, 0.5, 1, 0.5, 0.5, 0.5], 3),  # the open drawdown at the end is the longest
    ([2, 1, 2, 1, 1, 2, 1], 3),
    ([5], 0),
])
def test_max_drawdown_duration_peak_to_recovery(equity, duration):
    assert M.max_drawdown_duration(np.array(equity, dtype=float)) == duration


def test_all_metrics_has_every_name_in_order():
    eq = np.array([100.0, 101, 99, 103])
    m = M.all_metrics(eq, 252, 0.5, np.array([3.0]), np.array([0.03]), 0.1)
    assert tuple(m) == M.METRICS
    assert m["exposure"] == 0.5 and m["buy_and_hold_return"] == 0.1
