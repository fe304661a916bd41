"""TWAP/VWAP child orders, the latest-trade price band, the Alpaca bar stream, the HTML report,
--no-adjust and the extended-hours opt-in: against the fake Alpaca through the command line."""
from __future__ import annotations

import json
import re
import signal
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, STRATEGY, bar_csv, cli, finish, meta, query, running, session_args, start, wait_for
from slices.live_trade.execution import parse_execution, split, vwap_weights

US = 1_000_000


def _ledger(tmp_path, name="s1"):
    return tmp_path / "led" / "live" / f"{name}.sqlite"


# ----------------------------------------------------------------------------- units
def test_parse_execution():
    assert parse_execution(None) is None and parse_execution("market") is None
    assert parse_execution("twap:10m") == ("twap", 600.0, 5)
    assert parse_execution("VWAP:30s:3") == ("vwap", 30.0, 3)
    for bad in ("twap", "twap:10", "twap:0s", "twap:7h", "twap:10m:1", "twap:10m:101", "iceberg:10m"):
        with pytest.raises(ValueError, match="--execution"):
            parse_execution(bad)


def test_split_whole_shares_sum_to_the_parent():
    assert split(9, [1, 1, 1]) == [3.0, 3.0, 3.0]
    assert split(10, [1, 1, 1]) == [4.0, 3.0, 3.0]  # the remainder to the earliest child
    assert split(10, [1, 2, 7]) == [1.0, 2.0, 7.0]
    assert split(7, [0, 0]) == [4.0, 3.0]  # no weight: equal
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, q = int(rng.integers(2, 20)), float(rng.integers(1, 5000))
        out = split(q, rng.random(n))
        assert sum(out) == q and all(x >= 0 and x == int(x) for x in out)


def test_vwap_weights_are_the_mean_volume_of_the_same_clock_slots_on_previous_days():
    start = int(np.datetime64("2024-03-08T15:00:00", "us").astype(np.int64))
    times, vols = [], []
    for d, scale in ((1, 1.0), (2, 3.0)):  # two previous days with bars in the window's clock times
        for minute in range(10):  # 15:00..15:09, volume rising within the window
            times.append(start - d * 86_400 * US + minute * 60 * US)
            vols.append(scale * (minute + 1))
    times.append(start - 5 * 86_400 * US - 3600 * US)  # another day, outside the window's clock times
    vols.append(1e9)
    order = np.argsort(times)
    w, days = vwap_weights(np.array(times)[order], np.array(vols)[order], start, 120.0, 5)
    assert days == 2
    # slot k holds minutes 2k, 2k+1: volumes (2k+1) + (2k+2), times (1 + 3) / 2 days
    assert w.tolist() == pytest.approx([(4 * k + 3) * 2.0 for k in range(5)])
    w, days = vwap_weights(np.array([start - 3 * 3600 * US]), np.array([5.0]), start, 120.0, 5)
    assert days == 0 and w.tolist() == pytest.approx([0.2] * 5)  # no profile: equal weights


# ----------------------------------------------------------------------------- TWAP against the fake
def test_twap_children_each_sent_once_with_their_own_ids_and_linked_to_the_parent(fake, store, tmp_path):
    led = _ledger(tmp_path)
    p = start(*session_args(fake, store, tmp_path / "led", "s1", "--execution", "twap:2s:3"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])  # entry: 9 shares (1,000 / 101) as 3 children of 3, 2/3 s apart
        wait_for(lambda: query(led, "SELECT status FROM orders WHERE parent_id IS NULL") == [("filled",)],
                 what="parent filled")
        (pid, pqty, pfilled, pavg, broker, note), = query(
            led, "SELECT id, qty, filled_qty, avg_fill_price, broker_id, note FROM orders WHERE parent_id IS NULL")
        assert (pqty, pfilled, pavg, broker) == (9.0, 9.0, 101.0, None)
        assert note.startswith("twap 2 s: 3 child orders")
        kids = query(led, "SELECT id, qty, status, parent_id, created_at FROM orders WHERE parent_id IS NOT NULL "
                          "ORDER BY rowid")
        assert [k[0] for k in kids] == [f"{pid}-c1", f"{pid}-c2", f"{pid}-c3"]
        assert all(k[1] == 3.0 and k[2] == "filled" and k[3] == pid for k in kids)
        created = [datetime.fromisoformat(k[4].replace("Z", "+00:00")) for k in kids]
        # worked over the window: child k is not sent before the start + k x 2/3 s (a stalled process may then
        # send two due children back to back, keeping to the schedule)
        assert all(c - created[0] >= timedelta(seconds=k * 2 / 3 - 0.1) for k, c in enumerate(created))
        assert fake.posts == {k[0]: 1 for k in kids} and pid not in fake.posts  # the parent is never sent
        assert all(len(k[0]) <= 128 for k in kids)
        assert query(led, "SELECT qty FROM positions") == [(9.0,)] and fake.positions["AAA"][0] == 9.0
        store.write([99.0])  # the exit is worked the same way
        wait_for(lambda: query(led, "SELECT qty FROM positions") == [(0.0,)], what="exit children filled")
        assert len(fake.posts) == 6 and set(fake.posts.values()) == {1}
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


