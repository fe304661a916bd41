"""Property tests: import/export round-trips exactly; update after an outage equals one full fetch."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_helpers import SeriesProvider
from slices.data.cli import cli
from slices.data.providers import RetryPolicy
from slices.data.service import fetch_symbols, import_files, update_symbols
from slices.data.store import Store

UTC = timezone.utc
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NO_SLEEP = RetryPolicy(sleep=lambda s: None)


@st.composite
def bar_frames(draw):
    """Valid store frames: strictly increasing UTC stamps on a timeframe grid, positive
    consistent OHLC with arbitrary float precision, volumes including 0."""
    n = draw(st.integers(2, 60))
    tf = draw(st.sampled_from(["1d", "1h", "5m"]))
    step = {"1d": 86400, "1h": 3600, "5m": 300}[tf]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, 2, n) if tf != "1d" else rng.integers(1, 2, n) + (rng.random(n) < 0.1)
    start = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)))
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    secs = np.cumsum(gaps) * step
    ts = pl.Series([start + timedelta(seconds=int(s)) for s in secs], dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")
    scale = draw(st.sampled_from([1e-3, 1.0, 1234.5678, 1e6]))
    close = scale * np.exp(rng.normal(0, 0.05, n).cumsum())
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
    volume = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0, 1e9, n))
    return tf, pl.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


@SETTINGS
@given(data=bar_frames(), src_ext=st.sampled_from([".csv", ".parquet"]), dst_ext=st.sampled_from([".csv", ".parquet"]))
def test_import_then_export_round_trips_exactly(data, src_ext, dst_ext):
    tf, df = data
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / f"abc{src_ext}"
        df.write_csv(src) if src_ext == ".csv" else df.write_parquet(src)
        import_files(Store(tmp / "store"), [src], timeframe=tf, keep_suspicious=True)  # scale 1e-3 is sub-penny
        assert Store(tmp / "store").read(tf, "ABC").equals(df)
        dst = tmp / f"out{dst_ext}"
        r = CliRunner().invoke(cli, ["export", "ABC", "--timeframe", tf, "--to", str(dst), "--store", str(tmp / "store")])
        assert r.exit_code == 0, r.output
        back = pl.read_csv(dst, try_parse_dates=True) if dst_ext == ".csv" else pl.read_parquet(dst)
        if dst_ext == ".csv":
            back = back.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        assert back.equals(df)
        # and the export imports back to the identical store content
        import_files(Store(tmp / "again"), [dst.rename(tmp / f"abc{dst_ext}")], timeframe=tf, keep_suspicious=True)
        assert Store(tmp / "again").read(tf, "ABC").equals(df)


@SETTINGS
@given(n=st.integers(10, 150), cut=st.floats(0.05, 0.95), seed=st.integers(0, 10_000), prepend=st.booleans())
def test_update_after_outage_equals_one_full_fetch(n, cut, seed, prepend):
    from data_helpers import make_bars

    market = make_bars(n, start=datetime(2022, 1, 3, tzinfo=UTC), seed=seed)
    ts = market["timestamp"]
    first, last = ts[0], ts[-1]
    k = max(1, min(n - 1, int(n * cut)))
    now = last + timedelta(days=10)
    with tempfile.TemporaryDirectory() as tmp:
        full, part = Store(Path(tmp) / "full"), Store(Path(tmp) / "part")
        prov = SeriesProvider({"AAA": market})
        fetch_symbols(full, ["AAA"], "1d", first, last, [prov], NO_SLEEP, now=now)
        if prepend:  # history fetched from the middle, then extended backwards
            fetch_symbols(part, ["AAA"], "1d", ts[k], last, [prov], NO_SLEEP, now=now)
            prov.calls.clear()
            (rep,) = update_symbols(part, [("1d", "AAA")], lambda m: [prov], NO_SLEEP, prepend=True, start=first, now=now)
            assert all(end < ts[k] for _, _, end in prov.calls)
        else:  # fetched until the outage, then the backfill
            fetch_symbols(part, ["AAA"], "1d", first, ts[k - 1], [prov], NO_SLEEP, now=now)
            prov.calls.clear()
            (rep,) = update_symbols(part, [("1d", "AAA")], lambda m: [prov], NO_SLEEP, now=now)
            assert all(start > ts[k - 1] for _, start, _ in prov.calls)  # nothing stored is refetched
        assert rep.error is None
        assert part.read("1d", "AAA").equals(full.read("1d", "AAA"))
        assert part.read("1d", "AAA").equals(market)
