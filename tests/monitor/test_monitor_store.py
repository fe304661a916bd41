"""Store freshness (contract 1 read-only): judged during XNYS market hours only, per timeframe,
and its readiness check and metric. Uses a copy of the embedded sample's AAPL daily bars."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from mon_helpers import make_monitor

from slices.monitor.store import store_status

SAMPLE = Path(__file__).resolve().parents[2] / "slices" / "sample" / "bars"


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    (root / "bars" / "1d").mkdir(parents=True)
    shutil.copy(SAMPLE / "1d" / "AAPL.parquet", root / "bars" / "1d" / "AAPL.parquet")  # newest bar 2020-01-10 (Fri)
    return root


def utc(*a):
    return datetime(*a, tzinfo=timezone.utc)


def test_daily_store_is_fresh_when_it_has_the_previous_session(store):
    st = store_status(store, utc(2020, 1, 13, 16, 0))  # Monday, market open; previous session Friday
    e = st["timeframes"]["1d"]
    assert e["newest"] == "2020-01-10T00:00:00.000000Z" and e["symbols"] == 1
    assert e["checked"] and not e["stale"]


def test_daily_store_is_stale_a_session_later(store):
    e = store_status(store, utc(2020, 1, 14, 16, 0))["timeframes"]["1d"]  # Tuesday: Monday's bar is missing
    assert e["checked"] and e["stale"] and "previous session 2020-01-13" in e["reason"]


def test_not_judged_outside_market_hours(store):
    for now in (utc(2020, 1, 18, 16, 0), utc(2020, 1, 14, 23, 0), utc(2020, 1, 20, 16, 0)):  # Sat, night, MLK day
        e = store_status(store, now)["timeframes"]["1d"]
        assert not e["checked"] and not e["stale"], now


def test_intraday_threshold_and_opening_grace(tmp_path):
    root = tmp_path / "store"
    (root / "bars" / "1m").mkdir(parents=True)
    ts = [utc(2024, 3, 6, 14, m) for m in range(0, 50)]  # 14:00 .. 14:49
    pl.DataFrame({"timestamp": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}).with_columns(
        pl.col("timestamp").dt.cast_time_unit("us")).write_parquet(root / "bars" / "1m" / "IDX.parquet")
    fresh = store_status(root, utc(2024, 3, 6, 14, 51))["timeframes"]["1m"]
    assert fresh["checked"] and not fresh["stale"] and fresh["threshold"] == 180
    stale = store_status(root, utc(2024, 3, 6, 14, 53))["timeframes"]["1m"]
    assert stale["stale"] and "min old" in stale["reason"]
    loose = store_status(root, utc(2024, 3, 6, 14, 53), stale_after=600)["timeframes"]["1m"]
    assert not loose["stale"]
    opening = store_status(root, utc(2024, 3, 7, 14, 31))["timeframes"]["1m"]  # one minute after the open
    assert not opening["checked"] and "less than the threshold" in opening["reason"]


def test_unreadable_file_is_named_not_fatal(store):
    (store / "bars" / "1d" / "BAD.parquet").write_bytes(b"nope")
    e = store_status(store, utc(2020, 1, 13, 16, 0))["timeframes"]["1d"]
    assert e["newest"] == "2020-01-10T00:00:00.000000Z" and "BAD.parquet" in e["errors"][0]


def test_stale_store_fails_readiness_and_fires_its_rule(tmp_path, store):
    mon = make_monitor(tmp_path, tmp_path / "no-ledgers", now=utc(2020, 1, 14, 16, 0), store=store)
    ready, checks = mon.readiness()
    assert not ready and checks["store"]["failing"][0]["timeframe"] == "1d"
    assert [(c.rule, c.target) for c in mon.conditions()] == [("store_stale", "store/1d")]
    mon._test_clock["now"] = utc(2020, 1, 13, 16, 0)
    assert mon.readiness()[0] and mon.conditions() == []
    assert not store_status(tmp_path / "missing", utc(2020, 1, 13, 16, 0))["exists"]
