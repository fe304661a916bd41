"""SLICES.md contract 2 (direct bar files), the store rule of contract 1, the shared timeframe and
periods-per-year definitions, and symbol checks, through the loader and the command line."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
from analyze_helpers import make_bars, random_walk
from click.testing import CliRunner

from slices.analyze.bars import BarRequest, load, periods_per_year, timeframe_of
from slices.analyze.cli import cli
from slices.analyze.errors import AnalyzeError

CSV_HEAD = "Date,Open,High,Low,Close,Volume\n"
ROWS = [
    ("2020-01-02", 10.0, 11.0, 9.5, 10.5, 100),
    ("2020-01-03", 10.5, 11.5, 10.0, 11.0, 200),
    ("2020-01-06", 11.0, 12.0, 10.5, 11.5, 300),
    ("2020-01-07", 11.5, 12.5, 11.0, 12.0, 400),
]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res, *fragments):
    assert res.exit_code == 2, (res.output, res.stderr)
    lines = res.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output + res.stderr
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def write_csv(path, header, rows):
    path.write_text(header + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def closes(req, sym="X"):
    return load([sym], req).bars[sym]["close"].to_list()


# ---------------------------------------------------------------------------------------------
# reading: extensions, column names, time values (rules 1-4)


def test_txt_is_csv_and_json_is_refused(tmp_path):
    txt = write_csv(tmp_path / "x.TXT", CSV_HEAD, ROWS)
    assert closes(BarRequest(data=(str(txt),))) == [10.5, 11.0, 11.5, 12.0]
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(AnalyzeError, match=r"x\.json: unsupported extension"):
        load(None, BarRequest(data=(str(bad),)))


def test_column_names_are_normalised(tmp_path):
    path = write_csv(tmp_path / "x.csv", " date ,OPEN,High ,low,Close ,VOLUME,Extra-Col\n", [(*r, "z") for r in ROWS])
    b = load(None, BarRequest(data=(str(path),))).bars["X"]  # `Close ` with a trailing space is close
    assert b.columns == ["timestamp", "open", "high", "low", "close", "volume"]
    assert b["close"].to_list() == [10.5, 11.0, 11.5, 12.0]


@pytest.mark.parametrize(
    "header",
    ["Date,Open,High,Low,Close,close,Volume\n", "Date,date,Open,High,Low,Close,Volume\n"],
)
def test_two_columns_with_one_meaning_are_an_error(tmp_path, header):
    first, second = header.split(",")[4:6] if "close" in header else header.split(",")[:2]
    rows = [(r[0], *r[1:5], r[4], r[5]) if "close" in header else (r[0], r[0], *r[1:]) for r in ROWS]
    path = write_csv(tmp_path / "x.csv", header, rows)
    with pytest.raises(AnalyzeError) as err:
        load(None, BarRequest(data=(str(path),)))
    assert f"'{first}' and '{second}' both mean" in str(err.value)


def test_symbol_and_ticker_columns_are_an_error(tmp_path):
    path = write_csv(tmp_path / "x.csv", "symbol,ticker," + CSV_HEAD, [("A", "A", *r) for r in ROWS])
    with pytest.raises(AnalyzeError, match="'symbol' and 'ticker' both mean symbol"):
        load(None, BarRequest(data=(str(path),)))


def test_ticker_column_is_long_format(tmp_path):
    path = write_csv(tmp_path / "many.csv", "Ticker," + CSV_HEAD, [(s, *r) for s in (" aa ", "bb") for r in ROWS])
    got = load(None, BarRequest(data=(str(path),))).bars
    assert list(got) == ["AA", "BB"]


def test_pandas_index_column_anywhere(tmp_path):
    """pandas' to_parquet of an unnamed index writes __index_level_0__ as the LAST column."""
    frame = pl.DataFrame(
        {
            "open": [r[1] for r in ROWS],
            "high": [r[2] for r in ROWS],
            "low": [r[3] for r in ROWS],
            "close": [r[4] for r in ROWS],
            "volume": [r[5] for r in ROWS],
            "__index_level_0__": [datetime.fromisoformat(r[0]) for r in ROWS],
        }
    )
    path = tmp_path / "pd.parquet"
    frame.write_parquet(path)
    b = load(None, BarRequest(data=(str(path),))).bars["PD"]
    assert b["timestamp"][0] == datetime(2020, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "values, unit",
    [
        ([1577923200, 1578009600, 1578268800, 1578355200], "s"),
        ([1577923200_000, 1578009600_000, 1578268800_000, 1578355200_000], "ms"),
        ([1577923200_000_000, 1578009600_000_000, 1578268800_000_000, 1578355200_000_000], "us"),
        ([1577923200_000_000_000, 1578009600_000_000_000, 1578268800_000_000_000, 1578355200_000_000_000], "ns"),
    ],
)
def test_integer_epoch_times(tmp_path, values, unit):
    path = write_csv(tmp_path / "x.csv", "time,open,high,low,close,volume\n", [(v, *r[1:]) for v, r in zip(values, ROWS)])
    b = load(None, BarRequest(data=(str(path),))).bars["X"]
    assert b["timestamp"].to_list()[0] == datetime(2020, 1, 2, tzinfo=timezone.utc), unit


