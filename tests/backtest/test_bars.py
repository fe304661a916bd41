"""Tests for slices/backtest/bars.py: loading and validating bars (SLICES.md contracts 1 and 2).

Every expectation here is derived from the contract and from the hand-written input files, never
from what the loader happened to output.
"""
from __future__ import annotations

import importlib.util
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("slices") is None:  # plain `pytest` without the repo on sys.path
    sys.path.insert(0, str(ROOT))

from slices.backtest.bars import SAMPLE_ROOT, DataError, load_bars, parse_when  # noqa: E402

UTC = timezone.utc
UTC_US = pl.Datetime("us", "UTC")
SCHEMA = {
    "symbol": pl.String, "timestamp": UTC_US, "open": pl.Float64, "high": pl.Float64,
    "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64,
}


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def d(day: int, month: int = 1, year: int = 2020, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


GOOD_CSV = """
Date,Open,High,Low,Close,Volume
2020-01-02,10,11,9,10.5,100
2020-01-03,10.5,12,10,11,200
2020-01-06,11,11.5,10.5,11.25,300
"""


def store_frame(n: int = 5, start: datetime = d(2, 3), base: float = 50.0) -> pl.DataFrame:
    """A contract-1 store table: daily bars, consistent OHLC."""
    ts = [start + timedelta(days=i) for i in range(n)]
    close = [base + i for i in range(n)]
    return pl.DataFrame({
        "timestamp": pl.Series(ts, dtype=UTC_US), "open": close, "high": [c + 1 for c in close],
        "low": [c - 1 for c in close], "close": close, "volume": [1000.0] * n,
    })


def make_store(root: Path, **symbols: pl.DataFrame) -> Path:
    folder = root / "bars" / "1d"
    folder.mkdir(parents=True, exist_ok=True)
    for sym, frame in symbols.items():
        frame.write_parquet(folder / f"{sym}.parquet")
    return root


# ----------------------------------------------------------------------------- direct files
def test_per_symbol_csv_symbol_is_upper_stem_and_schema_exact(tmp_path):
    bars, report = load_bars(None, data=[write(tmp_path / "abc.csv", GOOD_CSV)])
    assert bars.schema == pl.Schema(SCHEMA)
    assert bars["symbol"].to_list() == ["ABC"] * 3
    assert bars["timestamp"].to_list() == [d(2), d(3), d(6)]
    assert bars["open"].to_list() == [10, 10.5, 11]
    assert bars["high"].to_list() == [11, 12, 11.5]
    assert bars["low"].to_list() == [9, 10, 10.5]
    assert bars["close"].to_list() == [10.5, 11, 11.25]
    assert bars["volume"].to_list() == [100, 200, 300]
    assert report.warnings == []


def test_per_symbol_csv_named_symbol_any_case(tmp_path):
    bars, _ = load_bars(["abc"], data=[write(tmp_path / "abc.csv", GOOD_CSV)])
    assert bars["symbol"].unique().to_list() == ["ABC"]


def test_per_symbol_parquet(tmp_path):
    path = tmp_path / "xy-z.parquet"
    pl.DataFrame({
        "date": [date(2020, 1, 2), date(2020, 1, 3)], "OPEN": [1.0, 2.0], "HIGH": [2.0, 3.0],
        "LOW": [0.5, 1.5], "CLOSE": [1.5, 2.5], "VOLUME": [5, 6],
    }).write_parquet(path)
    bars, _ = load_bars(None, data=[path])
    assert bars.schema == pl.Schema(SCHEMA)
    assert bars["symbol"].to_list() == ["XY-Z", "XY-Z"]
    assert bars["timestamp"].to_list() == [d(2), d(3)]
    assert bars["close"].to_list() == [1.5, 2.5]
    assert bars["volume"].to_list() == [5.0, 6.0]


def test_pq_extension_accepted(tmp_path):
    path = tmp_path / "q.pq"
    pl.read_csv(write(tmp_path / "src.csv", GOOD_CSV), try_parse_dates=True).write_parquet(path)
    bars, _ = load_bars(None, data=[path])
    assert bars["symbol"].unique().to_list() == ["Q"] and bars.height == 3


def test_long_format_sorted_by_symbol_then_time(tmp_path):
    path = write(tmp_path / "long.csv", """
Symbol,timestamp,open,high,low,close,volume
zz,2020-01-03,5,6,4,5.5,10
aa,2020-01-03,2,3,1,2.5,10
zz,2020-01-06,5.5,7,5,6,10
aa,2020-01-06,2.5,3,2,2.75,10
aa,2020-01-07,2.75,3,2,2.9,10
""")
    bars, _ = load_bars(None, data=[path])
    assert bars.schema == pl.Schema(SCHEMA)
    assert bars.select("symbol", "timestamp").rows() == [
        ("AA", d(3)), ("AA", d(6)), ("AA", d(7)), ("ZZ", d(3)), ("ZZ", d(6)),
    ]
    assert bars.filter(pl.col("symbol") == "ZZ")["close"].to_list() == [5.5, 6]


def test_long_format_named_symbols_filter(tmp_path):
    path = write(tmp_path / "long.csv", """
symbol,date,open,high,low,close,volume
A,2020-01-02,1,2,0.5,1.5,1
B,2020-01-02,1,2,0.5,1.5,1
""")
    bars, _ = load_bars(["b"], data=[path])
    assert bars["symbol"].to_list() == ["B"]


@pytest.mark.parametrize("name", ["Date", "datetime", "timestamp", "TIME", "DateTime", "Timestamp"])
def test_time_column_names_any_case(tmp_path, name):
    path = write(tmp_path / "t.csv", GOOD_CSV.replace("Date,", f"{name},", 1))
    bars, _ = load_bars(None, data=[path])
    assert bars["timestamp"].to_list() == [d(2), d(3), d(6)]


@pytest.mark.parametrize("first", ["", "Unnamed: 0"])
def test_unnamed_first_column_as_pandas_writes_it(tmp_path, first):
    # exactly what DataFrame.to_csv() writes for an unnamed DatetimeIndex
    path = write(tmp_path / "pd.csv", f"""
{first},Open,High,Low,Close,Volume
2020-01-02,1.0,2.0,0.5,1.5,1
2020-01-03,2.0,3.0,1.0,2.5,2
""")
    bars, _ = load_bars(None, data=[path])
    assert bars["timestamp"].to_list() == [d(2), d(3)]
    assert bars["close"].to_list() == [1.5, 2.5]


def test_index_level_0_as_first_column(tmp_path):
    path = tmp_path / "idx.parquet"
    pl.DataFrame({
        "__index_level_0__": [datetime(2020, 1, 2), datetime(2020, 1, 3)], "Open": [1.0, 2.0], "High": [2.0, 3.0],
        "Low": [0.5, 1.0], "Close": [1.5, 2.5], "Volume": [1.0, 2.0],
    }).write_parquet(path)
    bars, _ = load_bars(None, data=[path])
    assert bars["timestamp"].to_list() == [d(2), d(3)]


def test_pandas_to_parquet_with_unnamed_datetime_index(tmp_path):
    # pandas writes the unnamed index as a LAST column __index_level_0__
    pd = pytest.importorskip("pandas")
    path = tmp_path / "pdidx.parquet"
    pd.DataFrame(
        {"Open": [1.0, 2.0], "High": [2.0, 3.0], "Low": [0.5, 1.0], "Close": [1.5, 2.5], "Volume": [1, 2]},
        index=pd.to_datetime(["2020-01-02", "2020-01-03"]),
    ).to_parquet(path)
    bars, _ = load_bars(None, data=[path])
    assert bars["timestamp"].to_list() == [d(2), d(3)]


def test_naive_datetimes_taken_as_utc_zoned_converted(tmp_path):
    naive = write(tmp_path / "n.csv", """
datetime,open,high,low,close,volume
2020-01-02 09:30:00,1,2,0.5,1.5,1
2020-01-02 10:30:00,1,2,0.5,1.5,1
""")
    zoned = write(tmp_path / "z.csv", """
datetime,open,high,low,close,volume
2020-01-02T09:30:00+02:00,1,2,0.5,1.5,1
2020-01-02T10:30:00+02:00,1,2,0.5,1.5,1
""")
    bars, _ = load_bars(None, data=[naive, zoned])
    assert bars.filter(pl.col("symbol") == "N")["timestamp"].to_list() == [
        datetime(2020, 1, 2, 9, 30, tzinfo=UTC), datetime(2020, 1, 2, 10, 30, tzinfo=UTC)]
    assert bars.filter(pl.col("symbol") == "Z")["timestamp"].to_list() == [
        datetime(2020, 1, 2, 7, 30, tzinfo=UTC), datetime(2020, 1, 2, 8, 30, tzinfo=UTC)]
    assert bars["timestamp"].dtype == UTC_US


def test_adj_close_scales_ohlc(tmp_path):
    path = write(tmp_path / "adj.csv", """
Date,Open,High,Low,Close,Adj Close,Volume
2020-01-02,10,12,8,10,5,100
2020-01-03,20,22,19,20,15,100
""")
    bars, _ = load_bars(None, data=[path])
    # factor = adj / close: 0.5 then 0.75; volume untouched
    assert bars["open"].to_list() == pytest.approx([5.0, 15.0], rel=1e-12)
    assert bars["high"].to_list() == pytest.approx([6.0, 16.5], rel=1e-12)
    assert bars["low"].to_list() == pytest.approx([4.0, 14.25], rel=1e-12)
    assert bars["close"].to_list() == pytest.approx([5.0, 15.0], rel=1e-12)
    assert bars["volume"].to_list() == [100, 100]
    raw, _ = load_bars(None, data=[path], adjust=False)
    assert raw["open"].to_list() == [10, 20] and raw["close"].to_list() == [10, 20]
    assert raw["high"].to_list() == [12, 22] and raw["low"].to_list() == [8, 19]


@pytest.mark.parametrize("adj_name", ["adj_close", "ADJ_CLOSE", "Adj_Close"])
def test_adj_close_name_variants(tmp_path, adj_name):
    path = write(tmp_path / "adj.csv", f"""
date,open,high,low,close,{adj_name},volume
2020-01-02,10,12,8,10,2.5,100
""")
    bars, _ = load_bars(None, data=[path])
    assert bars.row(0, named=True)["close"] == pytest.approx(2.5, rel=1e-12)
    assert bars.row(0, named=True)["high"] == pytest.approx(3.0, rel=1e-12)


def test_missing_volume_is_zero_with_warning(tmp_path):
    path = write(tmp_path / "nv.csv", """
date,open,high,low,close
2020-01-02,10,12,8,10
""")
    bars, report = load_bars(None, data=[path])
    assert bars["volume"].to_list() == [0.0]
    assert any("volume" in w for w in report.warnings)


def test_extra_columns_ignored(tmp_path):
    path = write(tmp_path / "x.csv", GOOD_CSV.replace("Volume", "Volume,Note").replace("100", "100,hi")
                 .replace(",200", ",200,ho").replace(",300", ",300,hu"))
    bars, _ = load_bars(None, data=[path])
    assert bars.columns == list(SCHEMA) and bars.height == 3


# ----------------------------------------------------------------------------- store and sample
def test_store_is_read(tmp_path):
    root = make_store(tmp_path / "store", XYZ=store_frame())
    bars, report = load_bars(["XYZ"], store=root)
    assert bars.schema == pl.Schema(SCHEMA)
    assert bars["close"].to_list() == [50.0, 51.0, 52.0, 53.0, 54.0]
    assert bars["timestamp"][0] == d(2, 3)
    assert not any("embedded sample" in n for n in report.notes)


def test_store_extra_columns_are_ignored(tmp_path):
    root = make_store(tmp_path / "store", XYZ=store_frame().with_columns(vwap=pl.lit(1.0), trades=pl.lit(3)))
    bars, _ = load_bars(["XYZ"], store=root)
    assert bars.columns == list(SCHEMA)


def test_symbol_missing_from_named_store_is_error(tmp_path, monkeypatch):
    # Changed with SLICES.md contract 1 "Which store": a named store never falls back to the sample.
    root = make_store(tmp_path / "store", XYZ=store_frame())
    with pytest.raises(DataError, match=r"--symbols: AAPL has no 1d bars in store .*store"):
        load_bars(["XYZ", "AAPL"], store=root)
    monkeypatch.setenv("GPT_TRADER_STORE", str(root))
    with pytest.raises(DataError, match="AAPL"):
        load_bars(["AAPL"])


@pytest.mark.parametrize("how", ["option", "env"])
def test_named_store_must_be_a_folder(tmp_path, monkeypatch, how):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for target, needle in ((tmp_path / "nope", "no such folder"), (afile, "not a folder")):
        if how == "env":
            monkeypatch.setenv("GPT_TRADER_STORE", str(target))
        with pytest.raises(DataError, match=needle) as exc:
            load_bars(["AAPL"], store=target if how == "option" else None)
        assert ("--store" if how == "option" else "$GPT_TRADER_STORE") in str(exc.value)


def test_symbol_missing_from_default_store_comes_from_sample_with_note():
    root = make_store(Path.home() / ".gpt-trader" / "store", XYZ=store_frame())
    bars, report = load_bars(["XYZ", "AAPL"])
    assert sorted(bars["symbol"].unique().to_list()) == ["AAPL", "XYZ"]
    sample = pl.read_parquet(SAMPLE_ROOT / "bars" / "1d" / "AAPL.parquet")
    aapl = bars.filter(pl.col("symbol") == "AAPL").drop("symbol")
    polars.testing.assert_frame_equal(aapl, sample.select(aapl.columns))
    assert report.notes == ["note: AAPL 1d from the embedded sample (not in the default store ~/.gpt-trader/store)"]
    assert root.is_dir()


def test_store_symbol_shadows_sample(tmp_path):
    root = make_store(tmp_path / "store", AAPL=store_frame(base=7.0))
    bars, report = load_bars(["AAPL"], store=root)
    assert bars["close"].to_list() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert not any("embedded sample" in n for n in report.notes)


def test_env_var_store_is_honoured(tmp_path, monkeypatch):
    root = make_store(tmp_path / "envstore", XYZ=store_frame())
    monkeypatch.setenv("GPT_TRADER_STORE", str(root))
    bars, _ = load_bars(["XYZ"])
    assert bars["close"].to_list() == [50.0, 51.0, 52.0, 53.0, 54.0]


def test_store_option_beats_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT_TRADER_STORE", str(make_store(tmp_path / "env", XYZ=store_frame(base=1.0))))
    root = make_store(tmp_path / "opt", XYZ=store_frame(base=100.0))
    bars, _ = load_bars(["XYZ"], store=root)
    assert bars["close"][0] == 100.0


def test_symbols_none_reads_every_store_symbol(tmp_path):
    root = make_store(tmp_path / "store", XYZ=store_frame(), ABC=store_frame(base=3.0))
    bars, report = load_bars(None, store=root)
    assert sorted(bars["symbol"].unique().to_list()) == ["ABC", "XYZ"]  # no sample symbols mixed in
    assert report.notes == []


def test_symbols_none_empty_store_uses_whole_sample():
    bars, _ = load_bars(None)
    expected = sorted(p.stem for p in (SAMPLE_ROOT / "bars" / "1d").glob("*.parquet"))
    assert sorted(bars["symbol"].unique().to_list()) == expected


def test_unknown_symbol_is_data_error_naming_it(tmp_path):
    root = make_store(tmp_path / "store", XYZ=store_frame())
    with pytest.raises(DataError, match="NOSUCH"):
        load_bars(["XYZ", "NOSUCH"], store=root)


def test_unknown_symbol_in_data_file(tmp_path):
    with pytest.raises(DataError, match="NOPE"):
        load_bars(["NOPE"], data=[write(tmp_path / "abc.csv", GOOD_CSV)])


def test_intraday_sample_timeframes():
    eur, _ = load_bars(["EURUSD"], "1h")
    fut, _ = load_bars(["IDXFUT"], "1m")
    assert eur.height > 1000 and fut.height > 1000
    assert eur.schema == pl.Schema(SCHEMA) and fut.schema == pl.Schema(SCHEMA)
    with pytest.raises(DataError, match="AAPL"):
        load_bars(["AAPL"], "1h")


def test_unknown_timeframe():
    with pytest.raises(DataError, match="2d"):
        load_bars(["AAPL"], "2d")


# ----------------------------------------------------------------------------- errors
def _err(tmp_path, name, text, symbols=("BAD",)) -> str:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as exc:
        load_bars(list(symbols) if symbols else None, data=[path])
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        load_bars(None, data=[path])


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"\x00\x01garbage bytes, not parquet\xff" * 10)
    with pytest.raises(DataError) as exc:
        load_bars(None, data=[path])
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_unsupported_extension(tmp_path):
    path = write(tmp_path / "bars.json", "{}")
    with pytest.raises(DataError) as exc:
        load_bars(None, data=[path])
    assert str(path) in str(exc.value) and ".json" in str(exc.value)


