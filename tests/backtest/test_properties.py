"""Property tests (hypothesis) of the money rules over random bars, strategies and settings.

* equity = cash + marked positions at every bar, with cash and positions rebuilt independently
  from the fills; trade P&L adds up to the equity change;
* costs never make a trade (or a fully invested single-symbol run) better;
* a zero-cost round trip at one price changes nothing;
* no lookahead: changing any bar after t leaves every target, fill and equity value up to t unchanged;
* adding an unrelated symbol to the data does not change a single-symbol run.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from slices.backtest.engine import Config, Panel, compute_targets, simulate
from slices.backtest.run import backtest
from slices.backtest.strategies import STRATEGIES, resolve_params

SMALL_PARAMS = {
    "simple_ma": {"fast": st.integers(1, 4), "slow": st.integers(5, 9)},
    "momentum": {"lookback": st.integers(1, 6), "threshold": st.sampled_from([0.0, 0.01])},
    "mean_reversion": {"window": st.integers(3, 8), "z_entry": st.sampled_from([1.0, 1.5]), "z_exit": st.sampled_from([0.2, 0.5])},
    "volatility": {"window": st.integers(2, 6), "atr_window": st.integers(1, 5), "k": st.sampled_from([0.5, 1.0])},
    "breakout": {"window": st.integers(2, 6), "exit_window": st.integers(1, 4)},
}


@st.composite
def random_bars(draw, n_symbols=st.integers(1, 3), n_bars=st.integers(12, 80)):
    """Random OHLC bars for 1-3 symbols; symbols may start late or miss bars (ragged timeline)."""
    t = draw(n_bars)
    k = draw(n_symbols)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(k):
        ret = rng.normal(0, draw(st.sampled_from([0.005, 0.02, 0.06])), t)
        close = 50 * np.exp(np.cumsum(ret))
        opn = close * np.exp(rng.normal(0, 0.01, t))
        hi = np.maximum(opn, close) * (1 + rng.uniform(0, 0.02, t))
        lo = np.minimum(opn, close) * (1 - rng.uniform(0, 0.02, t))
        stamps = np.datetime64("2020-01-01", "us") + np.arange(t) * np.timedelta64(1, "D")
        keep = np.ones(t, dtype=bool)
        if s > 0 and draw(st.booleans()):
            keep[: draw(st.integers(0, t // 3))] = False  # late listing
            keep &= rng.uniform(size=t) > 0.1  # missing bars
        frames.append(pl.DataFrame({
            "symbol": f"S{s}", "timestamp": pl.Series(stamps[keep]).dt.replace_time_zone("UTC"),
            "open": opn[keep], "high": hi[keep], "low": lo[keep], "close": close[keep], "volume": 1e5,
        }))
    return pl.concat(frames)


@st.composite
def setups(draw, costs=True, stops=True):
    name = draw(st.sampled_from(sorted(STRATEGIES)))
    params = {k: str(draw(v)) for k, v in SMALL_PARAMS[name].items()}
    cfg = Config(
        cash=draw(st.sampled_from([1_000.0, 100_000.0])),
        commission=draw(st.sampled_from([0.0, 0.001, 0.01])) if costs else 0.0,
        slippage_bps=draw(st.sampled_from([0.0, 5.0, 50.0])) if costs else 0.0,
        allow_short=draw(st.booleans()),
        whole_shares=draw(st.booleans()),
        sizing=draw(st.sampled_from(["equal-weight", "fixed-fraction", "atr-risk"])),
        fraction=draw(st.sampled_from([None, 0.7])),  # 0.7: sizes that only the cash cap keeps in bounds
        stop_loss_atr=draw(st.sampled_from([None, 1.0, 3.0])) if stops else None,
        take_profit_atr=draw(st.sampled_from([None, 2.0])) if stops else None,
        atr_window=draw(st.integers(1, 5)),
        max_position_pct=draw(st.sampled_from([100.0, 40.0])),
        max_drawdown=draw(st.sampled_from([None, 0.05])) if stops else None,
    )
    return name, params, cfg


def simulate_bars(df, name, params, cfg):
    strat, p = resolve_params(name, params)
    panel = Panel.from_bars(df)
    targets, atrs = compute_targets(panel, strat, p, cfg.allow_short, cfg.atr_window)
    return panel, targets, simulate(panel, targets, atrs, cfg)


@given(random_bars(), setups())
def test_equity_reconciles_with_cash_and_positions_rebuilt_from_fills(df, setup):
    name, params, cfg = setup
    panel, targets, res = simulate_bars(df, name, params, cfg)
    T, N = panel.close.shape
    for f in res.fills:  # an order from a signal fills strictly after the bar whose close changed the target
        if f["reason"] in ("entry", "signal", "reverse"):
            rows = np.flatnonzero(~np.isnan(panel.close[:, f["symbol"]]))
            k = int(np.searchsorted(rows, f["bar"]))
            assert k >= 1 and rows[k] == f["bar"]
            before = targets[rows[k - 2], f["symbol"]] if k >= 2 else 0
            assert targets[rows[k - 1], f["symbol"]] != before
    cash = np.full(T, cfg.cash)
    qty = np.zeros((T, N))
    for f in res.fills:
        cash[f["bar"]:] -= f["quantity"] * f["price"] + f["commission"]
        qty[f["bar"]:, f["symbol"]] += f["quantity"]
        # every fill is at a price the bar traded at (slippage aside), never before bar 1
        assert f["bar"] >= 1
        assert f["commission"] == pytest.approx(abs(f["quantity"]) * f["price"] * cfg.commission)
    last = np.copy(panel.close)
    for t in range(1, T):  # independent carry-forward of the last close
        last[t] = np.where(np.isnan(last[t]), last[t - 1], last[t])
    marked = cash + np.nansum(np.where(qty != 0, qty * last, 0.0), axis=1)
    np.testing.assert_allclose(res.cash, cash, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(res.qty, qty, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.equity, marked, rtol=1e-9, atol=1e-6)
    # the trades' P&L (open ones marked at the last close) is the whole equity change
    assert sum(t["pnl"] for t in res.trades) == pytest.approx(res.equity[-1] - cfg.cash, rel=1e-9, abs=1e-6)
    if not cfg.allow_short:
        assert res.cash.min() >= -1e-6 * cfg.cash  # buying never borrows
        assert (res.qty >= 0).all()


@given(random_bars(), setups(costs=False, stops=False), st.sampled_from([0.001, 0.01]), st.sampled_from([5.0, 50.0]))
def test_costs_never_make_a_trade_better(df, setup, commission, slippage):
    name, params, free = setup
    free.max_drawdown = None
    costly = Config(**(free.__dict__ | {"commission": commission, "slippage_bps": slippage}))
    _, _, a = simulate_bars(df, name, params, free)
    _, _, b = simulate_bars(df, name, params, costly)
    by_key = {(t["symbol"], t["entry_bar"], t["exit_bar"]): t for t in a.trades}
    for t in b.trades:
        k = (t["symbol"], t["entry_bar"], t["exit_bar"])
        if k in by_key:  # same trade without costs: its return is never lower
            assert t["return_pct"] <= by_key[k]["return_pct"] + 1e-9


@given(random_bars(n_symbols=st.just(1)), setups(costs=False, stops=False), st.sampled_from([0.001, 0.01]),
       st.sampled_from([1.0, 50.0]))
def test_costs_never_make_a_fully_invested_run_better(df, setup, commission, slippage):
    name, params, _ = setup
    free = Config(cash=10_000.0, whole_shares=False, commission=0.0, slippage_bps=0.0)
    costly = Config(cash=10_000.0, whole_shares=False, commission=commission, slippage_bps=slippage)
    _, _, a = simulate_bars(df, name, params, free)
    _, _, b = simulate_bars(df, name, params, costly)
    assert b.equity[-1] <= a.equity[-1] + 1e-9
    if a.fills:
        assert b.equity[-1] < a.equity[-1]  # with at least one fill the costs bite


@given(random_bars(), setups(costs=False, stops=False))
def test_zero_cost_round_trips_at_one_price_change_nothing(df, setup):
    name, params, cfg = setup
    cfg.max_drawdown = None
    # every fill happens at an open; make every open (and the final close) the same price
    df = df.with_columns(pl.lit(50.0).alias("open"))
    last = pl.col("timestamp") == pl.col("timestamp").max().over("symbol")
    df = df.with_columns(pl.when(last).then(50.0).otherwise(pl.col("close")).alias("close"))
    df = df.with_columns(pl.max_horizontal("open", "high", "close").alias("high"),
                         pl.min_horizontal("open", "low", "close").alias("low"))
    _, _, res = simulate_bars(df, name, params, cfg)
    assert res.equity[-1] == pytest.approx(cfg.cash, rel=1e-12)
    assert all(t["pnl"] == pytest.approx(0.0, abs=1e-9 * cfg.cash) for t in res.trades)


@given(random_bars(), setups(), st.data())
def test_no_lookahead_changing_future_bars_changes_nothing_before(df, setup, data):
    name, params, cfg = setup
    panel, targets, res = simulate_bars(df, name, params, cfg)
    T = panel.close.shape[0]
    t = data.draw(st.integers(0, T - 2), label="t")
    cut = panel.timestamps[t]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    future = pl.col("timestamp").dt.replace_time_zone(None) > cut
    noise = pl.Series(np.exp(rng.normal(0, 0.2, df.height)))
    changed = df.with_columns([pl.when(future).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close")])
    changed = changed.with_columns(pl.max_horizontal("open", "high", "close").alias("high"),
                                   pl.min_horizontal("open", "low", "close").alias("low"))
    panel2, targets2, res2 = simulate_bars(changed, name, params, cfg)
    assert np.array_equal(targets[: t + 1], targets2[: t + 1])
    before = [f for f in res.fills if f["bar"] <= t]
    assert before == [f for f in res2.fills if f["bar"] <= t]
    np.testing.assert_array_equal(res.equity[: t + 1], res2.equity[: t + 1])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_adding_an_unrelated_symbol_does_not_change_a_single_symbol_run(tmp_path, name):
    rng = np.random.default_rng(7)
    n = 300
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    stamps = pl.Series(np.datetime64("2019-01-01", "us") + np.arange(n) * np.timedelta64(1, "D")).dt.replace_time_zone("UTC")
    one = pl.DataFrame({"symbol": "AAA", "timestamp": stamps, "open": close * 0.999, "high": close * 1.01,
                        "low": close * 0.98, "close": close, "volume": 1e6})
    # another symbol on other (and more) timestamps, with its own prices
    other_stamps = pl.Series(np.datetime64("2018-06-01T12:00", "us") + np.arange(2 * n) * np.timedelta64(12, "h")).dt.replace_time_zone("UTC")
    other = pl.DataFrame({"symbol": "BBB", "timestamp": other_stamps, "open": 10.0, "high": 11.0, "low": 9.0,
                          "close": 10.0 + rng.uniform(-0.5, 0.5, 2 * n), "volume": 1e6})
    one.write_parquet(tmp_path / "one.parquet")
    pl.concat([one, other]).write_parquet(tmp_path / "both.parquet")
    a = backtest(name, ["AAA"], data=[str(tmp_path / "one.parquet")])
    b = backtest(name, ["AAA"], data=[str(tmp_path / "both.parquet")])
    assert a.trades.equals(b.trades)
    assert a.equity.equals(b.equity)
    assert a.portfolio == b.portfolio
