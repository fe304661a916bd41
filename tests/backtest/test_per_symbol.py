"""Per-symbol metrics (README "Per-symbol returns"): time-weighted returns on the capital each
symbol actually had, so a long-only symbol can never show a loss beyond -100 %."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slices.backtest import engine
from slices.backtest.engine import Config, Panel, simulate
from slices.backtest.metrics import equity_metrics, symbol_equity
from slices.backtest.sim import Fills
from slices.backtest.run import backtest



def _panel(closes: dict[str, list[float]], opens: dict[str, list[float]] | None = None) -> Panel:
    frames = []
    for sym, c in closes.items():
        c = np.asarray(c, dtype=float)
        o = np.asarray(opens[sym], dtype=float) if opens else c
        frames.append(pl.DataFrame({
            "symbol": sym,
            "timestamp": pl.Series(np.datetime64("2020-01-01", "us") + np.arange(c.size) * np.timedelta64(1, "D")
                                   ).dt.replace_time_zone("UTC"),
            "open": o, "high": np.maximum(o, c) * 1.01, "low": np.minimum(o, c) * 0.99, "close": c, "volume": 1.0,
        }))
    return Panel.from_bars(pl.concat(frames))


def typed(fills: list[dict]) -> Fills:
    """The engine's typed fill records from hand-written fills (position and cash flow after each)."""
    qty, flow, after_q, after_f = {}, {}, [], []
    for f in fills:
        qty[f["symbol"]] = qty.get(f["symbol"], 0.0) + f["quantity"]
        flow[f["symbol"]] = flow.get(f["symbol"], 0.0) - f["quantity"] * f["price"] - f["commission"]
        after_q.append(qty[f["symbol"]])
        after_f.append(flow[f["symbol"]])
    col = lambda k, dt=float: np.array([f[k] for f in fills], dtype=dt)  # noqa: E731
    return Fills(col("bar", np.int64), col("symbol", np.int64), col("quantity"), col("price"), col("commission"),
                 np.zeros(len(fills), np.int8), np.array(after_q), np.array(after_f))


def test_hand_computed_symbol_equity():
    # buy 10 @ 10 (+1 commission) on bar 1, closes 10, 11, 9, sell 10 @ 9.5 (-0.95 commission) on bar 3
    close = np.array([[10.0], [11.0], [9.0], [9.5]])
    fills = [{"bar": 1, "symbol": 0, "quantity": 10.0, "price": 10.0, "commission": 1.0},
             {"bar": 3, "symbol": 0, "quantity": -10.0, "price": 9.5, "commission": 0.95}]
    qty = np.array([[0.0], [10.0], [10.0], [0.0]])
    cash = np.array([[0.0], [-101.0], [-101.0], [-101.0 + 95.0 - 0.95]])
    eq = symbol_equity(1000.0, qty, cash, close, typed(fills))[:, 0]
    r1 = (110 - 101) / 101  # P&L 9 on the capital 101 put in on bar 1
    r2 = (90 - 110) / 110  # P&L -20 on the 110 held at the previous close
    r3 = (95 - 0.95 - 90) / 90  # P&L 4.05 on the 90 held
    assert eq == pytest.approx([1000, 1000 * (1 + r1), 1000 * (1 + r1) * (1 + r2), 1000 * (1 + r1) * (1 + r2) * (1 + r3)])


def test_reversal_counts_only_the_opening_part():
    # short 5 @ 10 is reversed by one fill of +15 @ 10 on bar 2: 10 shares open the long
    close = np.array([[10.0], [10.0], [10.0], [12.0]])
    fills = [{"bar": 1, "symbol": 0, "quantity": -5.0, "price": 10.0, "commission": 0.0},
             {"bar": 2, "symbol": 0, "quantity": 15.0, "price": 10.0, "commission": 3.0}]
    qty = np.array([[0.0], [-5.0], [10.0], [10.0]])
    cash = np.array([[0.0], [50.0], [50.0 - 153.0], [50.0 - 153.0]])
    eq = symbol_equity(100.0, qty, cash, close, typed(fills))[:, 0]
    k2 = 5 * 10 + 10 * 10 + 3.0 * 10 / 15  # held short 50 + the opening 10 shares with their share of commission
    r2 = -3.0 / k2
    r3 = 20.0 / 100.0
    assert eq == pytest.approx([100, 100, 100 * (1 + r2), 100 * (1 + r2) * (1 + r3)])


