"""A copy of examples/strategies/momentum_rotation.py for this slice's tests (they run alone,
without the repository's examples/; tests/contracts checks the example itself).

Momentum rotation: every `every` bars hold the `top` symbols with the best `lookback`-bar
return, equally weighted.

A portfolio weights strategy (SLICES.md contract 5, "weights" form): on each rebalance row
(rows lookback, lookback + every, lookback + 2 every, ... of the panel's timeline) the chosen
symbols get weight 1 / top and every other symbol 0; a symbol without a close on that row or
`lookback` rows before is not eligible. Rows between rebalances are NaN ("no change"), so the
positions drift with the prices until the next rebalance. The backtest trades each rebalance at
the next bar's open.

Try it:  python -m slices.backtest run --strategy examples/strategies/momentum_rotation.py \
             --symbols AAPL,MSFT,XOM,JNJ,JPM --param top=2
"""
import numpy as np

NAME = "momentum_rotation"
DESCRIPTION = "Hold the `top` symbols by `lookback`-bar return, equal weight, rebalanced every `every` bars"
PARAMS = {"top": 2, "lookback": 20, "every": 5}


def lookback(params):
    return params["lookback"] + 1


def validate(params):
    for key in ("top", "lookback", "every"):
        if params[key] < 1:
            raise ValueError(f"{key} must be >= 1 (got {params[key]})")


def weights(panel, params):
    close = panel["close"]
    T, N = close.shape
    k, top = params["lookback"], params["top"]
    w = np.full((T, N), np.nan)
    if T <= k:
        return w
    rows = np.arange(k, T, params["every"])
    ret = close[rows] / close[rows - k] - 1.0  # (rebalances, N); NaN where a close is missing
    score = np.where(np.isnan(ret), -np.inf, ret)
    best = np.argsort(-score, axis=1, kind="stable")[:, :top]  # ties: the first symbol in panel order
    chosen = np.zeros(ret.shape, dtype=bool)
    np.put_along_axis(chosen, best, True, axis=1)
    w[rows] = np.where(chosen & ~np.isnan(ret), 1.0 / top, 0.0)
    return w
