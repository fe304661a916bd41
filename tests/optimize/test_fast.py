"""The fast path (slices/optimize/fast.py, numba) equals the event engine (engine.simulate) on
every metric to 1e-9 and on the number of trades: hypothesis over random bars, ragged
multi-symbol panels, random targets and random options (costs, sizings, whole/fractional
shares, shorts, ATR stops and targets, max-position-pct, the drawdown halt)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import ROOT, SAMPLE
from slices.optimize import evaluate as ev
from slices.optimize import fast
from slices.optimize.engine import Config, Panel, simulate
from slices.optimize.evaluate import Prepared, _finish, run_signals
from slices.optimize.metrics import METRICS
from slices.optimize.bars import LoadReport
from slices.optimize.strategies import STRATEGIES

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="numba not installed (the engine is used instead)")


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@st.composite
def cases(draw):
    """A random panel (T bars, N symbols, some symbols starting late, ending early or with holes),
    random targets in {-1, 0, 1} and a random Config."""
    T = draw(st.integers(3, 80))
    N = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, draw(st.sampled_from([0.005, 0.03, 0.08])), (T, N)), axis=0))
    if draw(st.booleans()):
        close = np.round(close, 2)  # ties between closes, as in real prices
    open_ = close * np.exp(rng.normal(0, 0.01, (T, N)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.03, (T, N)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.03, (T, N)))
    has = np.ones((T, N), dtype=bool)
    if draw(st.booleans()):  # ragged: late starts, early ends, holes
        for j in range(N):
            a = int(rng.integers(0, T // 2))
            b = int(rng.integers(max(a + 2, T // 2), T + 1))
            has[:a, j] = False
            has[b:, j] = False
            has[a:b, j] &= rng.uniform(size=b - a) > 0.15
            has[a, j] = True
    has[:, 0] |= ~has.any(axis=1)  # every row of the timeline has a bar somewhere
    for m in (open_, high, low, close):
        m[~has] = np.nan
    flips = draw(st.sampled_from([0.05, 0.2, 0.6]))
    raw = rng.integers(-1, 2, (T, N)).astype(np.int8)
    keep = rng.uniform(size=(T, N)) > flips
    targets = raw.copy()
    for t in range(1, T):
        targets[t] = np.where(keep[t], targets[t - 1], raw[t])
    sizing = draw(st.sampled_from(["equal-weight", "fixed-fraction", "atr-risk"]))
    cfg = Config(
        cash=draw(st.sampled_from([1_000.0, 25_000.0, 100_000.0])),
        commission=draw(st.sampled_from([0.0, 0.0005, 0.01])),
        slippage_bps=draw(st.sampled_from([0.0, 2.0, 25.0])),
        allow_short=draw(st.booleans()),
        whole_shares=draw(st.booleans()),
        sizing=sizing,
        fraction=draw(st.sampled_from([None, 0.05, 0.5, 1.0])),
        stop_loss_atr=draw(st.sampled_from([None, 0.5, 2.0])),
        take_profit_atr=draw(st.sampled_from([None, 0.7, 3.0])),
        atr_window=draw(st.integers(1, 5)),
        max_position_pct=draw(st.sampled_from([100.0, 30.0])),
        max_drawdown=draw(st.sampled_from([None, 0.02, 0.1])),
    )
    if not cfg.allow_short:
        targets = np.maximum(targets, 0).astype(np.int8)
    return Panel([f"S{j}" for j in range(N)], np.arange(T).astype("datetime64[D]").astype("datetime64[us]"),
                 open_, high, low, close), targets, cfg


def _prepared(panel: Panel, cfg: Config) -> Prepared:
    return _finish(STRATEGIES["simple_ma"], cfg, panel, "1d", LoadReport())


def _both(prep: Prepared, targets: np.ndarray) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    m_fast, eq_fast = run_signals(prep, targets)
    ev._ENGINE_ONLY = True
    try:
        m_eng, eq_eng = run_signals(prep, targets)
    finally:
        ev._ENGINE_ONLY = False
    return m_fast, eq_fast, m_eng, eq_eng


@settings(max_examples=300)
@given(cases())
def test_fast_path_equals_engine(case):
    panel, targets, cfg = case
    prep = _prepared(panel, cfg)
    m_fast, eq_fast, m_eng, eq_eng = _both(prep, targets)
    assert m_fast["n_trades"] == m_eng["n_trades"]
    bad = {k: (m_fast[k], m_eng[k]) for k in METRICS if not _close(m_fast[k], m_eng[k])}
    assert not bad
    np.testing.assert_allclose(eq_fast, eq_eng, rtol=1e-12)


@settings(max_examples=100)
@given(cases())
def test_fast_trades_and_positions_equal_engine(case):
    """Beyond the metrics: the same trades (entry bar, symbol, pnl, return) in the same order,
    and the same cash and positions at every bar."""
    panel, targets, cfg = case
    prep = _prepared(panel, cfg)
    fr = fast.Frozen(panel)
    equity, gross, pnl, ret = fast.simulate_targets(fr, targets, prep.atrs, cfg)
    res = simulate(panel, targets, prep.atrs, cfg)
    order = sorted(range(len(res.trades)), key=lambda i: (res.trades[i]["entry_bar"], res.trades[i]["symbol"]))
    np.testing.assert_allclose(pnl, [res.trades[i]["pnl"] for i in order], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ret, [res.trades[i]["return_pct"] / 100 for i in order], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(equity, res.equity, rtol=1e-12)
    np.testing.assert_allclose(gross, res.gross, rtol=1e-12, atol=1e-9)


def test_fast_path_on_the_sample_equals_engine():
    """Real bars (the embedded sample, 5 symbols), every built-in strategy, shorts and stops."""
    from slices.optimize.evaluate import DataSpec, prepare, signals_of

    for name, params in (("simple_ma", {"fast": 5, "slow": 30}), ("momentum", {"lookback": 20, "threshold": 0.0}),
                         ("mean_reversion", {"window": 20, "z_entry": 2.0, "z_exit": 0.5}),
                         ("volatility", {"window": 20, "atr_window": 14, "k": 2.0}),
                         ("breakout", {"window": 20, "exit_window": 10})):
        cfg = Config(allow_short=True, stop_loss_atr=2.0, take_profit_atr=4.0, max_drawdown=0.25)
        prep = prepare(STRATEGIES[name], cfg, DataSpec(symbols=["AAPL", "MSFT", "XOM", "KO", "NFLX"], store=str(SAMPLE)), 60)
        m_fast, _, m_eng, _ = _both(prep, signals_of(prep, params))
        assert m_fast["n_trades"] == m_eng["n_trades"] > 10
        assert all(_close(m_fast[k], m_eng[k]) for k in METRICS), name


def test_run_signals_uses_the_fast_path(monkeypatch):
    """A targets strategy goes through fast.simulate_targets (not the event engine)."""
    calls = []
    real = fast.simulate_targets
    monkeypatch.setattr(fast, "simulate_targets", lambda *a: calls.append(1) or real(*a))
    panel = Panel(["A"], np.arange(5).astype("datetime64[D]").astype("datetime64[us]"),
                  *(np.array([[10.0], [11.0], [12.0], [11.0], [13.0]]),) * 4)
    prep = _prepared(panel, Config())
    run_signals(prep, np.array([[0], [1], [1], [0], [0]], dtype=np.int8))
    assert calls == [1]


def _sample_prep(symbols: list[str]) -> Prepared:
    from slices.optimize.evaluate import DataSpec, prepare

    return prepare(STRATEGIES["simple_ma"], Config(), DataSpec(symbols=symbols, store=str(SAMPLE)), 60)


def test_default_jobs_run_small_sweeps_in_process(monkeypatch):
    """--jobs not given: all cores, except when the estimate says the sweep ends sooner
    in this process; an explicit --jobs is always honoured."""
    from slices.optimize import search

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    prep = _sample_prep(["AAPL"])
    assert search.estimate_seconds(prep, 100) < search.SMALL_SWEEP_S
    small = search.Executor(prep, None, None, 100)
    assert small.jobs == 1 and small.pool is None
    small.close()
    monkeypatch.setattr(search, "SMALL_SWEEP_S", 0.0)
    big = search.Executor(prep, None, None, 100)
    assert big.jobs == 4 and big.pool is not None
    big.close()
    monkeypatch.setattr(search, "SMALL_SWEEP_S", 1e9)
    named = search.Executor(prep, 2, None, 100)
    assert named.jobs == 2 and named.pool is not None
    named.close()


def test_indicators_are_computed_once_per_window_across_batches(monkeypatch):
    """The SMAs of a sweep are cached across its batches (evaluate_many calls): a second batch
    with the same windows computes none, and the results are the same."""
    from slices.optimize import strategies
    from slices.optimize.evaluate import evaluate_many

    prep = _sample_prep(["AAPL", "MSFT"])
    first = evaluate_many(prep, [{"fast": 5, "slow": 30}, {"fast": 10, "slow": 30}])
    computed = []
    real = strategies.sliding_window_view
    monkeypatch.setattr(strategies, "sliding_window_view", lambda *a: computed.append(a[1]) or real(*a))
    again = evaluate_many(prep, [{"fast": 10, "slow": 30}, {"fast": 5, "slow": 30}])
    assert computed == []
    assert again[0][0] == first[1][0] and again[1][0] == first[0][0]
    evaluate_many(prep, [{"fast": 7, "slow": 30}])
    assert computed == [7, 7]  # the new window only, once per symbol


def test_small_sweeps_take_the_engine_without_loading_numba():
    """A sweep whose event-engine estimate is under FAST_AFTER_S never imports numba (loading it
    and the cached kernels costs more than the sweep); a large one takes the compiled path. The
    paths give the same metrics (test_fast_path_equals_engine), so only the time differs."""
    import subprocess
    import sys


    code = ("import sys\n"
            "from slices.optimize.engine import Config\n"
            "from slices.optimize.evaluate import DataSpec\n"
            "from slices.optimize.search import SearchSettings, run_search\n"
            "for space in (['fast=5:25:5', 'slow=30:100:5'], ['fast=2:41:1', 'slow=45:120:3']):\n"
            f"    s = SearchSettings(space=space, jobs=1, config=Config(), data=DataSpec(symbols=['AAPL'], store={str(SAMPLE)!r}))\n"
            "    res, prep = run_search(s)\n"
            "    print(len(res.params), prep.use_fast, 'numba' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["75 False False", "1040 True True"]


def test_small_sweep_choice_follows_the_engine_estimate():
    from slices.optimize import search

    prep = _sample_prep(["AAPL"])
    T, N = prep.panel.close.shape
    edge = search.FAST_AFTER_S / (1.1e-6 * T * N)
    search.choose_path(prep, int(edge) - 1)
    assert prep.use_fast is False
    search.choose_path(prep, int(edge) + 2)
    assert prep.use_fast is True
