"""The weights (portfolio) form of contract 5 in live sessions, through the command line: target
quantities from equity and the last close, sells before buys, the rebalance threshold, idempotent
restarts, halts and dry runs; plus the settle wait that lets a fast exit see its entry's fill."""
from __future__ import annotations

import math
import signal
import time
from datetime import timedelta

from conftest import (STRATEGY, WEIGHTS, Store, bar_csv, cli, finish, query, running, session_args, start,
                      wait_for)

LIMITS = ["--max-order-notional", "100000", "--max-position-pct", "60", "--max-gross-pct", "100",
          "--max-atr-pct", "1000"]


def _ledger(tmp_path, name="w1"):
    return tmp_path / "led" / "live" / f"{name}.sqlite"


def _two_symbol_store(tmp_path):
    a = Store(tmp_path / "store", "AAA")
    b = Store(tmp_path / "store", "BBB", t0=a.t0)
    a.write([90.0] * 30)
    b.write([45.0] * 30)
    return a, b


def _weights_args(fake, a, tmp_path, session="w1", *extra):
    return ["run", "--session", session, "--account", "paper", "--symbols", "AAA,BBB", "--timeframe", "1m",
            "--strategy", WEIGHTS, "--param", "a=0.3", "--param", "b=0.2", "--store", a.root,
            "--ledgers", tmp_path / "led", "--base-url", fake.base_url, "--stream-url", fake.stream_url,
            "--data-url", fake.base_url, "--poll", "0.2", "--stale-after", "600", "--reconcile-every", "600",
            "--timeout", "2", *LIMITS, *extra]


def _orders(led):
    return query(led, "SELECT symbol, side, qty, status, reason FROM orders ORDER BY rowid")


# ----------------------------------------------------------------------------- against the fake Alpaca
def test_weights_orders_reach_the_targets_sells_first_and_nothing_when_at_target(fake, tmp_path):
    a, b = _two_symbol_store(tmp_path)
    fake.fill_price.update(AAA=101.0, BBB=50.0)
    led = _ledger(tmp_path)
    p = start(*_weights_args(fake, a, tmp_path))
    try:
        wait_for(lambda: running(led), what="session start")
        assert _orders(led) == []  # warm-up only: the stored bars are history
        a.write([101.0])
        b.write([50.0])
        # equity 100,000: AAA 0.3 x 100,000 / 101 -> 297 shares, BBB 0.2 x 100,000 / 50 -> 400
        wait_for(lambda: query(led, "SELECT symbol, qty FROM positions WHERE qty != 0 ORDER BY symbol")
                 == [("AAA", 297.0), ("BBB", 400.0)], what="positions at the targets")
        assert _orders(led) == [("AAA", "buy", 297.0, "filled", "rebalance"), ("BBB", "buy", 400.0, "filled", "rebalance")]
        ids = [i for (i,) in query(led, "SELECT id FROM orders ORDER BY rowid")]
        bar = (a.t0 + timedelta(minutes=30)).strftime("%Y%m%dT%H%M%S")  # the signal bar: the first new one
        assert ids == [f"w1-AAA-{bar}-1", f"w1-BBB-{bar}-1"]
        a.write([101.0])  # same prices: already at the targets, no order
        b.write([50.0])
        wait_for(lambda: query(led, "SELECT count(*) FROM equity")[0][0] >= 2, what="second bar")
        assert len(fake.posts) == 2
        fake.fill_price["AAA"] = 110.0  # AAA up: equity 50,003 + 297 x 110 + 400 x 50 = 102,673
        a.write([110.0])
        b.write([50.0])
        eq = 100_000 - 297 * 101 - 400 * 50 + 297 * 110 + 400 * 50
        want_a, want_b = math.trunc(0.3 * eq / 110), math.trunc(0.2 * eq / 50)
        assert (want_a, want_b) == (280, 410)
        wait_for(lambda: len(_orders(led)) == 4 and all(o[3] == "filled" for o in _orders(led)), what="rebalance")
        assert _orders(led)[2:] == [("AAA", "sell", 297.0 - want_a, "filled", "rebalance"),
                                    ("BBB", "buy", want_b - 400.0, "filled", "rebalance")]  # the sell first
        wait_for(lambda: query(led, "SELECT symbol, qty FROM positions WHERE qty != 0 ORDER BY symbol")
                 == [("AAA", want_a), ("BBB", want_b)], what="positions converge")
        assert {s: q for s, (q, _) in fake.positions.items()} == {"AAA": want_a, "BBB": want_b}
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert all(n == 1 for n in fake.posts.values())


