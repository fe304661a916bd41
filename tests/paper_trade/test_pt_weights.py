"""The portfolio-weights strategy form (SLICES.md contract 5) in paper sessions: options of the
other form refused as backtest refuses them, rebalance orders in the ledger, resume after kills,
--follow equal to a replay, and the incremental --follow reader (new rows only, checked)."""
from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pt_helpers import ROOT, SAMPLE, cli, ledger_path, meta, popen, read_tables, sample_bars, write_store
from pt_helpers import last_bar as _last_bar, wait_until as _wait

ROTATION = str(Path(__file__).resolve().parent / "strategies" / "momentum_rotation.py")  # the example's copy
SYMS = ("AAPL", "MSFT", "XOM", "JNJ")
W_ARGS = ["--symbols", ",".join(SYMS), "--strategy", ROTATION, "--param", "lookback=10", "--param", "every=3", "-q"]


@pytest.mark.parametrize("extra,needle", [
    (["--strategy", ROTATION, "--sizing", "fixed-fraction"], "--sizing applies to targets (per-symbol signal) strategies only"),
    (["--strategy", ROTATION, "--stop-loss-atr", "2"], "--stop-loss-atr applies to targets (per-symbol signal) strategies only"),
    (["--strategy", ROTATION, "--max-volume-pct", "5"], "--max-volume-pct applies to targets (per-symbol signal) strategies only"),
    (["--strategy", "simple_ma", "--leverage", "2"], "--leverage applies to weights (portfolio) strategies only"),
    (["--strategy", "simple_ma", "--rebalance-threshold", "0.01"], "--rebalance-threshold applies to weights (portfolio)"),
    (["--strategy", ROTATION, "--leverage", "0.5"], "--leverage must be a finite number >= 1"),
])
def test_options_of_the_other_form_are_one_line_errors(tmp_path, extra, needle):
    r = cli("run", "--session", "x", "--store", str(SAMPLE), "--symbols", "AAPL,MSFT", *extra, ledgers=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "paper" / "x.sqlite").exists()


