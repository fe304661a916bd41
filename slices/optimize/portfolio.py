"""Portfolio weights from the symbols' returns, written with numpy and scipy only.

Inputs follow PyPortfolioOpt's defaults: simple returns of the closes r_t = close_t / close_{t-1}
- 1 on the rows where every symbol has a bar (within --start/--end); expected returns the
geometric mean historical return ``prod(1 + r) ** (ppy / n) - 1`` (``arithmetic``: ``mean(r) x
ppy``); covariance the sample covariance (ddof 1) x ppy, or Ledoit-Wolf shrinkage toward a
scaled identity (Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance
matrices", J. Multivariate Analysis 88, 2004; as scikit-learn's ``ledoit_wolf``, on the
returns, x ppy); ppy = periods per year (SLICES.md shared definitions); risk-free rate 0.

Methods (weights sum to 1; long-only bounds [0, 1] unless --allow-short gives [-1, 1];
--min-weight/--max-weight override the bounds):

* ``max-sharpe``: maximise (w.mu - rf) / sqrt(w' S w), solved as the convex problem min y' S y
  s.t. (mu - rf).y = 1 and the bounds scaled by k = sum(y), then w = y / k (Cornuejols & Tutuncu,
  *Optimization Methods in Finance*, 2007, section 8.2; PyPortfolioOpt's ``max_sharpe``).
* ``min-volatility``: min w' S w. ``efficient-return``: min w' S w s.t. w.mu >= R.
  ``efficient-risk``: max w.mu s.t. w' S w <= V^2 (Markowitz, 1952).
* ``risk-parity``: equal risk contributions w_i (S w)_i, from min 0.5 y' S y - sum(log y / N),
  y > 0, w = y / sum(y) (Spinu, "An algorithm for computing risk parity weights", 2013), solved
  by Newton's method; long-only by construction (Riskfolio-Lib ``rp_optimization``).
* ``hrp``: hierarchical risk parity (Lopez de Prado, "Building diversified portfolios that
  outperform out of sample", J. Portfolio Management 42(4), 2016): correlation distance
  sqrt((1 - corr) / 2), single linkage (scipy.cluster), quasi-diagonal order, recursive bisection
  with inverse-variance cluster variances (as PyPortfolioOpt's ``HRPOpt``).
* ``min-cvar``: min CVaR at 95 % of the daily portfolio returns by linear programming
  (Rockafellar & Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3), 2000).
* ``inverse-volatility``: w_i proportional to 1 / sigma_i. ``equal``: 1 / N.

Equality with PyPortfolioOpt (max-sharpe, min-volatility, efficient-return/risk, hrp) and
Riskfolio-Lib (risk-parity) within 1e-4 is tested in tests/optimize/test_portfolio.py.
"""
from __future__ import annotations

import math

import numpy as np

METHODS = ("max-sharpe", "min-volatility", "efficient-return", "efficient-risk", "risk-parity", "hrp", "min-cvar",
           "inverse-volatility", "equal")


def returns_of(close: np.ndarray) -> np.ndarray:
    """Simple returns (T-1, N) of the closes (T, N), keeping only rows where every symbol has a
    close today and yesterday."""
    r = close[1:] / close[:-1] - 1.0
    return r[np.isfinite(r).all(axis=1)]


def expected_returns(r: np.ndarray, ppy: float, kind: str = "geometric") -> np.ndarray:
    """Annualised expected returns (N,): geometric ``prod(1 + r) ** (ppy / n) - 1`` or
    arithmetic ``mean(r) x ppy``."""
    if kind == "arithmetic":
        return r.mean(axis=0) * ppy
    return np.prod(1.0 + r, axis=0) ** (ppy / r.shape[0]) - 1.0


