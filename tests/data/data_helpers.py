"""Helpers shared by the data slice's tests (unique module name: no clash with other slices)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from slices.data.errors import EmptyResponseError, UnknownSymbolError
from slices.data.providers import Bars, Provider


def make_bars(n: int, start: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc), step=timedelta(days=1),
              seed: int = 0, price: float = 100.0) -> pl.DataFrame:
    """A valid store frame of ``n`` bars: a log-normal walk with consistent OHLC."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    vol = rng.integers(1_000, 1_000_000, n).astype(float)
    ts = [start + i * step for i in range(n)]
    return pl.DataFrame({
        "timestamp": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
        "open": open_, "high": high, "low": low, "close": close, "volume": vol,
    })


class SeriesProvider(Provider):
    """A deterministic provider serving slices of a fixed market (counts its calls)."""

    def __init__(self, market: dict[str, pl.DataFrame], name: str = "yahoo"):
        self.market = market
        self.name = name
        self.calls: list[tuple[str, datetime, datetime]] = []

    def fetch(self, symbol, timeframe, start, end):
        self.calls.append((symbol, start, end))
        if symbol not in self.market:
            raise UnknownSymbolError(f"{self.name}: unknown symbol {symbol}")
        df = self.market[symbol].filter((pl.col("timestamp") >= start) & (pl.col("timestamp") <= end))
        if df.height == 0:
            raise EmptyResponseError(f"{self.name}: no bars for {symbol}")
        return Bars(df)
