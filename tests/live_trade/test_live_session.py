"""The live session against the fake Alpaca on loopback, through the command line and the real alpaca-py."""
from __future__ import annotations

import json
import os
import signal

from conftest import (KEY_ID, SECRET, cli, finish, meta, query, running, session_args, start, wait_for)


def _ledger(tmp_path, name="s1"):
    return tmp_path / "led" / "live" / f"{name}.sqlite"


def test_fills_and_partial_fills_from_the_stream_land_in_the_ledger(fake, store, tmp_path):
    fake.fill_mode = "partial"
    fake.fill_delay = 0.6  # the stream and the REST catch-up both see the partial fill first
    led = _ledger(tmp_path)
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])  # close above the level: target long
        fills = wait_for(lambda: (r := query(led, "SELECT qty, price FROM fills ORDER BY rowid")) and len(r) == 2 and r,
                         what="two fills")
        assert [q for q, _ in fills] == [4.0, 5.0]  # 1,000 max notional / 101 = 9 shares, filled 4 then 5
        assert all(px == 101.0 for _, px in fills)
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="order filled")
        assert query(led, "SELECT qty, avg_price FROM positions") == [(9.0, 101.0)]
        assert fake.positions["AAA"][0] == 9.0  # ledger position matches the broker
        oid = query(led, "SELECT id FROM orders")[0][0]
        assert oid.startswith("s1-AAA-") and oid.endswith("-1") and fake.posts == {oid: 1}
        store.write([99.0])  # below the level: exit
        wait_for(lambda: query(led, "SELECT qty FROM positions") == [(0.0,)], what="position closed")
        assert "AAA" not in fake.positions
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert meta(led)["status"] == "stopped"


def test_killed_after_sending_the_order_is_not_resent_on_restart(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.fault("POST", "/v2/orders", "hang_after_accept")  # the broker takes the order, the reply never comes
    p = start(*session_args(fake, store, tmp_path / "led", "s1", "--timeout", "20"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        assert fake.accepted.wait(20)
        wait_for(lambda: fake.orders and list(fake.orders.values())[0]["status"] == "filled", what="fill at broker")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=10)
    (oid,), = query(led, "SELECT id FROM orders")
    assert query(led, "SELECT status, broker_id FROM orders") == [("new", None)]  # the reply never arrived
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="order found by client id")
        wait_for(lambda: running(led), what="restart")
        assert query(led, "SELECT qty, price FROM fills") == [(9.0, 101.0)]
        assert query(led, "SELECT qty FROM positions") == [(9.0,)]
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert fake.posts == {oid: 1}  # sent exactly once
    assert len(fake.orders) == 1


def test_broker_state_changed_while_down_refuses_start_unless_adopt(fake, store, tmp_path):
    led = _ledger(tmp_path)
    p = start(*session_args(fake, store, tmp_path / "led"))
    wait_for(lambda: running(led), what="session start")
    finish(p)
    fake.set_position("AAA", 5.0, 95.0)  # a manual trade at the broker while the session is down
    r = cli(*session_args(fake, store, tmp_path / "led", "s1", "--exit-after-idle", "0.5"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: session s1: broker and ledger differ: AAA: broker "
                                                        "position 5, ledger 0")
    assert "Traceback" not in r.stderr
    r = cli(*session_args(fake, store, tmp_path / "led", "s1", "--exit-after-idle", "0.5", "--adopt"))
    assert r.returncode == 0, r.stderr
    assert query(led, "SELECT qty, avg_price FROM positions") == [(5.0, 95.0)]
    assert query(led, "SELECT level FROM events WHERE kind='reconcile' AND message LIKE 'adopted%'") == [("warning",)]


def test_transient_errors_are_retried_and_rejections_recorded_not_retried(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.fault("POST", "/v2/orders", 429)
    fake.fault("POST", "/v2/orders", 500)
    fake.fault("GET", "/v2/account", "timeout")
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], timeout=30, what="fill after retries")
        (oid,), = query(led, "SELECT id FROM orders")
        # 429, 500, then accepted: three POSTs, each retry after a look-up by client id
        posts = [r for r in fake.requests if r[0] == "POST" or "by_client_order_id" in r[1]]
        assert posts == [("GET", "/v2/orders:by_client_order_id"), ("POST", "/v2/orders")] * 3 + posts[6:]
        assert fake.posts[oid] == 1 and len(fake.orders) == 1
        fake.fault("POST", "/v2/orders", 403)
        store.write([99.0])  # exit: refused with 403
        wait_for(lambda: query(led, "SELECT count(*) FROM orders WHERE status='rejected'") == [(1,)], what="rejection")
        (rid, note), = query(led, "SELECT id, note FROM orders WHERE status='rejected'")
        assert note == "insufficient buying power" and rid not in fake.posts
        assert sum(r == ("POST", "/v2/orders") for r in fake.requests) == 4  # the 403 was never retried
        assert query(led, "SELECT level FROM events WHERE kind='reject'") == [("error",)]
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


def test_dropped_websocket_reconnects_and_missed_fills_are_caught_up(fake, store, tmp_path):
    led = _ledger(tmp_path)
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led) and fake.clients, what="stream connected")
        fake.drop_streams()
        store.write([101.0])  # the fill happens while the stream is down
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("filled",)], what="fill caught up")
        wait_for(lambda: fake.clients, timeout=20, what="stream reconnected")
        store.write([99.0])
        wait_for(lambda: query(led, "SELECT count(*) FROM fills") == [(2,)], what="second fill")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err
    assert query(led, "SELECT qty FROM positions") == [(0.0,)]