def test_killed_mid_schedule_resumes_without_doubling_a_child(fake, store, tmp_path):
    led = _ledger(tmp_path)
    args = session_args(fake, store, tmp_path / "led", "s1", "--execution", "twap:4s:2")
    p = start(*args)
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        wait_for(lambda: any(o["status"] == "filled" for o in fake.orders.values()), what="first child filled")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=10)
    assert len(fake.orders) == 1  # killed before the second child was due
    p = start(*args)
    try:
        wait_for(lambda: query(led, "SELECT status FROM orders WHERE parent_id IS NULL") == [("filled",)],
                 what="schedule resumed after the restart")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    (pid,), = query(led, "SELECT id FROM orders WHERE parent_id IS NULL")
    assert fake.posts == {f"{pid}-c1": 1, f"{pid}-c2": 1}  # each child sent exactly once
    assert query(led, "SELECT sum(qty) FROM fills") == [(9.0,)] and fake.positions["AAA"][0] == 9.0


def test_risk_checks_apply_to_every_child(tmp_path):
    """Replay dry run: the children are placed at once; the order-rate limit refuses the third."""
    data = bar_csv(tmp_path, [90.0] * 5 + [101.0])
    led = tmp_path / "led"
    r = cli("run", "--session", "tw", "--replay", "--data", data, "--strategy", STRATEGY, "--ledgers", led,
            "--execution", "vwap:1m:3", "--max-orders-per-minute", "2", "--max-atr-pct", "100")
    assert r.returncode == 0, r.stderr
    path = led / "live" / "tw.sqlite"
    rows = query(path, "SELECT id, qty, status, parent_id, note FROM orders ORDER BY rowid")
    pid = rows[0][0]
    assert rows[0][1:4] == (9.0, "dry_run", None) and "no volume profile" in rows[0][4] and "child 3 refused" in rows[0][4]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [(f"{pid}-c1", 3.0, pid), (f"{pid}-c2", 3.0, pid)]
    (msg,), = query(path, "SELECT message FROM events WHERE kind='risk_block'")
    assert msg.startswith(f"{pid}-c3: buy 3 AAA: order rate limit")


# ----------------------------------------------------------------------------- price band, bars, extended hours
def test_price_band_uses_the_latest_trade_and_falls_back_to_the_bar_close(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.last_trade["AAA"] = 150.0  # the market is far from the bar close the order is sized on
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        (msg,), = wait_for(lambda: query(led, "SELECT message FROM events WHERE kind='risk_block'"), what="block")
        assert "price band: 101 is 32.67% from the last trade 150 (max 5.00%) (Alpaca latest trade)" in msg
        assert fake.orders == {}
        fake.fault("GET", "/v2/stocks/trades/latest", 403)  # market data refused: the band uses the bar close
        store.write([99.0, 102.0])
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="entry on the fallback")
        (md,), = query(led, "SELECT message FROM events WHERE kind='market_data'")
        assert md.startswith("AAA: latest trade unavailable (HTTP 403") and "uses the last bar close" in md
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


def test_bars_from_the_alpaca_data_stream_drive_the_session(fake, store, tmp_path):
    led = _ledger(tmp_path)
    p = start(*session_args(fake, store, tmp_path / "led", "s1", "--bars", "alpaca",
                            "--data-stream-url", fake.data_stream_url))
    try:
        wait_for(lambda: running(led) and fake.data_clients, what="bar stream subscribed")
        assert fake.subscribed == {"bars": ["AAA"]}
        t = store.t0 + timedelta(minutes=len(store.closes))  # the minute after the stored history
        assert fake.push_bar("AAA", t, 100.0, 101.5, 99.5, 101.0, 5000.0) == 1
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="entry on a streamed bar")
        assert meta(led)["last_bar_time"] == t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        (sig,), = query(led, "SELECT signal_time FROM orders")
        assert sig == meta(led)["last_bar_time"]
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