def test_no_time_column(tmp_path):
    _err(tmp_path, "bad.csv", """
when,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
""")


def test_missing_price_column(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,close,volume
2020-01-02,1,2,1.5,1
""")
    assert "low" in msg


@pytest.mark.parametrize("nan", ["NaN", ""])
def test_nan_price_names_file_symbol_timestamp(tmp_path, nan):
    msg = _err(tmp_path, "bad.csv", f"""
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,{nan},1
2020-01-06,1,2,0.5,{nan},1
""")
    assert "BAD" in msg and "2020-01-03" in msg


def test_invalid_only_symbol_unnamed_error_says_why(tmp_path):
    # nothing valid is left: the error must say why, not just "no bars"
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,NaN,1
""", symbols=None)
    assert "BAD" in msg and "2020-01-03" in msg


@pytest.mark.parametrize("value", ["0", "-1.5"])
def test_non_positive_price(tmp_path, value):
    msg = _err(tmp_path, "bad.csv", f"""
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,1.5,1
2020-01-06,1,2,{value},1.5,1
""")
    assert "BAD" in msg and "2020-01-06" in msg


def test_non_positive_close_with_adj_close(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,adj_close,volume
2020-01-02,1,2,0.5,1.5,1.5,1
2020-01-03,1,2,0.5,0,1.5,1
""")
    assert "BAD" in msg and "2020-01-03" in msg


def test_high_below_low(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-03,1,0.9,1.2,1,1
""")
    assert "BAD" in msg and "2020-01-03" in msg


