"""Test strategy (weights form): the first symbol gets weight ``a`` and the second ``b`` on every
bar whose close is above ``level`` (0 otherwise; NaN where the symbol has no bar)."""
import numpy as np

PARAMS = {"a": 0.3, "b": 0.2, "level": 0.0}
DESCRIPTION = "fixed weights a, b while close > level"


def weights(panel, params):
    close = panel["close"]
    frac = np.array([params["a"], params["b"]] + [0.0] * (close.shape[1] - 2))[: close.shape[1]]
    w = np.where(close > params["level"], frac, 0.0)
    return np.where(np.isnan(close), np.nan, w)
