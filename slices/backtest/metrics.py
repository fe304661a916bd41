"""Performance metrics of the backtest slice.

Return and risk definitions follow empyrical (Quantopian, https://github.com/quantopian/empyrical,
``stats.py``) with a risk-free rate of 0; trade statistics follow backtesting.py
(``backtesting/_stats.py``) and Van Tharp (SQN). Periods per year come from the bar frequency
(:func:`periods_per_year`): 252 for daily bars, 52 weekly, 12 monthly, the data's own bar rate intraday.

Units: fractions (0.05 = 5 %) for every return-like metric; ``final_equity`` and
``expectancy`` in currency; ``max_drawdown`` is negative (empyrical's sign);
``max_drawdown_duration`` in bars (peak to recovery); ``sharpe``, ``sortino``, ``calmar``, ``sqn``,
``profit_factor`` plain ratios. A metric that is undefined (no trades, zero variance, no losing
trade for profit_factor) is None.
"""
from __future__ import annotations

import math

import numpy as np

METRICS = (
    "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "max_drawdown_duration", "exposure", "n_trades", "win_rate", "best_trade",
    "worst_trade", "avg_trade", "profit_factor", "expectancy", "sqn", "kelly", "buy_and_hold_return",
)


FIXED_PERIODS = {"1d": 252.0, "1w": 52.0, "1mo": 12.0}


def periods_per_year(timeframe: str, timestamps: np.ndarray) -> float:
    """Bars per year, for annualising (SLICES.md shared definitions).

    ``1d`` 252 (sessions), ``1w`` 52, ``1mo`` 12. Intraday timeframes: the data's own bars per
    year, ``(n - 1) x 365.25 x 86400 / (t_last - t_first in seconds)`` over the ``n`` unique
    ``timestamps`` (datetime64) of the run's timeline, so 24/5 FX and 23-hour futures are right.
    Fewer than two timestamps (or no span) give 252.
    """
    if timeframe in FIXED_PERIODS:
        return FIXED_PERIODS[timeframe]
    ts = np.unique(timestamps)
    span = (ts[-1] - ts[0]) / np.timedelta64(1, "s") if ts.size > 1 else 0.0
    return (ts.size - 1) * 365.25 * 86400 / span if span > 0 else 252.0