def test_iso_text_with_offsets_and_zoned_datetimes(tmp_path):
    stamps = ["2020-01-02T14:30:00Z", "2020-01-02 15:30:00+01:00", "2020-01-02T15:30", "2020-01-02 16:00:00"]
    path = write_csv(tmp_path / "x.csv", "datetime,open,high,low,close,volume\n", [(t, *r[1:]) for t, r in zip(stamps, ROWS)])
    with pytest.raises(AnalyzeError, match="duplicate timestamp"):  # 14:30Z and 15:30+01:00 are the same bar
        load(["X"], BarRequest(data=(str(path),)))
    stamps[1:3] = ["2020-01-02 16:30:00+01:00", "2020-01-02T15:00"]
    write_csv(path, "datetime,open,high,low,close,volume\n", [(t, *r[1:]) for t, r in zip(stamps, ROWS)])
    with pytest.raises(AnalyzeError, match="X 2020-01-02T15:00:00Z: timestamps not increasing"):  # after 15:30Z
        load(["X"], BarRequest(data=(str(path),)))
    stamps[2:] = ["2020-01-02T16:30", "2020-01-02 17:30:00"]
    write_csv(path, "datetime,open,high,low,close,volume\n", [(t, *r[1:]) for t, r in zip(stamps, ROWS)])
    got = load(["X"], BarRequest(data=(str(path),), timeframe="1h")).bars["X"]["timestamp"].dt.hour().to_list()
    assert got == [14, 15, 16, 17]
    zoned = tmp_path / "z.parquet"
    ny = pl.datetime_range(
        datetime(2020, 1, 2, 9, 30), datetime(2020, 1, 2, 10, 15), "15m", time_unit="ns", time_zone="America/New_York", eager=True
    )
    make_bars(random_walk(4)).drop("timestamp").with_columns(ny.alias("Timestamp")).write_parquet(zoned)
    b = load(None, BarRequest(data=(str(zoned),))).bars["Z"]
    assert b["timestamp"][0] == datetime(2020, 1, 2, 14, 30, tzinfo=timezone.utc)
    assert b["timestamp"].dtype == pl.Datetime("us", "UTC")


def test_bad_time_cell_names_column_and_value(tmp_path):
    path = write_csv(tmp_path / "x.csv", CSV_HEAD, [ROWS[0], ("yesterday", *ROWS[1][1:])])
    one_line_error(run("indicators", "--data", path), "x.csv: time column 'Date': cannot read 'yesterday'")


# ---------------------------------------------------------------------------------------------
# cells, adjustment, range, several files (rules 5-10)