def ledoit_wolf(r: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of ``r`` (T, N) (ddof 0 after centring, per period) and the
    shrinkage in [0, 1]: (1 - s) S + s mu I with mu = trace(S) / N (scikit-learn's formula)."""
    X = r - r.mean(axis=0)
    n, p = X.shape
    X2 = X ** 2
    emp = X.T @ X / n
    trace = X2.sum(axis=0) / n
    mu = trace.sum() / p
    beta_ = float(np.sum(X2.T @ X2))
    delta_ = float(np.sum((X.T @ X) ** 2)) / n ** 2
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * trace.sum() + p * mu ** 2) / p
    beta = min(beta, delta)
    s = 0.0 if beta == 0 else beta / delta
    return (1 - s) * emp + s * mu * np.eye(p), s


def covariance(r: np.ndarray, ppy: float, kind: str = "sample") -> np.ndarray:
    """Annualised covariance (N, N): ``sample`` (ddof 1) or ``ledoit-wolf``."""
    if kind == "ledoit-wolf":
        return ledoit_wolf(r)[0] * ppy
    return np.atleast_2d(np.cov(r, rowvar=False, ddof=1)) * ppy


def _slsqp(fun, jac, x0, bounds, cons):
    from scipy.optimize import minimize

    res = minimize(fun, x0, jac=jac, bounds=bounds, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-15, "maxiter": 2000})
    if not res.success and "Positive directional derivative" not in res.message and "Iteration limit" not in res.message:
        raise ValueError(f"the optimiser failed: {res.message}")
    return res.x


def _budget():
    return {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}


def min_volatility(S: np.ndarray, bounds) -> np.ndarray:
    n = S.shape[0]
    return _slsqp(lambda w: w @ S @ w, lambda w: 2 * S @ w, np.full(n, 1 / n), bounds, [_budget()])


def max_sharpe(mu: np.ndarray, S: np.ndarray, bounds, rf: float = 0.0) -> np.ndarray:
    """Max Sharpe by the convex transform (module docstring). Raises ValueError when no asset's
    expected return exceeds the risk-free rate."""
    ex = mu - rf
    if not (ex > 0).any():
        raise ValueError(f"max-sharpe: no expected return exceeds the risk-free rate {rf:g}; use min-volatility")
    n = S.shape[0]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    cons = [{"type": "eq", "fun": lambda y: ex @ y - 1.0, "jac": lambda y: ex},
            {"type": "ineq", "fun": lambda y: hi * y.sum() - y, "jac": lambda y: np.outer(hi, np.ones(n)) - np.eye(n)},
            {"type": "ineq", "fun": lambda y: y - lo * y.sum(), "jac": lambda y: np.eye(n) - np.outer(lo, np.ones(n))},
            {"type": "ineq", "fun": lambda y: y.sum(), "jac": lambda y: np.ones(n)}]
    y0 = np.where(ex > 0, 1.0, 0.0)
    y0 /= ex @ y0
    y = _slsqp(lambda y: y @ S @ y, lambda y: 2 * S @ y, y0, [(None, None)] * n, cons)
    return y / y.sum()


def efficient_return(mu: np.ndarray, S: np.ndarray, bounds, target: float) -> np.ndarray:
    hi = max(b[1] for b in bounds)
    if target > mu.max() * hi + 1e-12 and hi <= 1:
        raise ValueError(f"efficient-return: --target {target:g} is above the highest achievable return {mu.max():.4g}")
    n = S.shape[0]
    cons = [_budget(), {"type": "ineq", "fun": lambda w: w @ mu - target, "jac": lambda w: mu}]
    return _slsqp(lambda w: w @ S @ w, lambda w: 2 * S @ w, np.full(n, 1 / n), bounds, cons)


def efficient_risk(mu: np.ndarray, S: np.ndarray, bounds, target: float) -> np.ndarray:
    w_min = min_volatility(S, bounds)
    floor = math.sqrt(w_min @ S @ w_min)
    if target < floor - 1e-12:
        raise ValueError(f"efficient-risk: --target {target:g} is below the minimum volatility {floor:.4g}")
    cons = [_budget(), {"type": "ineq", "fun": lambda w: target ** 2 - w @ S @ w, "jac": lambda w: -2 * S @ w}]
    return _slsqp(lambda w: -(w @ mu), lambda w: -mu, w_min, bounds, cons)


