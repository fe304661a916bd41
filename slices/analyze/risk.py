"""Portfolio risk: VaR / CVaR, stress tests, correlation, volatility, beta and drawdowns.

Conventions: returns are simple returns ``close[t]/close[t-1] - 1`` of bars aligned on the
timestamps common to all symbols (inner join). The portfolio is rebalanced to ``weights`` every
bar, so its return is ``r_p = sum_i w_i r_i``. VaR and CVaR are **losses as positive
fractions** of portfolio value (a negative VaR means even the tail is a gain); multiply by the
portfolio value for currency. ``confidence`` c is e.g. 0.95; ``alpha = 1 - c`` the tail
probability; ``h`` the horizon in bars.

Methods (sources):

- historical: empirical ``alpha``-quantile (numpy "linear" interpolation, Hyndman & Fan type 7)
  of the overlapping h-bar compounded portfolio returns ``prod(1 + r_p) - 1``;
  ``VaR = -q``, ``CVaR = -mean(R | R <= q)`` (Acerbi & Tasche 2002).
- gaussian (parametric): ``mu_h = h mu``, ``sigma_h = sqrt(h) sigma`` (i.i.d. returns, square-root
  of time); ``VaR = -mu_h + z_c sigma_h``, ``CVaR = -mu_h + sigma_h phi(z_c) / alpha`` with
  ``z_c = Phi^-1(c)`` (Jorion, *Value at Risk*, 3rd ed., ch. 5; McNeil, Frey & Embrechts,
  *Quantitative Risk Management*, 2005, ex. 2.14).
- cornish_fisher: modified VaR and modified expected shortfall (Boudt, Peterson & Croux 2008,
  "Estimation and decomposition of downside risk for portfolios with non-normal returns",
  Journal of Risk 11(2); as PerformanceAnalytics ``VaR``/``ES(method="modified")``, default
  ``operational = TRUE``). Moments as PerformanceAnalytics: mean mu, population std sigma,
  skewness S = m3/m2^1.5, excess kurtosis K = m4/m2^2 - 3 (population central moments), scaled to
  h bars as ``mu h``, ``sigma sqrt(h)``, ``S/sqrt(h)``, ``K/h`` (cumulants of an i.i.d. sum).
  ``g = z + (z^2-1) S/6 + (z^3-3z) K/24 - (2z^3-5z) S^2/36`` with ``z = Phi^-1(alpha)`` (Zangari
  1996; Favre & Galeano 2002); ``VaR = -(mu_h + g sigma_h)``;
  ``E_G = -phi(g) (1 + g^3 S/6 + (g^6 - 9g^4 + 9g^2 + 3) S^2/72 + (g^4 - 2g^2 - 1) K/24) / alpha``,
  the mean of z below g under the second-order Edgeworth density
  ``phi(z) (1 + S/6 He3 + K/24 He4 + S^2/72 He6)``; ``CVaR = -mu_h - sigma_h min(E_G, g)`` (the
  operational floor keeps it >= the VaR).
- cornish_fisher_quantile_mean: the same VaR; CVaR is instead the tail mean of the Cornish-Fisher
  quantile function, ``-(mu_h + sigma_h E[g(Z) | Z <= z])``, in closed form from truncated normal
  moments (an average of the Cornish-Fisher VaR over the tail levels below alpha; this slice's
  estimator, kept for comparison).
- monte_carlo: ``n`` seeded draws of h-bar paths of multivariate normal bar returns with the
  sample mean vector and covariance of the symbols; each asset compounds over the path and the
  portfolio return is ``sum_i w_i (prod(1 + r_i) - 1)`` (weights fixed at the start); then VaR and
  CVaR as in the historical method. The same draws serve every horizon (common random numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from slices.analyze.errors import AnalyzeError, warn, warn_grouped

METHODS = ("historical", "gaussian", "cornish_fisher", "cornish_fisher_quantile_mean", "monte_carlo")
MIN_RETURNS = 30


# --------------------------------------------------------------------------------------------
# inputs


def parse_weights(text: str | None, symbols: list[str], normalize: bool) -> np.ndarray:
    """Parse ``SYM=w,SYM=w`` into a weight vector ordered like ``symbols`` (equal weights when empty).

    Weights may be negative (short). Raises AnalyzeError on bad syntax, a symbol not among
    ``symbols`` or missing from the list, or a sum that differs from 1 by more than 1e-6
    (unless ``normalize``, which divides by the sum; a zero sum is an error).
    """
    n = len(symbols)
    if not text:
        return np.full(n, 1.0 / n)
    given: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise AnalyzeError(f"--weights: {item!r} is not SYMBOL=weight")
        sym, val = item.split("=", 1)
        sym = sym.strip().upper()
        try:
            w = float(val)
        except ValueError:
            raise AnalyzeError(f"--weights: weight of {sym} is not a number: {val!r}") from None
        if not math.isfinite(w):
            raise AnalyzeError(f"--weights: weight of {sym} is not finite")
        if sym not in symbols:
            raise AnalyzeError(f"--weights: {sym} is not among the symbols ({' '.join(symbols)})")
        given[sym] = w
    missing = [s for s in symbols if s not in given]
    if missing:
        raise AnalyzeError(f"--weights: no weight for {' '.join(missing)}")
    w = np.array([given[s] for s in symbols])
    total = float(w.sum())
    if normalize:
        if abs(total) < 1e-12:
            raise AnalyzeError("--weights: weights sum to 0, cannot --normalize")
        return w / total
    if abs(total - 1.0) > 1e-6:
        raise AnalyzeError(f"--weights: weights sum to {total:.6g}, not 1 (use --normalize to rescale)")
    return w


def parse_floats(text: str, name: str, low: float, high: float, integer: bool = False) -> list:
    """Parse a comma-separated list (``0.95,0.99``; ``1,5``) with bounds ``low < x < high`` (or ``low <= x`` for integers)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise AnalyzeError(f"{name}: {part!r} is not a number") from None
        if integer:
            if v != int(v) or v < low:
                raise AnalyzeError(f"{name}: {part!r} must be an integer >= {low:g}")
            out.append(int(v))
        else:
            if not (low < v < high):
                raise AnalyzeError(f"{name}: {part!r} must be strictly between {low:g} and {high:g}")
            out.append(v)
    if not out:
        raise AnalyzeError(f"{name}: empty list")
    return sorted(set(out))


