"""Risk: closed forms, brute-force numpy checks and properties of VaR/CVaR, stress, correlation, drawdown."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analyze_helpers import make_bars, random_walk
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from slices.analyze import risk as R
from slices.analyze.errors import AnalyzeError


def test_gaussian_var_closed_form():
    # 95 %: z = 1.6448536; ES factor phi(z)/0.05 = 2.0627128
    var, cvar = R.var_gaussian(0.0, 0.01, 0.95)
    assert var == pytest.approx(0.016448536, rel=1e-7)
    assert cvar == pytest.approx(0.020627128, rel=1e-7)
    var99, _ = R.var_gaussian(0.001, 0.02, 0.99, h=4)
    assert var99 == pytest.approx(-0.004 + 2.3263479 * 0.04, rel=1e-7)


def test_gaussian_cvar_is_tail_integral():
    mu, sigma, c = 0.0005, 0.013, 0.975
    var, cvar = R.var_gaussian(mu, sigma, c)
    q = stats.norm.ppf(1 - c, mu, sigma)
    tail, _ = integrate.quad(lambda x: x * stats.norm.pdf(x, mu, sigma), -np.inf, q)
    assert var == pytest.approx(-q)
    assert cvar == pytest.approx(-tail / (1 - c), rel=1e-8)


def test_cornish_fisher_reduces_to_gaussian_and_integrates():
    assert R.var_cornish_fisher(0.001, 0.02, 0.0, 0.0, 0.99, 5) == pytest.approx(R.var_gaussian(0.001, 0.02, 0.99, 5))
    mu, s, S, K, c = 0.0, 0.01, -0.6, 3.0, 0.95
    var, _ = R.var_cornish_fisher(mu, s, S, K, c)
    cvar = R.cvar_cornish_fisher_quantile_mean(mu, s, S, K, c)

    def q(u):
        z = stats.norm.ppf(u)
        return z + (z**2 - 1) * S / 6 + (z**3 - 3 * z) * K / 24 - (2 * z**3 - 5 * z) * S**2 / 36

    assert var == pytest.approx(-(mu + s * q(1 - c)))
    # the quantile-mean estimator is the tail mean of the Cornish-Fisher quantile function
    tail, _ = integrate.quad(q, 0, 1 - c, limit=200)
    assert cvar == pytest.approx(-(mu + s * tail / (1 - c)), rel=1e-6)
    # negative skew and fat tails make the 99 % CF VaR larger than the Gaussian one
    assert R.var_cornish_fisher(0, s, S, K, 0.99)[0] > R.var_gaussian(0, s, 0.99)[0]


def _edgeworth_mes(mu, s, S, K, c):
    """Boudt et al.'s modified ES by direct numerical integration: the mean of z below the
    Cornish-Fisher quantile g under the second-order Edgeworth density, divided by alpha, with
    PerformanceAnalytics' operational floor (never below the modified VaR)."""
    alpha = 1 - c
    z = stats.norm.ppf(alpha)
    g = z + (z**2 - 1) * S / 6 + (z**3 - 3 * z) * K / 24 - (2 * z**3 - 5 * z) * S**2 / 36

    def density(u):
        he3, he4, he6 = u**3 - 3 * u, u**4 - 6 * u**2 + 3, u**6 - 15 * u**4 + 45 * u**2 - 15
        return stats.norm.pdf(u) * (1 + S / 6 * he3 + K / 24 * he4 + S**2 / 72 * he6)

    tail, _ = integrate.quad(lambda u: u * density(u), -np.inf, g, limit=200)
    return -mu - s * min(tail / alpha, g)


