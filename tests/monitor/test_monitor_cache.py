"""The server's caches: answers are reused while nothing they show changed, and a commit to a
ledger (new equity row, status change) or an acknowledgement is visible on the very next request,
whatever the TTL (README, "JSON API": caching)."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from slices.monitor import ledgers as L
from slices.monitor.web import ResponseCache, create_app

from mon_helpers import NOW, append_equity, make_ledger, make_monitor

LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}
HOUR = 3600.0


def settle(root):
    """Date every ledger file 10 s back, as if the last commit was a while ago (a file changed
    within ledgers.RACY_NS is never cached)."""
    old = time.time() - 10
    for p in [*root.rglob("*.sqlite*"), *root.iterdir()]:
        os.utime(p, (old, old))


@pytest.fixture
def mon(tmp_path, ledgers):
    settle(ledgers)
    return make_monitor(tmp_path, ledgers)


@pytest.fixture
def client(mon):
    with TestClient(create_app(mon, hosts=LOCAL, cache_ttl=HOUR), base_url="http://127.0.0.1") as c:
        yield c


def tick(mon, seconds=5.0):
    mon._test_clock["now"] += timedelta(seconds=seconds)


def session(client, sid="paper/ok"):
    return {s["id"]: s for s in client.get("/api/sessions").json()["sessions"]}[sid]


def set_meta(path, key, value):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.execute("COMMIT")
    conn.close()


def test_answers_are_reused_while_nothing_changed(client, mon):
    client.get("/api/sessions")  # the first read of a closed ledger leaves an empty -wal and -shm: a folder change
    first = client.get("/api/sessions").json()
    detail = client.get("/api/sessions/paper/ok").json()
    tick(mon)  # the clock moves but no ledger changes: within the TTL the same answers come back
    assert client.get("/api/sessions").json() == first
    assert client.get("/api/sessions/paper/ok").json() == detail
    with TestClient(create_app(mon, hosts=LOCAL, cache_ttl=0), base_url="http://127.0.0.1") as c:
        assert c.get("/api/sessions").json()["time"] != first["time"]  # TTL 0: computed every time


def test_new_equity_row_is_visible_on_the_next_request(client, mon, ledgers):
    assert session(client)["equity"] == 100_500.0
    assert client.get("/api/sessions/paper/ok/equity").json()["rows"] == 3
    assert client.get("/api/sessions/paper/ok").json()["session"]["equity"] == 100_500.0
    metrics = client.get("/metrics").text
    append_equity(ledgers / "paper" / "ok.sqlite", NOW, 102_000.0, heartbeat=NOW)
    assert session(client)["equity"] == 102_000.0
    eq = client.get("/api/sessions/paper/ok/equity").json()
    assert eq["rows"] == 4 and eq["points"][-1]["equity"] == 102_000.0
    assert client.get("/api/sessions/paper/ok").json()["session"]["equity"] == 102_000.0
    assert "102000.0" in client.get("/metrics").text and "102000.0" not in metrics
    assert "102,000.00" in client.get("/fragments/sessions").text


def test_status_change_is_visible_on_the_next_request(client, ledgers):
    def status_gauge(text):
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if (s.name == "gpt_trader_session_status" and s.labels.get("session") == "ok"
                        and s.labels["state"] == "failed"):
                    return s.value

    assert session(client)["status"] == "running" and status_gauge(client.get("/metrics").text) == 0.0
    assert client.get("/api/sessions/paper/ok").json()["session"]["status"] == "running"
    set_meta(ledgers / "paper" / "ok.sqlite", "status", "failed")
    assert session(client)["status"] == "failed"
    assert client.get("/api/sessions/paper/ok").json()["session"]["status"] == "failed"
    assert status_gauge(client.get("/metrics").text) == 1.0
    assert "failed" in client.get("/fragments/sessions/paper/ok").text


def test_new_and_removed_sessions_are_visible_on_the_next_request(client, ledgers):
    ids = {s["id"] for s in client.get("/api/sessions").json()["sessions"]}
    for p in (ledgers / "paper").glob("stopped.sqlite*"):
        p.unlink()
    assert {s["id"] for s in client.get("/api/sessions").json()["sessions"]} == ids - {"paper/stopped"}
    assert client.get("/api/sessions/paper/stopped").status_code == 404


def test_acknowledgement_is_visible_on_the_next_request(client):
    halted = session(client, "paper/halted")
    assert halted["critical_unacked"] == 1
    event_id = client.get("/api/alerts").json()["critical_unacked"][0]["id"]
    assert client.post(f"/api/sessions/paper/halted/events/{event_id}/ack", json={}).status_code == 200
    assert session(client, "paper/halted")["critical_unacked"] == 0
    assert client.get("/api/sessions/paper/halted").json()["session"]["critical_unacked"] == 0
    assert client.get("/api/alerts").json()["critical_unacked"] == []


def test_a_ledger_changed_just_now_is_not_cached(tmp_path, ledgers, monkeypatch):
    """Two commits within the file system's timestamp granularity could leave the same
    (mtime, size, inode): a summary read that close to a change is read again next time."""
    ref = L.find(ledgers, "paper", "ok")
    old = time.time_ns() - 10 * L.RACY_NS
    frozen = {"now": L.signature(ref.path)}
    monkeypatch.setattr(L, "signature", lambda path: frozen["now"])  # the token stops changing

    frozen["now"] = ((time.time_ns(), 1, 1), None)  # changed just now
    cache = L.SummaryCache(ledgers)
    assert cache.summary(ref)["status"] == "running"
    set_meta(ref.path, "status", "halted")
    assert cache.summary(ref)["status"] == "halted"  # not cached: the same token is not trusted

    frozen["now"] = ((old, 1, 1), None)  # settled: now the summary is kept under the token
    assert cache.summary(ref)["status"] == "halted"
    set_meta(ref.path, "status", "stopped")
    assert cache.summary(ref)["status"] == "halted"  # (the token really is what decides)


def test_settled_and_tokens():
    now = time.time_ns()
    assert L.settled(((now - 2 * L.RACY_NS, 10, 1), None), now)
    assert not L.settled(((now - 2 * L.RACY_NS, 10, 1), (now - L.RACY_NS // 2, 5, 2)), now)


def test_session_token_says_whether_the_ledger_settled(mon, ledgers):
    """An equity answer is kept whatever the TTL; one computed within RACY_NS of a commit is kept
    only until the token says the ledger settled (then it is computed again)."""
    assert mon.change_token("paper", "ok")[-1] is True
    append_equity(ledgers / "paper" / "ok.sqlite", NOW, 1.0)
    assert mon.change_token("paper", "ok")[-1] is False
    settle(ledgers)
    assert mon.change_token("paper", "ok")[-1] is True
    assert mon.change_token("paper", "../x")[0] is None


def test_root_token_changes_with_every_commit(ledgers):
    settle(ledgers)
    before = L.root_token(ledgers)
    assert before == L.root_token(ledgers)
    append_equity(ledgers / "live" / "hostile.sqlite", NOW, 1.0)
    after = L.root_token(ledgers)
    assert after != before
    settle(ledgers)
    reader = sqlite3.connect(ledgers / "paper" / "ok.sqlite", isolation_level=None)  # stays open: the WAL stays
    reader.execute("SELECT count(*) FROM equity").fetchone()
    before = L.root_token(ledgers)
    append_equity(ledgers / "paper" / "ok.sqlite", NOW, 2.0)
    assert L.root_token(ledgers) != before  # a commit into an existing WAL
    reader.close()
    settle(ledgers)
    before = L.root_token(ledgers)
    make_ledger(ledgers, "new")
    assert L.root_token(ledgers) != before  # a new session
    ok = L.signature(ledgers / "paper" / "ok.sqlite")
    assert ok == L.signature(ledgers / "paper" / "ok.sqlite")


async def asgi_get(app, path):
    """The body of a GET ``path`` sent to the ASGI ``app``."""
    out = []

    async def send(m):
        out.append(m)

    await app({"type": "http", "method": "GET", "path": path, "query_string": b""}, None, send)
    return out[-1]["body"]


def run_cache(cache, paths):
    """Send GET ``paths`` one after the other through an ASGI ``cache``; the bodies."""
    async def main():
        return [await asgi_get(cache, p) for p in paths]
    return asyncio.run(main())


def counting_app(calls):
    async def app(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(calls)).encode()})
    return app


def test_ttl_expires_answers_but_not_the_equity_series():
    """The TTL bounds clock-derived figures; an equity series depends only on its ledger, so it is
    kept until the ledger's token changes."""
    calls, token = [], {"t": 1}
    cache = ResponseCache(counting_app(calls), ttl=1e-9, token=lambda path: token["t"],
                          timeless=lambda path: path.endswith("/equity"))
    eq, ses = "/api/sessions/paper/ok/equity", "/api/sessions"
    assert run_cache(cache, [eq, eq, ses, ses]) == [b"1", b"1", b"2", b"3"]
    token["t"] = 2  # the ledger changed
    assert run_cache(cache, [eq, eq]) == [b"4", b"4"]


def test_concurrent_misses_compute_once():
    """While one request computes an answer, others for the same key wait for it."""
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        body = f"answer {len(calls)}".encode()
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    cache = ResponseCache(app, ttl=HOUR, token=lambda path: "t")

    async def main():
        return await asyncio.gather(*(asgi_get(cache, "/api/sessions") for _ in range(8)), asgi_get(cache, "/metrics"))

    bodies = asyncio.run(main())
    assert bodies[:8] == [b"answer 1"] * 8 and calls == ["/api/sessions", "/metrics"]


def test_failed_answers_are_not_cached(client, ledgers):
    assert client.get("/api/sessions/paper/nope").status_code == 404
    make_ledger(ledgers, "nope")
    assert client.get("/api/sessions/paper/nope").status_code == 200
