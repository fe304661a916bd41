"""The incremental --follow reader: only rows newer than the last bar read are taken from a changed
store file, and its quick screen (session._clean) never lets through rows that the full contract-2
checks of bars.py would flag (a hypothesis property)."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pt_helpers import sample_bars, write_store
from slices.paper_trade.bars import LoadReport, data_warnings, row_problems, suspicious_reasons
from slices.paper_trade.session import BAR_KEYS, _clean, _read_many, _read_new

DAY = 86_400_000_000
T0 = int(datetime(2020, 1, 2, tzinfo=timezone.utc).timestamp() * 1_000_000)


def _frame(sym: str, t: np.ndarray, cols: dict) -> pl.DataFrame:
    return pl.DataFrame({"symbol": [sym] * t.size, "timestamp": t, **cols, "_f": np.zeros(t.size, np.uint32)}).with_columns(
        pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), pl.col(BAR_KEYS).fill_nan(None))


price = st.one_of(st.floats(0.001, 50.0), st.just(float("nan")), st.just(0.0), st.just(float("inf")), st.floats(-5, 0))


volume = st.one_of(st.floats(-10, 1e6), st.just(0.0), st.just(float("nan")))
step = st.integers(-1, 3)
any_bar = st.tuples(price, price, price, price, volume, step)
# bars that are mostly valid (low <= open, close <= high), so clean rows are common
sane_bar = st.tuples(st.floats(0.005, 30.0), st.floats(0, 1), st.floats(0, 1), st.floats(0, 3), volume, step).map(
    lambda r: (r[0] + r[1] * r[3], r[0] + r[3], r[0], r[0] + r[2] * r[3], r[4], r[5]))


def test_clean_screen_on_examples():
    ok = {"timestamp": np.array([T0, T0 + DAY]), "open": np.array([10.0, 10.5]), "high": np.array([11.0, 11.0]),
          "low": np.array([9.5, 10.0]), "close": np.array([10.5, 10.8]), "volume": np.array([100.0, 50.0])}
    assert _clean(ok, 10.0)
    for key, i, value in [("high", 1, 10.6), ("low", 0, 10.6), ("volume", 1, 0.0), ("close", 1, float("nan")),
                          ("low", 0, 0.005), ("timestamp", 1, T0)]:
        bad = {k: v.copy() for k, v in ok.items()}
        bad[key][i] = value
        assert not _clean(bad, 10.0), key
    assert not _clean(ok, 60.0)  # close x0.175 of the last stored bar's


@given(st.lists(st.one_of(any_bar, sane_bar), min_size=1, max_size=5), st.floats(0.5, 20.0))
def test_clean_rows_pass_every_full_check(rows, prev_close):
    t = T0 + DAY * np.cumsum([r[5] for r in rows])
    new = {"timestamp": t.astype(np.int64), **{k: np.array([r[i] for r in rows], dtype=float) for i, k in enumerate(BAR_KEYS)}}
    if not _clean(new, prev_close):
        return
    last = {"timestamp": np.array([T0 - DAY]), **{k: np.array([prev_close]) for k in BAR_KEYS}}
    checked = _frame("X", new["timestamp"], {k: new[k] for k in BAR_KEYS}).with_columns(
        pl.lit(False).alias("_adj_bad"), pl.col("volume").is_null().alias("_vol_missing"))
    assert row_problems(checked, ["f"]) == {}
    both = pl.concat([_frame("X", last["timestamp"], {k: last[k] for k in BAR_KEYS}), checked.select(
        "symbol", "timestamp", *BAR_KEYS, "_f")])
    assert suspicious_reasons(both, ["f"]) == {}
    rep = LoadReport()
    data_warnings(checked, ["f"], rep)
    assert rep.warnings == []


def test_read_new_takes_only_the_rows_after_the_last_one_read(tmp_path):
    bars = sample_bars("AAPL").head(30)
    write_store(tmp_path, "AAPL", bars)
    path = tmp_path / "bars" / "1d" / "AAPL.parquet"
    t = bars["timestamp"].dt.epoch("us").to_numpy()
    new, n_old = _read_new(path, "AAPL", int(t[24]), None)
    assert n_old == 25 and new["timestamp"].tolist() == t[25:].tolist()
    assert np.array_equal(new["close"], bars["close"].to_numpy()[25:])
    new, n_old = _read_new(path, "AAPL", int(t[24]), int(t[27]))  # --end
    assert n_old == 25 and new["timestamp"].tolist() == t[25:28].tolist()
    # a file in another layout (here a float32 column) goes through the full normalisation
    write_store(tmp_path, "AAPL", bars.with_columns(pl.col("volume").cast(pl.Float32)))
    new, n_old = _read_new(path, "AAPL", int(t[28]), None)
    assert n_old == 29 and new["timestamp"].tolist() == t[29:].tolist() and new["volume"].dtype == np.float64


def test_read_many_equals_reading_each_file(tmp_path):
    """One multi-file scan gives each file's rows exactly as reading it alone; a file with another
    layout (an extra column) or an empty one makes it give up ({}), so each file is read by
    itself, with its own error messages."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "slices" / "sample" / "bars" / "1d"
    paths = {p.stem: p for p in sorted(sample.glob("*.parquet"))[:6]}
    got = _read_many(paths)
    assert list(got) == list(paths)
    for sym, p in paths.items():
        after = int(pl.read_parquet(p)["timestamp"].to_physical()[-4])
        alone, n_alone = _read_new(p, sym, after, None)
        batch, n_batch = _read_new(p, sym, after, None, got[sym])
        assert n_alone == n_batch and alone["timestamp"].size == 3
        assert all(np.array_equal(alone[k], batch[k], equal_nan=True) for k in alone)
    odd = tmp_path / "ODD.parquet"
    pl.read_parquet(paths["AAPL"]).with_columns(pl.lit(1.0).alias("adj_close")).write_parquet(odd)
    assert _read_many({**paths, "ODD": odd}) == {}
    empty = tmp_path / "EMPTY.parquet"
    pl.read_parquet(paths["AAPL"]).head(0).write_parquet(empty)
    assert _read_many({**paths, "EMPTY": empty}) == {}
    assert _read_many({"AAPL": paths["AAPL"]}) == {}  # one file: read it directly