def test_weights_session_orders_are_rebalances_filled_after_their_row(tmp_path):
    r = cli("run", "--session", "w", "--store", str(SAMPLE), "--end", "2016-06-30", *W_ARGS, ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    path = ledger_path(tmp_path, "w")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        orders = conn.execute("SELECT id, symbol, side, qty, status, signal_time, created_at, reason FROM orders").fetchall()
        fills = conn.execute("SELECT order_id, qty, time, reason FROM fills ORDER BY rowid").fetchall()
        eq = conn.execute("SELECT time, cash, equity FROM equity ORDER BY time").fetchall()
    finally:
        conn.close()
    assert orders and {o[7] for o in orders} == {"rebalance"} and {o[4] for o in orders} == {"filled"}
    for oid, sym, side, qty, status, sig, created, _ in orders:
        assert created > sig  # decided on a close, traded at a later bar's open
        assert oid == f"w-{sym}-{sig[:10].replace('-', '')}T000000-1"
        assert qty == int(qty) > 0  # whole shares
    assert len(fills) == len(orders) and {f[3] for f in fills} == {"rebalance"}
    # sells before buys within a bar
    by_bar: dict[str, list[str]] = {}
    sides = {o[0]: o[2] for o in orders}
    for oid, _, t, _ in fills:
        by_bar.setdefault(t, []).append(sides[oid])
    assert any(len(set(v)) == 2 for v in by_bar.values())
    for v in by_bar.values():
        assert v == sorted(v, key=lambda s: s != "sell")
    assert min(c for _, c, _ in eq) >= 0  # leverage 1: buys never borrow
    doc = json.loads(cli("status", "w", "--format", "json", ledgers=tmp_path).stdout)
    assert doc["status"] == "stopped" and doc["positions"]
    t = cli("trades", "w", "--format", "json", "--rows", "1000", ledgers=tmp_path)
    reasons = {x["exit_reason"] for x in json.loads(t.stdout)["trades"]}
    assert reasons <= {"signal", "reverse", "open"} and "signal" in reasons
    listed = cli("sessions", ledgers=tmp_path).stdout.splitlines()  # the strategy path was cut at 15 characters
    assert listed[0].split() == ["session", "status", "strategy", "symbols", "equity", "return", "last", "bar"]
    assert listed[1].split()[:4] == ["w", "stopped", ROTATION, "4"]


def test_weights_kills_then_resume_equal_an_uninterrupted_run(tmp_path):
    run = ["run", "--store", str(SAMPLE), "--start", "2016-01-01", "--end", "2018-12-31", *W_ARGS]
    r = cli(*run, "--session", "k", ledgers=tmp_path / "ref")
    assert r.returncode == 0, r.stderr
    reference = read_tables(ledger_path(tmp_path / "ref", "k"))
    assert len(reference["fills"]) > 50
    rng = random.Random(7)
    path = ledger_path(tmp_path / "kill", "k")
    kills = 0
    for _ in range(100):
        p = popen(*run, "--session", "k", "--speed", "400", ledgers=tmp_path / "kill")
        if kills < 6:
            time.sleep(rng.uniform(0.3, 1.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=60)
            continue
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        break
    assert kills == 6
    got = read_tables(path)
    for table in ("orders", "fills", "positions", "equity"):
        assert got[table] == reference[table], table
    assert meta(path)["status"] == "stopped"


def _iso(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def test_weights_follow_equals_a_replay(tmp_path):
    store, led = tmp_path / "store", tmp_path / "ledgers"
    full = {s: sample_bars(s).head(140) for s in SYMS}
    for s in SYMS:
        write_store(store, s, full[s].head(100))
    start = str(full["AAPL"]["timestamp"][0].date())
    p = popen("run", "--session", "wf", "--follow", "--poll", "0.05", "--store", str(store), "--start", start,
              "--exit-after-idle", "60", *W_ARGS, ledgers=led)
    path = ledger_path(led, "wf")
    try:
        _wait(lambda: _last_bar(path) == _iso(full["AAPL"]["timestamp"][99]), 90, p)
        for end in range(101, 141, 3):  # one to three bars per landing, files rewritten one by one
            for s in SYMS:
                write_store(store, s, full[s].head(min(end, 140)))
            _wait(lambda: _last_bar(path) == _iso(full["AAPL"]["timestamp"][min(end, 140) - 1]), 60, p)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    got = read_tables(path)
    assert [f for f in got["fills"] if f[7] > _iso(full["AAPL"]["timestamp"][99])], "no rebalance on the new bars"
    r = cli("run", "--session", "wf", "--store", str(store), "--start", start, *W_ARGS, ledgers=tmp_path / "replay")
    assert r.returncode == 0, r.stderr
    want = read_tables(ledger_path(tmp_path / "replay", "wf"))
    for table in ("orders", "fills", "positions", "equity"):
        assert got[table] == want[table], table


def test_follow_skips_a_bad_new_row_until_its_file_is_fixed(tmp_path):
    """Only the new rows are read and checked: a new bar with high < low is not used (event
    data_gap naming it, nothing traded on it), and once the file is rewritten correctly the bar
    is used; the ledger then equals a replay of the good bars."""
    store, led = tmp_path / "store", tmp_path / "ledgers"
    syms = ("AAPL", "MSFT")
    full = {s: sample_bars(s).head(80) for s in syms}
    for s in syms:
        write_store(store, s, full[s].head(60))
    args = ["--symbols", ",".join(syms), "--strategy", "simple_ma", "--param", "fast=3", "--param", "slow=8", "-q"]
    start = str(full["AAPL"]["timestamp"][0].date())
    p = popen("run", "--session", "b", "--follow", "--poll", "0.05", "--store", str(store), "--start", start,
              "--exit-after-idle", "60", *args, ledgers=led)
    path = ledger_path(led, "b")
    try:
        _wait(lambda: _last_bar(path) == _iso(full["AAPL"]["timestamp"][59]), 90, p)
        bad = full["MSFT"].head(61).with_columns(
            pl.when(pl.int_range(pl.len()) == 60).then(pl.col("low") * 2).otherwise(pl.col("low")).alias("low"))
        write_store(store, "AAPL", full["AAPL"].head(61))
        write_store(store, "MSFT", bad)

        def gap_event():
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT message FROM events WHERE kind='data_gap'").fetchall()
            finally:
                conn.close()
        _wait(lambda: any("high below low" in m[0] and "MSFT" in m[0] for m in gap_event()), 30, p)
        time.sleep(0.3)
        assert _last_bar(path) == _iso(full["AAPL"]["timestamp"][59])  # MSFT's bar 60 is not complete
        for s in syms:
            write_store(store, s, full[s])
        _wait(lambda: _last_bar(path) == _iso(full["AAPL"]["timestamp"][79]), 60, p)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    got = read_tables(path)
    r = cli("run", "--session", "b", "--store", str(store), "--start", start, *args, ledgers=tmp_path / "replay")
    assert r.returncode == 0, r.stderr
    want = read_tables(ledger_path(tmp_path / "replay", "b"))
    for table in ("orders", "fills", "positions", "equity"):
        assert got[table] == want[table], table
    assert np.isclose(len(got["equity"]), 80)