def test_extended_hours_opt_in_sends_day_limit_orders_while_the_market_is_closed(fake, store, tmp_path):
    strat = tmp_path / "ext.py"
    strat.write_text(open(STRATEGY).read() + "\nEXTENDED_HOURS = True\n")
    fake.market_open = False
    fake.clock_time = datetime(2024, 3, 5, 22, 0, tzinfo=timezone.utc)  # 17:00 New York: extended hours
    led = _ledger(tmp_path)
    args = session_args(fake, store, tmp_path / "led")
    args[args.index(STRATEGY)] = str(strat)
    p = start(*args)
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        wait_for(lambda: fake.orders, what="order at the broker")
        o, = fake.orders.values()
        assert (o["type"], float(o["limit_price"]), o["extended_hours"], o["time_in_force"]) == ("limit", 101.0, True, "day")
        assert query(led, "SELECT type, limit_price FROM orders") == [("limit", 101.0)]
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


# ----------------------------------------------------------------------------- report, --no-adjust
def test_no_adjust_sizes_on_the_raw_close(tmp_path):
    data = bar_csv(tmp_path, [30.0] * 5 + [100.0], adj=0.5)  # adjusted closes are half the raw ones
    led = tmp_path / "led"
    qty = {}
    for name, extra in (("adj", []), ("raw", ["--no-adjust"])):
        r = cli("run", "--session", name, "--replay", "--data", data, "--strategy", STRATEGY, "--param", "level=40",
                "--ledgers", led, "--max-atr-pct", "100", *extra)
        assert r.returncode == 0, r.stderr
        qty[name] = query(led / "live" / f"{name}.sqlite", "SELECT qty, limit_price FROM orders")
        assert json.loads(meta(led / "live" / f"{name}.sqlite")["settings"])["adjust"] is (name == "adj")
    assert qty == {"adj": [(20.0, None)], "raw": [(10.0, None)]}  # 1,000 / 50 and 1,000 / 100


def test_report_writes_an_offline_html_page_and_the_digest(tmp_path):
    led = tmp_path / "led"
    r = cli("run", "--session", "demo", "--symbols", "AAPL,MSFT", "--replay", "--start", "2019-06-01", "--ledgers", led)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "r.html"
    r = cli("report", "demo", "--ledgers", led, "--out", out, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"report written to {out}"
    page = out.read_text()
    found = {k: k in page for k in ("<title>demo: simple_ma live session (dry run)</title>", "Plotly",
                                     "Equity and drawdown", "Open positions")}
    assert all(found.values()), found
    # offline: no tag loads anything (plotly.js is inlined; its own code mentions plotly.com in a link it builds)
    assert re.findall(r"<(?:script|link|img|iframe)[^>]*(?:src|href)=[\"']?https?:", page) == []
    fig = json.loads(page.split("var EQUITY_FIG=", 1)[1].split(";\nvar PRICE_DATA=", 1)[0].replace("<\\/", "</"))
    bench = fig["data"][1]["y"]  # the buy-and-hold line, filled from the session's bars
    (n_rows, first_time), = query(led / "live" / "demo.sqlite", "SELECT count(*), min(time) FROM equity")
    first = datetime.fromisoformat(first_time.replace("Z", "+00:00"))
    rel = [pl.read_parquet(ROOT / f"slices/sample/bars/1d/{s}.parquet").filter(pl.col("timestamp") >= first)["close"]
           for s in ("AAPL", "MSFT")]
    assert len(bench) == n_rows and bench[0] == 100_000.0
    assert bench[-1] == pytest.approx(100_000 * np.mean([c[-1] / c[0] for c in rel]), abs=0.01)
    d = json.loads(r.stdout)
    assert d["day"] == "2020-01-10" and {"fills", "pnl", "exposure", "events"} <= set(d)
    r = cli("report", "demo", "--ledgers", led, "--no-html")
    assert r.returncode == 0 and r.stdout.startswith("Session demo  day 2020-01-10") and "report written" not in r.stderr
    assert not (ROOT / "runs" / "live-demo").exists()