def test_duplicate_timestamp(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,1.6,1
""")
    assert "BAD" in msg and "2020-01-03" in msg


def test_unsorted_timestamps(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
2020-01-02,1,2,0.5,1.5,1
2020-01-04,1,2,0.5,1.5,1
2020-01-03,1,2,0.5,1.5,1
2020-01-07,1,2,0.5,1.5,1
""")
    # the first bar that steps back in time (by one day) is 2020-01-03
    assert "BAD" in msg and "2020-01-03" in msg


def test_unsorted_in_long_file_with_interleaved_symbols(tmp_path):
    path = write(tmp_path / "long.csv", """
symbol,date,open,high,low,close,volume
A,2020-01-02,1,2,0.5,1.5,1
B,2020-01-06,1,2,0.5,1.5,1
A,2020-01-03,1,2,0.5,1.5,1
B,2020-01-03,1,2,0.5,1.5,1
""")
    with pytest.raises(DataError, match=r"B.*2020-01-03"):
        load_bars(["A", "B"], data=[path])
    bars, report = load_bars(None, data=[path])
    assert bars["symbol"].unique().to_list() == ["A"]


def test_same_bar_in_two_files(tmp_path):
    a = write(tmp_path / "one.csv", "symbol,date,open,high,low,close\nX,2020-01-02,1,2,0.5,1.5\n")
    b = write(tmp_path / "two.csv", "symbol,date,open,high,low,close\nX,2020-01-02,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match=r"X.*2020-01-02"):
        load_bars(["X"], data=[a, b])


def test_empty_after_start_end_filter(tmp_path):
    path = write(tmp_path / "abc.csv", GOOD_CSV)
    with pytest.raises(DataError) as exc:
        load_bars(None, data=[path], start="2021-01-01")
    assert str(path) in str(exc.value)
    with pytest.raises(DataError):
        load_bars(None, data=[path], end="2019-12-31")


def test_start_after_end(tmp_path):
    path = write(tmp_path / "abc.csv", GOOD_CSV)
    with pytest.raises(DataError, match=r"2020-01-05.*2020-01-03"):
        load_bars(None, data=[path], start="2020-01-05", end="2020-01-03")


@pytest.mark.parametrize("text", ["yesterday", "2020-13-01", "2020/01/02", "02-01-2020"])
def test_unparsable_date(tmp_path, text):
    path = write(tmp_path / "abc.csv", GOOD_CSV)
    with pytest.raises(DataError, match="cannot parse"):
        load_bars(None, data=[path], start=text)
    with pytest.raises(DataError, match="--end"):
        load_bars(None, data=[path], end=text)


def test_unparsable_time_column(tmp_path):
    msg = _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
soon,1,2,0.5,1.5,1
later,1,2,0.5,1.5,1
""")
    assert "date" in msg


def test_non_numeric_price_column(tmp_path):
    _err(tmp_path, "bad.csv", """
date,open,high,low,close,volume
2020-01-02,1,2,0.5,abc,1
""")


def test_time_column_is_the_first_matching_column(tmp_path):
    path = write(tmp_path / "two.csv", """
timestamp,date,open,high,low,close,volume
2020-01-02 10:00:00,2020-01-02,1,2,0.5,1.5,1
2020-01-02 11:00:00,2020-01-02,1,2,0.5,1.5,1
""")
    bars, _ = load_bars(None, data=[path])
    assert bars["timestamp"].to_list() == [d(2, hour=10), d(2, hour=11)]


def test_missing_symbol_cell_is_rejected(tmp_path):
    path = write(tmp_path / "long.csv", """
symbol,date,open,high,low,close,volume
A,2020-01-02,1,2,0.5,1.5,1
,2020-01-02,1,2,0.5,1.5,1
A,2020-01-03,1,2,0.5,1.5,1
""")
    try:
        bars, report = load_bars(None, data=[path])
    except DataError as exc:
        assert str(path) in str(exc)
    else:
        assert bars["symbol"].null_count() == 0
        assert any("excluded" in w for w in report.warnings)


def test_same_bar_in_two_files_names_the_files(tmp_path):
    a = write(tmp_path / "one.csv", "symbol,date,open,high,low,close\nX,2020-01-02,1,2,0.5,1.5\n")
    b = write(tmp_path / "two.csv", "symbol,date,open,high,low,close\nX,2020-01-02,1,2,0.5,1.5\n")
    with pytest.raises(DataError) as exc:
        load_bars(["X"], data=[a, b])
    assert str(a) in str(exc.value) or str(b) in str(exc.value)


def test_symbol_split_over_two_files(tmp_path):
    a = write(tmp_path / "one.csv", "symbol,date,open,high,low,close\nX,2020-01-03,1,2,0.5,1.5\n")
    b = write(tmp_path / "two.csv", "symbol,date,open,high,low,close\nX,2020-01-02,1,2,0.5,1.25\n")
    bars, _ = load_bars(["X"], data=[a, b])
    assert bars["timestamp"].to_list() == [d(2), d(3)] and bars["close"].to_list() == [1.25, 1.5]


# ----------------------------------------------------------------------------- named vs unnamed
LONG_WITH_BAD = """
symbol,date,open,high,low,close,volume
GOOD,2020-01-02,1,2,0.5,1.5,1
BAD,2020-01-02,1,2,0.5,1.5,1
GOOD,2020-01-03,1,2,0.5,1.5,1
BAD,2020-01-03,1,0.5,2,1.5,1
"""


def test_unnamed_invalid_symbol_excluded_with_warning(tmp_path):
    bars, report = load_bars(None, data=[write(tmp_path / "long.csv", LONG_WITH_BAD)])
    assert bars["symbol"].unique().to_list() == ["GOOD"] and bars.height == 2
    bad = [w for w in report.warnings if "BAD" in w]
    assert len(bad) == 1 and "2020-01-03" in bad[0] and "excluded" in bad[0]


def test_named_invalid_symbol_is_error(tmp_path):
    path = write(tmp_path / "long.csv", LONG_WITH_BAD)
    with pytest.raises(DataError, match=r"BAD.*2020-01-03"):
        load_bars(["GOOD", "BAD"], data=[path])
    bars, report = load_bars(["GOOD"], data=[path])  # naming only the valid one is fine
    assert bars["symbol"].unique().to_list() == ["GOOD"]
    assert not any("BAD" in w for w in report.warnings)


# ----------------------------------------------------------------------------- warnings
def _daily_csv(rows: list[tuple]) -> str:
    return "date,open,high,low,close,volume\n" + "\n".join(",".join(str(x) for x in r) for r in rows)


def _days(n: int, start: date = date(2020, 1, 1), skip: int = 0, at: int = -1) -> list[date]:
    out, cur = [], start
    for i in range(n):
        if i == at:
            cur += timedelta(days=skip)
        out.append(cur)
        cur += timedelta(days=1)
    return out


def test_clean_file_has_no_warnings(tmp_path):
    rows = [(day, 10, 11, 9, 10, 100) for day in _days(30)]
    _, report = load_bars(None, data=[write(tmp_path / "ok.csv", _daily_csv(rows))])
    assert report.warnings == []


def test_zero_volume_warning(tmp_path):
    rows = [(day, 10, 11, 9, 10, 0 if i == 3 else 100) for i, day in enumerate(_days(10))]
    bars, report = load_bars(None, data=[write(tmp_path / "zv.csv", _daily_csv(rows))])
    assert bars.height == 10
    hits = [w for w in report.warnings if "ZV" in w and "zero-volume" in w]
    assert len(hits) == 1 and "2020-01-04" in hits[0]


def test_gap_warning(tmp_path):
    rows = [(day, 10, 11, 9, 10, 100) for day in _days(30, skip=14, at=15)]
    bars, report = load_bars(None, data=[write(tmp_path / "gp.csv", _daily_csv(rows))])
    assert bars.height == 30
    hits = [w for w in report.warnings if "GP" in w and "gap" in w]
    assert len(hits) == 1 and "2020-01-15" in hits[0] and "2020-01-30" in hits[0]


def test_weekends_are_not_gaps(tmp_path):
    days = [x for x in _days(60) if x.weekday() < 5]
    rows = [(day, 10, 11, 9, 10, 100) for day in days]
    _, report = load_bars(None, data=[write(tmp_path / "wk.csv", _daily_csv(rows))])
    assert not any("gap" in w for w in report.warnings)


def test_open_above_high_warning_not_error(tmp_path):
    rows = [(day, 12 if i == 5 else 10, 11, 9, 10, 100) for i, day in enumerate(_days(10))]
    bars, report = load_bars(["OH"], data=[write(tmp_path / "oh.csv", _daily_csv(rows))])
    assert bars.height == 10
    hits = [w for w in report.warnings if "OH" in w and "outside" in w]
    assert len(hits) == 1 and "2020-01-06" in hits[0]


def test_sub_penny_series_is_suspicious(tmp_path):
    # Changed with SLICES.md "suspicious series": a sub-penny price used to be only a warning; it is
    # now treated like invalid data (error when named, excluded when not) unless --keep-suspicious.
    rows = [(day, 0.006, 0.008, 0.005, 0.007, 100) for day in _days(10)]
    path = write(tmp_path / "sp.csv", _daily_csv(rows))
    with pytest.raises(DataError, match=r"sp.csv: SP 2020-01-01: sub-penny price 0.005 \(placeholder quote\)"):
        load_bars(["SP"], data=[path])
    bars, report = load_bars(None, data=[path], keep_suspicious=True)
    assert bars.height == 10
    assert any("SP" in w and "sub-penny" in w for w in report.warnings)


# ----------------------------------------------------------------------------- start / end
def test_start_end_inclusive(tmp_path):
    rows = [(day, 10, 11, 9, 10, 100) for day in _days(10)]
    bars, _ = load_bars(None, data=[write(tmp_path / "se.csv", _daily_csv(rows))], start="2020-01-03", end="2020-01-06")
    assert bars["timestamp"].to_list() == [d(3), d(4), d(5), d(6)]


def test_end_date_includes_intraday_bars_of_that_day(tmp_path):
    # hourly bars (the file used to have 0h, 9h, 23h bars, a spacing that is no timeframe any more)
    text = "datetime,open,high,low,close,volume\n" + "\n".join(
        f"2020-01-0{day} {h:02d}:00:00,1,2,0.5,1.5,1" for day in (2, 3) for h in range(24))
    bars, report = load_bars(None, data=[write(tmp_path / "h.csv", text)], end="2020-01-02")
    assert bars["timestamp"].to_list() == [d(2, hour=h) for h in range(24)]
    assert report.timeframe == "1h"
    bars, _ = load_bars(None, data=[write(tmp_path / "h.csv", text)], start="2020-01-02T09:00:00", end="2020-01-03T00:00:00")
    assert bars["timestamp"].to_list() == [d(2, hour=h) for h in range(9, 24)] + [d(3, hour=0)]


def test_start_end_on_store():
    bars, _ = load_bars(["AAPL"], start="2019-12-02", end="2019-12-06")
    assert bars["timestamp"].to_list() == [d(day, 12, 2019) for day in (2, 3, 4, 5, 6)]


def test_parse_when():
    assert parse_when("2020-01-02", "--start") == d(2)
    assert parse_when("2020-01-02", "--end", end=True) == d(3) - timedelta(microseconds=1)
    assert parse_when("2020-01-02T10:00:00+02:00", "--start") == d(2, hour=8)
    assert parse_when(None, "--start") is None


# ----------------------------------------------------------------------------- the shared S&P 500 file
def test_sp500_file_loads_as_it_is(sp500):
    bars, report = load_bars(None, data=[sp500])
    assert bars.schema == pl.Schema(SCHEMA)
    syms = set(bars["symbol"].unique().to_list())
    # 482 symbols; CBS, STI, VIAB are invalid and BHF, SCG suspicious (sub-penny placeholder quotes)
    assert len(syms) == 477
    assert not syms & {"CBS", "STI", "VIAB", "BHF", "SCG"}
    for sym in ("CBS", "STI", "VIAB", "BHF", "SCG"):
        hits = [w for w in report.warnings if sym in w and "excluded" in w]
        assert len(hits) == 1, sym
    # total-return adjusted: the loaded close is the file's adj_close
    raw = pl.read_parquet(sp500).filter(pl.col("symbol") == "AAPL").sort("date")
    aapl = bars.filter(pl.col("symbol") == "AAPL")
    assert aapl.height == raw.height
    assert aapl["close"].to_numpy() == pytest.approx(raw["adj_close"].to_numpy(), rel=1e-12)
    assert aapl["open"].to_numpy() == pytest.approx((raw["open"] * raw["adj_close"] / raw["close"]).to_numpy(), rel=1e-12)
    assert aapl["timestamp"][0] == datetime(raw["date"][0].year, raw["date"][0].month, raw["date"][0].day, tzinfo=UTC)


def test_sp500_named_broken_symbol_is_error(sp500):
    with pytest.raises(DataError, match=r"CBS.*2019-12-04"):
        load_bars(["AAPL", "CBS"], data=[sp500])


# ----------------------------------------------------------------------------- property
@st.composite
def long_frames(draw):
    names = draw(st.lists(st.sampled_from(["AAA", "BB", "C", "XYZ", "QQQQ"]), min_size=1, max_size=3, unique=True))
    price = st.floats(min_value=0.01, max_value=1e5, allow_nan=False, allow_infinity=False)
    frac = st.floats(min_value=0.0, max_value=1.0)
    rows = []
    for sym in names:
        n = draw(st.integers(1, 15))
        start = draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 1, 1)))
        steps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
        day = start
        for k in range(n):
            low = draw(price)
            high = low * (1 + draw(st.floats(0.0, 0.5)))
            o = low + (high - low) * draw(frac)
            c = low + (high - low) * draw(frac)
            vol = draw(st.floats(0.0, 1e9, allow_nan=False))
            rows.append((sym, day, o, high, low, c, vol))
            day += timedelta(days=steps[k])
    # interleave the symbols at random while keeping each symbol's rows in time order
    order = draw(st.permutations(range(len(rows))))
    slots: dict[str, list[int]] = {}
    for pos, i in enumerate(order):
        slots.setdefault(rows[i][0], []).append(pos)
    mixed = [0] * len(rows)
    for sym, positions in slots.items():
        own = [i for i in range(len(rows)) if rows[i][0] == sym]  # already in time order
        for pos, i in zip(positions, own):
            mixed[pos] = i
    return pl.DataFrame([rows[i] for i in mixed], schema=["Symbol", "Date", "Open", "High", "Low", "Close", "Volume"],
                        orient="row")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=long_frames())
def test_csv_and_parquet_load_identically(tmp_path, frame):
    csv, pq = tmp_path / "prop.csv", tmp_path / "prop.parquet"
    frame.write_csv(csv)
    frame.write_parquet(pq)
    # random prices make jumps > 5x: keep suspicious series, this test is about reading
    from_csv, _ = load_bars(None, data=[csv], keep_suspicious=True)
    from_pq, _ = load_bars(None, data=[pq], keep_suspicious=True)
    polars.testing.assert_frame_equal(from_csv, from_pq, rel_tol=1e-12, abs_tol=0.0)
    # and both equal the input, sorted, in the contract's schema
    expected = frame.select(
        pl.col("Symbol").alias("symbol"),
        pl.col("Date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp"),
        *[pl.col(c).cast(pl.Float64).alias(c.lower()) for c in ("Open", "High", "Low", "Close", "Volume")],
    ).sort("symbol", "timestamp")
    polars.testing.assert_frame_equal(from_pq, expected)


def test_extreme_jump_is_suspicious_unless_kept(tmp_path):
    # Changed with SLICES.md "suspicious series": a x6 close jump used to be a warning listed first;
    # it now excludes the symbol (unnamed), is an error (named), or a warning with --keep-suspicious.
    n = 30
    stamps = pl.Series(np.datetime64("2020-01-01", "us") + np.arange(n) * np.timedelta64(1, "D")).dt.replace_time_zone("UTC")
    close = np.full(n, 10.0)
    close[20:] = 60.0  # x6 overnight: an unadjusted reverse split or a bad quote

    def frame(sym, c):
        return pl.DataFrame({"symbol": sym, "timestamp": stamps, "open": c, "high": c * 1.01, "low": c * 0.99,
                             "close": c, "volume": 1e5})

    path = tmp_path / "j.parquet"
    pl.concat([frame("JMP", close), frame("OK", np.full(n, 10.0))]).write_parquet(path)
    bars, report = load_bars(None, data=[str(path)])
    assert bars["symbol"].unique().to_list() == ["OK"]
    assert report.warnings == [f"{path}: JMP 2020-01-21: close jumps x6.00 (bad quote or unadjusted split); symbol excluded"]
    with pytest.raises(DataError, match=r"JMP 2020-01-21: close jumps x6.00 .*--keep-suspicious"):
        load_bars(["JMP"], data=[str(path)])
    bars, report = load_bars(["JMP"], data=[str(path)], keep_suspicious=True)
    assert bars.height == n and "x6.00" in report.warnings[0]
    # a 4x move is not suspicious; a fall to under 1/5 is
    close[20:] = 40.0
    frame("JMP", close).write_parquet(path)
    assert load_bars(None, data=[str(path)])[1].warnings == []
    close[20:] = 1.0
    frame("JMP", close).write_parquet(path)
    with pytest.raises(DataError, match=r"close jumps x0.10"):
        load_bars(["JMP"], data=[str(path)])