def test_weights_restart_in_the_middle_of_a_bar_sends_nothing_twice(fake, tmp_path):
    a, b = _two_symbol_store(tmp_path)
    fake.fill_price.update(AAA=101.0, BBB=50.0)
    led = _ledger(tmp_path)
    fake.fault("POST", "/v2/orders", "hang_after_accept")  # AAA's order reaches Alpaca, the reply never comes
    p = start(*_weights_args(fake, a, tmp_path, "w1", "--timeout", "20"))
    try:
        wait_for(lambda: running(led), what="session start")
        a.write([101.0])
        b.write([50.0])
        assert fake.accepted.wait(20)
        wait_for(lambda: fake.positions.get("AAA"), what="AAA filled at the broker")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=10)
    assert query(led, "SELECT symbol, status FROM orders") == [("AAA", "new")]
    p = start(*_weights_args(fake, a, tmp_path))
    try:
        wait_for(lambda: query(led, "SELECT symbol, qty FROM positions WHERE qty != 0 ORDER BY symbol")
                 == [("AAA", 297.0), ("BBB", 400.0)], what="AAA found by client id, BBB placed")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    (aaa,), (bbb,) = query(led, "SELECT id FROM orders ORDER BY rowid")
    assert fake.posts == {aaa: 1, bbb: 1}  # the bar was processed again; AAA was not re-sent
    assert _orders(led) == [("AAA", "buy", 297.0, "filled", "rebalance"), ("BBB", "buy", 400.0, "filled", "rebalance")]


def test_weights_halted_session_places_nothing(fake, tmp_path):
    a, b = _two_symbol_store(tmp_path)
    led = _ledger(tmp_path)
    p = start(*_weights_args(fake, a, tmp_path))
    try:
        wait_for(lambda: running(led), what="session start")
        r = cli("halt", "w1", "--ledgers", tmp_path / "led")
        assert r.returncode == 0 and "halted" in r.stdout, r.stderr
        a.write([101.0])
        b.write([50.0])
        wait_for(lambda: len(query(led, "SELECT id FROM events WHERE kind='risk_block'")) == 2, what="risk blocks")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert fake.posts == {} and _orders(led) == []
    msgs = [m for (m,) in query(led, "SELECT message FROM events WHERE kind='risk_block' ORDER BY id")]
    assert [m.split(": ", 1)[1] for m in msgs] == [
        "buy 297 AAA: trading halted: only cancels are sent (resume to trade again)",
        "buy 400 BBB: trading halted: only cancels are sent (resume to trade again)"]


def test_weights_dry_run_sends_nothing_and_a_bar_waits_for_every_symbol_file(fake, tmp_path):
    """A dry run with an account records its orders and sends none. The data slice writes one file
    per symbol: a bar that has landed for AAA but not yet for BBB is not complete (BBB's bar at
    that time would otherwise never be traded)."""
    a, b = _two_symbol_store(tmp_path)
    led = _ledger(tmp_path)
    p = start(*_weights_args(fake, a, tmp_path, "w1", "--dry-run"))
    try:
        wait_for(lambda: running(led), what="session start")
        a.write([101.0])
        time.sleep(1.0)  # five polls see AAA's new bar alone
        assert _orders(led) == []
        b.write([50.0])
        wait_for(lambda: len(_orders(led)) == 2, what="both symbols' orders")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert _orders(led) == [("AAA", "buy", 297.0, "dry_run", "rebalance"), ("BBB", "buy", 400.0, "dry_run", "rebalance")]
    assert fake.posts == {} and not any(m == "POST" for m, _ in fake.requests)


# ----------------------------------------------------------------------------- replay dry runs: the arithmetic
def _replay(tmp_path, session, *extra):
    fa = bar_csv(tmp_path, [100.0] * 3 + [200.0] * 2, "AAA.csv")
    fb = bar_csv(tmp_path, [50.0] * 5, "BBB.csv")
    return cli("run", "--session", session, "--replay", "--data", fa, "--data", fb, "--strategy", WEIGHTS,
               "--param", "a=0.5", "--param", "b=0.25", "--ledgers", tmp_path / "led", *LIMITS, *extra)