@pytest.mark.parametrize(
    "S, K, c",
    [(-0.6, 3.0, 0.95), (0.3, 1.0, 0.99), (-1.0, 4.0, 0.975), (0.0, 0.5, 0.9), (-0.2, 2.0, 0.99)],
)
def test_modified_es_is_boudts_edgeworth_tail_mean(S, K, c):
    """The cornish_fisher CVaR is Boudt, Peterson & Croux's modified ES (PerformanceAnalytics
    ES(method="modified")): checked against a direct integration of the Edgeworth density."""
    mu, s = 0.0004, 0.012
    var, mes = R.var_cornish_fisher(mu, s, S, K, c)
    assert mes == pytest.approx(_edgeworth_mes(mu, s, S, K, c), rel=1e-7)
    assert mes >= var - 1e-15  # the operational floor
    # and over h bars with the i.i.d. cumulant scaling (S/sqrt(h), K/h, mu h, sigma sqrt(h))
    _, mes5 = R.var_cornish_fisher(mu, s, S, K, c, 5)
    assert mes5 == pytest.approx(_edgeworth_mes(5 * mu, s * 5**0.5, S / 5**0.5, K / 5, c), rel=1e-7)


def test_modified_es_differs_from_the_quantile_mean():
    """The two Cornish-Fisher CVaRs are different estimators (the old output computed the
    quantile mean under Boudt's name)."""
    mes = R.var_cornish_fisher(0.0, 0.01, -0.6, 3.0, 0.95)[1]
    qmean = R.cvar_cornish_fisher_quantile_mean(0.0, 0.01, -0.6, 3.0, 0.95)
    assert abs(mes - qmean) > 1e-4


def test_population_moments_as_performance_analytics():
    r = np.random.default_rng(2).standard_t(5, 400) * 0.01
    mu, sd, S, K = R.population_moments(r)
    d = r - r.mean()
    m2 = np.mean(d**2)
    assert sd == pytest.approx(np.sqrt(m2)) and S == pytest.approx(stats.skew(r, bias=True))
    assert K == pytest.approx(stats.kurtosis(r, fisher=True, bias=True))


def test_historical_var_brute_force():
    rng = np.random.default_rng(0)
    r = rng.standard_t(4, 1000) * 0.01
    var, cvar = R.var_historical(r, 0.95)
    srt = np.sort(r)
    pos = 0.05 * (len(r) - 1)  # type-7 quantile
    q = srt[int(math.floor(pos))] + (pos - math.floor(pos)) * (
        srt[int(math.floor(pos)) + 1] - srt[int(math.floor(pos))]
    )
    assert var == pytest.approx(-q)
    assert cvar == pytest.approx(-np.mean([x for x in r if x <= q]))


def test_horizon_returns_brute_force():
    r = np.random.default_rng(1).normal(0, 0.01, 50)
    got = R.horizon_returns(r, 5)
    want = [np.prod(1 + r[t : t + 5]) - 1 for t in range(46)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(R.horizon_returns(r, 60)) == 0


def test_monte_carlo_matches_gaussian_for_one_asset():
    rng = np.random.default_rng(5)
    rets = rng.normal(0.0, 0.01, (2000, 1))
    sims = R.simulate(rets, np.array([1.0]), 1, 200_000, seed=7)
    mu, sd = rets.mean(), rets.std(ddof=1)
    var_mc, cvar_mc = R.var_historical(sims[0], 0.99)
    var_g, cvar_g = R.var_gaussian(mu, sd, 0.99)
    assert var_mc == pytest.approx(var_g, rel=0.02)
    assert cvar_mc == pytest.approx(cvar_g, rel=0.02)
    again = R.simulate(rets, np.array([1.0]), 1, 1000, seed=7)
    np.testing.assert_array_equal(again, R.simulate(rets, np.array([1.0]), 1, 1000, seed=7))


returns_strategy = st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=60, max_size=300).filter(
    lambda x: np.std(x) > 1e-4
)


