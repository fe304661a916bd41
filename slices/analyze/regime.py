"""Market regimes per bar: trend (bull / bear / sideways) and volatility (low / normal / high).

Trend (documented thresholds, all configurable):

- ``ma = SMA(close, trend_window)`` (default 200 bars) and its slope
  ``slope = ma[t] / ma[t - slope_window] - 1`` (default 20 bars; a fraction);
- ``bull`` when ``close > ma`` and ``slope > slope_threshold`` (default 0.01, i.e. the long average
  rose more than 1 % over the slope window), ``bear`` when ``close < ma`` and
  ``slope < -slope_threshold``, else ``sideways``; null before ``trend_window + slope_window - 1``.

Volatility:

- realised volatility ``rvol[t]`` = standard deviation (ddof=1) of the last ``vol_window``
  (default 20) log returns, annualised with ``sqrt(periods_per_year)``;
- ``rvol_pct[t]`` = fraction of the symbol's own ``rvol`` values up to and including bar t that
  are ``<= rvol[t]`` (expanding empirical CDF: no lookahead);
- ``low`` when ``rvol_pct < low_pct`` (0.25), ``high`` when ``rvol_pct > high_pct`` (0.75), else
  ``normal``; null until ``min_history`` (default 60) rvol values exist.

Sources: the 200-day moving-average trend filter (e.g. Faber, "A Quantitative Approach to
Tactical Asset Allocation", 2007); realised volatility as the sample standard deviation of log
returns (Hull, *Options, Futures and Other Derivatives*, ch. 15); percentile regimes are this
slice's own convention.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass

import numpy as np
import polars as pl

from slices.analyze.errors import AnalyzeError
from slices.analyze.indicators import sma


@dataclass(frozen=True)
class RegimeParams:
    """Regime thresholds (see module docstring); windows in bars, slope and percentiles as fractions."""

    trend_window: int = 200
    slope_window: int = 20
    slope_threshold: float = 0.01
    vol_window: int = 20
    low_pct: float = 0.25
    high_pct: float = 0.75
    min_history: int = 60

    def check(self) -> None:
        """Raise AnalyzeError when a parameter is out of range."""
        if self.trend_window < 2 or self.slope_window < 1 or self.vol_window < 2 or self.min_history < 1:
            raise AnalyzeError("regime windows must be >= 2 (slope window and min history >= 1)")
        if not (0.0 <= self.low_pct < self.high_pct <= 1.0):
            raise AnalyzeError(
                f"regime percentiles must satisfy 0 <= low ({self.low_pct}) < high ({self.high_pct}) <= 1"
            )
        if self.slope_threshold < 0:
            raise AnalyzeError("--slope-threshold must be >= 0")

    @property
    def min_bars(self) -> int:
        """Bars needed for at least one trend and one volatility regime value."""
        return max(self.trend_window + self.slope_window, self.vol_window + self.min_history)


def expanding_percentile(x: np.ndarray) -> np.ndarray:
    """For each t, the fraction of the non-NaN ``x[0..t]`` that are ``<= x[t]`` (NaN where ``x[t]`` is NaN).

    Uses only data up to t (no lookahead); O(T log T) comparisons with a sorted list.
    """
    out = np.full(len(x), np.nan)
    seen: list[float] = []
    for t, v in enumerate(x.tolist()):
        if v != v:  # NaN
            continue
        insort(seen, v)
        out[t] = bisect_right(seen, v) / len(seen)
    return out


def realised_vol(close: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """Annualised rolling std (ddof=1) of log returns over ``window`` returns; NaN for the first ``window`` bars."""
    out = np.full(len(close), np.nan)
    if len(close) > window:
        r = np.diff(np.log(close))
        w = np.lib.stride_tricks.sliding_window_view(r, window)
        out[window:] = w.std(axis=1, ddof=1) * np.sqrt(periods_per_year)
    return out


def regimes(bars: pl.DataFrame, params: RegimeParams, periods_per_year: float, symbol: str = "") -> pl.DataFrame:
    """Per-bar regimes for one symbol.

    Input: bars with the bar-store schema (T rows). Output columns: ``timestamp``, ``close``,
    ``ma_<trend_window>``, ``ma_slope`` (fraction), ``trend`` (bull/bear/sideways or null),
    ``rvol_<vol_window>`` (annualised fraction), ``rvol_pct`` (0..1), ``vol_regime``
    (low/normal/high or null). Raises AnalyzeError when ``T < params.min_bars``.
    """
    params.check()
    if bars.height < params.min_bars:
        raise AnalyzeError(
            f"{symbol}: {bars.height} bars, regime needs at least {params.min_bars} "
            f"(trend window {params.trend_window} + slope window {params.slope_window}, "
            f"vol window {params.vol_window} + {params.min_history} history)"
        )
    close = bars["close"].to_numpy()
    ma = sma(close, params.trend_window)
    slope = np.full(len(close), np.nan)
    k = params.slope_window
    slope[k:] = ma[k:] / ma[:-k] - 1.0
    with np.errstate(invalid="ignore"):
        bull = (close > ma) & (slope > params.slope_threshold)
        bear = (close < ma) & (slope < -params.slope_threshold)
    trend = np.where(bull, "bull", np.where(bear, "bear", "sideways")).astype(object)
    trend[np.isnan(slope)] = None
    rv = realised_vol(close, params.vol_window, periods_per_year)
    pct = expanding_percentile(rv)
    count = np.cumsum(~np.isnan(rv))
    vol = np.where(pct < params.low_pct, "low", np.where(pct > params.high_pct, "high", "normal")).astype(object)
    vol[np.isnan(pct) | (count < params.min_history)] = None
    return pl.DataFrame(
        {
            "timestamp": bars["timestamp"],
            "close": close,
            f"ma_{params.trend_window}": ma,
            "ma_slope": slope,
            "trend": pl.Series(trend.tolist(), dtype=pl.String),
            f"rvol_{params.vol_window}": rv,
            "rvol_pct": pct,
            "vol_regime": pl.Series(vol.tolist(), dtype=pl.String),
        }
    )


def current_run(labels: pl.Series, timestamps: pl.Series) -> dict:
    """The last label of ``labels`` and how long it has lasted.

    Returns ``{"regime": str | None, "bars": int, "since": ISO timestamp}`` where ``bars`` counts
    the consecutive bars at the end with that label and ``since`` is the first of them.
    """
    values = labels.to_list()
    last = values[-1]
    n = 0
    for v in reversed(values):
        if v != last:
            break
        n += 1
    return {"regime": last, "bars": n, "since": timestamps[len(values) - n].isoformat()}