def test_weights_replay_quantities_and_the_rebalance_threshold(tmp_path):
    r = _replay(tmp_path, "r1")
    assert r.returncode == 0, r.stderr
    rows = query(_ledger(tmp_path, "r1"), "SELECT symbol, side, qty, signal_time FROM orders ORDER BY rowid")
    # bar 0: equity 100,000 -> AAA 0.5 x 100,000 / 100 = 500, BBB 0.25 x 100,000 / 50 = 500; bars 1-2: at target;
    # bar 3: AAA doubles, equity 150,000 -> AAA 375 (sell 125 first), BBB 750 (buy 250); bar 4: at target
    assert [r[:3] for r in rows] == [("AAA", "buy", 500.0), ("BBB", "buy", 500.0), ("AAA", "sell", 125.0),
                                     ("BBB", "buy", 250.0)]
    assert rows[2][3] == rows[3][3] == "2024-03-04T14:33:00.000000Z"
    # a threshold of 20 % of equity skips bar 3's trades (25,000 and 12,500 of 150,000)
    r = _replay(tmp_path, "r2", "--rebalance-threshold", "0.2")
    assert r.returncode == 0, r.stderr
    assert [x[:3] for x in query(_ledger(tmp_path, "r2"), "SELECT symbol, side, qty FROM orders ORDER BY rowid")] == [
        ("AAA", "buy", 500.0), ("BBB", "buy", 500.0)]


def test_weights_replay_fractional_and_long_only(tmp_path):
    fa = bar_csv(tmp_path, [30.0] * 3, "AAA.csv")
    fb = bar_csv(tmp_path, [70.0] * 3, "BBB.csv")
    r = cli("run", "--session", "f1", "--replay", "--data", fa, "--data", fb, "--strategy", WEIGHTS, "--param", "a=0.1",
            "--param", "b=-0.2", "--fractional", "--ledgers", tmp_path / "led", *LIMITS)
    assert r.returncode == 0, r.stderr
    assert "warning: " + WEIGHTS + ": 3 negative weight(s) set to 0 (long-only; --allow-short to short)" in r.stderr
    rows = query(_ledger(tmp_path, "f1"), "SELECT symbol, side, qty FROM orders ORDER BY rowid")
    assert rows == [("AAA", "buy", math.trunc(0.1 * 100_000 / 30 * 1e6) / 1e6)]  # 333.333333 shares


def test_weights_options_of_the_other_form_and_bad_rows_are_one_line_errors(tmp_path):
    data = bar_csv(tmp_path, [100.0] * 5)
    for extra in (["--leverage", "2"], ["--rebalance-threshold", "0.1"], ["--fractional"]):
        r = cli("run", "--session", "x", "--replay", "--data", data, "--strategy", STRATEGY, "--ledgers", tmp_path / "led",
                *extra)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr == f"error: {extra[0]} applies to weights (portfolio) strategies only; {STRATEGY} is a targets " \
                           "strategy\n"
    r = cli("run", "--session", "x", "--replay", "--data", data, "--strategy", WEIGHTS, "--param", "a=1.5",
            "--ledgers", tmp_path / "led")
    assert r.returncode == 2 and r.stderr == (f"error: {WEIGHTS}: weights row 0 (2024-03-04T14:30:00Z): sum of |weights| "
                                              "1.5 exceeds 1 (--leverage L allows up to L)\n")
    r = cli("run", "--session", "x", "--replay", "--data", data, "--strategy", WEIGHTS, "--leverage", "0.5",
            "--ledgers", tmp_path / "led")
    assert r.returncode == 2 and r.stderr == "error: --leverage must be >= 1 (got 0.5)\n"
    assert not (tmp_path / "led" / "live" / "x.sqlite").exists()


# ----------------------------------------------------------------------------- the settle wait (signal form)
def test_a_fast_exit_waits_for_the_entry_fill_and_closes_it(fake, store, tmp_path):
    """Two bars land at once (entry, then exit) while fills take a second: before the settle wait
    the exit saw no position yet and sent nothing, leaving the entry open at the broker."""
    led = tmp_path / "led" / "live" / "s1.sqlite"
    fake.fill_delay = 1.0
    p = start(*session_args(fake, store, tmp_path / "led", "s1"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0, 99.0])
        wait_for(lambda: query(led, "SELECT side, qty, status FROM orders ORDER BY rowid")
                 == [("buy", 9.0, "filled"), ("sell", 9.0, "filled")], what="entry and exit filled")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert fake.positions == {}
    assert query(led, "SELECT qty FROM positions") == [(0.0,)]


def test_dry_run_status_says_positions_are_intended_and_never_prints_minus_zero(tmp_path):
    """The README's first example: held vs intended positions are told apart; a drawdown that
    rounds to zero prints 0.00% (it printed -0.00%)."""
    r = cli("run", "--session", "demo", "--symbols", "AAPL,MSFT", "--replay", "--start", "2019-01-01",
            "--ledgers", tmp_path / "led")
    assert r.returncode == 0, r.stderr
    assert "positions     0 held, 2 intended (dry run)   open orders 0" in r.stdout
    assert "drawdown 0.00%" in r.stdout and "-0.00%" not in r.stdout
    r = cli("report", "demo", "--ledgers", tmp_path / "led", "--no-html")
    assert r.returncode == 0 and "-0.00%" not in r.stdout and "return 0.00%" in r.stdout, r.stdout
