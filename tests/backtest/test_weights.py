"""The portfolio-weights engine (engine.simulate_weights, compute_weights; SLICES.md contract 5
"weights" form): hand-computed golden cases and hypothesis properties, the same money rules the
suite proves for targets (test_properties.py):

* equity = cash + marked positions at every bar, cash and positions rebuilt from the fills; the
  trades' P&L (FIFO lots, open ones marked at the last close) adds up to the equity change;
* every fill comes from a weight row before it, at the symbol's first bar after that row;
* costs never make a lot's return better, nor a fully invested single-symbol run;
* no lookahead: changing bars after t changes no weight, fill or equity value up to t;
* long-only at leverage 1, cash never goes negative through buying; the drawdown halt holds.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_properties import random_bars

from slices.backtest.engine import Config, Panel, compute_weights, simulate_weights
from slices.backtest.strategies import Strategy, StrategyError


def frame(prices: dict[str, list[tuple[float, float] | None]]) -> pl.DataFrame:
    """Long bars from {symbol: [(open, close) or None for no bar, ...]} on consecutive days."""
    parts = []
    for sym, rows in prices.items():
        keep = [(i, oc) for i, oc in enumerate(rows) if oc is not None]
        idx = np.array([i for i, _ in keep])
        o = np.array([oc[0] for _, oc in keep], dtype=float)
        c = np.array([oc[1] for _, oc in keep], dtype=float)
        stamps = np.datetime64("2021-01-04", "us") + idx * np.timedelta64(1, "D")
        parts.append(pl.DataFrame({"symbol": sym, "timestamp": pl.Series(stamps).dt.replace_time_zone("UTC"),
                                   "open": o, "high": np.maximum(o, c) + 1, "low": np.minimum(o, c) - 1,
                                   "close": c, "volume": 1e6}))
    return pl.concat(parts)


def weights_strategy(fn, label: str = "test.py") -> Strategy:
    return Strategy("test", "", {}, lambda p: 1, weights=fn, label=label)


NAN = np.nan


# ----------------------------------------------------------------------------- golden cases
def test_two_symbols_rebalance_with_commission_slippage_and_whole_shares():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 11), (12, 12), (11, 11)],
                                   "B": [(20, 20), (20, 20), (19, 18), (18, 18)]}))
    w = np.array([[0.5, 0.5], [NAN, NAN], [0.0, 0.8], [NAN, NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.01, slippage_bps=100.0))
    # bar 1, E = 1000: targets 50 A and 25 B cost 1,020.10 with slippage and commission > 1,000 cash:
    # both scaled by 1000 / 1020.10 and rounded down: 49 A at 10.10, 24 B at 20.20
    # bar 3 open, E = 10.503 + 49 x 11 + 24 x 18 = 981.503: sell 49 A at 10.89; B to trunc(0.8 E / 18) = 43: buy 19 at 18.18
    got = [(f["bar"], f["symbol"], f["quantity"], f["price"], f["commission"]) for f in res.fills]
    want = [(1, 0, 49, 10.1, 4.949), (1, 1, 24, 20.2, 4.848), (3, 0, -49, 10.89, 5.3361), (3, 1, 19, 18.18, 3.4542)]
    assert len(got) == len(want)
    for g, x in zip(got, want):
        assert g[:3] == x[:3] and g[3:] == pytest.approx(x[3:])
    cash1 = 1000 - 494.9 - 4.949 - 484.8 - 4.848
    cash3 = cash1 + 533.61 - 5.3361 - 345.42 - 3.4542
    np.testing.assert_allclose(res.cash, [1000, cash1, cash1, cash3])
    np.testing.assert_allclose(res.equity, [1000, cash1 + 49 * 11 + 24 * 20, cash1 + 49 * 12 + 24 * 18, cash3 + 43 * 18])
    rows = sorted((t["symbol"], t["entry_bar"], t["quantity"], t["exit_reason"], round(t["pnl"], 6)) for t in res.trades)
    assert rows == [(0, 1, 49, "signal", round(49 * (10.89 - 10.1) - 4.949 - 5.3361, 6)),
                    (1, 1, 24, "open", round(24 * (18 - 20.2) - 4.848, 6)),
                    (1, 3, 19, "open", round(19 * (18 - 18.18) - 3.4542, 6))]
    assert sum(t["pnl"] for t in res.trades) == pytest.approx(res.equity[-1] - 1000)


def test_partial_reduction_closes_lots_first_in_first_out():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (20, 20), (20, 20), (20, 20)]}))
    w = np.array([[0.5], [1.0], [0.25], [NAN], [NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.0, slippage_bps=0.0))
    # bar 1: 50 at 10 (cash 500); bar 2: E = 1,500, 75 wanted: buy 25 at 20 (cash 0);
    # bar 3: E = 1,500, trunc(0.25 x 1500 / 20) = 18 wanted: sell 57 = the 50 of lot 1 and 7 of lot 2
    assert [(f["bar"], f["quantity"]) for f in res.fills] == [(1, 50), (2, 25), (3, -57)]
    rows = [(t["quantity"], t["entry_bar"], t["entry_price"], t["exit_bar"], t["pnl"], t["exit_reason"], t["is_open"])
            for t in res.trades]
    assert rows == [(50, 1, 10.0, 3, 500.0, "signal", False), (7, 2, 20.0, 3, 0.0, "signal", False),
                    (18, 2, 20.0, 4, 0.0, "open", True)]


def test_going_through_zero_is_a_reverse_and_a_new_short_lot():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (8, 8), (8, 8)]}))
    w = np.array([[1.0], [-0.5], [NAN], [NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.0, slippage_bps=0.0, allow_short=True))
    # bar 2: E = 800, -0.5 x 800 / 8 = -50 wanted: sell 150 (close 100, open 50 short)
    assert [(f["bar"], f["quantity"]) for f in res.fills] == [(1, 100), (2, -150)]
    assert [(t["side"], t["quantity"], t["exit_reason"], t["pnl"]) for t in res.trades] == [
        ("long", 100, "reverse", -200.0), ("short", 50, "open", 0.0)]
    assert res.cash[-1] == pytest.approx(800 + 400)


def test_a_symbol_without_a_bar_keeps_its_order_pending_until_its_next_bar():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (10, 10), (10, 10)],
                                   "B": [(10, 10), None, (12, 12), (12, 12)]}))
    w = np.array([[0.5, 0.25], [NAN, 0.5], [NAN, NAN], [NAN, NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.0, slippage_bps=0.0))
    # A fills on bar 1; B has no bar 1: its order waits for bar 2, where row 1's newer 0.5 replaces row 0's 0.25
    assert [(f["bar"], f["symbol"], f["quantity"]) for f in res.fills] == [(1, 0, 50), (2, 1, 41)]  # trunc(0.5 x 1000 / 12)


def test_nan_means_no_change_and_the_threshold_skips_small_trades():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (11, 11), (11, 11), (11, 11)]}))
    w = np.array([[0.5], [0.5], [0.52], [NAN], [NAN]])
    free = Config(cash=1000.0, commission=0.0, slippage_bps=0.0, whole_shares=False)
    res = simulate_weights(panel, w, free)
    # bar 2: E = 1,050, 0.5 E / 11 = 47.727 wanted of 50 held: sells 2.27; bar 3: 0.52 x 1050 / 11 = 49.636
    assert [f["bar"] for f in res.fills] == [1, 2, 3]
    assert res.qty[3, 0] == pytest.approx(0.52 * 1050 / 11)
    skip = simulate_weights(panel, w, Config(**(free.__dict__ | {"rebalance_threshold": 0.03})))
    # the trade on bar 2 is 25 = 2.4 % of equity, bar 3's 20.9 is 2 %: both below 3 %
    assert [f["bar"] for f in skip.fills] == [1]


def test_leverage_lets_buys_borrow_up_to_the_limit():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (10, 10)], "B": [(10, 10), (10, 10), (10, 10)]}))
    w = np.array([[0.75, 0.75], [NAN, NAN], [NAN, NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.0, slippage_bps=0.0, leverage=1.5))
    assert [f["quantity"] for f in res.fills] == [75, 75]
    assert res.cash[-1] == pytest.approx(-500.0) and res.equity[-1] == pytest.approx(1000.0)
    unlevered = simulate_weights(panel, w / 1.5, Config(cash=1000.0, commission=0.0, slippage_bps=0.0))
    assert [f["quantity"] for f in unlevered.fills] == [50, 50] and unlevered.cash[-1] == pytest.approx(0.0)


def test_weights_rows_above_the_leverage_and_negatives_long_only():
    panel = Panel.from_bars(frame({"A": [(10, 10)] * 3, "B": [(10, 10)] * 3}))
    over = weights_strategy(lambda pn, p: np.array([[0.5, 0.5], [0.7, 0.4], [NAN, NAN]]))
    with pytest.raises(StrategyError, match=r"test.py: weights row 1 \(2021-01-05\): sum of \|weights\| 1.1 exceeds 1"):
        compute_weights(panel, over, {}, allow_short=False, leverage=1.0)
    w, warns = compute_weights(panel, over, {}, allow_short=False, leverage=1.2)
    assert w[1].tolist() == [0.7, 0.4] and warns == []
    neg = weights_strategy(lambda pn, p: np.array([[0.5, -0.5], [-0.2, 0.4], [NAN, NAN]]))
    w, warns = compute_weights(panel, neg, {}, allow_short=False, leverage=1.0)
    assert w[:2].tolist() == [[0.5, 0.0], [0.0, 0.4]]
    assert warns == ["test.py: 2 negative weight(s) set to 0 (long-only; --allow-short to short)"]
    w, warns = compute_weights(panel, neg, {}, allow_short=True, leverage=1.0)
    assert w[0, 1] == -0.5 and warns == []


def test_max_drawdown_halt_closes_everything_and_stops_rebalancing():
    panel = Panel.from_bars(frame({"A": [(10, 10), (10, 10), (10, 7), (6, 6), (6, 6), (6, 6)]}))
    w = np.array([[1.0], [NAN], [NAN], [1.0], [1.0], [NAN]])
    res = simulate_weights(panel, w, Config(cash=1000.0, commission=0.0, slippage_bps=0.0, max_drawdown=0.2))
    # 100 at 10; close 7 on bar 2 is -30 %: everything sold at bar 3's open 6, nothing bought after
    assert [(f["bar"], f["quantity"], f["price"], f["reason"]) for f in res.fills] == [(1, 100, 10.0, "rebalance"),
                                                                                        (3, -100, 6.0, "halt")]
    assert res.trades[0]["exit_reason"] == "halt" and res.halted_at == 3 and res.equity[-1] == pytest.approx(600)


# ----------------------------------------------------------------------------- properties
@st.composite
def weight_setups(draw, costs=True, shorts=True):
    cfg = Config(
        cash=draw(st.sampled_from([1_000.0, 100_000.0])),
        commission=draw(st.sampled_from([0.0, 0.001, 0.01])) if costs else 0.0,
        slippage_bps=draw(st.sampled_from([0.0, 5.0, 50.0])) if costs else 0.0,
        allow_short=draw(st.booleans()) if shorts else False,
        whole_shares=draw(st.booleans()),
        rebalance_threshold=draw(st.sampled_from([0.0, 0.0, 0.02])),
        leverage=draw(st.sampled_from([1.0, 1.0, 2.0])) if shorts else 1.0,
        max_drawdown=draw(st.sampled_from([None, None, 0.05])) if costs else None,
    )
    return cfg, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 0.5, 0.9]))


def random_weights(panel: Panel, cfg: Config, seed: int, nan_share: float) -> np.ndarray:
    """Rows summing (in |w|) to at most the leverage; NaN ("no change") at random."""
    rng = np.random.default_rng(seed)
    T, N = panel.close.shape
    w = rng.uniform(-1 if cfg.allow_short else 0, 1, (T, N))
    scale = rng.uniform(0, cfg.leverage, (T, 1)) / np.maximum(np.abs(w).sum(axis=1, keepdims=True), 1e-12)
    w = w * scale
    w[rng.uniform(size=(T, N)) < nan_share] = np.nan
    return w


@given(random_bars(), weight_setups())
def test_weights_equity_reconciles_with_cash_and_positions_rebuilt_from_fills(df, setup):
    cfg, seed, nan_share = setup
    panel = Panel.from_bars(df)
    w = random_weights(panel, cfg, seed, nan_share)
    res = simulate_weights(panel, w, cfg)
    T, N = panel.close.shape
    has_bar = ~np.isnan(panel.close)
    cash = np.full(T, cfg.cash)
    qty = np.zeros((T, N))
    for f in res.fills:
        b, j = f["bar"], f["symbol"]
        assert b >= 1 and has_bar[b, j] or f["reason"] == "halt"
        if f["reason"] == "rebalance":  # from a weight row since the symbol's previous bar
            prev = np.flatnonzero(has_bar[:b, j])
            assert (~np.isnan(w[prev[-1] if prev.size else 0 : b, j])).any()
        assert f["commission"] == pytest.approx(abs(f["quantity"]) * f["price"] * cfg.commission)
        cash[b:] -= f["quantity"] * f["price"] + f["commission"]
        qty[b:, j] += f["quantity"]
    last = np.copy(panel.close)
    for t in range(1, T):
        last[t] = np.where(np.isnan(last[t]), last[t - 1], last[t])
    marked = cash + np.nansum(np.where(qty != 0, qty * last, 0.0), axis=1)
    np.testing.assert_allclose(res.cash, cash, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(res.qty, qty, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.equity, marked, rtol=1e-9, atol=1e-6)
    assert sum(t["pnl"] for t in res.trades) == pytest.approx(res.equity[-1] - cfg.cash, rel=1e-9, abs=1e-6)
    for j in range(N):  # the trades' quantities account for every share bought and sold
        opened = sum(t["quantity"] for t in res.trades if t["symbol"] == j and t["is_open"])
        assert opened == pytest.approx(abs(res.qty[-1, j]), abs=1e-6)
    if cfg.whole_shares:
        assert all(float(f["quantity"]).is_integer() for f in res.fills)
    if not cfg.allow_short and cfg.leverage == 1:
        assert res.cash.min() >= -1e-6 * cfg.cash  # buying never borrows
        assert (res.qty >= 0).all()
    if res.halted_at is not None:  # flat from the halt on; only halt fills at the halt bar, none after it
        h = res.halted_at
        assert (res.qty[h:] == 0).all()
        assert all(f["bar"] < h or (f["bar"] == h and f["reason"] == "halt") for f in res.fills)
        # every position open before the halt is closed by a halt fill (a flat book needs none)
        assert {f["symbol"] for f in res.fills if f["bar"] == h} == set(np.flatnonzero(res.qty[h - 1] != 0))


@given(random_bars(), weight_setups(costs=False), st.sampled_from([0.001, 0.01]), st.sampled_from([5.0, 50.0]))
def test_weights_costs_never_make_a_lot_better(df, setup, commission, slippage):
    free, seed, nan_share = setup
    costly = Config(**(free.__dict__ | {"commission": commission, "slippage_bps": slippage}))
    panel = Panel.from_bars(df)
    w = random_weights(panel, free, seed, nan_share)
    a, b = simulate_weights(panel, w, free), simulate_weights(panel, w, costly)
    key = ("symbol", "entry_bar", "exit_bar", "side", "is_open")  # an open lot is marked at the close, not a fill
    by_key = {tuple(t[k] for k in key): t for t in a.trades}
    for t in b.trades:
        k = tuple(t[k] for k in key)
        if k in by_key:
            assert t["return_pct"] <= by_key[k]["return_pct"] + 1e-9


@given(random_bars(n_symbols=st.just(1)), st.integers(0, 2**32 - 1), st.sampled_from([0.001, 0.01]),
       st.sampled_from([1.0, 50.0]))
def test_weights_costs_never_make_a_fully_invested_run_better(df, seed, commission, slippage):
    panel = Panel.from_bars(df)
    rng = np.random.default_rng(seed)
    w = rng.choice([0.0, 1.0, np.nan], size=panel.close.shape)
    free = Config(cash=10_000.0, whole_shares=False, commission=0.0, slippage_bps=0.0)
    costly = Config(cash=10_000.0, whole_shares=False, commission=commission, slippage_bps=slippage)
    a, b = simulate_weights(panel, w, free), simulate_weights(panel, w, costly)
    assert b.equity[-1] <= a.equity[-1] + 1e-9
    if a.fills:
        assert b.equity[-1] < a.equity[-1]


def causal_weights(panel: dict, params: dict) -> np.ndarray:
    """Weight each symbol by its positive 3-bar return (uses rows up to t only)."""
    c = panel["close"]
    ret = np.full(c.shape, np.nan)
    ret[3:] = c[3:] / c[:-3] - 1
    pos = np.clip(np.nan_to_num(ret), 0, None)
    total = pos.sum(axis=1, keepdims=True)
    return np.where(total > 0, pos / np.where(total > 0, total, 1), 0.0)


@given(random_bars(), weight_setups(), st.data())
def test_weights_no_lookahead_changing_future_bars_changes_nothing_before(df, setup, data):
    cfg, _, _ = setup
    strat = weights_strategy(causal_weights)
    panel = Panel.from_bars(df)
    w, _ = compute_weights(panel, strat, {}, cfg.allow_short, cfg.leverage)
    res = simulate_weights(panel, w, cfg)
    T = panel.close.shape[0]
    t = data.draw(st.integers(0, T - 2), label="t")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    future = pl.col("timestamp").dt.replace_time_zone(None) > panel.timestamps[t]
    noise = pl.Series(np.exp(rng.normal(0, 0.2, df.height)))
    changed = df.with_columns([pl.when(future).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close")])
    changed = changed.with_columns(pl.max_horizontal("open", "high", "close").alias("high"),
                                   pl.min_horizontal("open", "low", "close").alias("low"))
    panel2 = Panel.from_bars(changed)
    w2, _ = compute_weights(panel2, strat, {}, cfg.allow_short, cfg.leverage)
    res2 = simulate_weights(panel2, w2, cfg)
    np.testing.assert_array_equal(w[: t + 1], w2[: t + 1])
    assert [f for f in res.fills if f["bar"] <= t] == [f for f in res2.fills if f["bar"] <= t]
    np.testing.assert_array_equal(res.equity[: t + 1], res2.equity[: t + 1])


def test_the_weights_panel_is_read_only():
    panel = Panel.from_bars(frame({"A": [(10, 10)] * 3}))

    def writes(pn, p):
        pn["close"][0, 0] = 1.0
        return np.zeros(pn["close"].shape)

    with pytest.raises(StrategyError, match="test.py: weights: ValueError: .*read-only"):
        compute_weights(panel, weights_strategy(writes), {}, False, 1.0)
    assert panel.close[0, 0] == 10.0
