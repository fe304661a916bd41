"""Kelly sizing from a strategy's trades (contract 3 ``trades.parquet``).

* Classic Kelly (Kelly, "A new interpretation of information rate", Bell System Technical
  Journal, 1956; as backtesting.py's ``Kelly Criterion``): f = W - (1 - W) / R with W the share
  of winning trades (pnl > 0) and R = mean winning pnl / |mean losing pnl|.
* Growth-optimal fraction on the trades' returns (Thorp, "The Kelly criterion in blackjack,
  sports betting and the stock market", 2006): f* = argmax mean(log(1 + f r_i)) over f in
  [0, 1 / max loss) (bounded so 1 + f r stays positive), by scipy's bounded scalar minimiser.
* Fractional Kelly: ``fraction`` x f (half Kelly by default), never below 0.
"""
from __future__ import annotations

import numpy as np


def kelly_sizes(returns: np.ndarray, pnl: np.ndarray, fraction: float = 0.5) -> dict:
    """``returns`` fractions per trade, ``pnl`` currency per trade. Returns ``{"n_trades",
    "win_rate", "payoff_ratio", "kelly", "kelly_growth", "fractional", "fraction"}`` (None where
    undefined: no trades, no losing trade for the payoff ratio). Raises ValueError for a fraction
    outside (0, 1]."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1] (got {fraction})")
    n = int(pnl.size)
    out = {"n_trades": n, "win_rate": None, "payoff_ratio": None, "kelly": None, "kelly_growth": None,
           "fractional": None, "fraction": fraction}
    if n == 0:
        return out
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    w = wins.size / n
    out["win_rate"] = w
    if wins.size and losses.size:
        R = wins.mean() / abs(losses.mean())
        out |= {"payoff_ratio": float(R), "kelly": float(w - (1 - w) / R)}
    elif wins.size:
        out["kelly"] = 1.0
    else:
        out["kelly"] = 0.0
    r = returns[np.isfinite(returns)]
    worst = r.min() if r.size else 0.0
    if r.size and worst < 0:
        from scipy.optimize import minimize_scalar

        cap = min(1.0, 0.999999 / -worst)
        res = minimize_scalar(lambda f: -np.mean(np.log1p(f * r)), bounds=(0.0, cap), method="bounded",
                              options={"xatol": 1e-10})
        out["kelly_growth"] = float(res.x)
    elif r.size:
        out["kelly_growth"] = 1.0
    base = out["kelly_growth"] if out["kelly_growth"] is not None else out["kelly"]
    out["fractional"] = max(0.0, fraction * base)
    return out
