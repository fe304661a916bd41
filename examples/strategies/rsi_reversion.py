"""RSI mean reversion: buy when Wilder's RSI falls below `lower`, sell when it rises above `upper`.

A per-symbol signal strategy (SLICES.md contract 5, "targets" form): the target on bar t is +1
(long) from the first bar whose RSI is below `lower` until the first bar whose RSI is above
`upper`, then 0 (flat); flat during the RSI's warm-up. The backtest fills each change at the
symbol's next bar's open.

RSI (J. Welles Wilder, New Concepts in Technical Trading Systems, 1978; as TA-Lib computes it):
gains and losses are the positive and negative close-to-close changes; their averages start at bar
n as the mean of the first n changes and then follow avg[t] = (avg[t-1] (n - 1) + x[t]) / n;
RSI = 100 - 100 / (1 + avg_gain / avg_loss) (100 when there are no losses, 50 when the price did
not move at all).

Try it:  python -m slices.backtest run --strategy examples/strategies/rsi_reversion.py --symbols AAPL
"""
import numpy as np

NAME = "rsi_reversion"
DESCRIPTION = "Wilder RSI mean reversion: long below `lower`, exit above `upper`"
PARAMS = {"n": 14, "lower": 30.0, "upper": 70.0}


def lookback(params):
    return params["n"] + 1  # n changes need n + 1 closes


def validate(params):
    if params["n"] < 1:
        raise ValueError(f"n must be >= 1 (got {params['n']})")
    if not 0 < params["lower"] < params["upper"] < 100:
        raise ValueError(f"needs 0 < lower < upper < 100 (got lower={params['lower']}, upper={params['upper']})")


def wilder(x, n):
    """Wilder's smoothing of x[1:], first value at index n (mean of x[1..n]); NaN before.

    The recursion y[t] = d y[t-1] + x[t] / n (d = 1 - 1/n) is evaluated in blocks with its closed
    form y[s+k] = d^k (y[s] + sum_{j=1..k} d^-j x[s+j] / n), the blocks short enough that d^-k
    stays far from overflow, so it is vectorised and exact to ~1e-13."""
    out = np.full(x.shape, np.nan)
    if x.size <= n:
        return out
    out[n] = x[1 : n + 1].mean()
    d = 1.0 - 1.0 / n
    if d == 0.0:  # n = 1: the average is the last value
        out[n + 1 :] = x[n + 1 :]
        return out
    block = int(max(1, min(64, 69.0 / -np.log(d))))
    j = np.arange(1, block + 1, dtype=float)
    inv, fwd = d**-j, d**j
    s = n
    while s < x.size - 1:
        k = min(block, x.size - 1 - s)
        out[s + 1 : s + 1 + k] = fwd[:k] * (out[s] + np.cumsum(x[s + 1 : s + 1 + k] * inv[:k]) / n)
        s += k
    return out


def rsi(close, n):
    """Wilder's RSI (0..100) of a 1-D close array; NaN for the first n bars."""
    change = np.diff(close, prepend=np.nan)
    gain = wilder(np.where(change > 0, change, 0.0), n)
    loss = wilder(np.where(change < 0, -change, 0.0), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + gain / loss)
    out = np.where(loss == 0, np.where(gain == 0, 50.0, 100.0), out)
    return np.where(np.isnan(gain), np.nan, out)


def targets(bars, params):
    r = rsi(bars["close"], params["n"])
    # 1 on an entry bar, 0 on an exit bar, NaN (keep the previous state) otherwise
    event = np.where(r < params["lower"], 1.0, np.where(r > params["upper"], 0.0, np.nan))
    idx = np.where(np.isnan(event), 0, np.arange(event.size))
    np.maximum.accumulate(idx, out=idx)
    state = event[idx]
    return np.where(np.isnan(state), 0, state).astype(np.int8)