@settings(max_examples=30, deadline=None)
@given(returns_strategy, st.floats(0.8, 0.98), st.floats(0.001, 0.019))
def test_var_monotone_in_confidence_and_cvar_above_var(r, c, dc):
    r = np.array(r)
    c2 = c + dc
    mu, sd = r.mean(), r.std(ddof=1)
    for f in (lambda cc: R.var_historical(r, cc), lambda cc: R.var_gaussian(mu, sd, cc)):
        v1, e1 = f(c)
        v2, e2 = f(c2)
        assert v2 >= v1 - 1e-12
        assert e1 >= v1 - 1e-12 and e2 >= v2 - 1e-12
    # Cornish-Fisher on moderate moments (where its quantile is monotone); CVaR is Boudt's MES
    v1, e1 = R.var_cornish_fisher(mu, sd, 0.3, 1.0, c)
    v2, _ = R.var_cornish_fisher(mu, sd, 0.3, 1.0, c2)
    assert v2 >= v1 and e1 >= v1


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-4, 0.05), st.integers(1, 30), st.floats(0.9, 0.995))
def test_gaussian_horizon_scaling(sigma, h, c):
    v1, e1 = R.var_gaussian(0.0, sigma, c, 1)
    vh, eh = R.var_gaussian(0.0, sigma, c, h)
    assert vh == pytest.approx(v1 * math.sqrt(h), rel=1e-12)
    assert eh == pytest.approx(e1 * math.sqrt(h), rel=1e-12)
    vm, _ = R.var_gaussian(0.001, sigma, c, h)
    assert vm == pytest.approx(vh - 0.001 * h, rel=1e-9, abs=1e-12)


