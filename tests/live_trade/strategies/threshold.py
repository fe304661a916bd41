"""Test strategy: long while the close is above ``level`` (the tests steer entries and exits by the closes they write)."""
import numpy as np

PARAMS = {"level": 100.0}
DESCRIPTION = "long while close > level"


def lookback(params):
    return 1


def targets(bars, params):
    return (np.asarray(bars["close"]) > params["level"]).astype(np.int8)