def risk_parity(S: np.ndarray, budget: np.ndarray | None = None, tol: float = 1e-14) -> np.ndarray:
    """Equal (or ``budget``) risk contributions by Newton's method on Spinu's convex problem."""
    n = S.shape[0]
    b = np.full(n, 1 / n) if budget is None else budget
    y = b / np.sqrt(np.diag(S))
    f = lambda v: 0.5 * v @ S @ v - b @ np.log(v)  # noqa: E731
    for _ in range(200):
        g = S @ y - b / y
        H = S + np.diag(b / y ** 2)
        step = np.linalg.solve(H, g)
        t = 1.0
        while np.any(y - t * step <= 0) or f(y - t * step) > f(y) - 1e-4 * t * (g @ step):
            t /= 2
            if t < 1e-12:
                break
        y = y - t * step
        if np.abs(g).max() < tol:
            break
    return y / y.sum()


def hrp(r: np.ndarray) -> np.ndarray:
    """Hierarchical risk parity weights (module docstring) from returns (T, N)."""
    import scipy.cluster.hierarchy as sch
    import scipy.spatial.distance as ssd

    corr = np.corrcoef(r, rowvar=False)
    cov = np.cov(r, rowvar=False, ddof=1)
    dist = ssd.squareform(np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0)), checks=False)
    order = sch.to_tree(sch.linkage(dist, "single"), rd=False).pre_order()
    w = np.ones(r.shape[1])

    def cluster_var(items):
        c = cov[np.ix_(items, items)]
        iv = 1 / np.diag(c)
        iv /= iv.sum()
        return iv @ c @ iv

    clusters = [order]
    while clusters:
        clusters = [c[j:k] for c in clusters for j, k in ((0, len(c) // 2), (len(c) // 2, len(c))) if len(c) > 1]
        for i in range(0, len(clusters), 2):
            a, b = clusters[i], clusters[i + 1]
            va, vb = cluster_var(a), cluster_var(b)
            alpha = 1 - va / (va + vb)
            w[a] *= alpha
            w[b] *= 1 - alpha
    return w


def min_cvar(r: np.ndarray, bounds, beta: float = 0.95) -> np.ndarray:
    """Min CVaR_beta of the per-period portfolio loss -r.w (Rockafellar-Uryasev LP, scipy HiGHS)."""
    from scipy.optimize import linprog

    T, n = r.shape
    # variables: w (n), alpha (1), u (T)
    c = np.concatenate([np.zeros(n), [1.0], np.full(T, 1.0 / (T * (1 - beta)))])
    A_ub = np.hstack([-r, -np.ones((T, 1)), -np.eye(T)])  # -r.w - alpha - u <= 0
    A_eq = np.concatenate([np.ones(n), [0.0], np.zeros(T)])[None, :]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(T), A_eq=A_eq, b_eq=[1.0],
                  bounds=list(bounds) + [(None, None)] + [(0, None)] * T, method="highs")
    if not res.success:
        raise ValueError(f"min-cvar: the linear program failed: {res.message}")
    return res.x[:n]


def optimise(method: str, r: np.ndarray, ppy: float, *, returns_kind: str = "geometric", cov_kind: str = "sample",
             allow_short: bool = False, min_weight: float | None = None, max_weight: float | None = None,
             target: float | None = None, rf: float = 0.0) -> dict:
    """Weights by ``method`` from returns ``r`` (T, N). Returns ``{"weights": (N,), "expected_return",
    "volatility", "sharpe"}`` (annualised fractions; sharpe = (return - rf) / volatility).
    Raises ValueError for a bad method, a missing or impossible --target, infeasible bounds."""
    if method not in METHODS:
        raise ValueError(f"--method: unknown method {method!r} (one of {', '.join(METHODS)})")
    n = r.shape[1]
    if r.shape[0] < 3:
        raise ValueError(f"{r.shape[0]} return rows where every symbol has a bar; need at least 3")
    lo = min_weight if min_weight is not None else (-1.0 if allow_short else 0.0)
    hi = max_weight if max_weight is not None else 1.0
    if lo > hi or n * hi < 1 - 1e-12 or n * lo > 1 + 1e-12:
        raise ValueError(f"--min-weight {lo:g} / --max-weight {hi:g}: no weights of {n} symbols sum to 1 within them")
    bounds = [(lo, hi)] * n
    mu = expected_returns(r, ppy, returns_kind)
    S = covariance(r, ppy, cov_kind)
    if method in ("efficient-return", "efficient-risk") and target is None:
        raise ValueError(f"--method {method} needs --target")
    if method == "max-sharpe":
        w = max_sharpe(mu, S, bounds, rf)
    elif method == "min-volatility":
        w = min_volatility(S, bounds)
    elif method == "efficient-return":
        w = efficient_return(mu, S, bounds, target)
    elif method == "efficient-risk":
        w = efficient_risk(mu, S, bounds, target)
    elif method == "risk-parity":
        w = risk_parity(S)
    elif method == "hrp":
        w = hrp(r)
    elif method == "min-cvar":
        w = min_cvar(r, bounds)
    elif method == "inverse-volatility":
        iv = 1 / np.sqrt(np.diag(S))
        w = iv / iv.sum()
    else:
        w = np.full(n, 1 / n)
    w = np.where(np.abs(w) < 1e-12, 0.0, w)
    ret = float(w @ mu)
    vol = float(math.sqrt(max(w @ S @ w, 0.0)))
    return {"weights": w, "expected_return": ret, "volatility": vol, "sharpe": (ret - rf) / vol if vol > 0 else None,
            "mu": mu, "cov": S}


def frontier(mu: np.ndarray, S: np.ndarray, bounds, points: int = 30) -> list[tuple[float, float]]:
    """(volatility, return) of ``points`` efficient portfolios from the minimum-volatility return
    to the highest achievable return."""
    w0 = min_volatility(S, bounds)
    r0 = float(w0 @ mu)
    r1 = float(mu.max()) if max(b[1] for b in bounds) >= 1 else r0
    out = []
    for t in np.linspace(r0, r1, points):
        try:
            w = efficient_return(mu, S, bounds, float(t))
        except ValueError:
            continue
        out.append((float(math.sqrt(max(w @ S @ w, 0.0))), float(w @ mu)))
    return out


STRATEGY_TEMPLATE = '''"""Optimised portfolio, rebalanced {every} (written by `python -m slices.optimize portfolio`).

Weights form of SLICES.md contract 5: on the first bar of each {period} (and on the first bar)
the target weights below are set; the backtest fills them at the next bar's open with its costs.
Method: {method}; estimated on {start} .. {end}. Symbols not listed get weight 0.
"""
import numpy as np

NAME = "optimised_portfolio"
DESCRIPTION = "{method} weights from the optimize slice, rebalanced {every}"
PARAMS = {{}}
WEIGHTS = {weights!r}


def weights(panel, params):
    ts = panel["timestamp"].astype("datetime64[{unit}]")
    first = np.ones(ts.size, dtype=bool)
    first[1:] = ts[1:] != ts[:-1]
    row = np.array([WEIGHTS.get(s, 0.0) for s in panel["symbols"]], dtype=float)
    out = np.full(panel["close"].shape, np.nan)
    out[first] = row
    return out
'''


def strategy_file(weights: dict[str, float], method: str, rebalance: str, start: str, end: str) -> str:
    """The text of a contract-5 weights strategy holding ``weights`` and rebalancing on the first
    bar of each calendar month (``monthly``) or year (``yearly``)."""
    unit, period = {"monthly": ("M", "month"), "yearly": ("Y", "year")}[rebalance]
    return STRATEGY_TEMPLATE.format(every=rebalance, period=period, method=method, start=start, end=end,
                                    weights={k: float(v) for k, v in weights.items()}, unit=unit)
