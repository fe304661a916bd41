"""SLICES.md contract 2 (direct bar files) and the shared definitions, rule by rule, on the loader
(slices/backtest/bars.py). Each expectation is derived from the contract text and the hand-written
input, never from what the loader happened to output."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from slices.backtest.bars import DataError, infer_timeframe, load_bars, timeframe_of_spacing

UTC = timezone.utc


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def days(n: int, start: str = "2020-01-01") -> list[str]:
    d0 = datetime.fromisoformat(start)
    return [(d0 + timedelta(days=i)).date().isoformat() for i in range(n)]


def csv(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows)


def good_rows(n: int = 5, start: str = "2020-01-01") -> list[str]:
    return [f"{d},10,11,9,10.5,100" for d in days(n, start)]


# ----------------------------------------------------------------------------- reading (rules 1-8)
def test_txt_is_csv_and_extension_case_insensitive(tmp_path):
    bars, _ = load_bars(None, data=[write(tmp_path / "abc.TXT", csv("date,open,high,low,close,volume", good_rows()))])
    assert bars["symbol"].unique().to_list() == ["ABC"] and bars.height == 5


@pytest.mark.parametrize("names", [
    ["  Date ", " Open", "HIGH ", "Low", "Close ", "Volume"],
    ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"],
    ["date", "open", "high", "low", "close", "Adj-Close", "volume"],
    ["Date", "Open", "High", "Low", "Close", "adjusted  close", "Volume"],
])
def test_column_names_are_normalised(tmp_path, names):
    rows = [",".join([d, "10", "11", "9", "10", *(["5"] if len(names) == 7 else []), "100"]) for d in days(3)]
    bars, _ = load_bars(None, data=[write(tmp_path / "n.csv", csv(",".join(names), rows))])
    # with an adj_close of 5 for a close of 10 every price is halved
    assert bars["close"].to_list() == ([5.0] * 3 if len(names) == 7 else [10.0] * 3)


@pytest.mark.parametrize("header, a, b", [
    ("date,open,high,low,close,Close", "close", "Close"),
    ("symbol,ticker,date,open,high,low,close", "symbol", "ticker"),
    ("date,Date,open,high,low,close", "date", "Date"),
    ("date,open,high,low,close,adj_close,Adj Close", "adj_close", "Adj Close"),
])
def test_two_columns_with_one_meaning_are_an_error_naming_both(tmp_path, header, a, b):
    row = ",".join("AAA" if h.lower() in ("symbol", "ticker") else "2020-01-02" if h.lower() == "date" else "10"
                   for h in header.split(","))
    with pytest.raises(DataError) as exc:
        load_bars(None, data=[write(tmp_path / "dup.csv", header + "\n" + row)])
    assert repr(a) in str(exc.value) and repr(b) in str(exc.value)


@pytest.mark.parametrize("name", ["__index_level_0__", "index"])
def test_pandas_index_column_anywhere(tmp_path, name):
    ts = [datetime(2020, 1, d, tzinfo=UTC) for d in (2, 3, 6)]
    pl.DataFrame({"open": [1.0] * 3, "high": [2.0] * 3, "low": [0.5] * 3, "close": [1.5] * 3, "volume": [1.0] * 3,
                  name: ts}).write_parquet(tmp_path / "idx.parquet")
    bars, _ = load_bars(None, data=[tmp_path / "idx.parquet"])
    assert bars["timestamp"].to_list() == ts


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_integer_epoch_units_by_magnitude(tmp_path, scale):
    secs = [1577923200 + 86400 * i for i in range(3)]  # 2020-01-02 .. 04
    rows = [f"{s * scale},10,11,9,10,1" for s in secs]
    bars, _ = load_bars(None, data=[write(tmp_path / "ep.csv", csv("timestamp,open,high,low,close,volume", rows))])
    assert bars["timestamp"].to_list() == [datetime(2020, 1, d, tzinfo=UTC) for d in (2, 3, 4)]
    pl.DataFrame({"time": [s * scale for s in secs], "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0}
                 ).write_parquet(tmp_path / "ep.parquet")
    bars, _ = load_bars(None, data=[tmp_path / "ep.parquet"])
    assert bars["timestamp"].to_list() == [datetime(2020, 1, d, tzinfo=UTC) for d in (2, 3, 4)]


def test_iso_text_with_offsets_is_converted_to_utc(tmp_path):
    rows = ["2020-01-02T14:00:00Z,1,2,0.5,1,1", "2020-01-02 16:00:00+01:00,1,2,0.5,1,1", "2020-01-02T16:00,1,2,0.5,1,1"]
    bars, _ = load_bars(None, data=[write(tmp_path / "iso.csv", csv("datetime,open,high,low,close,volume", rows))])
    assert bars["timestamp"].to_list() == [datetime(2020, 1, 2, h, tzinfo=UTC) for h in (14, 15, 16)]


@pytest.mark.parametrize("cell, needle", [("", "empty time cell"), ("2020-13-45", "'2020-13-45'"), ("soon", "'soon'")])
def test_bad_time_cell_names_column_and_value(tmp_path, cell, needle):
    rows = ["2020-01-02,1,2,0.5,1,1", f"{cell},1,2,0.5,1,1"]
    with pytest.raises(DataError) as exc:
        load_bars(None, data=[write(tmp_path / "t.csv", csv("Date,open,high,low,close,volume", rows))])
    assert "'Date'" in str(exc.value) and needle in str(exc.value)


def test_float_time_column_is_an_error(tmp_path):
    pl.DataFrame({"time": [1.5, 2.5], "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}).write_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataError, match=r"time column 'time' has unsupported type"):
        load_bars(None, data=[tmp_path / "f.parquet"])


@pytest.mark.parametrize("marker", ["NA", "N/A", "n/a", "null", "NaN", "-", "", "abc", '"1,5"'])
def test_null_marker_or_text_in_a_price_is_missing_price_error(tmp_path, marker):
    rows = good_rows(3) + [f"2020-01-04,10,11,9,{marker},100"] + good_rows(2, "2020-01-05")
    path = write(tmp_path / "m.csv", csv("date,open,high,low,close,volume", rows))
    with pytest.raises(DataError, match=r"m.csv: M 2020-01-04: missing or non-numeric price$"):
        load_bars(["M"], data=[path])


def test_text_price_column_in_parquet_is_checked_per_cell(tmp_path):
    pl.DataFrame({"date": [datetime(2020, 1, d) for d in (2, 3, 6)], "open": ["1", "1", "x"], "high": ["2"] * 3,
                  "low": ["0.5"] * 3, "close": ["1.5"] * 3}).write_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"P 2020-01-06: missing or non-numeric price"):
        load_bars(None, data=[tmp_path / "p.parquet"])


def test_missing_volume_cells_are_zero_with_a_warning(tmp_path):
    rows = ["2020-01-01,10,11,9,10,100", "2020-01-02,10,11,9,10,NA", "2020-01-03,10,11,9,10,"]
    bars, report = load_bars(None, data=[write(tmp_path / "v.csv", csv("date,open,high,low,close,volume", rows))])
    assert bars["volume"].to_list() == [100.0, 0.0, 0.0]
    kinds = [k for k, s, _ in report.findings if s == "V"]
    assert sorted(kinds) == ["missing_volume", "zero_volume"]
    assert any("V: 2 bar(s) with missing volume set to 0, first at 2020-01-02" in w for w in report.warnings)


def test_negative_volume_is_an_error(tmp_path):
    rows = good_rows(2) + ["2020-01-03,10,11,9,10,-5"]
    with pytest.raises(DataError, match=r"NV 2020-01-03: negative volume"):
        load_bars(["NV"], data=[write(tmp_path / "nv.csv", csv("date,open,high,low,close,volume", rows))])


def test_bad_adj_close_in_a_used_row_is_an_error(tmp_path):
    rows = ["2020-01-01,10,11,9,10,10,1", "2020-01-02,10,11,9,10,0,1"]
    path = write(tmp_path / "adj.csv", csv("date,open,high,low,close,adj_close,volume", rows))
    with pytest.raises(DataError, match=r"ADJ 2020-01-02: missing or non-positive adj_close"):
        load_bars(["ADJ"], data=[path])
    bars, _ = load_bars(["ADJ"], data=[path], adjust=False)  # not used with --no-adjust
    assert bars.height == 2


# ----------------------------------------------------------------------------- rules 9-10
def test_range_filter_comes_before_the_checks(tmp_path):
    rows = ["2020-01-01,10,11,9,-1,100", "2020-01-01,10,11,9,10,100"] + good_rows(5, "2020-01-02")
    path = write(tmp_path / "r.csv", csv("date,open,high,low,close,volume", rows))
    with pytest.raises(DataError, match="2020-01-01"):
        load_bars(["R"], data=[path])
    bars, report = load_bars(["R"], data=[path], start="2020-01-02")
    assert bars.height == 5 and report.warnings == []


def test_symbol_split_over_files_is_merged_and_a_shared_bar_names_both_files(tmp_path):
    a = write(tmp_path / "a.csv", csv("symbol,date,open,high,low,close,volume", [f"X,{r}" for r in good_rows(3, "2020-01-04")]))
    b = write(tmp_path / "b.csv", csv("symbol,date,open,high,low,close,volume", [f"X,{r}" for r in good_rows(3)]))
    bars, _ = load_bars(None, data=[a, b])
    assert bars["timestamp"].to_list() == [datetime(2020, 1, d, tzinfo=UTC) for d in range(1, 7)]
    c = write(tmp_path / "c.csv", csv("symbol,date,open,high,low,close,volume", [f"X,{r}" for r in good_rows(2, "2020-01-06")]))
    with pytest.raises(DataError) as exc:
        load_bars(["X"], data=[a, c])
    assert str(a) in str(exc.value) and str(c) in str(exc.value) and "2020-01-06" in str(exc.value)


# ----------------------------------------------------------------------------- symbols (rule 5)
@pytest.mark.parametrize("bad", ["../x", "A B", "x/y", "", "-AB", "A" * 33])
def test_invalid_symbol_in_symbols_is_an_error(tmp_path, bad):
    path = write(tmp_path / "ok.csv", csv("date,open,high,low,close,volume", good_rows()))
    with pytest.raises(DataError, match="symbol"):
        load_bars([bad, "OK"] if bad else [bad], data=[path])


def test_invalid_symbol_in_a_long_file_or_file_stem_is_an_error(tmp_path):
    long = write(tmp_path / "long.csv", csv("symbol,date,open,high,low,close,volume", ["../EVIL,2020-01-02,1,2,0.5,1,1"]))
    with pytest.raises(DataError, match=r"invalid symbol '../EVIL'"):
        load_bars(None, data=[long])
    with pytest.raises(DataError, match=r"invalid symbol 'MY DATA'"):
        load_bars(None, data=[write(tmp_path / "my data.csv", csv("date,open,high,low,close", ["2020-01-02,1,2,0.5,1"]))])


def test_valid_symbol_characters(tmp_path):
    rows = [f"{s},{r}" for s in ("^GSPC", "BRK.B", "EURUSD=X", "ES_F", "BF-B") for r in good_rows(2)]
    bars, _ = load_bars(None, data=[write(tmp_path / "ok.csv", csv("ticker,date,open,high,low,close,volume", rows))])
    assert sorted(bars["symbol"].unique().to_list()) == sorted(["^GSPC", "BRK.B", "EURUSD=X", "ES_F", "BF-B"])


def test_store_file_with_an_invalid_name_is_excluded_when_unnamed(tmp_path):
    folder = tmp_path / "store" / "bars" / "1d"
    folder.mkdir(parents=True)
    frame = pl.DataFrame({"timestamp": [datetime(2020, 1, d, tzinfo=UTC) for d in (2, 3)], "open": 1.0, "high": 2.0,
                          "low": 0.5, "close": 1.5, "volume": 1.0})
    frame.write_parquet(folder / "GOOD.parquet")
    frame.write_parquet(folder / "bad name.parquet")
    bars, report = load_bars(None, store=tmp_path / "store")
    assert bars["symbol"].unique().to_list() == ["GOOD"]
    assert any("bad name" in w and "symbol excluded" in w for w in report.warnings)


# ----------------------------------------------------------------------------- timeframes
@pytest.mark.parametrize("seconds, tf", [
    (60, "1m"), (63, "1m"), (300, "5m"), (900, "15m"), (1800, "30m"), (3600, "1h"), (3900, "1h"), (14400, "4h"),
    (72000, "1d"), (86400, "1d"), (3 * 86400, "1d"), (4 * 86400, "1d"), (7 * 86400, "1w"), (10 * 86400, "1w"),
    (30 * 86400, "1mo"), (25 * 86400, "1mo"), (35 * 86400, "1mo"),
    (67, None), (7200, None), (12 * 3600, None), (15 * 86400, None), (40 * 86400, None), (None, "1d"),
])
def test_timeframe_of_spacing(seconds, tf):
    assert timeframe_of_spacing(seconds) == tf


def _long(spec: dict[str, tuple[int, timedelta]]) -> pl.DataFrame:
    rows = []
    for sym, (n, step) in spec.items():
        rows += [(sym, datetime(2020, 1, 6, tzinfo=UTC) + i * step) for i in range(n)]
    return pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us", "UTC")}, orient="row")


def test_mixed_timeframes_name_two_symbols_with_their_timeframes():
    with pytest.raises(DataError, match=r"AAPL is 1d, EURUSD is 1h"):
        infer_timeframe(_long({"AAPL": (10, timedelta(days=1)), "EURUSD": (10, timedelta(hours=1))}))


def test_unmatched_spacing_is_an_error_naming_it():
    with pytest.raises(DataError, match=r"2 hours matches no timeframe"):
        infer_timeframe(_long({"X": (10, timedelta(hours=2))}))


def test_sparse_symbol_takes_the_timeframe_of_the_others():
    # SNI in the shared S&P file: 2 daily bars 60 days apart, loaded as daily bars (with a gap warning)
    assert infer_timeframe(_long({"A": (10, timedelta(days=1)), "SNI": (2, timedelta(days=60))})) == "1d"
    assert infer_timeframe(_long({"ONE": (1, timedelta(days=1))})) == "1d"


def test_inferred_timeframe_is_a_note_and_timeframe_must_agree(tmp_path):
    rows = [f"2020-01-02 {h:02d}:00:00,1,2,0.5,1,1" for h in range(10)]
    path = write(tmp_path / "h.csv", csv("datetime,open,high,low,close,volume", rows))
    bars, report = load_bars(None, data=[path])
    assert report.timeframe == "1h" and report.notes == ["note: timeframe 1h (inferred from the bar spacing)"]
    bars, report = load_bars(None, "1h", data=[path])
    assert report.timeframe == "1h" and report.notes == []
    with pytest.raises(DataError, match=r"--timeframe 1d disagrees .* which are 1h"):
        load_bars(None, "1d", data=[path])


def test_mixed_timeframes_across_files(tmp_path):
    d = write(tmp_path / "aapl.csv", csv("date,open,high,low,close,volume", good_rows(10)))
    h = write(tmp_path / "eurusd.csv", csv("datetime,open,high,low,close,volume",
                                           [f"2020-01-02 {i:02d}:00:00,1,2,0.5,1,1" for i in range(10)]))
    with pytest.raises(DataError, match=r"AAPL is 1d, EURUSD is 1h"):
        load_bars(None, data=[d, h])


# ----------------------------------------------------------------------------- the shared S&P 500 file
def test_sp500_suspicious_symbols_excluded_with_reason_and_kept_on_request(sp500):
    _, report = load_bars(None, data=[sp500])
    assert report.excluded["BHF"].endswith("BHF 2015-01-12: sub-penny price 0.006 (placeholder quote)")
    assert report.excluded["SCG"].endswith("SCG 2019-03-05: sub-penny price 0.0063 (placeholder quote)")
    with pytest.raises(DataError, match=r"BHF 2015-01-12: sub-penny price .*--keep-suspicious"):
        load_bars(["AAPL", "BHF"], data=[sp500])
    bars, report = load_bars(["AAPL", "BHF"], data=[sp500], keep_suspicious=True)
    assert sorted(bars["symbol"].unique().to_list()) == ["AAPL", "BHF"]
    assert any(k == "suspicious" and s == "BHF" for k, s, _ in report.findings)


def test_file_without_rows_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"empty.csv: no rows"):
        load_bars(None, data=[write(tmp_path / "empty.csv", "date,open,high,low,close,volume")])
    with pytest.raises(DataError, match=r"x.csv: X: no bars between 2021-01-01 and the end"):
        load_bars(["X"], data=[write(tmp_path / "x.csv", csv("date,open,high,low,close,volume", good_rows()))],
                  start="2021-01-01")


# ----------------------------------------------------------------------------- decided rules that drifted
def test_sparse_symbol_gets_a_gap_warning_and_a_closer_spacing_is_an_error(tmp_path):
    rows = [f"AAA,{d},10,11,9,10.5,100" for d in days(12)] + ["SPR,2020-01-01,20,21,19,20,5", "SPR,2020-03-01,21,22,20,21,5"]
    bars, report = load_bars(None, data=[write(tmp_path / "b.csv", csv("symbol,date,open,high,low,close,volume", rows))])
    assert sorted(bars["symbol"].unique()) == ["AAA", "SPR"] and report.timeframe == "1d"
    assert [k for k, s, _ in report.findings if s == "SPR"] == ["gap"]  # 60 days > 5 x 1 day and > 4 days
    hourly = [f"H,2020-01-02T{h:02d}:00:00,1,2,0.5,1,1" for h in range(10)]
    q45 = [f"Q,{(datetime(2020, 1, 2) + timedelta(minutes=45 * i)).isoformat()},1,2,0.5,1,1" for i in range(10)]
    path = write(tmp_path / "q.csv", csv("symbol,datetime,open,high,low,close,volume", hourly + q45))
    with pytest.raises(DataError, match=r"^Q: median bar spacing 45 minutes matches no timeframe"):
        load_bars(None, data=[path])


def test_gap_warning_needs_5_medians_and_4_days(tmp_path):
    def gaps(skip: set[str]) -> list[str]:
        rows = [r for r in good_rows(12) if r[:10] not in skip]
        _, report = load_bars(None, data=[write(tmp_path / "g.csv", csv("date,open,high,low,close,volume", rows))])
        return [t for k, _, t in report.findings if k == "gap"]
    assert gaps({"2020-01-05", "2020-01-06", "2020-01-07", "2020-01-08"}) == []  # 5 days: not longer than 5 x 1 day
    assert len(gaps({"2020-01-05", "2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09"})) == 1  # 6 days


def test_none_left_is_one_error_with_the_first_reason_in_file_order_and_a_count(tmp_path):
    rows = ([f"JMP,{d},10,11,9,10.5,100" for d in days(3)] + ["JMP,2020-01-04,100,110,90,105,100"]
            + [f"BAD,{d},10,11,9,10.5,100" for d in days(3)] + ["BAD,2020-01-04,10,8,9,10,100"]
            + [f"ZER,{d},10,11,9,10.5,100" for d in days(3)] + ["ZER,2020-01-04,0,11,9,10,100"])
    path = write(tmp_path / "n.csv", csv("symbol,date,open,high,low,close,volume", rows))
    with pytest.raises(DataError) as err:
        load_bars(None, data=[path])
    assert str(err.value).startswith(f"{path}: JMP 2020-01-04: close jumps x10.00")  # suspicious, but first in the file
    assert str(err.value).endswith(" (and 2 more symbols excluded)")


def test_zoned_local_midnights_are_dates(tmp_path):
    from zoneinfo import ZoneInfo
    ny = ZoneInfo("America/New_York")
    stamps = [datetime(2020, 1, d, tzinfo=ny) for d in (2, 3, 6)]
    pl.DataFrame({"date": stamps, "open": [1.0] * 3, "high": [2.0] * 3, "low": [0.5] * 3, "close": [1.0] * 3},
                 schema_overrides={"date": pl.Datetime("us", "America/New_York")}).write_parquet(tmp_path / "ny.parquet")
    write(tmp_path / "nytext.csv", csv("date,open,high,low,close", [f"{t.isoformat()},1,2,0.5,1" for t in stamps]))
    want = [datetime(2020, 1, d, tzinfo=UTC) for d in (2, 3, 6)]
    for f in ("ny.parquet", "nytext.csv"):
        bars, _ = load_bars(None, data=[tmp_path / f])
        assert bars["timestamp"].to_list() == want, f
    # an intraday zoned series is converted, not truncated to dates
    pl.DataFrame({"date": [datetime(2020, 1, 2, h, tzinfo=ny) for h in (0, 1, 2)], "open": [1.0] * 3, "high": [2.0] * 3,
                  "low": [0.5] * 3, "close": [1.0] * 3}).write_parquet(tmp_path / "h.parquet")
    bars, _ = load_bars(None, data=[tmp_path / "h.parquet"])
    assert bars["timestamp"].to_list() == [datetime(2020, 1, 2, 5 + h, tzinfo=UTC) for h in (0, 1, 2)]