@dataclass
class Aligned:
    """Closes and simple returns aligned on common timestamps.

    ``timestamps``: T bars; ``closes``: (T, N) prices; ``returns``: (T-1, N) simple returns
    (row j is the return from bar j to bar j+1); ``symbols``: N names.
    """

    symbols: list[str]
    timestamps: pl.Series
    closes: np.ndarray
    returns: np.ndarray


def align(bars: dict[str, pl.DataFrame]) -> Aligned:
    """Inner-join the closes of every symbol on timestamp (warning when it drops over 10 % of a symbol's bars).

    Raises AnalyzeError when fewer than ``MIN_RETURNS + 1`` common bars remain.
    """
    symbols = list(bars)
    frame = None
    for sym, b in bars.items():
        part = b.select("timestamp", pl.col("close").alias(sym))
        frame = part if frame is None else frame.join(part, on="timestamp", how="inner")
    frame = frame.sort("timestamp")
    lost = [(sym, b.height - frame.height) for sym, b in bars.items() if frame.height < 0.9 * b.height]
    warn_grouped(f"bars not common to all {len(symbols):,} symbols (over 10 % of the symbol's bars dropped)", lost)
    if frame.height < MIN_RETURNS + 1:
        shortest = sorted(bars.items(), key=lambda kv: kv[1].height)[:3]
        names = ", ".join(f"{s} {b.height:,} bars" for s, b in shortest)
        what = " ".join(symbols) if len(symbols) <= 10 else f"{len(symbols):,} symbols"
        raise AnalyzeError(
            f"{what}: {frame.height:,} common bars, risk needs at least {MIN_RETURNS + 1} (fewest bars: {names})"
        )
    closes = frame.select(symbols).to_numpy()
    returns = closes[1:] / closes[:-1] - 1.0
    return Aligned(symbols, frame["timestamp"], closes, returns)


# --------------------------------------------------------------------------------------------
# VaR / CVaR


def horizon_returns(r: np.ndarray, h: int) -> np.ndarray:
    """Overlapping compounded h-bar returns ``prod(1 + r[t-h+1..t]) - 1`` of a 1-D return series (length ``len(r)-h+1``)."""
    if h <= 0 or len(r) < h:
        return np.empty(0)
    c = np.concatenate([[0.0], np.cumsum(np.log1p(r))])
    return np.expm1(c[h:] - c[:-h])