def test_parse_weights():
    syms = ["AAA", "BBB", "CCC"]
    np.testing.assert_allclose(R.parse_weights(None, syms, False), [1 / 3] * 3)
    np.testing.assert_allclose(R.parse_weights("aaa=0.5,BBB=0.3,CCC=0.2", syms, False), [0.5, 0.3, 0.2])
    np.testing.assert_allclose(R.parse_weights("AAA=2,BBB=1,CCC=1", syms, True), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(R.parse_weights("AAA=1.5,BBB=-0.5,CCC=0", syms, False), [1.5, -0.5, 0])
    for text, msg in [
        ("AAA=0.5,BBB=0.3,CCC=0.1", "sum to 0.9"),
        ("AAA=0.5,BBB=0.5", "no weight for CCC"),
        ("AAA=0.5,BBB=0.3,ZZZ=0.2", "ZZZ is not among"),
        ("AAA:1", "not SYMBOL=weight"),
        ("AAA=x,BBB=0.5,CCC=0.5", "not a number"),
    ]:
        with pytest.raises(AnalyzeError, match=msg):
            R.parse_weights(text, syms, False)
    with pytest.raises(AnalyzeError, match="sum to 0"):
        R.parse_weights("AAA=1,BBB=-1,CCC=0", syms, True)


def test_parse_floats():
    assert R.parse_floats("0.99,0.95", "--confidence", 0.5, 1.0) == [0.95, 0.99]
    assert R.parse_floats("5,1", "--horizon", 1, 0, integer=True) == [1, 5]
    for text in ("1.2", "95", "x"):
        with pytest.raises(AnalyzeError):
            R.parse_floats(text, "--confidence", 0.5, 1.0)
    with pytest.raises(AnalyzeError):
        R.parse_floats("0", "--horizon", 1, 0, integer=True)


def test_drawdown_brute_force():
    b = make_bars(random_walk(300, seed=9, vol=0.03))
    p = b["close"].to_numpy()
    dd = R.drawdown(p, b["timestamp"])
    best = min(p[t] / max(p[: t + 1]) - 1 for t in range(len(p)))
    assert dd["max_drawdown"] == pytest.approx(best)
    trough = int(np.argmin([p[t] / max(p[: t + 1]) - 1 for t in range(len(p))]))
    peak = int(np.argmax(p[: trough + 1]))
    assert dd["trough"] == b["timestamp"][trough].isoformat() and dd["peak"] == b["timestamp"][peak].isoformat()
    rec = next((t for t in range(trough, len(p)) if p[t] >= p[peak]), None)
    # duration: the longest peak-to-recovery span of the whole curve (SLICES.md shared
    # definitions; it was the span of the deepest drawdown only)
    longest, last_peak = 0, 0
    for t in range(1, len(p)):
        if p[t] >= max(p[: t + 1]):
            longest, last_peak = max(longest, t - last_peak if p[t - 1] < max(p[:t]) else 0), t
    if p[-1] < max(p):
        longest = max(longest, len(p) - 1 - last_peak)
    assert dd["duration_bars"] == longest
    up = np.linspace(1, 2, 50)
    assert R.drawdown(up, b["timestamp"].head(50))["max_drawdown"] == 0.0


@pytest.mark.parametrize(
    "equity, duration",
    [([1, 2, 1, 1, 1, 2], 4), ([1, 2, 3], 0), ([3, 2, 1], 2), ([1, 2, 1, 2, 1, 1, 1], 3), ([2, 1, 2, 2, 1.5, 1.9, 2.5], 3)],
)
def test_max_drawdown_duration_shared_definition(equity, duration):
    assert R.max_drawdown_duration(np.array(equity, dtype=float)) == duration


def test_beta_and_correlation_order():
    rng = np.random.default_rng(3)
    m = rng.normal(0, 0.01, 500)
    a = 1.5 * m + rng.normal(0, 0.001, 500)
    assert R.beta(a, m) == pytest.approx(np.cov(a, m)[0, 1] / np.var(m, ddof=1))
    assert R.beta(a, m) == pytest.approx(1.5, rel=0.05)
    f1, f2 = rng.normal(0, 0.01, (2, 500))
    cols = np.column_stack(
        [
            f1 + rng.normal(0, 0.002, 500),
            f2 + rng.normal(0, 0.002, 500),
            f1 + rng.normal(0, 0.002, 500),
            f2 + rng.normal(0, 0.002, 500),
        ]
    )
    rho, order = R.correlation(cols)
    np.testing.assert_allclose(rho, np.corrcoef(cols, rowvar=False))
    pos = {k: order.index(k) for k in range(4)}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1  # each cluster is contiguous


def test_worst_windows_and_shocks():
    b = make_bars(random_walk(120, seed=11, vol=0.02))
    r = b["close"].to_numpy()[1:] / b["close"].to_numpy()[:-1] - 1
    rows = R.worst_windows(r, b["timestamp"])
    for row in rows:
        h = row["window"]
        brute = min(np.prod(1 + r[t : t + h]) - 1 for t in range(len(r) - h + 1))
        assert row["return"] == pytest.approx(brute)
    w = np.array([0.6, 0.4])
    shocks = {s["scenario"]: s for s in R.shock_scenarios(w, np.array([1.2, 0.5]), ["A", "B"])}
    assert shocks["uniform -10%"]["worst"] == pytest.approx(-0.1)
    assert shocks["market -20% x beta"]["worst"] == pytest.approx(-0.2 * (0.6 * 1.2 + 0.4 * 0.5))
    flash = shocks["flash crash -7% then recovery"]
    assert flash["worst"] == pytest.approx(-0.07) and flash["final"] == pytest.approx(0.0, abs=1e-12)


def test_risk_report_on_sample(no_store):
    from slices.analyze.bars import BarRequest, load_bars

    bars = load_bars(["AAPL", "MSFT", "XOM"], BarRequest())
    w = np.array([0.5, 0.3, 0.2])
    rep = R.risk_report(bars, w, [0.95, 0.99], [1, 5], 250_000.0, 2000, 1, 252)
    closes = np.column_stack([bars[s]["close"].to_numpy() for s in ("AAPL", "MSFT", "XOM")])
    port = (closes[1:] / closes[:-1] - 1) @ w
    hist = {(r["confidence"], r["horizon"]): r for r in rep["var"] if r["method"] == "historical"}
    assert hist[(0.95, 1)]["var"] == pytest.approx(-np.quantile(port, 0.05))
    assert hist[(0.95, 1)]["var_value"] == pytest.approx(hist[(0.95, 1)]["var"] * 250_000)
    g = {(r["confidence"], r["horizon"]): r for r in rep["var"] if r["method"] == "gaussian"}
    assert g[(0.99, 5)]["var"] == pytest.approx(
        -5 * port.mean() + stats.norm.ppf(0.99) * math.sqrt(5) * port.std(ddof=1)
    )
    assert {r["method"] for r in rep["var"]} == set(R.METHODS)
    assert all(r["observations"] == 2000 for r in rep["var"] if r["method"] == "monte_carlo")
    assert rep["per_symbol"]["AAPL"]["volatility"] == pytest.approx(
        np.std(closes[1:, 0] / closes[:-1, 0] - 1, ddof=1) * math.sqrt(252)
    )
    assert sorted(rep["correlation"]["cluster_order"]) == ["AAPL", "MSFT", "XOM"]
    assert [s["window"] for s in rep["stress"]["historical"]] == [1, 5, 20]


def test_too_few_common_bars():
    a = make_bars(random_walk(20))
    with pytest.raises(AnalyzeError, match="20 common bars, risk needs at least 31"):
        R.align({"A": a, "B": a})


def test_cornish_fisher_validity_domain_brute_force():
    """``cornish_fisher_valid`` is exactly 'z_cf increasing on |z| <= 8', checked on a fine grid."""
    z = np.linspace(-8, 8, 16_001)
    rng = np.random.default_rng(11)
    for S, K in [(0.0, 8.0), (0.0, 8.05), (0.0, 0.0), (0.3, 1.0), (-0.6, 3.0)] + [
        (rng.uniform(-3, 3), rng.uniform(-2, 40)) for _ in range(150)
    ]:
        increasing = bool((np.diff(R._cf(z, S, K)) >= 0).all())
        assert R.cornish_fisher_valid(S, K) == increasing, (S, K)


def test_cornish_fisher_outside_domain_warns(capsys):
    """Heavy tails (excess kurtosis > 8, as hourly EURUSD's 26) make the CF quantile non-monotone:
    its 90 % VaR even turns negative. The run goes on with a warning naming the horizon."""
    rng = np.random.default_rng(2)
    r = rng.standard_t(3, 3000) * 0.001
    assert stats.kurtosis(r) > 8
    rows = R.var_table(r, r[:, None], np.array([1.0]), [0.95], [1], 1.0, 200, 0)
    assert {row["method"] for row in rows} == set(R.METHODS)
    err = capsys.readouterr().err
    assert "warning: cornish_fisher 1-bar" in err and "domain of validity" in err
    calm = rng.normal(0, 0.01, 3000)
    R.var_table(calm, calm[:, None], np.array([1.0]), [0.95], [1, 5], 1.0, 200, 0)
    assert "cornish_fisher" not in capsys.readouterr().err


def test_every_method_confidence_and_horizon_on_sample(no_store):
    """Each (method, confidence, horizon) once; VaR monotone in confidence for every method and horizon,
    CVaR >= VaR, currency columns = fraction x value, Monte Carlo count reported."""
    from slices.analyze.bars import BarRequest, load_bars

    bars = load_bars(["AAPL", "MSFT", "JPM", "XOM"], BarRequest())
    w = np.array([0.4, 0.3, 0.2, 0.1])
    confs, hors = [0.9, 0.95, 0.975, 0.99], [1, 5, 20]
    rep = R.risk_report(bars, w, confs, hors, 250_000.0, 2000, 1, 252.0)
    keys = [(r["method"], r["confidence"], r["horizon"]) for r in rep["var"]]
    assert sorted(keys) == sorted((m, c, h) for m in R.METHODS for c in confs for h in hors)
    for r in rep["var"]:
        assert r["cvar"] >= r["var"] - 1e-12
        assert r["var_value"] == pytest.approx(r["var"] * 250_000.0)
        assert r["cvar_value"] == pytest.approx(r["cvar"] * 250_000.0)
        assert r["observations"] == (2000 if r["method"] == "monte_carlo" else 1258 - r["horizon"] + 1 if r["method"] == "historical" else 1258)
    for m in R.METHODS:
        for h in hors:
            v = [r["var"] for r in rep["var"] if r["method"] == m and r["horizon"] == h]
            assert v == sorted(v), (m, h)
    assert rep["monte_carlo"] == {"simulations": 2000, "seed": 1}


def test_var_table_method_subset_skips_monte_carlo():
    r = np.random.default_rng(4).normal(0, 0.01, (500, 3))
    w = np.full(3, 1 / 3)
    rows = R.var_table(r @ w, r, w, [0.95, 0.99], [1, 5], 1.0, 100, 0, methods=R.METHODS[:-1])
    assert [row["method"] for row in rows] == list(R.METHODS[:-1]) * 4
    full = R.var_table(r @ w, r, w, [0.95, 0.99], [1, 5], 1.0, 100, 0)
    assert [x for x in full if x["method"] != "monte_carlo"] == rows
