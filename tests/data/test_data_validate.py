"""Validation rules on crafted faults, the embedded sample and the shared S&P 500 file."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from data_helpers import make_bars
from slices.data import calendars
from slices.data.loader import raw_symbol_frames, read_file
from slices.data.store import SAMPLE_ROOT, Store
from slices.data.validate import Rules, validate_frame

UTC = timezone.utc


def xnys_bars(first: str, last: str, seed: int = 0) -> pl.DataFrame:
    """Clean daily bars on every XNYS session in [first, last]."""
    days = calendars.sessions("XNYS", datetime.fromisoformat(first).date(), datetime.fromisoformat(last).date())
    df = make_bars(len(days), seed=seed)
    ts = pl.Series(days.astype("datetime64[D]").astype("datetime64[us]")).dt.replace_time_zone("UTC")
    return df.with_columns(ts.alias("timestamp"))


def kinds(findings) -> Counter:
    return Counter(f.kind for f in findings)


def set_row(df: pl.DataFrame, i: int, **values) -> pl.DataFrame:
    idx = pl.int_range(pl.len())
    return df.with_columns([pl.when(idx == i).then(pl.lit(v, dtype=pl.Float64)).otherwise(pl.col(k)).alias(k) for k, v in values.items()])


BASE = xnys_bars("2019-01-02", "2019-12-31")


def test_clean_series_has_no_findings():
    assert validate_frame(BASE, "AAA", "1d", asof=None) == []


def test_missing_sessions_against_the_xnys_calendar():
    # drop 2019-07-01..2019-07-03 (3 sessions; 07-04 is a holiday and must not count)
    df = BASE.filter(~pl.col("timestamp").dt.date().is_between(datetime(2019, 7, 1).date(), datetime(2019, 7, 3).date()))
    (f,) = validate_frame(df, "AAA", "1d", asof=None)
    assert (f.kind, f.severity, f.count) == ("missing_sessions", "warning", 3)
    assert f.start == datetime(2019, 7, 1, tzinfo=UTC) and f.end == datetime(2019, 7, 3, tzinfo=UTC)


def test_bar_on_a_holiday_is_reported():
    extra = BASE.head(1).with_columns(pl.lit(datetime(2019, 7, 4, tzinfo=UTC)).dt.cast_time_unit("us").alias("timestamp"))
    df = pl.concat([BASE, extra]).sort("timestamp")
    assert kinds(validate_frame(df, "AAA", "1d", asof=None)) == {"non_session_bar": 1}


def test_duplicates_and_unsorted_are_errors():
    df = pl.concat([BASE.slice(10, 5), BASE.head(10), BASE.slice(12, 1), BASE.slice(15, BASE.height)])
    fs = validate_frame(df, "AAA", "1d", asof=None)
    k = kinds(fs)
    assert k["unsorted"] == 1 and k["duplicate"] == 1
    assert all(f.severity == "error" for f in fs if f.kind in ("unsorted", "duplicate"))
    dup = next(f for f in fs if f.kind == "duplicate")
    assert dup.start == BASE["timestamp"][12]


@pytest.mark.parametrize("values, kind, severity", [
    ({"close": 0.0}, "bad_price", "error"),
    ({"open": float("nan")}, "bad_price", "error"),
    ({"low": -1.0}, "bad_price", "error"),
    ({"high": 1.0}, "high_below_low", "error"),
    ({"volume": -5.0}, "negative_volume", "error"),
    ({"low": 1e6, "high": 2e6}, "ohlc_inconsistent", "warning"),  # low above open/close: usable, warned
    ({"open": 1e6, "high": 2e6}, "suspicious_series", "error"),  # close jumps x5+ (open too, for OHLC)
])
def test_price_faults_at_the_right_bar(values, kind, severity):
    df = set_row(BASE, 100, **values)
    if kind == "suspicious_series":
        df = set_row(df, 100, close=1.5e6, low=1e6)
    fs = [f for f in validate_frame(df, "AAA", "1d", asof=None) if f.kind == kind]
    assert len(fs) == 1 and fs[0].severity == severity and fs[0].start == BASE["timestamp"][100]
    if kind == "suspicious_series":
        assert "close jumps x" in fs[0].message and "(bad quote or unadjusted split)" in fs[0].message
        kept = [f for f in validate_frame(df, "AAA", "1d", asof=None, keep_suspicious=True) if f.kind == kind]
        assert kept[0].severity == "warning"


def test_zero_volume_and_stale_runs():
    df = set_row(BASE, 50, volume=0.0)
    df = set_row(df, 51, volume=0.0)
    row = df.row(120, named=True)
    for i in (121, 122, 123):
        df = set_row(df, i, **{k: row[k] for k in ("open", "high", "low", "close", "volume")})
    fs = validate_frame(df, "AAA", "1d", asof=None)
    zero = [f for f in fs if f.kind == "zero_volume"]
    stale = [f for f in fs if f.kind == "stale_bars"]
    assert len(zero) == 1 and zero[0].count == 2 and zero[0].start == BASE["timestamp"][50]
    assert len(stale) == 1 and stale[0].count == 3 and stale[0].start == BASE["timestamp"][120]
    # intraday needs longer runs before it speaks
    assert Rules().for_tf(Rules().zero_volume_run, "1m") > 1


def test_outlier_rule_flags_bad_prints_and_splits_but_not_earnings_gaps():
    df = BASE
    c = df["close"].to_numpy().copy()
    # an earnings gap: +15 % that stays
    gap = np.ones_like(c)
    gap[60:] = 1.15
    # a bad print: one bar 30 % off, back the next bar
    spike = np.ones_like(c)
    spike[150] = 1.3
    # an unadjusted 2:1 split: halves and stays
    split = np.ones_like(c)
    split[200:] = 0.5
    f = gap * spike * split
    df = df.with_columns([(pl.col(k) * pl.Series(f)).alias(k) for k in ("open", "high", "low", "close")])
    out = [x for x in validate_frame(df, "AAA", "1d", asof=None) if x.kind == "outlier_return"]
    assert sorted(x.start for x in out) == [BASE["timestamp"][150], BASE["timestamp"][200]]
    assert all(x.severity == "warning" for x in out)


def test_sub_penny_prices_for_equities_only():
    df = BASE.with_columns([(pl.col(k) / 20000).alias(k) for k in ("open", "high", "low", "close")])
    assert kinds(validate_frame(df, "AAA", "1d", asof=None))["sub_penny"] == 1
    fx = make_bars(200, start=datetime(2019, 1, 7, tzinfo=UTC), step=timedelta(hours=1), price=0.009)
    assert "sub_penny" not in kinds(validate_frame(fx, "JPYUSD", "1h", asof=None))


def test_stale_series_against_the_calendar():
    df = BASE  # ends 2019-12-31
    assert kinds(validate_frame(df, "AAA", "1d", asof=datetime(2020, 1, 2, 22, tzinfo=UTC))) == {}
    (f,) = validate_frame(df, "AAA", "1d", asof=datetime(2020, 1, 10, 22, tzinfo=UTC))
    assert f.kind == "stale_series" and f.count == 7  # Jan 2,3,6,7,8,9,10
    # before the close of 2020-01-03, only Jan 2 is due: within the one-session tolerance
    assert validate_frame(df, "AAA", "1d", asof=datetime(2020, 1, 3, 15, tzinfo=UTC)) == []


def test_fx_calendar_is_24_5():
    fx = make_bars(24 * 5, start=datetime(2019, 1, 7, tzinfo=UTC), step=timedelta(hours=1))  # Mon..Fri
    assert calendars.calendar_for("EURUSD") == "FX" and calendars.calendar_for("AAPL") == "XNYS"
    assert validate_frame(fx, "EURUSD", "1h", asof=None) == []
    gap = fx.filter(pl.col("timestamp").dt.weekday() != 3)  # Wednesday missing
    (f,) = validate_frame(gap, "EURUSD", "1h", asof=None)
    assert f.kind == "missing_sessions" and f.start == datetime(2019, 1, 9, tzinfo=UTC)


def test_embedded_sample_validates():
    st = Store(SAMPLE_ROOT)
    fs = validate_frame(st.read("1d", "DIS"), "DIS", "1d", asof=None)
    # the sample keeps the source's real fault: DIS 2020-01-10 opens above its high; contract 2
    # makes that a warning (the bar is usable), so the series has no error
    assert [f for f in fs if f.severity == "error"] == []
    assert [(f.kind, f.severity, f.start) for f in fs if f.kind == "ohlc_inconsistent"] == [
        ("ohlc_inconsistent", "warning", datetime(2020, 1, 10, tzinfo=UTC))]
    eur = st.read("1h", "EURUSD")
    # FX 24/5 (auto for a currency pair): no finding; against XNYS its US-holiday bars would be flagged
    assert validate_frame(eur, "EURUSD", "1h", asof=None) == []
    assert kinds(validate_frame(eur, "EURUSD", "1h", "XNYS", asof=None))["non_session_bar"] > 10


def test_shared_sp500_file_faults_are_found(sp500):
    findings = []
    for sym, (frame, _) in raw_symbol_frames(read_file(sp500)).items():
        findings += validate_frame(frame, sym, "1d", asof=datetime(2020, 1, 10, 23, tzinfo=UTC))
    errors = {(f.kind, f.symbol, f.start.date().isoformat()) for f in findings if f.severity == "error"}
    assert errors == {
        ("bad_price", "CBS", "2019-12-04"),          # an all-zero bar
        ("duplicate", "CBS", "2019-12-04"),          # ... next to the real one
        ("duplicate", "STI", "2019-12-06"),
        ("duplicate", "VIAB", "2019-12-04"),
        ("suspicious_series", "BHF", "2015-01-12"),  # sub-penny placeholder quotes
        ("suspicious_series", "SCG", "2019-03-05"),
    }
    outside = {(f.symbol, f.start.date().isoformat()) for f in findings if f.kind == "ohlc_inconsistent"}
    assert outside == {("CBOE", "2020-01-10"), ("DIS", "2020-01-10"), ("DXC", "2018-06-01")}
    assert {f.severity for f in findings if f.kind == "ohlc_inconsistent"} == {"warning"}
    k = kinds(findings)
    assert k["zero_volume"] > 50 and k["missing_sessions"] > 30 and k["stale_bars"] > 10
    subpenny = {f.symbol for f in findings if f.kind == "sub_penny"}
    assert subpenny == {"BHF", "SCG"}
    stale = {f.symbol for f in findings if f.kind == "stale_series"}
    assert {"AET", "CELG", "CBS"} <= stale and "AAPL" not in stale  # delisted or acquired names
    outliers = {(f.symbol, f.start.date().isoformat()) for f in findings if f.kind == "outlier_return"}
    assert ("UA", "2016-03-23") in outliers  # the share-class split left unadjusted
    assert ("COL", "2019-05-29") in outliers  # a -69 % print reversed the next day
    # big one-way earnings moves are not outliers: AMZN +13 % 2015-04-24, NFLX +17 % 2016-10-18,
    # FB -21 % 2018-07-26, GOOGL +15 % 2015-07-17, NVDA +26 % 2016-11-11, AMD +42 % 2016-04-22
    assert not {s for s, _ in outliers} & {"AAPL", "AMZN", "NFLX", "FB", "GOOGL", "NVDA", "AMD", "MSFT", "CMG"}
    # BHF: sub-penny placeholders in 2015, then nothing until it listed in July 2017
    gaps = [f for f in findings if f.symbol == "BHF" and f.kind == "missing_sessions"]
    assert max(f.count for f in gaps) == 380
    longest = max(gaps, key=lambda f: f.count)
    assert (longest.start.date().isoformat(), longest.end.date().isoformat()) == ("2015-12-30", "2017-07-03")
