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
    peak, mdd, run, longest = eq[0], 0.0, 0, 0
    for v in eq:
        peak = max(peak, v)
        mdd = min(mdd, v / peak - 1)
        run = run + 1 if v < peak else 0
        longest = max(longest, run)
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


def test_periods_per_year_from_spacing():
    day = np.datetime64("2020-01-06", "us") + np.arange(30) * np.timedelta64(1, "D")
    assert M.periods_per_year(day) == 252
    week = np.datetime64("2020-01-06", "us") + np.arange(30) * np.timedelta64(7, "D")
    assert M.periods_per_year(week) == 52
    hours = np.datetime64("2020-01-06", "us") + np.arange(24 * 10) * np.timedelta64(1, "h")
    assert M.periods_per_year(hours) == 252 * 24
    # a US session of 1-minute bars: 390 per day
    minutes = np.concatenate([np.datetime64(f"2020-01-0{d}T14:30", "us") + np.arange(390) * np.timedelta64(1, "m") for d in (6, 7, 8)])
    assert M.periods_per_year(minutes) == 252 * 390


def test_all_metrics_has_every_name_in_order():
    eq = np.array([100.0, 101, 99, 103])
    m = M.all_metrics(eq, 252, 0.5, np.array([3.0]), np.array([0.03]), 0.1)
    assert tuple(m) == M.METRICS
    assert m["exposure"] == 0.5 and m["buy_and_hold_return"] == 0.1