def var_historical(r: np.ndarray, confidence: float) -> tuple[float, float]:
    """Historical ``(VaR, CVaR)`` of sample returns ``r`` (1-D) as positive loss fractions (see module docstring)."""
    q = float(np.quantile(r, 1.0 - confidence))
    tail = r[r <= q]
    return -q, -float(tail.mean())


def var_gaussian(mu: float, sigma: float, confidence: float, h: int = 1) -> tuple[float, float]:
    """Gaussian ``(VaR, CVaR)`` for per-bar mean ``mu`` and std ``sigma`` over ``h`` bars (square-root-of-time)."""
    from scipy import stats

    mu_h, s_h = h * mu, math.sqrt(h) * sigma
    z = stats.norm.ppf(confidence)
    return -mu_h + z * s_h, -mu_h + s_h * stats.norm.pdf(z) / (1.0 - confidence)


def _cf(z, s, k):
    return z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36


def var_cornish_fisher(
    mu: float, sigma: float, skew: float, exkurt: float, confidence: float, h: int = 1
) -> tuple[float, float]:
    """Modified VaR and Boudt's modified expected shortfall ``(VaR, CVaR)`` over ``h`` bars.

    ``mu``, ``sigma``, ``skew``, ``exkurt``: per-bar mean, std, skewness and excess kurtosis
    (PerformanceAnalytics uses population moments). Loss fractions; formulas in the module
    docstring (Boudt, Peterson & Croux 2008; PerformanceAnalytics ``operES.CornishFisher``).
    """
    from scipy import stats

    mu_h, s_h = h * mu, math.sqrt(h) * sigma
    s, k = skew / math.sqrt(h), exkurt / h
    alpha = 1.0 - confidence
    g = _cf(stats.norm.ppf(alpha), s, k)
    e_g = -stats.norm.pdf(g) * (
        1 + g**3 * s / 6 + (g**6 - 9 * g**4 + 9 * g**2 + 3) * s**2 / 72 + (g**4 - 2 * g**2 - 1) * k / 24
    ) / alpha
    return -(mu_h + g * s_h), -mu_h - s_h * min(e_g, g)


def cvar_cornish_fisher_quantile_mean(
    mu: float, sigma: float, skew: float, exkurt: float, confidence: float, h: int = 1
) -> float:
    """Tail mean of the Cornish-Fisher quantile function, ``-(mu_h + sigma_h E[g(Z) | Z <= z])``
    (a loss fraction; not Boudt's ES, see :func:`var_cornish_fisher`).

    Uses the truncated standard-normal moments ``M_k = E[Z^k; Z <= a]``:
    ``M_0 = Phi(a)``, ``M_1 = -phi(a)``, ``M_k = -a^(k-1) phi(a) + (k-1) M_(k-2)``.
    """
    from scipy import stats

    mu_h, s_h = h * mu, math.sqrt(h) * sigma
    s, k = skew / math.sqrt(h), exkurt / h
    alpha = 1.0 - confidence
    a = stats.norm.ppf(alpha)
    pdf = stats.norm.pdf(a)
    m0, m1 = alpha, -pdf
    m2 = -a * pdf + m0
    m3 = -(a**2) * pdf + 2 * m1
    tail = (m1 + (m2 - m0) * s / 6 + (m3 - 3 * m1) * k / 24 - (2 * m3 - 5 * m1) * s**2 / 36) / alpha
    return -(mu_h + tail * s_h)


def population_moments(r: np.ndarray) -> tuple[float, float, float, float]:
    """``(mean, std, skewness, excess kurtosis)`` of ``r`` from population central moments
    (``m2 = mean((r - mean)^2)`` ...), as PerformanceAnalytics' modified VaR/ES."""
    mu = float(r.mean())
    d = r - mu
    m2, m3, m4 = float(np.mean(d**2)), float(np.mean(d**3)), float(np.mean(d**4))
    if m2 <= 0:
        return mu, 0.0, 0.0, 0.0
    return mu, math.sqrt(m2), m3 / m2**1.5, m4 / m2**2 - 3.0


