"""Objectives and overfitting statistics: the deflated Sharpe ratio and the probability of
backtest overfitting (PBO) by combinatorially symmetric cross-validation (CSCV).

Sources:

* D. H. Bailey and M. Lopez de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014,
  equations (2) (expected maximum Sharpe ratio) and (1) (probabilistic Sharpe ratio).
* D. H. Bailey, J. M. Borwein, M. Lopez de Prado and Q. J. Zhu, "The Probability of Backtest
  Overfitting", Journal of Computational Finance 20(4), 2017 (SSRN 2326253, 2015), section 2.

Sharpe ratios inside both statistics are per bar (not annualised), as in the papers.
"""
from __future__ import annotations

import math
import sys

import numpy as np

OBJECTIVES = ("sharpe", "sortino", "calmar", "cagr", "total_return", "sqn", "profit_factor", "-max_drawdown")
EULER_GAMMA = 0.5772156649015329


def score(metrics: dict, objective: str) -> float | None:
    """The objective as a number to maximise, or None when the metric is undefined.
    ``-max_drawdown`` ranks by the smallest drawdown: its score is ``max_drawdown`` itself (a
    fraction <= 0, so -0.10 beats -0.30); every other objective is the metric."""
    key = objective.lstrip("-")
    v = metrics.get(key)
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _norm_ppf(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Simple returns per bar r_t = equity_t / equity_{t-1} - 1 (T - 1,)."""
    return equity[1:] / equity[:-1] - 1.0


def bar_sharpe(r: np.ndarray) -> float:
    """Per-bar Sharpe ratio mean(r) / std(r, ddof 1); 0 when std is 0 or there are < 2 returns."""
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 0 else 0.0


def deflated_sharpe(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> dict:
    """Deflated Sharpe ratio of the selected combination (Bailey & Lopez de Prado, 2014).

    ``best_returns``: per-bar returns (T,) of the selected combination; ``trial_sharpes``: the
    per-bar Sharpe ratios of every combination tried (N,).

    SR0 = sqrt(V[SR]) x ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))), g = Euler-Mascheroni,
    the expected maximum Sharpe ratio of N trials with zero true Sharpe (eq. 2; SR0 = 0 for N = 1);
    DSR = Z((SR* - SR0) sqrt(T - 1) / sqrt(1 - skew SR* + (kurt - 1) / 4 SR*^2)) (eq. 1 with
    SR0 as the benchmark), with SR*, skew and kurtosis (not excess) of ``best_returns``.

    Returns ``{"dsr", "sharpe", "sr0", "n_trials", "sharpe_variance", "skew", "kurtosis",
    "n_returns"}`` (Sharpe values per bar); ``dsr`` is None with fewer than 3 returns or a zero
    denominator."""
    r = np.asarray(best_returns, dtype=float)
    sr = np.asarray(trial_sharpes, dtype=float)
    sr = sr[np.isfinite(sr)]
    n = max(int(sr.size), 1)
    var = float(np.var(sr, ddof=1)) if sr.size > 1 else 0.0
    sr0 = 0.0
    if n > 1:
        sr0 = math.sqrt(var) * ((1 - EULER_GAMMA) * _norm_ppf(1 - 1 / n) + EULER_GAMMA * _norm_ppf(1 - 1 / (n * math.e)))
    T = int(r.size)
    s = bar_sharpe(r)
    out = {"sharpe": s, "sr0": sr0, "n_trials": n, "sharpe_variance": var, "n_returns": T,
           "skew": None, "kurtosis": None, "dsr": None}
    if T < 3:
        return out
    sd = float(np.std(r))
    if sd == 0:
        return out
    z = (r - r.mean()) / sd
    skew, kurt = float(np.mean(z ** 3)), float(np.mean(z ** 4))
    denom = 1 - skew * s + (kurt - 1) / 4 * s * s
    out |= {"skew": skew, "kurtosis": kurt}
    if denom > 0:
        out["dsr"] = _norm_cdf((s - sr0) * math.sqrt(T - 1) / math.sqrt(denom))
    return out


COMPILED_CSCV_CELLS = 2_000_000  # splits x combinations above which loading numba's kernel pays


def half_sharpe(a, b, n):
    """Per-bar Sharpe ratio from the sums ``a`` and sums of squares ``b`` (arrays) of ``n``
    returns each (std ddof 1); 0 where the std is below 1e-15. The same arithmetic, operation for
    operation, as the compiled :func:`.fast.cscv_ranks`, so both give identical ranks."""
    var = (b - a * a / n) / (n - 1)
    sd = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 1e-15, (a / n) / sd, 0.0)


def cscv_ranks(codes, comp, lo_tab, hi_tab, h, n, rows: int = 512):
    """For each split i (``codes[i]``: its in-sample half J as a bit set over the blocks;
    ``comp[i]``: the index of its complement J'), the rank on J' of the combination with the best
    Sharpe ratio on J (the first on ties): the number of combinations below it plus (the number
    equal, itself included, + 1) / 2. ``lo_tab`` / ``hi_tab`` (2, 2^h, N): sums and sums of
    squares over each subset of the first / last h blocks. numpy, ``rows`` splits at a time
    (memory bounded); :func:`.fast.cscv_ranks` is the compiled equivalent."""
    full = (1 << h) - 1
    C = codes.size
    rank = np.empty(C)

    def sharpe(c):
        lo, hi = c & full, c >> h
        return half_sharpe(lo_tab[0][lo] + hi_tab[0][hi], lo_tab[1][lo] + hi_tab[1][hi], n)

    for a in range(0, C, rows):
        b = min(C, a + rows)
        best = np.argmax(sharpe(codes[a:b]), axis=1)
        oos = sharpe(codes[comp[a:b]])
        ob = oos[np.arange(b - a), best][:, None]
        rank[a:b] = (oos < ob).sum(axis=1) + ((oos == ob).sum(axis=1) + 1) / 2.0
    return rank


def pbo_cscv(returns: np.ndarray, splits: int = 16, compiled: bool | None = None) -> dict:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, Lopez de Prado & Zhu).

    ``returns`` (T, N): per-bar returns of the N combinations on a common timeline. The rows are
    cut into ``splits`` (S, even) contiguous blocks of equal size (the first T mod S rows are
    dropped). For each of the C(S, S/2) ways to pick half the blocks as the in-sample set J (the
    rest, J', out of sample): n* = the combination with the best per-bar Sharpe ratio on J; w =
    its relative rank on J' (average rank among the N, 1 = worst, divided by N + 1); logit
    lambda = ln(w / (1 - w)). PBO = the share of splits with lambda <= 0: how often the in-sample
    winner is at or below the median out of sample.

    Returns ``{"pbo", "splits", "combinations", "logits": [..]}`` (``logits`` of every split);
    ``pbo`` None when N < 2. ``compiled``: rank with numba's :func:`.fast.cscv_ranks` (True),
    numpy's :func:`cscv_ranks` (False), or choose (None: numba when it is loaded already or the
    work is large); both give identical ranks. Raises ValueError when S is odd, < 2, or the rows are fewer than 2 S."""
    R = np.asarray(returns, dtype=float)
    T, N = R.shape
    if splits < 2 or splits % 2:
        raise ValueError(f"--cscv must be an even number >= 2 (got {splits})")
    if T < 2 * splits:
        raise ValueError(f"--cscv {splits}: {T} returns are fewer than 2 per block; use a smaller --cscv")
    if N < 2:
        return {"pbo": None, "splits": splits, "combinations": 0, "logits": []}
    size = T // splits
    R = np.nan_to_num(R[T - size * splits:]).reshape(splits, size, N)
    s1, s2 = R.sum(axis=1), (R * R).sum(axis=1)  # (S, N) per-block sums
    # sums over any half of the blocks = (sums over a subset of the first S/2 blocks) + (a subset
    # of the last S/2): two tables of 2^(S/2) rows, no (splits x N) matrix product per split
    h = splits // 2
    tables = []
    for part in (slice(0, h), slice(h, splits)):
        a, b = s1[part], s2[part]
        tab = np.zeros((2, 1 << h, N))
        for k in range(1, 1 << h):
            low = k & -k
            j = low.bit_length() - 1
            tab[0, k] = tab[0, k ^ low] + a[j]
            tab[1, k] = tab[1, k ^ low] + b[j]
        tables.append(tab)
    every = np.arange(1 << splits)
    codes = every[np.bitwise_count(every) == h]  # the halves J as bit sets
    C = codes.size
    pos = np.empty(1 << splits, dtype=np.int64)
    pos[codes] = np.arange(C)
    comp = pos[~codes & ((1 << splits) - 1)]  # index of each split's complement
    args = (codes, comp, tables[0], tables[1], h, float(h * size))
    if compiled is None:  # numba when it is loaded already (the fast path) or the work outweighs loading it
        compiled = "slices.optimize.fast" in sys.modules or C * N > COMPILED_CSCV_CELLS
    rank = None
    if compiled:
        from . import fast

        rank = fast.cscv_ranks(*args) if fast.AVAILABLE else None
    if rank is None:
        rank = cscv_ranks(*args)
    w = rank / (N + 1)
    logits = np.log(w / (1 - w))
    return {"pbo": float(np.mean(logits <= 0)), "splits": splits, "combinations": int(C),
            "logits": logits.tolist()}
