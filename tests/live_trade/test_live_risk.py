"""The pre-trade risk engine: every limit blocks what it must and lets through what it must."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slices.live_trade.risk import Context, Limits, RateWindow, atr_pct, check, daily_loss_hit, reduces
from slices.live_trade.session import client_order_id


def ctx(**kw) -> Context:
    base = dict(state="active", equity=100_000.0, positions={}, last_trade={"AAA": 100.0, "BBB": 50.0}, open_orders=0,
                market_open=True, stale=False, now=0.0)
    return Context(**(base | kw))


def order(side="buy", qty=5, price=100.0, symbol="AAA"):
    return {"symbol": symbol, "side": side, "qty": qty, "price": price}


SYMS = ["AAA", "BBB"]


def test_defaults_are_the_documented_safe_values():
    lim = Limits()
    assert (lim.max_order_notional, lim.max_position_pct, lim.max_gross_pct, lim.max_daily_loss_pct,
            lim.max_orders_per_minute, lim.max_open_orders, lim.price_band_pct, lim.atr_window, lim.max_atr_pct,
            lim.stale_after, lim.allow_symbols, lim.flatten_on_halt) == (1000.0, 10.0, 50.0, 2.0, 10, 10, 5.0, 14, 10.0,
                                                                         None, None, False)


def test_each_limit_blocks_and_lets_through():
    lim = Limits(max_order_notional=5_000, max_position_pct=10, max_gross_pct=12)
    ok = lambda o, **kw: check(o, ctx(**kw), lim, RateWindow(10), SYMS)  # noqa: E731
    assert ok(order(qty=50)) is None  # 5,000 notional exactly at the limit
    assert "order notional 5,100.00 above the max 5,000.00" in ok(order(qty=51))
    lim.max_order_notional = 1e9
    assert ok(order(qty=100)) is None  # 10,000 = 10 % of equity
    assert "position AAA would be 10,100.00 = 10.10% of equity" in ok(order(qty=101))
    assert ok(order(qty=20), positions={"BBB": 200.0}) is None  # 2,000 + 10,000 gross = 12 %
    assert "gross exposure would be 12,100.00" in ok(order(qty=21), positions={"BBB": 200.0})
    assert "not in the symbol allowlist" in ok(order(symbol="ZZZ"))
    lim.allow_symbols = ["ZZZ"]
    assert ok(order(symbol="ZZZ", price=10.0)) is None
    lim.allow_symbols = None
    assert ok(order(price=105.0)) is None  # 5 % from the last trade: inside the band
    assert "price band: 105.1 is 5.10% from the last trade 100" in ok(order(price=105.1))
    assert "price band" in ok(order(price=94.9))
    assert "open orders limit" in ok(order(), open_orders=10)
    assert ok(order(), open_orders=9) is None
    assert ok(order(), market_open=False) == "market closed (Alpaca clock)"
    assert "stale" in ok(order(), stale=True)
    assert ok(order(side="sell", qty=5), stale=True, positions={"AAA": 5.0}) is None  # exits still allowed


def test_states_active_reducing_halted():
    lim = Limits(max_order_notional=1e9, max_position_pct=100, max_gross_pct=100)
    go = lambda o, state, pos: check(o, ctx(state=state, positions=pos), lim, RateWindow(10), SYMS)  # noqa: E731
    long5 = {"AAA": 5.0}
    assert go(order("sell", 5), "reducing", long5) is None
    assert go(order("sell", 3), "reducing", long5) is None
    assert "reducing" in go(order("sell", 6), "reducing", long5)  # would flip to short
    assert "reducing" in go(order("buy", 1), "reducing", long5)
    assert "reducing" in go(order("buy", 1), "reducing", {})
    assert "halted" in go(order("sell", 5), "halted", long5)  # only cancels
    assert reduces("buy", 2, -3.0) and not reduces("buy", 2, 3.0) and not reduces("sell", 1, 0.0)
    # exits are never refused for notional/position/gross: they take exposure down
    tight = Limits(max_order_notional=1.0, max_position_pct=0.001, max_gross_pct=0.001)
    assert check(order("sell", 500), ctx(positions={"AAA": 500.0}), tight, RateWindow(10), SYMS) is None


@given(st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=80), st.integers(1, 12))
def test_rate_limit_never_more_than_n_orders_in_any_60_seconds(gaps, limit):
    """Orders arrive at increasing times; the window admits one unless `limit` were sent in the
    last 60 s. Property: every admitted set has <= limit in any 60 s window, and every refusal
    happened when exactly `limit` admitted orders were within the previous 60 s."""
    lim = Limits(max_orders_per_minute=limit, max_order_notional=1e9, max_position_pct=100, max_gross_pct=100)
    rate = RateWindow(limit)
    t, sent = 0.0, []
    for g in gaps:
        t += g / 10
        why = check(order(qty=1), ctx(now=t), lim, rate, SYMS)
        recent = [s for s in sent if s > t - 60]
        if why is None:
            assert len(recent) < limit
            rate.record(t)
            sent.append(t)
        else:
            assert "order rate limit" in why and len(recent) == limit
    for i, s in enumerate(sent):
        assert sum(1 for x in sent[i:] if x < s + 60) <= limit


@given(st.floats(1_000, 1e7), st.lists(st.floats(-0.05, 0.05), min_size=1, max_size=50), st.floats(0.5, 10))
def test_daily_loss_limit_halts_at_the_limit_and_not_before(start, moves, pct):
    """Equity path over a day: the halt happens at the first equity <= start x (1 - pct %), never
    earlier; after it no order passes (state halted)."""
    eq, state, halted_at = start, "active", None
    lim = Limits(max_daily_loss_pct=pct, max_order_notional=1e12, max_position_pct=100, max_gross_pct=100)
    for i, m in enumerate(moves):
        eq *= 1 + m
        hit = daily_loss_hit(eq, start, pct)
        assert hit == (eq <= start * (1 - pct / 100) + 1e-9)
        if hit and state == "active":
            state, halted_at = "halted", i
        why = check(order(qty=1), ctx(state=state, equity=eq, now=float(i * 100)), lim, RateWindow(100), SYMS)
        assert (why is not None) == (state == "halted")
    if halted_at is not None:
        assert all(start * np.prod([1 + m for m in moves[: k + 1]]) > start * (1 - pct / 100) - 1e-6
                   for k in range(halted_at))
    assert not daily_loss_hit(50.0, None, pct)


def test_atr_circuit_breaker_measure():
    close = np.full(30, 100.0)
    assert atr_pct(close * 1.01, close * 0.99, close, 14) == pytest.approx(2.0)
    assert math.isnan(atr_pct(close[:10], close[:10], close[:10], 14))


def test_client_order_id_is_deterministic_and_short():
    t = int(np.datetime64("2020-01-10T14:30:00", "us").astype(np.int64))
    assert client_order_id("s1", "AAPL", t, 2) == "s1-AAPL-20200110T143000-2"
    longest = client_order_id("s" * 64, "X" * 32, t, 999)
    assert len(longest) <= 128


def test_limits_out_of_range_are_errors():
    for kw, text in (({"max_position_pct": 0}, "--max-position-pct"), ({"max_order_notional": -1}, "--max-order-notional"),
                     ({"max_orders_per_minute": 0}, "--max-orders-per-minute"), ({"stale_after": 0}, "--stale-after")):
        with pytest.raises(ValueError, match=text):
            Limits(**kw).check()
