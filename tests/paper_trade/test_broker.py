"""The simulated broker: order types, brackets, time in force, cancel, volume caps, accounting."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from slices.paper_trade.broker import Broker

T0, T1, T2 = "2020-01-02T00:00:00.000000Z", "2020-01-03T00:00:00.000000Z", "2020-01-06T00:00:00.000000Z"


def broker(**kw) -> Broker:
    return Broker(["AAA"], 10_000.0, kw.pop("commission", 0.001), kw.pop("slippage_bps", 10.0), **kw)


def test_market_buy_fills_at_open_plus_slippage_with_commission():
    b = broker()
    o = b.place("s-AAA-1", "AAA", "buy", "market", 10, T0)
    b.fill_market(o, 100.0, 1e6, T1)
    price = 100.0 * 1.001
    assert o["status"] == "filled" and o["avg_fill_price"] == price
    assert b.cash == 10_000.0 - (10 * price + 10 * price * 0.001)
    assert b.qty[0] == 10 and b.avg_price[0] == price
    assert b.orders == {}
    orders, fills, pos = b.drain()
    assert [f["id"] for f in fills] == ["s-AAA-1-F1"] and pos == [0]


@pytest.mark.parametrize("open_,low,high,expect", [
    (100.0, 94.0, 101.0, 95.0 * (1 - 0.001)),   # intrabar: the stop price less slippage
    (93.0, 92.0, 96.0, 93.0 * (1 - 0.001)),     # gap through the stop: the open less slippage
    (100.0, 96.0, 101.0, None),                 # not reached
])
def test_sell_stop(open_, low, high, expect):
    b = broker()
    b.qty[0] = 10
    b.place("stop", "AAA", "sell", "stop", 10, T0, stop_price=95.0)
    b.process_resting(0, T1, T1[:10], open_, high, low, 1e6)
    _, fills, _ = b.drain()
    assert [f["price"] for f in fills] == ([] if expect is None else [pytest.approx(expect, rel=1e-15)])


@pytest.mark.parametrize("open_,low,high,expect", [
    (100.0, 97.0, 101.0, 98.0),   # intrabar: the limit, no slippage
    (96.0, 95.0, 99.0, 96.0),     # opened below the limit: the open (better)
    (100.0, 99.0, 101.0, None),
])
def test_buy_limit(open_, low, high, expect):
    b = broker()
    b.place("lim", "AAA", "buy", "limit", 5, T0, limit_price=98.0)
    b.process_resting(0, T1, T1[:10], open_, high, low, 1e6)
    _, fills, _ = b.drain()
    assert [f["price"] for f in fills] == ([] if expect is None else [expect])


def test_stop_limit_triggers_then_rests_as_a_limit():
    b = broker()
    b.qty[0] = 10
    o = b.place("sl", "AAA", "sell", "stop_limit", 10, T0, stop_price=95.0, limit_price=96.0)
    b.process_resting(0, T1, T1[:10], 97.0, 95.5, 94.0, 1e6)  # triggered at 95, limit 96 not reached after
    assert o["triggered"] and o["status"] == "accepted" and b.qty[0] == 10
    b.process_resting(0, T2, T2[:10], 95.0, 97.0, 94.5, 1e6)
    assert o["status"] == "filled" and o["avg_fill_price"] == 96.0


def test_bracket_oco_stop_assumed_first_and_sibling_canceled():
    b = broker()
    b.qty[0] = 10
    b.place("stop", "AAA", "sell", "stop", 10, T0, stop_price=95.0, oco="e")
    b.place("tp", "AAA", "sell", "limit", 10, T0, limit_price=105.0, oco="e")
    b.process_resting(0, T1, T1[:10], 100.0, 106.0, 94.0, 1e6)  # both reachable: the stop
    orders, fills, _ = b.drain()
    assert [f["order_id"] for f in fills] == ["stop"]
    assert {o["id"]: o["status"] for o in orders} == {"stop": "filled", "tp": "canceled"}
    assert b.qty[0] == 0 and b.orders == {}


def test_bracket_gap_beyond_target_fills_target_at_open():
    b = broker()
    b.qty[0] = 10
    b.place("stop", "AAA", "sell", "stop", 10, T0, stop_price=95.0, oco="e")
    b.place("tp", "AAA", "sell", "limit", 10, T0, limit_price=105.0, oco="e")
    b.process_resting(0, T1, T1[:10], 107.0, 108.0, 94.0, 1e6)
    _, fills, _ = b.drain()
    assert [(f["order_id"], f["price"]) for f in fills] == [("tp", 107.0)]


def test_order_placed_after_the_open_cannot_fill_at_that_open():
    b = broker()
    b.qty[0] = 10
    b.place("stop", "AAA", "sell", "stop", 10, T1, stop_price=95.0, after_open=True)
    b.process_resting(0, T1, T1[:10], 90.0, 96.0, 89.0, 1e6)  # gapped, but placed after this open
    _, fills, _ = b.drain()
    assert fills[0]["price"] == pytest.approx(95.0 * (1 - 0.001), rel=1e-15)


def test_day_order_expires_gtc_stays_and_cancel():
    b = broker()
    day = b.place("d", "AAA", "buy", "limit", 1, T0, limit_price=50.0, tif="day")
    gtc = b.place("g", "AAA", "buy", "limit", 1, T0, limit_price=50.0)
    for t in (T1, T2):
        b.expire_day_orders(0, t[:10], t)
        b.process_resting(0, t, t[:10], 100.0, 101.0, 99.0, 1e6)
    assert day["status"] == "expired" and gtc["status"] == "accepted"
    b.cancel("g", T2, note="user")
    assert gtc["status"] == "canceled" and b.orders == {}


def test_max_volume_pct_partial_fills_the_rest_stays_open():
    b = broker(max_volume_pct=10.0)
    o = b.place("m", "AAA", "buy", "market", 25, T0)
    assert b.fill_market(o, 100.0, 120.0, T1) == 12  # 10 % of 120, whole shares
    assert o["status"] == "partially_filled" and b.orders
    b.new_bar()
    assert b.fill_market(o, 101.0, 1000.0, T2) == 13
    assert o["status"] == "filled" and o["filled_qty"] == 25
    assert o["avg_fill_price"] == pytest.approx((12 * 100.0 * 1.001 + 13 * 101.0 * 1.001) / 25, rel=1e-15)


@pytest.mark.parametrize("kw,msg", [
    ({"type_": "iceberg"}, "unknown type"), ({"qty": 0}, "quantity"), ({"tif": "ioc"}, "time in force"),
    ({"type_": "limit"}, "limit price"), ({"type_": "stop"}, "stop price"),
])
def test_bad_orders_are_refused(kw, msg):
    args = {"type_": "market", "qty": 1} | kw
    with pytest.raises(ValueError, match=msg):
        broker().place("x", "AAA", "buy", args.pop("type_"), args.pop("qty"), T0, **args)


@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 50), st.floats(1.0, 500.0)),
                min_size=1, max_size=30))
def test_cash_and_realized_pnl_reconcile_with_fills(trades):
    """Cash = start - sum(signed qty x price + commission); realized + unrealized P&L = equity - start."""
    b = broker(commission=0.002, slippage_bps=0.0)
    cash = 10_000.0
    for k, (side, q, px) in enumerate(trades):
        o = b.place(f"o{k}", "AAA", side, "market", q, T0)
        b.fill_market(o, px, 1e9, T1)
        cash -= (q if side == "buy" else -q) * px + q * px * 0.002
    assert b.cash == pytest.approx(cash, rel=1e-12, abs=1e-9)
    mark = trades[-1][2]
    equity = b.cash + b.qty[0] * mark
    unrealized = b.qty[0] * (mark - b.avg_price[0])
    assert b.realized[0] + unrealized == pytest.approx(equity - 10_000.0, rel=1e-9, abs=1e-6)
    assert math.isfinite(b.avg_price[0])
