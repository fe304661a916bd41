"""Portfolio weights against PyPortfolioOpt and Riskfolio-Lib on the shared S&P data, Ledoit-Wolf
against scikit-learn, the rebalancing strategy file through the backtest slice, and Kelly."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, SAMPLE, optimize
from slices.optimize.kelly import kelly_sizes
from slices.optimize.portfolio import covariance, expected_returns, ledoit_wolf, optimise, returns_of

NAMES = ["AAPL", "MSFT", "JPM", "XOM", "JNJ", "KO", "PG", "WMT", "INTC", "CSCO", "PFE", "MRK"]


@pytest.fixture(scope="module")
def prices(sp500):
    df = pl.read_parquet(sp500)
    sym = "symbol" if "symbol" in df.columns else "ticker"
    ts = next(c for c in df.columns if c.lower() in ("date", "timestamp", "datetime"))
    wide = df.filter(pl.col(sym).is_in(NAMES)).pivot(on=sym, index=ts, values="close").sort(ts).drop_nulls()
    return wide.select(NAMES).to_pandas()


def _mine(prices, method, **kw):
    r = returns_of(prices.to_numpy())
    return optimise(method, r, 252.0, **kw)


def test_inputs_match_pypfopt(prices):
    pypfopt = pytest.importorskip("pypfopt")
    r = returns_of(prices.to_numpy())
    np.testing.assert_allclose(expected_returns(r, 252), pypfopt.expected_returns.mean_historical_return(prices).to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(covariance(r, 252), pypfopt.risk_models.sample_cov(prices).to_numpy(), rtol=1e-10)


def test_ledoit_wolf_matches_sklearn(prices):
    sk = pytest.importorskip("sklearn.covariance")
    r = returns_of(prices.to_numpy())
    want, s_want = sk.ledoit_wolf(r)
    got, s = ledoit_wolf(r)
    assert s == pytest.approx(s_want, rel=1e-10)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("method, kw", [
    ("max-sharpe", {}), ("min-volatility", {}), ("efficient-return", {"target": 0.15}),
    ("efficient-risk", {"target": 0.16}), ("max-sharpe", {"max_weight": 0.2}), ("min-volatility", {"allow_short": True}),
])
def test_weights_match_pypfopt(prices, method, kw):
    pypfopt = pytest.importorskip("pypfopt")
    mu = pypfopt.expected_returns.mean_historical_return(prices)
    S = pypfopt.risk_models.sample_cov(prices)
    bounds = (-1, 1) if kw.get("allow_short") else (0, kw.get("max_weight", 1))
    ef = pypfopt.EfficientFrontier(mu, S, weight_bounds=bounds)
    if method == "max-sharpe":
        ef.max_sharpe(risk_free_rate=0.0)
    elif method == "min-volatility":
        ef.min_volatility()
    elif method == "efficient-return":
        ef.efficient_return(kw["target"])
    else:
        ef.efficient_risk(kw["target"])
    want = np.array([ef.weights[i] for i in range(len(NAMES))])
    got = _mine(prices, method, **kw)["weights"]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_hrp_matches_pypfopt(prices):
    pypfopt = pytest.importorskip("pypfopt")
    rets = pypfopt.expected_returns.returns_from_prices(prices)
    want = pypfopt.HRPOpt(rets).optimize()
    got = _mine(prices, "hrp")["weights"]
    np.testing.assert_allclose(got, [want[n] for n in NAMES], atol=1e-4)


def test_risk_parity_matches_riskfolio(prices):
    rp = pytest.importorskip("riskfolio")
    rets = prices.pct_change().dropna()
    port = rp.Portfolio(returns=rets)
    port.assets_stats(method_mu="hist", method_cov="hist")
    w = port.rp_optimization(model="Classic", rm="MV", rf=0, b=None, hist=True)
    got = _mine(prices, "risk-parity")
    np.testing.assert_allclose(got["weights"], w["weights"].to_numpy(), atol=1e-4)
    contrib = got["weights"] * (got["cov"] @ got["weights"])
    np.testing.assert_allclose(contrib, contrib.mean(), rtol=1e-8)  # equal risk contributions


def test_simple_methods_and_errors(prices):
    r = returns_of(prices.to_numpy())
    assert np.allclose(optimise("equal", r, 252)["weights"], 1 / len(NAMES))
    iv = optimise("inverse-volatility", r, 252)["weights"]
    assert np.allclose(iv * r.std(axis=0, ddof=1), (iv * r.std(axis=0, ddof=1))[0])
    cv = optimise("min-cvar", r, 252)["weights"]
    assert cv.sum() == pytest.approx(1) and cv.min() >= -1e-9
    with pytest.raises(ValueError, match="needs --target"):
        optimise("efficient-return", r, 252)
    with pytest.raises(ValueError, match="below the minimum volatility"):
        optimise("efficient-risk", r, 252, target=0.01)
    with pytest.raises(ValueError, match="no weights of 12 symbols"):
        optimise("min-volatility", r, 252, max_weight=0.05)


def test_rebalance_file_runs_in_the_backtest(tmp_path):
    out = tmp_path / "p"
    r = optimize("portfolio", "--store", str(SAMPLE), "-s", "AAPL,MSFT,KO,XOM", "--end", "2017-12-31",
                 "--method", "min-volatility", "--rebalance", "monthly", "--frontier", "-o", str(out), "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"method", "weights", "expected_return", "volatility", "sharpe"}
    assert sum(doc["weights"].values()) == pytest.approx(1)
    assert pl.read_parquet(out / "weights.parquet").columns == ["symbol", "weight"]
    assert "efficient frontier" in (out / "report.html").read_text()
    if not (ROOT / "slices" / "backtest").is_dir():
        return  # the slice alone: the file is checked through its own engine only
    bt = subprocess.run([sys.executable, "-m", "slices.backtest", "run", "--store", str(SAMPLE), "--strategy",
                         str(out / "portfolio_strategy.py"), "-s", "AAPL,MSFT,KO,XOM", "--start", "2018-01-01",
                         "--no-report", "-o", str(tmp_path / "bt"), "-f", "json"], capture_output=True, text=True, cwd=ROOT)
    assert bt.returncode == 0, bt.stderr
    trades = pl.read_parquet(tmp_path / "bt" / "trades.parquet")
    assert trades.height > 0 and trades["commission"].sum() > 0
    eq = pl.read_parquet(tmp_path / "bt" / "equity.parquet")
    last = eq.row(-1, named=True)
    assert last["gross_exposure"] / last["equity"] > 0.9  # invested, out of sample, with costs


def test_kelly():
    pnl = np.array([100.0, -50.0, 200.0, -50.0])
    out = kelly_sizes(pnl / 1000, pnl, 0.5)
    assert out["win_rate"] == 0.5 and out["payoff_ratio"] == 3.0 and out["kelly"] == pytest.approx(0.5 - 0.5 / 3)
    even = np.array([50.0, 50.0, 50.0, -50.0, -50.0])  # +-50 % bets won 3 times in 5: f* = (0.6 - 0.4) / 0.5
    out = kelly_sizes(even / 100, even, 0.5)
    assert out["kelly_growth"] == pytest.approx(0.4, abs=1e-6)
    assert out["fractional"] == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError):
        kelly_sizes(pnl, pnl, 1.5)