def cornish_fisher_valid(skew: float, exkurt: float, zmax: float = 8.0) -> bool:
    """True when the Cornish-Fisher quantile ``z -> z_cf`` is increasing on ``|z| <= zmax``.

    ``dz_cf/dz = a z^2 + b z + c`` with ``a = K/8 - S^2/6``, ``b = S/3``, ``c = 1 - K/8 + 5 S^2/36``
    (S skewness, K excess kurtosis). It is >= 0 for every z iff ``a >= 0`` and ``b^2 - 4ac <= 0``,
    the domain of validity of Maillard (2012), "A User's Guide to the Cornish Fisher Expansion"
    (with S = 0: ``0 <= K <= 8``); checking ``|z| <= 8`` (confidences up to 1 - 1e-15) keeps a
    slightly negative K, whose derivative only turns negative far in the tails, valid. Outside
    the domain the CF VaR can fall as the confidence rises, or turn negative.
    """
    s2 = skew * skew
    a, b, c = exkurt / 8.0 - s2 / 6.0, skew / 3.0, 1.0 - exkurt / 8.0 + 5.0 * s2 / 36.0
    points = [-zmax, zmax]
    if a > 0 and abs(b / (2 * a)) <= zmax:
        points.append(-b / (2 * a))
    return min(a * z * z + b * z + c for z in points) >= 0.0


def simulate(returns: np.ndarray, weights: np.ndarray, max_h: int, n: int, seed: int) -> np.ndarray:
    """Monte Carlo portfolio returns, shape ``(max_h, n)``: row ``h-1`` holds the h-bar returns.

    ``returns``: (T, N) asset returns from which the mean vector and covariance (ddof=1) are
    estimated; draws are ``mean + L e`` with ``L = V sqrt(max(lambda, 0))`` from the eigen-
    decomposition of the covariance (robust to singular matrices); ``numpy.random.default_rng(seed)``.
    """
    mean = returns.mean(axis=0)
    cov = np.atleast_2d(np.cov(returns, rowvar=False))
    lam, vec = np.linalg.eigh(cov)
    L = vec * np.sqrt(np.clip(lam, 0.0, None))
    rng = np.random.default_rng(seed)
    draws = mean + rng.standard_normal((max_h, n, len(mean))) @ L.T
    growth = np.cumprod(1.0 + draws, axis=0)  # (h, n, N)
    return (growth - 1.0) @ weights


def var_table(
    port: np.ndarray,
    asset_returns: np.ndarray,
    weights: np.ndarray,
    confidences: list[float],
    horizons: list[int],
    value: float,
    simulations: int,
    seed: int,
    methods: tuple[str, ...] = METHODS,
) -> list[dict]:
    """VaR and CVaR for every method (of ``methods``), confidence and horizon.

    ``port``: (T,) portfolio returns; ``asset_returns``: (T, N). Each row: ``method``,
    ``confidence``, ``horizon`` (bars), ``var``/``cvar`` (loss fractions), ``var_value``/``cvar_value``
    (currency for ``value``), ``observations`` (samples or simulations used).
    """
    if len(port) < max(horizons) + MIN_RETURNS - 1:
        raise AnalyzeError(
            f"{len(port)} returns, horizon {max(horizons)} needs at least {max(horizons) + MIN_RETURNS - 1}"
        )
    mu, sigma = float(port.mean()), float(port.std(ddof=1))
    _, sd_pop, skew, kurt = population_moments(port)
    mc = "monte_carlo" in methods
    sims = simulate(asset_returns, weights, max(horizons), simulations, seed) if mc else None
    rows = []
    for h in horizons:
        if not cornish_fisher_valid(skew / math.sqrt(h), kurt / h):
            warn(
                f"cornish_fisher {h}-bar: skewness {skew / math.sqrt(h):.3g} and excess kurtosis {kurt / h:.3g} are "
                "outside the expansion's domain of validity (Maillard 2012); its VaR/CVaR are unreliable"
            )
        hist = horizon_returns(port, h)
        for c in confidences:
            results = {
                "historical": (var_historical(hist, c), len(hist)),
                "gaussian": (var_gaussian(mu, sigma, c, h), len(port)),
                "cornish_fisher": (var_cornish_fisher(mu, sd_pop, skew, kurt, c, h), len(port)),
                "cornish_fisher_quantile_mean": (
                    (
                        var_cornish_fisher(mu, sd_pop, skew, kurt, c, h)[0],
                        cvar_cornish_fisher_quantile_mean(mu, sd_pop, skew, kurt, c, h),
                    ),
                    len(port),
                ),
            }
            if mc:
                results["monte_carlo"] = (var_historical(sims[h - 1], c), simulations)
            if len(hist) * (1 - c) < 5:
                warn(f"historical {c:g} {h}-bar VaR rests on {len(hist) * (1 - c):.1f} tail observations")
            for method in methods:
                (var, cvar), obs = results[method]
                rows.append(
                    {
                        "method": method,
                        "confidence": c,
                        "horizon": h,
                        "var": var,
                        "cvar": cvar,
                        "var_value": var * value,
                        "cvar_value": cvar * value,
                        "observations": obs,
                    }
                )
    return rows