def _none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Drawdown at each bar: equity / running peak - 1 (fraction, <= 0)."""
    return equity / np.maximum.accumulate(equity) - 1.0


def max_drawdown_duration(equity: np.ndarray) -> int:
    """The most bars between a peak and the first bar that regains it (``index(recovery) -
    index(peak)``), or the last bar when it is never regained; 0 without a drawdown
    (SLICES.md shared definitions: equity 1, 2, 1, 1, 1, 2 has duration 4)."""
    if equity.size == 0:
        return 0
    under = equity < np.maximum.accumulate(equity)
    if not under.any():
        return 0
    idx = np.arange(equity.size)
    peak_at = np.maximum.accumulate(np.where(under, 0, idx))  # index of the latest peak at each bar
    recovered = np.flatnonzero(~under[1:] & under[:-1]) + 1  # first bars that regain a peak
    longest = int((recovered - peak_at[recovered - 1]).max()) if recovered.size else 0
    if under[-1]:
        longest = max(longest, int(idx[-1] - peak_at[-1]))
    return longest


def equity_metrics(equity: np.ndarray, ann: float) -> dict:
    """Return/risk metrics of an equity curve (T,) marked at each close.

    Returns r_t = equity_t / equity_{t-1} - 1 for t >= 1.
    total_return = equity_T / equity_0 - 1.
    cagr (empyrical annual_return) = (1 + total_return) ** (ann / len(r)) - 1.
    volatility (annual_volatility) = std(r, ddof=1) x sqrt(ann).
    sharpe = mean(r) / std(r, ddof=1) x sqrt(ann).
    sortino = mean(r) x ann / (sqrt(mean(min(r, 0)^2)) x sqrt(ann)).
    max_drawdown = min(equity / running peak - 1); calmar = cagr / |max_drawdown|.
    """
    r = equity[1:] / equity[:-1] - 1.0 if equity.size > 1 else np.zeros(0)
    total = equity[-1] / equity[0] - 1.0
    n = r.size
    cagr = (1 + total) ** (ann / n) - 1 if n and total > -1 else (-1.0 if n else None)
    sd = float(np.std(r, ddof=1)) if n > 1 else float("nan")
    mean = float(np.mean(r)) if n else float("nan")
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(ann) if n else float("nan")
    mdd = float(drawdown(equity).min())
    return {
        "final_equity": float(equity[-1]),
        "total_return": float(total),
        "cagr": _none(cagr) if cagr is not None else None,
        "volatility": _none(sd * math.sqrt(ann)),
        "sharpe": _none(mean / sd * math.sqrt(ann)) if sd > 0 else None,
        "sortino": _none(mean * ann / down) if down > 0 else None,
        "calmar": _none(cagr / abs(mdd)) if (mdd < 0 and cagr is not None) else None,
        "max_drawdown": mdd,
        "max_drawdown_duration": max_drawdown_duration(equity),
    }


def trade_metrics(pnl: np.ndarray, returns: np.ndarray) -> dict:
    """Trade statistics over all trades, open ones included (marked at the last close).

    ``pnl`` currency per trade (net of commission); ``returns`` fraction per trade (pnl / entry
    value). win_rate = share of trades with pnl > 0; best/worst/avg_trade over ``returns``;
    profit_factor = sum of winning pnl / |sum of losing pnl|; expectancy = mean pnl (currency per
    trade); sqn = sqrt(n) x mean(pnl) / std(pnl, ddof=1) (Van Tharp); kelly = W - (1 - W) / R with
    W the win rate and R = mean winning pnl / |mean losing pnl| (backtesting.py).
    """
    n = int(pnl.size)
    out = {"n_trades": n}
    if n == 0:
        return out | dict.fromkeys(("win_rate", "best_trade", "worst_trade", "avg_trade", "profit_factor", "expectancy", "sqn", "kelly"))
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    w = wins.size / n
    sd = float(np.std(pnl, ddof=1)) if n > 1 else 0.0
    kelly = None
    if wins.size and losses.size:
        kelly = w - (1 - w) / (wins.mean() / abs(losses.mean()))
    elif wins.size:
        kelly = 1.0
    return out | {
        "win_rate": w,
        "best_trade": float(returns.max()),
        "worst_trade": float(returns.min()),
        "avg_trade": float(returns.mean()),
        "profit_factor": float(wins.sum() / abs(losses.sum())) if losses.size else None,
        "expectancy": float(pnl.mean()),
        "sqn": _none(math.sqrt(n) * pnl.mean() / sd) if sd > 0 else None,
        "kelly": _none(kelly) if kelly is not None else None,
    }


def all_metrics(equity: np.ndarray, ann: float, exposure: float, pnl: np.ndarray, returns: np.ndarray, bh: float) -> dict:
    """Every metric in :data:`METRICS`, in that order. ``exposure`` is the fraction of bars with
    a position held at the close; ``bh`` the buy-and-hold return (fraction)."""
    m = equity_metrics(equity, ann) | trade_metrics(pnl, returns) | {"exposure": exposure, "buy_and_hold_return": bh}
    return {k: m[k] for k in METRICS}


def symbol_equity(alloc: float, qty: np.ndarray, sym_cash: np.ndarray, close_ff: np.ndarray, fills) -> np.ndarray:
    """Per-symbol equity curves (T, N), time-weighted on the capital each symbol actually had.

    ``qty`` (T, N) position after each bar; ``sym_cash`` (T, N) cumulative cash flow of the
    symbol's fills (commission included); ``close_ff`` (T, N) closes carried forward (NaN before
    a symbol's first bar); ``fills`` :class:`.sim.Fills` (arrays ``bar symbol quantity price
    commission``) in execution order (engine.Result.fills, either strategy form); symbol
    indices are the columns of ``qty``.

    For bar t: value V_t = sym_cash_t + qty_t x close_t; P&L_t = V_t - V_{t-1};
    capital K_t = |qty_{t-1}| x close_{t-1} + the sum, over fills in bar t that open or increase
    a position, of |q| x price + commission (for a fill that reverses a position, only the part
    beyond the old position); r_t = P&L_t / K_t when K_t > 0, else 0; equity_t = alloc x
    prod(1 + r_0..t). Long-only, a bar cannot lose more than K_t, so r_t >= -1 and the curve
    never goes below 0 (max_drawdown >= -1), whatever capital the symbol was given.
    """
    T, N = qty.shape
    marks = np.nan_to_num(close_ff)
    value = sym_cash + qty * marks
    pnl = np.diff(value, axis=0, prepend=np.zeros((1, N)))
    capital = np.zeros((T, N))
    capital[1:] = np.abs(qty[:-1]) * marks[:-1]
    if len(fills):
        bar, sym, q, price, com = fills.bar, fills.symbol, fills.quantity, fills.price, fills.commission
        order = np.lexsort((np.arange(len(fills)), sym))  # by symbol, execution order kept
        s_sorted = sym[order]
        prev = np.r_[0.0, fills.qty_after[order][:-1]]  # the position before each fill: the one after the previous
        prev[np.r_[True, s_sorted[1:] != s_sorted[:-1]]] = 0.0  # a symbol's first fill starts flat
        before = np.empty_like(q)
        before[order] = prev
        same_way = (before == 0) | (np.sign(before) == np.sign(q))
        opened = np.where(same_way, np.abs(q), np.maximum(np.abs(q) - np.abs(before), 0.0))
        share = np.divide(opened, np.abs(q), out=np.zeros_like(q), where=q != 0)
        np.add.at(capital, (bar, sym), opened * price + share * com)
    r = np.divide(pnl, capital, out=np.zeros((T, N)), where=capital > 0)
    return alloc * np.cumprod(1.0 + r, axis=0)