@pytest.mark.parametrize("cell", ["n/a", "", "NaN", "abc", "-", "null"])
def test_missing_or_text_price_is_a_one_line_error(tmp_path, cell):
    rows = [list(r) for r in ROWS]
    rows[2][4] = cell
    path = write_csv(tmp_path / "x.csv", CSV_HEAD, rows)
    one_line_error(run("indicators", "X", "--data", path), "x.csv: X 2020-01-06: missing or non-numeric price (close)")


def test_missing_volume_cells_are_zero_with_a_warning(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[1][5] = "n/a"
    path = write_csv(tmp_path / "x.csv", CSV_HEAD, rows)
    res = run("indicators", "X", "--data", path, "-i", "sma:2", "-f", "json")
    assert res.exit_code == 0 and "missing volume" in res.stderr
    import json

    assert [r["volume"] for r in json.loads(res.stdout)["rows"]] == [100, 0, 300, 400]


def test_negative_volume_is_an_error(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[3][5] = -5
    path = write_csv(tmp_path / "x.csv", CSV_HEAD, rows)
    with pytest.raises(AnalyzeError, match="X 2020-01-07: negative volume -5"):
        load(["X"], BarRequest(data=(str(path),)))


@pytest.mark.parametrize("name", ["AdjClose", "Adj Close", "adj_close", "adjusted_close", "Adj-Close"])
def test_adj_close_aliases_adjust_unless_no_adjust(tmp_path, name):
    path = write_csv(tmp_path / "x.csv", f"Date,Open,High,Low,Close,{name},Volume\n", [(*r[:5], r[4] / 2, r[5]) for r in ROWS])
    b = load(None, BarRequest(data=(str(path),))).bars["X"]
    assert b["close"].to_list() == [5.25, 5.5, 5.75, 6.0] and b["open"].to_list()[0] == 5.0
    assert b["volume"].to_list() == [100, 200, 300, 400]
    raw = load(None, BarRequest(data=(str(path),), adjust=False)).bars["X"]
    assert raw["close"].to_list() == [10.5, 11.0, 11.5, 12.0]


def test_bad_adj_close_is_an_error_only_when_used(tmp_path):
    rows = [(*r[:5], r[4] if i != 1 else 0, r[5]) for i, r in enumerate(ROWS)]
    path = write_csv(tmp_path / "x.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n", rows)
    with pytest.raises(AnalyzeError, match="X 2020-01-03: non-positive adj_close 0"):
        load(["X"], BarRequest(data=(str(path),)))
    assert len(closes(BarRequest(data=(str(path),), adjust=False))) == 4
    assert len(closes(BarRequest(data=(str(path),), start="2020-01-06"))) == 2


def test_bad_bar_before_start_does_not_matter(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[0][3] = 0  # low 0 on the first day
    path = write_csv(tmp_path / "x.csv", CSV_HEAD, rows)
    with pytest.raises(AnalyzeError, match="X 2020-01-02: non-positive price"):
        load(["X"], BarRequest(data=(str(path),)))
    assert closes(BarRequest(data=(str(path),), start="2020-01-03")) == [11.0, 11.5, 12.0]


def test_symbol_split_over_two_files_is_merged(tmp_path):
    a = write_csv(tmp_path / "a.csv", "symbol," + CSV_HEAD, [("X", *r) for r in ROWS[2:]])
    b = write_csv(tmp_path / "b.csv", "symbol," + CSV_HEAD, [("X", *r) for r in ROWS[:2]])
    assert closes(BarRequest(data=(str(a), str(b)))) == [10.5, 11.0, 11.5, 12.0]
    c = write_csv(tmp_path / "c.csv", "symbol," + CSV_HEAD, [("X", *r) for r in ROWS[1:3]])
    with pytest.raises(AnalyzeError) as err:
        load(None, BarRequest(data=(str(a), str(c))))
    assert "X 2020-01-06: in both" in str(err.value) and "a.csv" in str(err.value) and "c.csv" in str(err.value)


# ---------------------------------------------------------------------------------------------
# invalid and suspicious symbols (rules 5, 11-14)


def _long_file(tmp_path, bad):
    good = make_bars(random_walk(40, seed=1)).with_columns(pl.lit("GOOD").alias("symbol"))
    path = tmp_path / "long.parquet"
    pl.concat([bad.with_columns(pl.lit("BAD").alias("symbol")), good]).write_parquet(path)
    return path


def test_invalid_symbol_excluded_when_unnamed_error_when_named(tmp_path):
    bad = make_bars(random_walk(40, seed=2)).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.col("low") * 0.5).otherwise(pl.col("high")).alias("high")
    )
    path = _long_file(tmp_path, bad)
    res = run("report", "--data", path, "-f", "json")
    assert res.exit_code == 0
    assert "BAD 2020-01-08: high " in res.stderr and "; symbol excluded" in res.stderr
    one_line_error(run("report", "BAD", "--data", path), "long.parquet: BAD 2020-01-08: high ")


def test_suspicious_series_excluded_error_or_kept(tmp_path):
    jump = make_bars(np.r_[random_walk(20, seed=3), random_walk(20, seed=3) * 10])
    path = _long_file(tmp_path, jump)
    res = run("indicators", "--data", path, "-i", "sma:2", "-f", "json")
    assert res.exit_code == 0
    assert "BAD 2020-01-21: close jumps x" in res.stderr and "(bad quote or unadjusted split); symbol excluded" in res.stderr
    import json

    assert json.loads(res.stdout)["symbols"] == ["GOOD"]
    one_line_error(run("indicators", "BAD", "--data", path), "BAD 2020-01-21: close jumps x", "--keep-suspicious")
    kept = run("indicators", "BAD", "--data", path, "--keep-suspicious", "-i", "sma:2", "-f", "json")
    assert kept.exit_code == 0 and "kept (--keep-suspicious)" in kept.stderr
    penny = make_bars(np.r_[random_walk(10, seed=4), np.full(5, 0.005), random_walk(10, seed=4)])
    path = _long_file(tmp_path, penny)
    one_line_error(run("risk", "BAD", "GOOD", "--data", path), "BAD 2020-01-11: sub-penny price 0.00498")


@pytest.mark.parametrize("command", ["indicators", "regime", "risk", "report", "signals"])
@pytest.mark.parametrize("symbol", ["../../../../evil", "A/B", "X</script>", "", "-"])
def test_traversal_or_invalid_symbol_is_refused_before_any_path(no_store, command, symbol):
    extra = ["--strategy", "momentum"] if command == "signals" else []
    if symbol in ("", "-"):
        res = run(command, "--symbols", f"AAPL,{symbol}x!", *extra)
    else:
        res = run(command, symbol, *extra)
    one_line_error(res, "invalid symbol")


def test_invalid_symbol_in_a_file(tmp_path):
    path = write_csv(tmp_path / "x.csv", "symbol," + CSV_HEAD, [("../evil", *r) for r in ROWS])
    one_line_error(run("report", "--data", path), "x.csv: invalid symbol '../EVIL' in column 'symbol'")
    stem = write_csv(tmp_path / "a b.csv", CSV_HEAD, ROWS)
    one_line_error(run("report", "--data", stem), "invalid symbol 'A B' from the file name")


# ---------------------------------------------------------------------------------------------
# which store (contract 1)


def test_named_store_must_exist_and_never_falls_back(tmp_path, monkeypatch):
    one_line_error(run("report", "AAPL", "--store", tmp_path / "nope"), "no such folder")
    (tmp_path / "file").write_text("x")
    one_line_error(run("report", "AAPL", "--store", tmp_path / "file"), "no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("report", "AAPL", "--store", empty), f"AAPL 1d: not in store {empty}")
    monkeypatch.setenv("GPT_TRADER_STORE", str(empty))
    one_line_error(run("report", "AAPL"), f"AAPL 1d: not in store {empty}")
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path / "nope"))
    one_line_error(run("report", "AAPL"), "no such folder")