# --------------------------------------------------------------------------------------------
# stress, correlation, drawdown


def worst_windows(port: np.ndarray, timestamps: pl.Series, windows=(1, 5, 20)) -> list[dict]:
    """Worst compounded portfolio return over each window length (bars) in the data.

    ``timestamps`` has ``len(port) + 1`` bars; a window of h returns ending at return j runs from
    the close of bar ``j-h+1`` to the close of bar ``j+1``. Windows longer than the data are skipped.
    """
    rows = []
    for h in windows:
        hr = horizon_returns(port, h)
        if len(hr) == 0:
            continue
        j = int(np.argmin(hr))
        rows.append(
            {
                "window": h,
                "return": float(hr[j]),
                "start": timestamps[j].isoformat(),
                "end": timestamps[j + h].isoformat(),
            }
        )
    return rows


def shock_scenarios(weights: np.ndarray, betas: np.ndarray, symbols: list[str]) -> list[dict]:
    """Hypothetical shocks applied to the weights; returns are fractions of portfolio value.

    ``uniform`` shocks move every asset by the same fraction; ``market`` shocks move asset i by
    ``beta_i * shock``; the flash crash drops every asset 7 % and then recovers to its previous
    level (``worst`` is the trough, ``final`` the return after recovery, 0).
    """
    rows = []
    for shock in (-0.10, -0.20):
        r = float(weights.sum() * shock)
        rows.append({"scenario": f"uniform {shock:+.0%}", "worst": r, "final": r})
    for shock in (-0.10, -0.20):
        r = float(weights @ (betas * shock))
        rows.append({"scenario": f"market {shock:+.0%} x beta", "worst": r, "final": r})
    crash = -0.07
    rebound = 1.0 / (1.0 + crash) - 1.0  # +7.53 %: back to the pre-crash level
    rows.append(
        {
            "scenario": "flash crash -7% then recovery",
            "worst": float(weights.sum() * crash),
            "final": float(weights.sum() * ((1.0 + crash) * (1.0 + rebound) - 1.0)),
        }
    )
    return rows


