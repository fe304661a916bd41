"""Deflated Sharpe ratio and PBO by CSCV against direct implementations of the papers' formulas."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from slices.optimize.overfit import deflated_sharpe, pbo_cscv, score


def test_deflated_sharpe_matches_the_paper_formula():
    rng = np.random.default_rng(1)
    r = rng.standard_t(5, 1000) * 0.01 + 0.0008
    trials = rng.normal(0.02, 0.015, 50)
    got = deflated_sharpe(r, trials)
    sr = r.mean() / r.std(ddof=1)
    g = 0.5772156649015329
    sr0 = math.sqrt(np.var(trials, ddof=1)) * ((1 - g) * stats.norm.ppf(1 - 1 / 50) + g * stats.norm.ppf(1 - 1 / (50 * math.e)))
    sk, ku = stats.skew(r), stats.kurtosis(r, fisher=False)
    want = stats.norm.cdf((sr - sr0) * math.sqrt(len(r) - 1) / math.sqrt(1 - sk * sr + (ku - 1) / 4 * sr ** 2))
    assert got["dsr"] == pytest.approx(want, rel=1e-12)
    assert got["sr0"] == pytest.approx(sr0, rel=1e-12)
    assert got["skew"] == pytest.approx(sk) and got["kurtosis"] == pytest.approx(ku)


def test_more_trials_deflate_more():
    rng = np.random.default_rng(2)
    r = rng.normal(0.0005, 0.01, 1000)
    few = deflated_sharpe(r, rng.normal(0, 0.02, 5))["dsr"]
    many = deflated_sharpe(r, rng.normal(0, 0.02, 5000))["dsr"]
    assert many < few
    single = deflated_sharpe(r, np.array([0.05]))
    assert single["sr0"] == 0.0 and single["n_trials"] == 1


def _pbo_loop(R: np.ndarray, S: int) -> float:
    """CSCV written out split by split (Bailey et al. 2015, section 2), for comparison."""
    T, N = R.shape
    size = T // S
    R = R[T - size * S:]
    blocks = [R[i * size:(i + 1) * size] for i in range(S)]
    logits = []
    for J in combinations(range(S), S // 2):
        ins = np.vstack([blocks[i] for i in J])
        oos = np.vstack([blocks[i] for i in range(S) if i not in J])
        sr_in = ins.mean(0) / ins.std(0, ddof=1)
        sr_out = oos.mean(0) / oos.std(0, ddof=1)
        n = int(np.argmax(sr_in))
        w = stats.rankdata(sr_out)[n] / (N + 1)
        logits.append(math.log(w / (1 - w)))
    return float(np.mean(np.array(logits) <= 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pbo_matches_a_split_by_split_implementation(seed):
    rng = np.random.default_rng(seed)
    R = rng.normal(0, 0.01, (203, 12))
    assert pbo_cscv(R, 8)["pbo"] == pytest.approx(_pbo_loop(R, 8), abs=1e-12)


def test_pbo_extremes():
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.01, (400, 30))
    skill = noise.copy()
    skill[:, 7] += 0.01  # one combination is better in every block
    assert pbo_cscv(skill, 8)["pbo"] == 0.0
    assert 0.2 < pbo_cscv(noise, 8)["pbo"] < 0.8  # pure noise: the in-sample winner is a coin flip out of sample
    with pytest.raises(ValueError, match="even"):
        pbo_cscv(noise, 7)
    with pytest.raises(ValueError, match="fewer than 2 per block"):
        pbo_cscv(noise[:20], 16)


def test_score_rules():
    assert score({"sharpe": 1.5}, "sharpe") == 1.5
    assert score({"sharpe": None}, "sharpe") is None
    assert score({"max_drawdown": -0.1}, "-max_drawdown") > score({"max_drawdown": -0.3}, "-max_drawdown")


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.sampled_from([2, 4, 8, 10]), st.integers(0, 2**32 - 1), st.booleans())
def test_numpy_and_compiled_cscv_ranks_are_identical(n, splits, seed, ties):
    """The numpy ranks (small sweeps, numba not loaded) and the compiled ones (fast.cscv_ranks,
    each split with its complement) give identical PBO and logits, ties included."""
    from slices.optimize import fast

    if not fast.AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(seed)
    R = rng.normal(0, 0.01, (splits * 6 + 3, n))
    if ties:
        R[:, -1] = R[:, 0]
        R[::3, n // 2] = 0.0
        R[:, n // 2 - 1] = 0.0  # a flat combination: Sharpe 0 everywhere
    assert pbo_cscv(R, splits, compiled=False) == pbo_cscv(R, splits, compiled=True)
