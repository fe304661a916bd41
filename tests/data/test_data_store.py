"""Bar store: schema, metadata, atomic writes (killed writer), lock (concurrent updates), loader."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from data_helpers import SeriesProvider, make_bars
from slices.data.errors import DataError
from slices.data.providers import RetryPolicy
from slices.data.schema import SCHEMA, clean_for_store
from slices.data.service import last_complete_bar, update_symbols, write_merged
from slices.data.store import SAMPLE_ROOT, Store, merge_bars, resolve_root

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[2]


def test_root_resolution(monkeypatch, tmp_path):
    assert resolve_root(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path / "env"))
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("GPT_TRADER_STORE")
    assert resolve_root(None) == Path.home() / ".gpt-trader" / "store"


def test_write_read_layout_schema_and_metadata(tmp_path):
    st = Store(tmp_path)
    df = make_bars(30)
    with st.lock():
        path = st.write("1d", "BRK-B", df, {"provider": "yahoo", "adjusted": True, "fetched_at": "2024-01-01T00:00:00Z"})
    assert path == tmp_path / "bars" / "1d" / "BRK-B.parquet"
    back = pl.read_parquet(path)
    assert list(back.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert dict(back.schema) == SCHEMA
    assert back.equals(df)
    meta = st.meta("1d", "BRK-B")
    assert meta["provider"] == "yahoo" and meta["adjusted"] is True and meta["rows"] == 30
    assert meta["first"] == "2020-01-01T00:00:00Z" and meta["symbol"] == "BRK-B"
    assert st.symbols("1d") == ["BRK-B"] and st.timeframes() == ["1d"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not left with mkstemp's private mode


def test_write_rejects_frames_that_break_the_contract(tmp_path):
    st = Store(tmp_path)
    df = make_bars(5)
    with st.lock():
        with pytest.raises(DataError, match="strictly increasing"):
            st.write("1d", "X", pl.concat([df, df.tail(1)]), {})
        with pytest.raises(DataError, match="schema"):
            st.write("1d", "X", df.with_columns(pl.col("volume").cast(pl.Int64)), {})
    with pytest.raises(DataError, match="invalid symbol"):
        st.path("1d", "../evil")
    assert not (tmp_path / "bars" / "1d" / "X.parquet").exists()


def test_sample_store_is_read_only():
    st = Store(SAMPLE_ROOT)
    assert st.read_only
    with pytest.raises(DataError, match="read-only"):
        with st.lock():
            pass
    assert st.read("1d", "AAPL").height == 1259


def test_merge_modes():
    old = make_bars(10)
    new = make_bars(15, seed=1)  # overlaps the 10 stored days, then 5 more
    ext = merge_bars(old, new, "extend")
    assert ext.head(10).equals(old)  # stored bars untouched
    assert ext.tail(5).equals(new.tail(5))
    rep = merge_bars(old, new.slice(3, 4), "replace_range")
    assert rep.height == 10 and rep.slice(3, 4).equals(new.slice(3, 4)) and rep.head(3).equals(old.head(3))


WRITER = textwrap.dedent("""
    import sys, polars as pl, numpy as np
    from slices.data.store import Store
    st = Store(sys.argv[1])
    n = int(sys.argv[2])
    ts = pl.Series(np.arange(n, dtype=np.int64) * 60_000_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        df = pl.DataFrame({"timestamp": ts, **{c: np.full(n, float(i)) for c in ("open", "high", "low", "close", "volume")}})
        with st.lock():
            st.write("1m", "BIG", df, {"provider": "test", "generation": i})
""")


def test_killed_writer_never_leaves_a_corrupt_file(tmp_path):
    """SIGKILL a process that rewrites a large series in a loop, then read the store."""
    st = Store(tmp_path)
    with st.lock():
        st.write("1m", "BIG", make_bars(5), {"provider": "seed"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    folder = tmp_path / "bars" / "1m"
    killed_mid_write = 0
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "400000"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.25 + 0.13 * attempt)
        proc.send_signal(signal.SIGKILL)  # no cleanup handlers run
        proc.wait()
        leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        killed_mid_write += bool(leftovers)
        for p in leftovers:
            p.unlink()
        df = st.read("1m", "BIG")  # readable and complete
        assert df.height in (5, 400000)
        if df.height == 400000:
            gen = st.meta("1m", "BIG")["generation"]
            assert df["close"].unique().to_list() == [float(gen)]  # bars and metadata agree
        assert st.symbols("1m") == ["BIG"]  # temporary files are never listed
        if killed_mid_write >= 2:
            break
    assert killed_mid_write >= 1, "no kill landed during a write; the test proved nothing"


def _update_worker(root: str, barrier, n_full: int, prepend: bool):
    """One ``update`` run in its own process, with a slow disk: every write sleeps before it
    replaces the file, so runs that did not serialise on the lock would lose each other's bars."""
    market = {"AAA": make_bars(n_full)}
    real_write = Store.write

    def slow_write(self, *args, **kwargs):
        time.sleep(0.3)
        return real_write(self, *args, **kwargs)

    Store.write = slow_write
    st = Store(root)
    prov = SeriesProvider(market)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    st.read("1d", "AAA"), last_complete_bar("AAA", "1d", now)  # warm up, so that all runs overlap
    barrier.wait()
    (rep,) = update_symbols(st, [("1d", "AAA")], lambda meta: [prov], RetryPolicy(sleep=lambda s: None),
                            prepend=prepend, start=market["AAA"]["timestamp"][0], now=now)
    assert rep.error is None, rep.error


def test_concurrent_updates_do_not_corrupt_the_store(tmp_path):
    """Two forward updates and two --prepend updates of one series at the same time: every
    run must see the others' bars (lock + re-read), so the store ends with the full series."""
    full = make_bars(300)
    st = Store(tmp_path)
    with st.lock():
        st.write("1d", "AAA", full.slice(100, 100), {"provider": "yahoo"})
    ctx = mp.get_context("spawn")  # polars' thread pool is not fork-safe
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_update_worker, args=(str(tmp_path), barrier, 300, prepend))
             for prepend in (False, True, False, True)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.exitcode is None:
            p.kill()
        assert p.exitcode == 0
    assert st.read("1d", "AAA").equals(full)
    assert st.meta("1d", "AAA")["rows"] == 300
    assert [p.name for p in (tmp_path / "bars" / "1d").iterdir()] == ["AAA.parquet"]


