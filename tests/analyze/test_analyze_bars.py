"""Bar loading: store, embedded-sample fallback, --data files (SLICES.md contracts 1 and 2), errors."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from analyze_helpers import make_bars, random_walk

from slices.analyze.bars import SAMPLE_ROOT, BarRequest, data_symbols, load_bars, periods_per_year, store_root
from slices.analyze.errors import AnalyzeError

SCHEMA = {
    "timestamp": pl.Datetime("us", "UTC"),
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


def test_store_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path / "env"))
    assert store_root(str(tmp_path / "opt")) == tmp_path / "opt"
    assert store_root(None) == tmp_path / "env"
    monkeypatch.delenv("GPT_TRADER_STORE")
    assert str(store_root(None)).endswith(".gpt-trader/store")


def test_sample_fallback_with_one_note(no_store, capsys):
    bars = load_bars(["aapl", "msft"], BarRequest())
    assert set(bars) == {"AAPL", "MSFT"}
    assert dict(bars["AAPL"].schema) == SCHEMA
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["note: AAPL MSFT 1d from the embedded sample (not in the default store ~/.gpt-trader/store)"]


def test_store_is_preferred_to_sample(tmp_path, capsys):
    root = tmp_path / "store"
    (root / "bars" / "1d").mkdir(parents=True)
    mine = make_bars(random_walk(50)).with_columns(pl.lit("x").alias("extra"))  # extra columns are ignored
    mine.write_parquet(root / "bars" / "1d" / "AAPL.parquet")
    bars = load_bars(["AAPL"], BarRequest(store=str(root)))["AAPL"]
    assert bars.height == 50 and bars.columns == list(SCHEMA)
    assert "note:" not in capsys.readouterr().err


def test_start_end_inclusive(no_store):
    b = load_bars(["AAPL"], BarRequest(start="2019-01-02", end="2019-01-31"))["AAPL"]
    assert b["timestamp"][0].date() == date(2019, 1, 2)
    assert b["timestamp"][-1].date() == date(2019, 1, 31)


def test_unknown_symbol_and_timeframe(no_store):
    with pytest.raises(AnalyzeError, match="ZZZZ 1d: not in the default store"):
        load_bars(["ZZZZ"], BarRequest())
    with pytest.raises(AnalyzeError, match="unknown timeframe"):
        load_bars(["AAPL"], BarRequest(timeframe="2d"))


def _pandas_like_csv(path, frame):
    frame.rename(
        {"timestamp": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
    ).with_columns(pl.col("Date").dt.date()).write_csv(path)


def test_data_csv_single_symbol(tmp_path):
    b = make_bars(random_walk(40))
    path = tmp_path / "spy.csv"
    _pandas_like_csv(path, b)
    got = load_bars(["SPY"], BarRequest(data=(str(path),)))["SPY"]
    assert dict(got.schema) == SCHEMA
    np.testing.assert_allclose(got["close"].to_numpy(), b["close"].to_numpy())
    assert got["timestamp"].to_list() == b["timestamp"].to_list()


def test_data_long_format_adjustment_and_naive_times(tmp_path):
    b = make_bars(random_walk(30))
    long = (
        pl.concat([b.with_columns(pl.lit(s).alias("Symbol")) for s in ("aaa", "bbb")])
        .with_columns(
            pl.col("timestamp").dt.replace_time_zone(None).alias("Datetime"), (pl.col("close") * 0.5).alias("Adj Close")
        )
        .drop("timestamp")
    )
    path = tmp_path / "long.parquet"
    long.write_parquet(path)
    req = BarRequest(data=(str(path),))
    assert data_symbols(req) == ["AAA", "BBB"]
    got = load_bars(["BBB"], req)["BBB"]
    np.testing.assert_allclose(got["close"].to_numpy(), b["close"].to_numpy() * 0.5)
    np.testing.assert_allclose(got["high"].to_numpy(), b["high"].to_numpy() * 0.5)
    raw = load_bars(["BBB"], BarRequest(data=(str(path),), adjust=False))["BBB"]
    np.testing.assert_allclose(raw["close"].to_numpy(), b["close"].to_numpy())
    assert got["timestamp"].dtype == pl.Datetime("us", "UTC")


def test_missing_volume_warns(tmp_path, capsys):
    path = tmp_path / "novol.csv"
    make_bars(random_walk(10)).drop("volume").write_csv(path)
    got = load_bars(["NOVOL"], BarRequest(data=(str(path),)))["NOVOL"]
    assert (got["volume"] == 0).all()
    assert "warning:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(float("nan")).otherwise(pl.col("close")).alias("close")
            ),
            "BAD 2020-01-06: missing or non-numeric price (close)",  # a NaN cell is a missing price (rule 7)
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(0.0).otherwise(pl.col("low")).alias("low")
            ),
            "BAD 2020-01-04: non-positive price (low 0)",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 7).then(pl.col("low") - 1).otherwise(pl.col("high")).alias("high")
            ),
            "BAD 2020-01-08: high ",
        ),
        (lambda f: pl.concat([f.head(4), f.slice(3, 1), f.tail(5)]), "BAD 2020-01-04: duplicate timestamp"),
        (
            lambda f: pl.concat([f.head(4), f.slice(5, 1), f.slice(4, 1), f.tail(4)]),
            "BAD 2020-01-05: timestamps not increasing",
        ),
        (lambda f: f.drop("close"), "missing price column(s) close"),
        (lambda f: f.rename({"timestamp": "when"}), "no time column"),
        (lambda f: f.head(0), "no rows"),
    ],
)
def test_data_errors_name_file_symbol_time(tmp_path, mutate, message):
    path = tmp_path / "bad.parquet"
    mutate(make_bars(random_walk(10))).write_parquet(path)
    with pytest.raises(AnalyzeError) as err:
        load_bars(["BAD"], BarRequest(data=(str(path),)))
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_and_symbol(tmp_path):
    with pytest.raises(AnalyzeError, match="file not found"):
        load_bars(["X"], BarRequest(data=(str(tmp_path / "nope.csv"),)))
    path = tmp_path / "one.csv"
    make_bars(random_walk(10)).write_csv(path)
    with pytest.raises(AnalyzeError, match="ZZZ: not in --data files"):
        load_bars(["ZZZ"], BarRequest(data=(str(path),)))


def test_corrupt_store_file_is_an_error(tmp_path):
    root = tmp_path / "store"
    (root / "bars" / "1d").mkdir(parents=True)
    bad = make_bars(random_walk(10)).with_columns(pl.lit(-1.0).alias("open"))
    bad.write_parquet(root / "bars" / "1d" / "AAPL.parquet")
    with pytest.raises(AnalyzeError, match=r"AAPL 2020-01-01: non-positive price \(open -1"):
        load_bars(["AAPL"], BarRequest(store=str(root)))


def test_intraday_periods_per_year(no_store):
    eur = load_bars(["EURUSD"], BarRequest(timeframe="1h"))["EURUSD"]
    assert periods_per_year(eur) > 252 * 10
    aapl = load_bars(["AAPL"], BarRequest())["AAPL"]
    assert periods_per_year(aapl) == 252


def test_shared_sp500_loads_as_is(sp500):
    bars = load_bars(["AAPL", "MMM"], BarRequest(data=(str(sp500),)))
    assert bars["AAPL"].height > 1200 and dict(bars["MMM"].schema) == SCHEMA
    with pytest.raises(AnalyzeError, match=r"CBS 2019-12-04: non-positive price \(open 0"):
        load_bars(["CBS"], BarRequest(data=(str(sp500),)))


def test_sample_dir_exists():
    assert (SAMPLE_ROOT / "bars" / "1d" / "AAPL.parquet").exists()


def test_pandas_index_column_and_zoned_times(tmp_path):
    idx = tmp_path / "idx.csv"
    idx.write_text(",Open,High,Low,Close,Adj Close,Volume\n2020-01-02,10,11,9,10.5,5.25,100\n2020-01-03,10.5,12,10,11,5.5,200\n")
    got = load_bars(["IDX"], BarRequest(data=(str(idx),)))["IDX"]
    assert got["timestamp"].dt.hour().to_list() == [0, 0]
    assert got["open"].to_list() == [5.0, 5.25]  # scaled by adj_close / close = 0.5
    zoned = tmp_path / "zoned.csv"
    zoned.write_text("Unnamed: 0,open,high,low,close,volume\n2020-01-02 10:00:00+01:00,10,11,9,10.5,1\n")
    got = load_bars(["ZONED"], BarRequest(data=(str(zoned),)))["ZONED"]
    assert got["timestamp"][0].hour == 9 and str(got["timestamp"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"