def test_only_the_default_store_falls_back(no_store):
    res = run("report", "AAPL")
    assert res.exit_code == 0
    assert "note: AAPL 1d from the embedded sample (not in the default store ~/.gpt-trader/store)" in res.stderr


# ---------------------------------------------------------------------------------------------
# shared definitions: timeframe and periods per year


@pytest.mark.parametrize(
    "seconds, label",
    [(60, "1m"), (66, "1m"), (300, "5m"), (900, "15m"), (1800, "30m"), (3600, "1h"), (14400, "4h"),
     (72000, "1d"), (86400 * 3, "1d"), (86400 * 7, "1w"), (86400 * 30, "1mo"), (None, "1d")],
)
def test_timeframe_of_spacing(seconds, label):
    assert timeframe_of(seconds) == label


@pytest.mark.parametrize("seconds", [45, 120, 7200, 86400 * 15, 86400 * 60])
def test_unknown_spacing_is_an_error(seconds):
    with pytest.raises(AnalyzeError, match="not a known timeframe"):
        timeframe_of(seconds)


def _hourly(tmp_path, name="H", n=300):
    from datetime import timedelta

    b = make_bars(random_walk(n), step=timedelta(hours=1))
    path = tmp_path / f"{name}.parquet"
    b.write_parquet(path)
    return path