def correlation(returns: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Pearson correlation (N, N) of the columns of ``returns`` (T, N) and a clustering order.

    Order: leaves of average-linkage hierarchical clustering on the distance
    ``d = sqrt((1 - rho) / 2)`` (Mantegna 1999, "Hierarchical structure in financial markets").
    A constant column has undefined correlation (NaN; distance 1 for the clustering).
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = returns.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.atleast_2d(np.corrcoef(returns, rowvar=False))
    if n < 3:
        return rho, list(range(n))
    dist = np.sqrt(np.clip((1.0 - np.nan_to_num(rho, nan=-1.0)) / 2.0, 0.0, 1.0))
    np.fill_diagonal(dist, 0.0)
    order = leaves_list(linkage(squareform(dist, checks=False), method="average"))
    return rho, [int(i) for i in order]


def max_drawdown_duration(prices: np.ndarray) -> int:
    """Max drawdown duration (SLICES.md shared definitions): the most bars between a peak and the
    first bar that regains it (``index(recovery) - index(peak)``), or the last bar when it is never
    regained; 0 without a drawdown. Equity 1, 2, 1, 1, 1, 2 gives 4."""
    if len(prices) < 2:
        return 0
    at_peak = prices >= np.maximum.accumulate(prices)
    idx = np.arange(len(prices))
    peak_idx = np.maximum.accumulate(np.where(at_peak, idx, 0))
    recovered = np.flatnonzero(at_peak[1:] & ~at_peak[:-1]) + 1  # first bar back at a peak
    spans = list(recovered - peak_idx[recovered - 1])
    if not at_peak[-1]:
        spans.append(len(prices) - 1 - peak_idx[-1])
    return int(max(spans, default=0))


def drawdown(prices: np.ndarray, timestamps: pl.Series) -> dict:
    """Maximum drawdown of a price or equity curve (length T).

    Returns ``max_drawdown`` (fraction <= 0, ``price / running peak - 1`` at its minimum), its
    ``peak``, ``trough`` and ``recovery`` timestamps (recovery: first bar back at the peak, or
    None), and ``duration_bars``: the max drawdown duration of :func:`max_drawdown_duration` (the
    longest peak-to-recovery span of the whole curve, not only of the deepest drawdown).
    """
    peak = np.maximum.accumulate(prices)
    dd = prices / peak - 1.0
    t = int(np.argmin(dd))
    p = int(np.argmax(prices[: t + 1])) if t > 0 else 0
    after = np.flatnonzero(prices[t:] >= prices[p])
    rec = t + int(after[0]) if len(after) and dd[t] < 0 else None
    return {
        "max_drawdown": float(dd[t]),
        "peak": timestamps[p].isoformat(),
        "trough": timestamps[t].isoformat(),
        "recovery": timestamps[rec].isoformat() if rec is not None else None,
        "duration_bars": max_drawdown_duration(prices),
    }


def beta(asset: np.ndarray, market: np.ndarray) -> float:
    """OLS beta ``cov(asset, market) / var(market)`` (ddof=1); NaN when the market is constant."""
    v = float(np.var(market, ddof=1))
    return float(np.cov(asset, market, ddof=1)[0, 1] / v) if v > 0 else float("nan")


def risk_report(
    bars: dict[str, pl.DataFrame],
    weights: np.ndarray,
    confidences: list[float],
    horizons: list[int],
    value: float,
    simulations: int,
    seed: int,
    periods_per_year: float,
    aligned: Aligned | None = None,
) -> dict:
    """Everything the ``risk`` command shows, as a JSON-ready dict (fractions; currency for ``value``).

    ``aligned``: the :func:`align` result of ``bars`` when the caller already has it.
    """
    al = aligned if aligned is not None else align(bars)
    _, _, skew, kurt = population_moments(al.returns @ weights)
    port = al.returns @ weights
    basket = al.returns.mean(axis=1)
    rho, order = correlation(al.returns)
    betas = np.array([beta(al.returns[:, i], basket) for i in range(len(al.symbols))])
    equity = np.concatenate([[1.0], np.cumprod(1.0 + port)])
    per_symbol = {}
    for i, sym in enumerate(al.symbols):
        per_symbol[sym] = {
            "weight": float(weights[i]),
            "volatility": float(al.returns[:, i].std(ddof=1) * math.sqrt(periods_per_year)),
            "beta": float(betas[i]),
            **drawdown(al.closes[:, i], al.timestamps),
        }
    return {
        "symbols": al.symbols,
        "start": al.timestamps[0].isoformat(),
        "end": al.timestamps[-1].isoformat(),
        "bars": len(al.timestamps),
        "value": value,
        "periods_per_year": periods_per_year,
        "monte_carlo": {"simulations": simulations, "seed": seed},
        "portfolio": {
            "volatility": float(port.std(ddof=1) * math.sqrt(periods_per_year)),
            "mean_return": float(port.mean()),
            "skewness": skew,
            "excess_kurtosis": kurt,
            **drawdown(equity, al.timestamps),
        },
        "var": var_table(port, al.returns, weights, confidences, horizons, value, simulations, seed),
        "stress": {
            "historical": [
                {**row, "value_change": row["return"] * value} for row in worst_windows(port, al.timestamps)
            ],
            "hypothetical": [
                {**row, "worst_value": row["worst"] * value, "final_value": row["final"] * value}
                for row in shock_scenarios(weights, betas, al.symbols)
            ],
        },
        "per_symbol": per_symbol,
        "correlation": {
            "symbols": al.symbols,
            "matrix": [[None if math.isnan(x) else float(x) for x in row] for row in rho],
            "cluster_order": [al.symbols[i] for i in order],
            "start": al.timestamps[0].isoformat(),
            "end": al.timestamps[-1].isoformat(),
        },
    }
