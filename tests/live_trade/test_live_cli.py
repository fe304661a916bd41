"""The live_trade command line: dry runs on the sample and on files, circuit breakers, lock, staleness."""
from __future__ import annotations

import json

import polars as pl

from conftest import ROOT, STRATEGY, bar_csv, cli, finish, meta, query, running, session_args, start, wait_for


def test_dry_run_on_the_sample_records_orders_and_sends_nothing(tmp_path):
    led = tmp_path / "led"
    r = cli("run", "--session", "demo", "--symbols", "AAPL,MSFT", "--replay", "--start", "2019-01-01",
            "--ledgers", led, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("note: no --account: a dry run (signals, risk checks and the ledger; nothing is sent)")
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and doc["status"] == "stopped" and doc["bars_processed"] == 259
    statuses = query(led / "live" / "demo.sqlite", "SELECT DISTINCT status FROM orders")
    assert statuses == [("dry_run",)]
    assert query(led / "live" / "demo.sqlite", "SELECT count(*) FROM fills") == [(0,)]
    ids = [i for (i,) in query(led / "live" / "demo.sqlite", "SELECT id FROM orders ORDER BY rowid")]
    assert ids[0] == "demo-MSFT-20190611T000000-1" and len(set(ids)) == len(ids)
    # entries are sized under the max order notional (1,000) at the signal bar's close
    closes = {(r["symbol"], r["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")): r["close"] for r in
              pl.concat([pl.read_parquet(ROOT / f"slices/sample/bars/1d/{s}.parquet").with_columns(pl.lit(s).alias("symbol"))
                         for s in ("AAPL", "MSFT")]).iter_rows(named=True)}
    buys = query(led / "live" / "demo.sqlite", "SELECT qty, symbol, signal_time FROM orders WHERE side='buy'")
    assert buys
    for q, sym, sig in buys:
        assert q == int(1000 / closes[(sym, sig)] + 1e-9)
    m = meta(led / "live" / "demo.sqlite")
    assert m["kind"] == "live" and m["schema_version"] == "1" and m["trading_state"] == "active"
    # running it again resumes after the last bar: nothing new
    r = cli("run", "--session", "demo", "--symbols", "AAPL,MSFT", "--replay", "--start", "2019-01-01", "--ledgers", led)
    assert r.returncode == 0 and "0 bar(s) processed" in r.stdout


def test_replay_with_an_account_needs_dry_run(tmp_path):
    r = cli("run", "--session", "x", "--account", "paper", "--symbols", "AAPL", "--replay", "--ledgers", tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: --replay replays stored bars; it needs --dry-run")


def test_daily_loss_limit_halts_the_session(tmp_path):
    data = bar_csv(tmp_path, [90.0] * 5 + [101.0, 101.0, 80.0, 99.0, 102.0])
    led = tmp_path / "led"
    r = cli("run", "--session", "dl", "--replay", "--data", data, "--strategy", STRATEGY, "--ledgers", led,
            "--max-order-notional", "100000", "--max-position-pct", "100", "--max-gross-pct", "100",
            "--max-daily-loss-pct", "5", "--max-atr-pct", "100", "--price-band-pct", "50")
    assert r.returncode == 0, r.stderr
    path = led / "live" / "dl.sqlite"
    assert meta(path)["trading_state"] == "halted" and meta(path)["status"] == "halted"
    (msg, level), = query(path, "SELECT message, level FROM events WHERE kind='halt'")
    assert level == "critical" and msg.startswith("trading state active -> halted: daily loss limit: equity")
    # one entry at 101 before the crash; the exit at 99 and the new entry at 102 are refused (halted)
    assert query(path, "SELECT side, status FROM orders") == [("buy", "dry_run")]
    blocks = [m for (m,) in query(path, "SELECT message FROM events WHERE kind='risk_block'")]
    assert len(blocks) == 1 and "trading halted" in blocks[0]


def test_atr_circuit_breaker_goes_reducing_and_blocks_entries(tmp_path):
    closes = [90.0, 92.0] * 10 + [101.0]  # ~2 % true range per bar
    data = bar_csv(tmp_path, closes)
    led = tmp_path / "led"
    r = cli("run", "--session", "atr", "--replay", "--data", data, "--strategy", STRATEGY, "--ledgers", led,
            "--max-atr-pct", "1", "--atr-window", "5", "--price-band-pct", "50")
    assert r.returncode == 0, r.stderr
    path = led / "live" / "atr.sqlite"
    assert meta(path)["trading_state"] == "reducing"
    (msg,), = query(path, "SELECT message FROM events WHERE kind='state'")
    assert msg.startswith("trading state active -> reducing: ATR circuit breaker: AAA ATR")
    (block,), = query(path, "SELECT message FROM events WHERE kind='risk_block'")
    assert "only orders that reduce a position" in block
    r = cli("run", "--session", "atr2", "--replay", "--data", data, "--strategy", STRATEGY, "--ledgers", led,
            "--max-atr-pct", "50", "--atr-window", "5", "--price-band-pct", "50")
    assert meta(led / "live" / "atr2.sqlite")["trading_state"] == "active"
    assert query(led / "live" / "atr2.sqlite", "SELECT status FROM orders") == [("dry_run",)]


def test_second_process_on_a_session_refuses_naming_the_pid(fake, store, tmp_path):
    led = tmp_path / "led" / "live" / "s1.sqlite"
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        r = cli(*session_args(fake, store, tmp_path / "led"))
        assert r.returncode == 2
        assert r.stderr.startswith(f"error: session s1 is already running (pid {p.pid};")
    finally:
        finish(p)


def test_stale_bars_stop_entries_until_bars_return(fake, store, tmp_path):
    led = tmp_path / "led" / "live" / "s1.sqlite"
    args = session_args(fake, store, tmp_path / "led")
    args[args.index("--stale-after") + 1] = "1"
    p = start(*args)
    try:
        (msg,), = wait_for(lambda: query(led, "SELECT message FROM events WHERE kind='data_gap' AND level='error'"),
                           what="stale event")
        assert msg.startswith("no new bar for") and "no new entries until bars return" in msg
        store.write([101.0])  # a bar returns: entries allowed again
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="entry after bars returned")
        assert query(led, "SELECT message FROM events WHERE kind='data_gap' AND level='info'") == [
            ("bars are back: entries allowed again",)]
    finally:
        finish(p)


def test_bad_input_in_a_dry_run_is_one_line_without_the_dry_run_note(tmp_path):
    r = cli("run", "--session", "x", "--symbols", "../../EVIL", "--replay", "--ledgers", tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --symbols: invalid symbol '../../EVIL'") and r.stderr.count("\n") == 1
