"""Hand-computed golden cases, one per execution rule (README "Execution semantics").

Each case uses momentum(lookback=1, threshold=0): the target on bar t is +1 if close[t] >
close[t-1], -1 if lower, 0 if equal, so every signal below can be read off the closes. With
atr_window=1, ATR on bar t equals the true range of bar t.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from slices.backtest.engine import Config, Panel, compute_targets, simulate
from slices.backtest.strategies import resolve_params


def bars(rows: list[tuple[float, float, float, float]], symbol: str = "XYZ") -> pl.DataFrame:
    o, h, l, c = (np.array(col, dtype=float) for col in zip(*rows))
    stamps = np.datetime64("2021-01-04", "us") + np.arange(len(rows)) * np.timedelta64(1, "D")
    return pl.DataFrame({"symbol": [symbol] * len(rows), "timestamp": pl.Series(stamps).dt.replace_time_zone("UTC"),
                         "open": o, "high": h, "low": l, "close": c, "volume": np.full(len(rows), 1e6)})


def run(df: pl.DataFrame, **cfg):
    strat, params = resolve_params("momentum", {"lookback": "1"})
    panel = Panel.from_bars(df)
    conf = Config(**({"cash": 1000.0, "commission": 0.0, "slippage_bps": 0.0, "atr_window": 1} | cfg))
    targets, atrs = compute_targets(panel, strat, params, conf.allow_short, conf.atr_window)
    return simulate(panel, targets, atrs, conf)


def ohlc(o, c, pad=1.0):
    return (o, max(o, c) + pad, min(o, c) - pad, c)


def test_next_open_fill_commission_whole_shares():
    # signal on bar 2 (101 > 100) fills at bar 3's open 103; exit signal on bar 4 fills at bar 5's open 99
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(103, 102), ohlc(101, 100), ohlc(99, 100)])
    res = run(df, commission=0.01)
    # A = 1000; qty = floor(1000 / (103 * 1.01)) = floor(9.61) = 9; cost 927 + commission 9.27
    assert [(f["bar"], f["quantity"], f["price"]) for f in res.fills] == [(3, 9, 103.0), (5, -9, 99.0)]
    assert res.fills[0]["commission"] == pytest.approx(9.27)
    assert res.fills[1]["commission"] == pytest.approx(8.91)
    np.testing.assert_allclose(res.cash, [1000, 1000, 1000, 63.73, 63.73, 945.82], atol=1e-9)
    np.testing.assert_allclose(res.equity, [1000, 1000, 1000, 63.73 + 9 * 102, 63.73 + 9 * 100, 945.82], atol=1e-9)
    (t,) = res.trades
    assert t["pnl"] == pytest.approx(9 * (99 - 103) - 9.27 - 8.91)
    assert t["commission"] == pytest.approx(18.18)
    assert t["exit_reason"] == "signal"


def test_slippage_moves_fills_against_the_trader():
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(103, 102), ohlc(101, 100), ohlc(99, 100)])
    res = run(df, slippage_bps=50)
    buy, sell = 103 * 1.005, 99 * 0.995
    assert res.fills[0]["price"] == pytest.approx(buy) and res.fills[0]["quantity"] == 9  # floor(1000 / 103.515)
    assert res.fills[1]["price"] == pytest.approx(sell)
    assert res.equity[-1] == pytest.approx(1000 - 9 * buy + 9 * sell)


def test_fractional_spends_the_whole_amount_including_commission():
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(103, 102), ohlc(101, 102)])
    res = run(df, commission=0.01, whole_shares=False)
    q = 1000 / (103 * 1.01)
    assert res.fills[0]["quantity"] == pytest.approx(q)
    assert res.cash[3] == pytest.approx(0.0, abs=1e-9)


def test_stop_loss_fills_at_the_open_when_the_bar_gaps_through_it():
    rows = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 102, 99, 101),  # bar 2: TR 3, signal long
            (101, 102, 100, 101.5),  # fill at 101, stop = 101 - 1 * 3 = 98; low 100 does not reach it
            (95, 96, 94, 95.5),  # opens below the stop: filled at the open, 95
            (96, 97, 95, 96)]
    res = run(bars(rows), stop_loss_atr=1.0)
    assert [(f["bar"], f["quantity"], f["price"], f["reason"]) for f in res.fills] == [
        (3, 9, 101.0, "entry"), (4, -9, 95.0, "stop_loss")]
    assert res.equity[-1] == pytest.approx(1000 - 9 * 101 + 9 * 95)
    assert res.trades[0]["exit_reason"] == "stop_loss"


def test_stop_loss_fills_at_the_stop_price_intrabar():
    rows = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 102, 99, 101), (101, 102, 100, 101.5),
            (100, 100.5, 97, 99.5),  # opens above the stop 98, trades through it: filled at 98
            (96, 97, 95, 96)]
    res = run(bars(rows), stop_loss_atr=1.0)
    assert res.fills[1]["price"] == 98.0 and res.fills[1]["bar"] == 4
    assert res.equity[-1] == pytest.approx(1000 - 9 * 101 + 9 * 98)


def test_take_profit_fills_at_the_target_price():
    rows = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 102, 99, 101), (101, 102, 100, 101.5),
            (102, 105, 101.5, 102.5),  # target 101 + 1 * 3 = 104 reached intrabar
            (103, 104, 102, 103.5)]
    res = run(bars(rows), take_profit_atr=1.0)
    assert (res.fills[1]["bar"], res.fills[1]["price"], res.fills[1]["reason"]) == (4, 104.0, "take_profit")
    # stays flat afterwards although the target (+1) has not changed
    assert len(res.fills) == 2 and res.qty[-1, 0] == 0


def test_reversal_is_one_close_and_one_open_at_the_same_price():
    closes = [100, 100, 101, 100, 99, 99, 99]
    opens = [100, 100, 100, 100, 102, 99, 98]
    res = run(bars([ohlc(o, c) for o, c in zip(opens, closes)]), allow_short=True)
    # bar 3: buy 10 at 100; bar 4: sell 10 at 102 (close) and sell 10 at 102 (open short, sized on equity 1020)
    # bar 6: the target returns to 0 on bar 5 (99 == 99): cover 10 at 98
    assert [(f["bar"], f["quantity"], f["price"], f["reason"]) for f in res.fills] == [
        (3, 10, 100.0, "entry"), (4, -10, 102.0, "reverse"), (4, -10, 102.0, "entry"), (6, 10, 98.0, "signal")]
    np.testing.assert_allclose(res.equity, [1000, 1000, 1000, 1000, 2040 - 990, 2040 - 990, 1060])
    assert [t["pnl"] for t in res.trades] == [pytest.approx(20.0), pytest.approx(40.0)]
    assert [t["exit_reason"] for t in res.trades] == ["reverse", "signal"]


def test_long_only_exits_instead_of_reversing():
    closes = [100, 100, 101, 100, 99, 99, 99]
    opens = [100, 100, 100, 100, 102, 99, 98]
    res = run(bars([ohlc(o, c) for o, c in zip(opens, closes)]))
    assert [(f["bar"], f["quantity"]) for f in res.fills] == [(3, 10), (4, -10)]
    assert res.equity[-1] == pytest.approx(1020)


def test_open_position_at_the_end_is_marked_at_the_last_close():
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(100, 102), ohlc(102, 107)])
    res = run(df, commission=0.01)
    (t,) = res.trades
    assert t["is_open"] and t["exit_reason"] == "open" and t["exit_price"] == 107.0
    q = 9  # floor(1000 / (100 * 1.01))
    assert t["pnl"] == pytest.approx(q * 7 - q * 100 * 0.01)
    assert res.equity[-1] - 1000 == pytest.approx(t["pnl"])


def test_max_position_pct_caps_the_entry_value():
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(100, 102), ohlc(102, 103)])
    res = run(df, max_position_pct=25.0)
    assert res.fills[0]["quantity"] == 2  # floor(250 / 100)


def test_max_drawdown_halt_closes_everything_at_the_next_open_and_stops_trading():
    closes = [100, 100, 101, 80, 81, 82, 83]
    opens = [100, 100, 100, 100, 79, 81, 82]
    res = run(bars([ohlc(o, c) for o, c in zip(opens, closes)]), max_drawdown=0.1)
    # long 10 at 100 on bar 3; close 80 -> drawdown -20 % at bar 3; halt fills at bar 4's open 79
    assert [(f["bar"], f["quantity"], f["price"], f["reason"]) for f in res.fills] == [
        (3, 10, 100.0, "entry"), (4, -10, 79.0, "halt")]
    assert np.all(res.qty[4:] == 0) and res.equity[-1] == pytest.approx(790)
    assert res.halted_at == 4


def test_signal_on_the_last_bar_is_not_filled():
    df = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 100), ohlc(100, 101)])
    res = run(df)
    assert res.fills == [] and res.equity[-1] == 1000


def test_equal_weight_splits_equity_among_symbols():
    a = bars([ohlc(100, 100), ohlc(100, 100), ohlc(100, 101), ohlc(50, 102), ohlc(51, 103)], "AAA")
    b = bars([ohlc(10, 10), ohlc(10, 10), ohlc(10, 11), ohlc(20, 12), ohlc(21, 13)], "BBB")
    res = run(pl.concat([a, b]))
    # both enter on bar 3 with equity 1000 / 2 = 500 each: 10 at 50 and 25 at 20
    assert sorted((f["symbol"], f["quantity"], f["price"]) for f in res.fills) == [(0, 10, 50.0), (1, 25, 20.0)]