def test_timeframe_inferred_noted_and_checked(tmp_path):
    hourly = _hourly(tmp_path)
    res = run("indicators", "--data", hourly, "-i", "vwap", "-f", "json")
    assert res.exit_code == 0 and "note: timeframe 1h inferred from the --data bars" in res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["timeframe"] == "1h" and "vwap" in doc["columns"]  # intraday: session VWAP
    one_line_error(run("indicators", "--data", hourly, "-t", "1d"), "--timeframe 1d does not match the --data bars, which are 1h")
    assert run("indicators", "--data", hourly, "-t", "1h", "-i", "sma:3").exit_code == 0
    daily = tmp_path / "D.parquet"
    make_bars(random_walk(50)).write_parquet(daily)
    one_line_error(run("report", "--data", hourly, "--data", daily), "symbols of different timeframes: ", "H is 1h", "D is 1d")


def test_periods_per_year_shared_definition(tmp_path):
    from datetime import timedelta

    ts = make_bars(random_walk(10))["timestamp"]
    assert periods_per_year(ts, "1d") == 252 and periods_per_year(ts, "1w") == 52 and periods_per_year(ts, "1mo") == 12
    # 24/5 FX-like hourly bars: the data's own bars per year, (n - 1) x 365.25 x 86400 / span
    hours = make_bars(random_walk(100), step=timedelta(hours=1))["timestamp"]
    assert periods_per_year(hours, "1h") == pytest.approx(365.25 * 24)
    gappy = pl.concat([hours.head(50), hours.tail(50) + timedelta(days=2)])
    assert periods_per_year(gappy, "1h") == pytest.approx(99 * 365.25 * 86400 / (99 * 3600 + 2 * 86400))


def test_shared_sp500_file_whole(sp500):
    """SLICES.md: the shared file loads as it is; CBS, STI, VIAB, BHF and SCG are excluded."""
    res = run("report", "--data", sp500, "-f", "json", "--strategy", "momentum")
    assert res.exit_code == 0, res.stderr
    excluded = {line.split(": ")[2].split()[0] for line in res.stderr.splitlines() if line.endswith("symbol excluded")}
    assert excluded == {"CBS", "STI", "VIAB", "BHF", "SCG"}
    import json

    assert len(json.loads(res.stdout)["symbols"]) == 477
    # risk on the whole file goes past the invalid symbols too; 477 symbols share no bar, and
    # the error says which symbols limit the common window
    err = one_line_error(run("risk", "--data", sp500), "477 symbols: 0 common bars", "fewest bars: SNI 2 bars")
    assert "CBS" not in err