def test_symbol_with_more_than_its_share_cannot_lose_more_than_everything():
    # fixed-fraction 0.9 with two symbols: A gets 90 % of the cash (its "share" is 50 %), then falls 60 %.
    # The old per-symbol equity (share + P&L) went to 50,000 - 54,000 < 0: an impossible -108 % return.
    panel = _panel({"A": [100, 100, 100, 40, 40], "B": [10, 10, 10, 10, 10]})
    targets = np.zeros((5, 2), dtype=np.int8)
    targets[0:, 0] = 1
    cfg = Config(cash=100_000, commission=0.0, slippage_bps=0.0, whole_shares=False, sizing="fixed-fraction",
                 fraction=0.9)
    res = simulate(panel, targets, np.full((5, 2), np.nan), cfg)
    assert res.qty[1, 0] == pytest.approx(900.0)
    eq = symbol_equity(50_000.0, res.qty, res.sym_cash, res.close_ff, res.fills)
    m = equity_metrics(eq[:, 0], 252)
    assert m["total_return"] == pytest.approx(-0.6) and m["max_drawdown"] == pytest.approx(-0.6)
    assert m["final_equity"] == pytest.approx(20_000.0)
    assert eq[:, 1] == pytest.approx(np.full(5, 50_000.0))  # B never traded
    old = 50_000 + res.sym_cash[:, 0] + res.qty[:, 0] * res.close_ff[:, 0]
    assert old[-1] < 0  # what the old definition reported


@st.composite
def long_only_runs(draw):
    t, n = draw(st.integers(5, 60)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vol = draw(st.sampled_from([0.02, 0.2, 0.6]))  # 0.6: daily crashes of up to ~80 %
    closes = {f"S{j}": list(50 * np.exp(np.cumsum(rng.normal(0, vol, t)))) for j in range(n)}
    opens = {s: list(np.asarray(c) * np.exp(rng.normal(0, vol / 2, t))) for s, c in closes.items()}
    panel = _panel(closes, opens)
    cfg = Config(
        cash=draw(st.sampled_from([1_000.0, 100_000.0])), commission=draw(st.sampled_from([0.0, 0.001, 0.05])),
        slippage_bps=draw(st.sampled_from([0.0, 10.0, 500.0])), whole_shares=draw(st.booleans()),
        sizing=draw(st.sampled_from(["equal-weight", "fixed-fraction", "atr-risk"])),
        fraction=draw(st.sampled_from([None, 0.9])), stop_loss_atr=draw(st.sampled_from([None, 1.0])),
        take_profit_atr=draw(st.sampled_from([None, 2.0])), atr_window=2,
        max_drawdown=draw(st.sampled_from([None, 0.3])),
    )
    weights_form = hasattr(engine, "simulate_weights") and draw(st.booleans())
    if weights_form:
        w = rng.uniform(0, 1, (t, n)) * (rng.uniform(size=(t, n)) < 0.5)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1.0)
        return panel, cfg, ("weights", w)
    targets = (rng.uniform(size=(t, n)) < draw(st.sampled_from([0.3, 0.7]))).astype(np.int8)
    atr = np.abs(rng.normal(1.0, 0.5, (t, n)))
    return panel, cfg, ("targets", targets, atr)


@given(long_only_runs())
def test_long_only_symbol_returns_are_bounded(run):
    panel, cfg, form = run
    if form[0] == "weights":
        res = engine.simulate_weights(panel, form[1], cfg)
    else:
        res = simulate(panel, form[1], form[2], cfg)
    alloc = cfg.cash / len(panel.symbols)
    eq = symbol_equity(alloc, res.qty, res.sym_cash, res.close_ff, res.fills)
    assert (eq >= 0).all()
    for j in range(len(panel.symbols)):
        m = equity_metrics(eq[:, j], 252)
        assert m["max_drawdown"] >= -1 and m["total_return"] >= -1 and m["final_equity"] >= 0
    # a symbol without fills keeps its allocation exactly
    traded = {f["symbol"] for f in res.fills}
    for j in set(range(len(panel.symbols))) - traded:
        assert (eq[:, j] == alloc).all()


def test_shared_file_per_symbol_metrics_are_possible(sp500):
    o = backtest("simple_ma", data=[str(sp500)])
    assert len(o.per_symbol) == 475
    worst = min(m["max_drawdown"] for m in o.per_symbol.values())
    assert -1 <= worst < 0
    assert all(m["total_return"] >= -1 and m["final_equity"] >= 0 for m in o.per_symbol.values())
    never = next(w for w in o.report.warnings if "never traded" in w)
    assert all(f"{s} (" in never for s in ("AMZN", "GOOGL", "BLK"))
    assert o.run["timeframe"] == "1d" and o.run["periods_per_year"] == 252


def test_shared_file_buy_and_hold_is_plausible(sp500):
    # BHF and SCG (sub-penny placeholder quotes, close jumps of x1,000s) used to make buy and hold +1,443 %
    o = backtest("momentum", data=[str(sp500)])
    assert "BHF" not in o.per_symbol and "SCG" not in o.per_symbol
    assert 0 < o.benchmark["total_return"] < 2.0
    best = max(o.per_symbol, key=lambda s: o.per_symbol[s]["buy_and_hold_return"])
    assert best == "AMD" and o.per_symbol[best]["buy_and_hold_return"] < 20  # AMD really rose ~18x in 2015-2020