def test_a_later_write_removes_a_killed_writers_temporary_files(tmp_path):
    st = Store(tmp_path)
    with st.lock():
        st.write("1d", "AAA", make_bars(5), {})
    folder = tmp_path / "bars" / "1d"
    orphan = folder / ".AAA.parquet.k1ll3d.tmp"
    orphan.write_bytes(b"PAR1 half a file")
    other = folder / ".BBB.parquet.x.tmp"
    other.write_bytes(b"")
    st.write("1d", "AAA", make_bars(6), {})  # without the lock: another writer might own it, keep it
    assert orphan.exists()
    with st.lock():
        st.write("1d", "AAA", make_bars(7), {})
    assert not orphan.exists() and other.exists() and st.read("1d", "AAA").height == 7


def test_lock_timeout_is_a_clear_error(tmp_path):
    a, b = Store(tmp_path), Store(tmp_path)
    with a.lock():
        with pytest.raises(DataError, match="locked by another writer"):
            with b.lock(timeout=0.2):
                pass


def test_write_merged_under_lock_is_reentrant(tmp_path):
    st = Store(tmp_path)
    with st.lock():
        added, merged = write_merged(st, "A", "1d", make_bars(3), "replace_range", "import", None, "x.csv")
    assert added == 3 and st.read("1d", "A").equals(merged)


def test_clean_for_store_drops_bad_rows_sorts_and_dedupes():
    df = make_bars(6)
    dirty = pl.concat([df.slice(3, 3), df.slice(0, 3), df.slice(4, 1).with_columns(pl.col("close") * 1.001)])
    dirty = dirty.with_columns(pl.when(pl.col("timestamp") == df["timestamp"][1]).then(0.0).otherwise(pl.col("low")).alias("low"))
    res = clean_for_store(dirty, "X", "test")
    assert res.frame["timestamp"].is_sorted() and not res.frame["timestamp"].is_duplicated().any()
    assert res.frame.height == 5  # the non-positive low dropped, the duplicate collapsed
    assert len(res.warnings) == 3
    with pytest.raises(DataError, match="no valid rows"):
        clean_for_store(df.with_columns(pl.lit(-1.0).alias("open")), "X", "test")


def test_write_refuses_bars_that_break_the_price_rules(tmp_path):
    st = Store(tmp_path)
    df = make_bars(5).with_columns(pl.when(pl.int_range(pl.len()) == 2).then(0.5).otherwise(pl.col("high")).alias("high"))
    with st.lock():
        with pytest.raises(DataError, match="high below low"):
            st.write("1d", "X", df, {})
        # contract 2 keeps a bar whose open/close lies outside low..high (warned): it may be stored
        outside = make_bars(5).with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.col("high") * 1.01)
                                            .otherwise(pl.col("open")).alias("open"))
        st.write("1d", "Y", outside, {})
    assert not st.has("1d", "X") and st.read("1d", "Y").equals(outside)
