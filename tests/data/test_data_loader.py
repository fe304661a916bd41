"""Contract 2 (SLICES.md): direct bar files, rule by rule, through ``loader.load_bars``."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from data_helpers import make_bars
from slices.data.errors import DataError
from slices.data.loader import load_bars, read_file
from slices.data.schema import infer_timeframe, infer_timeframes, store_timeframe

UTC = timezone.utc
HEAD = "date,open,high,low,close,volume\n"


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def one(paths, **kw):
    loaded = load_bars([paths] if not isinstance(paths, list) else paths, **kw)
    assert len(loaded.bars) == 1
    return loaded.bars[0], loaded.warnings


# ---- reading rules 1-8 --------------------------------------------------------------------
def test_rule1_extensions(tmp_path):
    p = write(tmp_path, "aaa.TXT", HEAD + "2020-01-02,1,2,0.5,1.5,10\n")
    sb, _ = one(p)
    assert sb.symbol == "AAA" and sb.frame["close"].to_list() == [1.5]
    with pytest.raises(DataError, match=r"unsupported extension '\.xlsx'"):
        load_bars([write(tmp_path, "aaa.xlsx", "x")])
    with pytest.raises(DataError, match="file not found"):
        load_bars([tmp_path / "none.csv"])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=f"{bad}: unreadable parquet file"):
        load_bars([bad])


@pytest.mark.parametrize("adj_name", ["AdjClose", "adjusted_close", "Adj Close", "adj-close", " ADJ_CLOSE "])
def test_rule2_and_8_every_adj_close_alias_adjusts(tmp_path, adj_name):
    p = write(tmp_path, "x.csv", f"Date,Open,High,Low,Close,{adj_name},Volume\n2020-01-02,100.38,100.38,100.38,100.38,50.19,7\n")
    sb, _ = one(p)
    assert sb.frame.row(0)[1:] == pytest.approx((50.19, 50.19, 50.19, 50.19, 7.0), rel=1e-15)
    assert sb.adjusted is True
    raw, _ = one(p, adjust=False)
    assert raw.frame["close"].to_list() == [100.38] and raw.adjusted is False


@pytest.mark.parametrize("header, names", [
    ("date,open,high,low,close,Close", ("close", "Close")),
    ("date,symbol,ticker,open,high,low,close", ("symbol", "ticker")),
    ("date,Date,open,high,low,close", ("date", "Date")),
    ("date,open,high,low,close,adj_close,Adj Close", ("adj_close", "Adj Close")),
])
def test_rule2_two_columns_meaning_the_same_is_an_error_naming_both(tmp_path, header, names):
    p = write(tmp_path, "x.csv", header + "\n" + ",".join(["2020-01-02"] + ["1"] * (header.count(",")) ) + "\n")
    with pytest.raises(DataError) as info:
        load_bars([p])
    assert str(info.value) == f"{p}: columns {names[0]!r} and {names[1]!r} both mean {names[0].strip().lower().replace(' ', '_')}"


def test_rule3_pandas_index_anywhere_and_no_time_column(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"Open": [1.0, 2.0], "High": [1.0, 2.0], "Low": [1.0, 2.0], "Close": [1.0, 2.0]},
                      index=pd.to_datetime(["2020-01-02", "2020-01-03"]))
    df.to_parquet(tmp_path / "idx.parquet")  # the index becomes the LAST column __index_level_0__
    assert pl.read_parquet(tmp_path / "idx.parquet").columns[-1] == "__index_level_0__"
    sb, _ = one(tmp_path / "idx.parquet")
    assert sb.frame["timestamp"].to_list() == [datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)]
    df.to_csv(tmp_path / "idx.csv")  # empty header name
    assert one(tmp_path / "idx.csv")[0].frame.equals(sb.frame)
    with pytest.raises(DataError, match="no time column"):
        load_bars([write(tmp_path, "n.csv", "foo,open,high,low,close\n1,1,1,1,1\n")])


@pytest.mark.parametrize("cell, expected", [
    ("2020-01-02", datetime(2020, 1, 2, tzinfo=UTC)),
    ("2020-01-02 14:30:00", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),
    ("2020-01-02T14:30:00Z", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),
    ("2020-01-02T14:30:00+01:00", datetime(2020, 1, 2, 13, 30, tzinfo=UTC)),
    ("1577975400", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),              # seconds
    ("1577975400000", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),           # milliseconds
    ("1577975400000000", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),        # microseconds
    ("1577975400000000000", datetime(2020, 1, 2, 14, 30, tzinfo=UTC)),     # nanoseconds
])
def test_rule4_time_values(tmp_path, cell, expected):
    sb, _ = one(write(tmp_path, "t.csv", HEAD + f"{cell},1,1,1,1,1\n"))
    assert sb.frame["timestamp"].to_list() == [expected]


def test_rule4_integer_epochs_in_parquet_and_typed_times(tmp_path):
    base = {"open": [1.0, 1.0], "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0]}
    pl.DataFrame({"time": [1577836800, 1577923200], **base}).write_parquet(tmp_path / "e.parquet")
    assert one(tmp_path / "e.parquet")[0].frame["timestamp"].to_list() == [datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC)]
    zoned = pl.Series([datetime(2020, 1, 2, 9, 30), datetime(2020, 1, 2, 10, 30)]).dt.replace_time_zone("America/New_York")
    pl.DataFrame({"Timestamp": zoned, **base}).write_parquet(tmp_path / "z.parquet")
    assert one(tmp_path / "z.parquet")[0].frame["timestamp"][0] == datetime(2020, 1, 2, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("cell, message", [
    ("yesterday", "time column 'date': cannot parse 'yesterday' as a date or time"),
    ("", "time column 'date': empty cell in row 3"),
])
def test_rule4_bad_time_cells_name_the_column_and_value(tmp_path, cell, message):
    p = write(tmp_path, "b.csv", HEAD + "2020-01-02,1,1,1,1,1\n" + f"{cell},1,1,1,1,1\n")
    with pytest.raises(DataError) as info:
        load_bars([p])
    assert str(info.value) == f"{p}: {message}"
    pl.DataFrame({"date": [1.5], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}).write_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataError, match="time column 'date' has type Float64"):
        load_bars([tmp_path / "f.parquet"])


def test_rule5_long_format_with_ticker_and_symbol_checks(tmp_path):
    p = write(tmp_path, "long.csv", "Ticker,Date,Open,High,Low,Close\n aapl ,2020-01-02,1,1,1,1\nmsft,2020-01-02,2,2,2,2\n")
    loaded = load_bars([p])
    assert [b.symbol for b in loaded.bars] == ["AAPL", "MSFT"]
    with pytest.raises(DataError, match="empty symbol cell in row 3"):
        load_bars([write(tmp_path, "e.csv", "symbol,date,open,high,low,close\nA,2020-01-02,1,1,1,1\n,2020-01-03,1,1,1,1\n")])
    with pytest.raises(DataError, match=r"invalid symbol '\.\./X'"):
        load_bars([write(tmp_path, "v.csv", "symbol,date,open,high,low,close\n../x,2020-01-02,1,1,1,1\n")])


def test_rule6_and_7_missing_columns_and_cells(tmp_path):
    with pytest.raises(DataError, match="missing price column\\(s\\) low"):
        load_bars([write(tmp_path, "m.csv", "date,open,high,close\n2020-01-02,1,1,1\n")])
    sb, warns = one(write(tmp_path, "nv.csv", "date,open,high,low,close\n2020-01-02,1,1,1,1\n"))
    assert sb.frame["volume"].to_list() == [0.0]
    assert [w.text for w in warns] == [f"{tmp_path / 'nv.csv'}: no volume column; volume set to 0"]
    sb, warns = one(write(tmp_path, "mv.csv", HEAD + "2020-01-02,1,1,1,1,NA\n2020-01-03,1,1,1,1,5\n"))
    assert sb.frame["volume"].to_list() == [0.0, 5.0]
    assert any(w.kind == "missing_volume" and "1 missing volume cell(s) set to 0 (first 2020-01-02)" in w.text for w in warns)


@pytest.mark.parametrize("marker", ["n/a", "NA", "N/A", "null", "NaN", "-", "", "abc"])
def test_rule7_a_null_marker_in_a_price_is_a_rule11_error(tmp_path, marker):
    p = write(tmp_path, "aaa.csv", HEAD + "2020-01-02,1,1,1,1,1\n" + f"2020-01-03,1,1,1,{marker},1\n")
    with pytest.raises(DataError) as info:
        load_bars([p], symbols=["AAA"])
    assert str(info.value) == f"{p}: AAA 2020-01-03: missing close"


# ---- rules 9-14 ---------------------------------------------------------------------------
def test_rule9_range_first_and_checks_only_inside_it(tmp_path):
    p = write(tmp_path, "aaa.csv", HEAD + "2020-01-01,-1,1,1,1,1\n2020-01-02,1,1,1,1,1\n2020-01-03,1,1,1,1,1\n2020-01-04,0,0,0,0,0\n")
    sb, _ = one(p, start=datetime(2020, 1, 2, tzinfo=UTC), end=datetime(2020, 1, 3, 23, 59, tzinfo=UTC))
    assert sb.frame["timestamp"].dt.day().to_list() == [2, 3]
    with pytest.raises(DataError, match="AAA 2020-01-01: non-positive open -1"):
        load_bars([p], symbols=["AAA"])
    with pytest.raises(DataError, match="AAA: no rows in the --start/--end range"):
        load_bars([p], symbols=["AAA"], start=datetime(2021, 1, 1, tzinfo=UTC))


def test_rule10_a_symbol_split_across_files(tmp_path):
    a = write(tmp_path, "a.csv", "symbol," + HEAD + "X,2020-01-02,1,1,1,1,1\nX,2020-01-06,3,3,3,3,3\n")
    b = write(tmp_path, "b.csv", "symbol," + HEAD + "X,2020-01-03,2,2,2,2,2\n")
    sb, _ = one([a, b])
    assert sb.frame["close"].to_list() == [1.0, 2.0, 3.0] and sb.sources == [str(a), str(b)]
    c = write(tmp_path, "c.csv", "symbol," + HEAD + "X,2020-01-06,3,3,3,3,3\n")
    with pytest.raises(DataError) as info:
        load_bars([a, c])
    assert str(info.value) == f"X 2020-01-06: in both {a} and {c}"


@pytest.mark.parametrize("rows, reason", [
    (["2020-01-02,1,1,1,1,1", "2020-01-02,1,1,1,1,1"], "2020-01-02: duplicate timestamp"),
    (["2020-01-03,1,1,1,1,1", "2020-01-02,1,1,1,1,1"], "2020-01-02: timestamp not increasing (previous row 2020-01-03)"),
    (["2020-01-02,1,1,1,1,1", "2020-01-03,1,1,1,0,1"], "2020-01-03: non-positive close 0"),
    (["2020-01-02,1,1,1,1,1", "2020-01-03,1,inf,1,1,1"], "2020-01-03: infinite high"),
    (["2020-01-02,1,1,2,1,1"], "2020-01-02: high 1 below low 2"),
    (["2020-01-02,1,1,1,1,-3"], "2020-01-02: negative volume -3"),
    (["2020-01-02T14:30:00Z,1,1,1,1,1", "2020-01-02T14:30:00Z,1,1,1,1,1"], "2020-01-02T14:30:00Z: duplicate timestamp"),
])
def test_rule11_errors_name_file_symbol_first_time(tmp_path, rows, reason):
    p = write(tmp_path, "aaa.csv", HEAD + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        load_bars([p], symbols=["AAA"])
    assert str(info.value) == f"{p}: AAA {reason}"
    # unnamed but the only symbol: the same one-line error
    with pytest.raises(DataError) as info:
        load_bars([p])
    assert str(info.value) == f"{p}: AAA {reason}"


def test_rule8_missing_adj_close_in_a_used_row_is_an_error(tmp_path):
    p = write(tmp_path, "aaa.csv", "date,open,high,low,close,adj_close\n2020-01-02,1,1,1,1,1\n2020-01-03,1,1,1,1,\n")
    with pytest.raises(DataError, match="AAA 2020-01-03: missing adj_close"):
        load_bars([p], symbols=["AAA"])
    assert one(p, adjust=False)[0].frame.height == 2  # --no-adjust ignores the column


def test_rule12_warnings_keep_the_bars(tmp_path):
    df = make_bars(30)
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.col("high") * 1.05).otherwise(pl.col("open")).alias("open"),
        pl.when(pl.int_range(pl.len()) == 5).then(0.0).otherwise(pl.col("volume")).alias("volume"))
    df = df.filter(~pl.int_range(pl.len()).is_between(10, 19))  # a 11-day hole
    p = tmp_path / "aaa.parquet"
    df.write_parquet(p)
    sb, warns = one(p)
    assert sb.frame.equals(df)
    kinds = {w.kind: w.text for w in warns}
    assert kinds["outside_range"] == f"{p}: AAA: 1 bar(s) with open or close outside low..high (first 2020-01-04)"
    assert kinds["zero_volume"] == f"{p}: AAA: 1 zero-volume bar(s) (first 2020-01-06)"
    assert kinds["gap"] == f"{p}: AAA: 1 gap(s) in the bars (largest 11.0 days after 2020-01-10)"


def test_rule13_and_14_suspicious_series(tmp_path):
    good = make_bars(20)
    jump = good.with_columns([pl.when(pl.int_range(pl.len()) >= 10).then(pl.col(c) * 11920).otherwise(pl.col(c)).alias(c)
                              for c in ("open", "high", "low", "close")])
    penny = good.with_columns([(pl.col(c) / 10_000).alias(c) for c in ("open", "high", "low", "close")])
    long = pl.concat([good.with_columns(symbol=pl.lit("GOOD")), jump.with_columns(symbol=pl.lit("JUMP")),
                      penny.with_columns(symbol=pl.lit("PENNY"))])
    p = tmp_path / "long.parquet"
    long.write_parquet(p)
    loaded = load_bars([p])
    assert [b.symbol for b in loaded.bars] == ["GOOD"]
    ex = [w.text for w in loaded.warnings if w.kind == "excluded"]
    ratio = jump["close"][10] / jump["close"][9]
    low = np.format_float_positional(float(f"{penny['low'][0]:.8g}"), trim="-")
    assert ex == [f"{p}: JUMP 2020-01-11: close jumps x{ratio:,.2f} (bad quote or unadjusted split); symbol excluded",
                  f"{p}: PENNY 2020-01-01: sub-penny price {low} "
                  "(placeholder quote); symbol excluded"]
    with pytest.raises(DataError, match="JUMP 2020-01-11: close jumps x"):
        load_bars([p], symbols=["JUMP"])
    kept = load_bars([p], keep_suspicious=True)
    assert [b.symbol for b in kept.bars] == ["GOOD", "JUMP", "PENNY"]
    assert sum(w.kind == "suspicious" for w in kept.warnings) == 2
    with pytest.raises(DataError, match=f"not in {p}: NOPE"):
        load_bars([p], symbols=["GOOD", "NOPE"])


def test_shared_sp500_loads_as_the_contract_says(sp500):
    loaded = load_bars([sp500])
    assert len(loaded.bars) == 477
    assert sorted(w.symbol for w in loaded.warnings if w.kind == "excluded") == ["BHF", "CBS", "SCG", "STI", "VIAB"]
    aapl = next(b for b in loaded.bars if b.symbol == "AAPL")
    raw = pl.read_parquet(sp500).filter(pl.col("symbol") == "AAPL")
    assert aapl.frame["close"].to_list() == (raw["close"] * (raw["adj_close"] / raw["close"])).to_list()
    with pytest.raises(DataError, match="CBS 2019-12-04: non-positive open 0"):
        load_bars([sp500], symbols=["AAPL", "CBS"])


# ---- timeframe (shared definitions) -------------------------------------------------------
@pytest.mark.parametrize("seconds, tf", [(60, "1m"), (300, "5m"), (900, "15m"), (1800, "30m"), (3600, "1h"),
                                         (14400, "4h"), (86400, "1d"), (3 * 86400, "1d"), (7 * 86400, "1w"),
                                         (30 * 86400, "1mo"), (3800, "1h")])
def test_timeframe_inference(seconds, tf):
    ts = pl.Series([datetime(2020, 1, 1, tzinfo=UTC).timestamp() + i * seconds for i in range(5)]).cast(pl.Int64) * 1_000_000
    series = ts.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    assert infer_timeframe(series, "x") == tf


def test_timeframe_errors_and_store_limits(tmp_path):
    ts = pl.Series([datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 2, 0, tzinfo=UTC), datetime(2020, 1, 1, 4, 0, tzinfo=UTC)])
    with pytest.raises(DataError, match="median bar spacing 2 hours matches no timeframe"):
        infer_timeframe(ts, "f: X")
    assert infer_timeframe(ts.head(1), "x") == "1d"
    with pytest.raises(DataError, match=r"f: X: 30m bars cannot be stored \(the store holds 1m 5m 15m 1h 1d\)"):
        store_timeframe("30m", None, "f: X")
    with pytest.raises(DataError, match=r"f: X: the bars are 1d, not 1h \(--timeframe\)"):
        store_timeframe("1d", "1h", "f: X")
    # a symbol with two bars 60 days apart takes the timeframe of the symbols together (SNI in the S&P file)
    daily = make_bars(30)["timestamp"]
    odd = pl.Series([datetime(2018, 1, 4, tzinfo=UTC), datetime(2018, 3, 5, tzinfo=UTC)])
    assert infer_timeframes({"A": daily, "SNI": odd}, {"A": "a", "SNI": "sni"}) == {"A": "1d", "SNI": "1d"}
    with pytest.raises(DataError, match="sni: median bar spacing 60 days"):
        infer_timeframes({"SNI": odd}, {"SNI": "sni"})


def test_read_file_keeps_raw_rows_for_validate(tmp_path):
    p = write(tmp_path, "aaa.csv", HEAD + "2020-01-03,1,1,1,1,1\n2020-01-02,1,1,1,n/a,1\n")
    (part,) = read_file(p)
    assert part.frame.height == 2 and part.frame["close"].to_list() == [1.0, None]