def test_halt_command_takes_effect_in_the_running_session(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.fill_mode = "none"  # the entry stays open
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("accepted",)], what="order working")
        r = cli("halt", "s1", "--ledgers", tmp_path / "led", "--wait", "1")
        assert r.returncode == 0 and "halted (pid" in r.stdout, r.stdout + r.stderr
        assert meta(led)["trading_state"] == "halted"
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("canceled",)], what="open order canceled")
        assert list(fake.orders.values())[0]["status"] == "canceled"
        store.write([99.0, 102.0])  # signals while halted: nothing is sent
        wait_for(lambda: json.loads(meta(led)["engine_state"])["last_time"] and
                 query(led, "SELECT count(*) FROM events WHERE kind='risk_block'") == [(1,)], what="blocked entry")
        assert len(fake.orders) == 1
        r = cli("resume", "s1", "--ledgers", tmp_path / "led", "--wait", "1")
        assert r.returncode == 0 and "resumed (pid" in r.stdout, r.stdout + r.stderr
        (tmp_path / "led" / "live" / "HALT").write_text("")  # the folder-wide kill switch
        wait_for(lambda: meta(led)["trading_state"] == "halted", timeout=1.5, what="HALT file within a second")
    finally:
        rc, out, err = finish(p)
    assert rc == 0, err


def test_market_closed_blocks_orders(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.market_open = False
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        (msg,), = wait_for(lambda: query(led, "SELECT message FROM events WHERE kind='risk_block'"), what="block")
        assert "market closed" in msg
        assert fake.orders == {}
    finally:
        finish(p)


def test_keys_never_printed_logged_or_written(fake, store, tmp_path):
    led = _ledger(tmp_path)
    fake.fault("POST", "/v2/orders", 403)
    p = start(*session_args(fake, store, tmp_path / "led"))
    try:
        wait_for(lambda: running(led), what="session start")
        store.write([101.0])
        wait_for(lambda: query(led, "SELECT status FROM orders") == [("rejected",)], what="rejection")
    finally:
        rc, out, err = finish(p)
    texts = [out, err]
    for cmd in (["status", "s1"], ["orders", "s1"], ["events", "s1", "-f", "json"],
                ["report", "s1", "--out", tmp_path / "report.html"]):
        r = cli(*cmd, "--ledgers", tmp_path / "led")
        texts += [r.stdout, r.stderr]
    r = cli("check-keys", "--base-url", fake.base_url)
    texts += [r.stdout, r.stderr]
    for f in [*(tmp_path / "led" / "live").iterdir(), tmp_path / "report.html"]:
        texts.append(f.read_bytes().decode("latin-1"))
    for t in texts:
        assert KEY_ID not in t and SECRET not in t


def test_check_keys_one_line(fake):
    r = cli("check-keys", "--base-url", fake.base_url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("paper account PA1TESTACCT: ACTIVE, equity 100,000.00, buying power 200,000.00, "
                        "trading allowed\n")
    fake.trading_blocked = True
    r = cli("check-keys", "--base-url", fake.base_url)
    assert r.returncode == 1 and "trading BLOCKED" in r.stdout


def test_missing_keys_name_the_variables(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    for args in (["check-keys"], ["run", "--session", "x", "--account", "paper", "--symbols", "AAPL",
                                  "--ledgers", tmp_path]):
        r = cli(*args, env=env)
        assert r.returncode == 2
        assert r.stderr.startswith("error: APCA_API_KEY_ID and APCA_API_SECRET_KEY not set") and r.stderr.count("\n") == 1


def test_live_account_refuses_without_confirm_live(fake, store, tmp_path):
    args = session_args(fake, store, tmp_path / "led")
    args[args.index("paper")] = "live"
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr == ("error: --account live trades real money on Alpaca account PA1TESTACCT: add --confirm-live "
                        "to proceed\n")
    assert fake.orders == {} and not (tmp_path / "led" / "live" / "s1.sqlite").exists()
