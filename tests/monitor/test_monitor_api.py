"""The JSON API, pages, health and security of the monitor server (in-process, Starlette's
TestClient; hand-made ledgers for every session state)."""
from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from slices.monitor.web import create_app

from mon_helpers import HOSTILE, NOW, append_equity, make_ledger, make_monitor, ts

LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def mon(tmp_path, ledgers):
    return make_monitor(tmp_path, ledgers)


@pytest.fixture
def client(mon):
    with TestClient(create_app(mon, hosts=LOCAL), base_url="http://127.0.0.1:8787") as c:
        yield c


def by_id(client):
    return {s["id"]: s for s in client.get("/api/sessions").json()["sessions"]}


def test_sessions_list_every_state_with_figures(client):
    s = by_id(client)
    assert set(s) == {"paper/ok", "paper/stopped", "paper/halted", "paper/failed", "paper/stale", "live/hostile"}
    ok = s["paper/ok"]
    assert ok["status"] == "running" and ok["trading_state"] == "active" and ok["stale"] is False
    assert ok["equity"] == 100_500.0 and ok["cash"] == 50_250.0
    assert ok["drawdown"] == pytest.approx(100_500 / 101_000 - 1)
    assert ok["exposure"] == pytest.approx(0.5)
    assert ok["heartbeat_age"] == pytest.approx(30.0)
    # all three 1h bars are on the same UTC day: day P&L is against the day's first row
    assert ok["day_pnl"] == pytest.approx(500.0) and ok["day_return"] == pytest.approx(0.005)
    assert ok["open_positions"] == 1 and ok["open_orders"] == 1 and ok["fills"] == 1
    assert s["paper/stale"]["stale"] is True and s["paper/stale"]["stale_after"] == 3 * 3600
    assert s["paper/stopped"]["stale"] is False  # only running sessions can be stale
    assert s["paper/halted"]["trading_state"] == "halted" and s["paper/halted"]["critical_unacked"] == 1
    assert s["paper/failed"]["status"] == "failed"
    assert s["live/hostile"]["symbols"] == [HOSTILE] and s["live/hostile"]["rejects"] == 1


def test_day_pnl_is_against_the_previous_utc_day(tmp_path):
    root = tmp_path / "l"
    make_ledger(root, "d", timeframe="1d", equity=[100.0, 110.0, 99.0], last_bar=NOW.replace(hour=0))
    s = make_monitor(tmp_path, root).sessions()[0]
    assert s["day_pnl"] == pytest.approx(-11.0) and s["day_return"] == pytest.approx(-0.1)


def test_session_detail_equity_and_404(client):
    d = client.get("/api/sessions/paper/ok").json()
    assert d["session"]["id"] == "paper/ok"
    assert [p["symbol"] for p in d["positions"]] == ["AAPL"]
    assert d["positions"][0]["unrealized"] == pytest.approx((151.0 - 150.25) * 10)
    assert [o["status"] for o in d["open_orders"]] == ["accepted"]
    assert d["fills"][0]["price"] == 150.25
    eq = client.get("/api/sessions/paper/ok/equity").json()
    assert eq["rows"] == 3 and [p["equity"] for p in eq["points"]] == [100_000.0, 101_000.0, 100_500.0]
    assert client.get("/api/sessions/paper/nope").status_code == 404
    assert client.get("/api/sessions/other/ok").status_code == 404
    assert client.get("/api/sessions/paper/..%2F..%2Fetc").status_code == 404
    assert client.get("/sessions/paper/nope").status_code == 404


def test_equity_downsampling_keeps_the_newest_row(tmp_path):
    root = tmp_path / "l"
    make_ledger(root, "long", equity=[100_000.0 + i for i in range(500)])
    mon = make_monitor(tmp_path, root)
    with TestClient(create_app(mon, hosts=LOCAL), base_url="http://127.0.0.1") as c:
        eq = c.get("/api/sessions/paper/long/equity?max_points=50").json()
    assert eq["rows"] == 500 and len(eq["points"]) == 50 and eq["points"][-1]["equity"] == 100_499.0


def test_hostile_strings_are_escaped_on_every_page(client, tmp_path):
    pages = ["/", "/sessions/live/hostile", "/fragments/sessions", "/fragments/sessions/live/hostile", "/alerts"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<script>alert" not in r.text, url
    session_page = client.get("/sessions/live/hostile").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; order rejected" in session_page  # the event message
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</td>" in session_page  # the position's symbol
    assert session_page.count("<script") == 1  # only /static/app.js
    assert 'src="/static/app.js"' in session_page


def test_security_headers_forbid_inline_scripts_and_other_hosts(client):
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_foreign_host_header_is_refused_without_token(client):
    assert client.get("/api/sessions", headers={"Host": "evil.example:8787"}).status_code == 400
    assert client.get("/healthz", headers={"Host": "localhost:8787"}).status_code == 200


def test_token_protects_every_route_but_healthz(mon):
    token = "s3cret-token-0123456789"
    with TestClient(create_app(mon, token=token, hosts=None), base_url="http://10.0.0.5:8787") as c:
        assert c.get("/healthz").status_code == 200
        for url in ("/api/sessions", "/metrics", "/readyz", "/api/alerts", "/fragments/sessions"):
            assert c.get(url).status_code == 401, url
        assert c.get("/", follow_redirects=False).status_code == 303
        assert c.get("/api/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/sessions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.post("/login", data={"token": "wrong"}).status_code == 401
        r = c.post("/login", data={"token": token}, follow_redirects=False)
        assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/api/sessions").status_code == 200  # the cookie now
        assert c.get("/").status_code == 200


def test_healthz_and_readyz(tmp_path, client, mon):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert [f["session"] for f in checks["heartbeats"]["failing"]] == ["paper/stale"]
    assert [(c["session"], c["event_kind"]) for c in checks["critical_events"]["failing"]] == [("paper/halted", "halt")]
    assert checks["store"]["ok"] and checks["ledgers"]["ok"]


def test_readyz_ok_after_fixing_and_acknowledging(tmp_path):
    root = tmp_path / "l"
    make_ledger(root, "ok")
    make_ledger(root, "halted", status="halted", events=[("critical", "halt", "halt!", 60)])
    mon = make_monitor(tmp_path, root)
    with TestClient(create_app(mon, hosts=LOCAL), base_url="http://127.0.0.1") as c:
        assert c.get("/readyz").status_code == 503
        event_id = c.get("/api/readiness").json()["checks"]["critical_events"]["failing"][0]["id"]
        url = f"/api/sessions/paper/halted/events/{event_id}/ack"
        assert c.post(url, content=b"{}").status_code == 415  # not JSON: a plain form cannot ack
        assert c.post(url, json={}, headers={"Origin": "http://evil.example"}).status_code == 403
        assert c.post("/api/sessions/paper/halted/events/999/ack", json={}).status_code == 404
        assert c.post(url, json={}).status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["ready"] is True
        # the ledger is older than 3 bars of heartbeat: readiness fails again
        mon._test_clock["now"] = NOW + timedelta(hours=4)
        assert c.get("/readyz").status_code == 503


def test_unreadable_ledger_is_reported_not_fatal(tmp_path):
    root = tmp_path / "l"
    make_ledger(root, "ok")
    (root / "paper" / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    mon = make_monitor(tmp_path, root)
    with TestClient(create_app(mon, hosts=LOCAL), base_url="http://127.0.0.1") as c:
        s = by_id(c)
        assert s["paper/ok"]["equity"] == 100_500.0 and "error" in s["paper/junk"]
        assert "unreadable" in c.get("/").text
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["ledgers"]["failing"][0]["session"] == "paper/junk"
        assert c.get("/metrics").status_code == 200


def metric_values(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_match_the_ledgers(client):
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = metric_values(r.text)
    ok = (("kind", "paper"), ("session", "ok"))
    assert m[("gpt_trader_session_equity", ok)] == 100_500.0
    assert m[("gpt_trader_session_cash", ok)] == 50_250.0
    assert m[("gpt_trader_session_drawdown_ratio", ok)] == pytest.approx(100_500 / 101_000 - 1)
    assert m[("gpt_trader_session_gross_exposure", ok)] == 50_250.0
    assert m[("gpt_trader_session_open_positions", ok)] == 1.0
    assert m[("gpt_trader_session_fills_total", ok)] == 1.0
    assert m[("gpt_trader_session_heartbeat_age_seconds", ok)] == pytest.approx(30.0)
    assert m[("gpt_trader_session_orders", ok + (("status", "accepted"),))] == 1.0
    assert m[("gpt_trader_session_orders", ok + (("status", "filled"),))] == 0.0
    halted = (("kind", "paper"), ("session", "halted"))
    assert m[("gpt_trader_session_trading_state", halted + (("state", "halted"),))] == 1.0
    assert m[("gpt_trader_session_status", halted + (("state", "halted"),))] == 1.0
    assert m[("gpt_trader_session_status", halted + (("state", "running"),))] == 0.0
    hostile = (("kind", "live"), ("session", "hostile"))
    assert m[("gpt_trader_session_rejects_total", hostile)] == 1.0
    assert m[("gpt_trader_session_stale", (("kind", "paper"), ("session", "stale")))] == 1.0


def test_ledgers_are_opened_read_only_and_never_block_the_writer(tmp_path, ledgers, client):
    path = ledgers / "paper" / "ok.sqlite"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for url in ("/", "/api/sessions", "/api/sessions/paper/ok", "/api/sessions/paper/ok/equity", "/metrics", "/readyz"):
        client.get(url)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # a writer holding a write transaction does not stop the monitor, and the monitor does not stop it
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.5)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO equity VALUES (?, 1, 99000, 1, -0.02)", (ts(NOW),))
    assert by_id(client)["paper/ok"]["equity"] == 100_500.0  # uncommitted: not seen
    writer.execute("COMMIT")
    writer.close()
    assert by_id(client)["paper/ok"]["equity"] == 99_000.0  # the cache noticed the change


def test_new_equity_row_shows_up(client, ledgers):
    append_equity(ledgers / "paper" / "ok.sqlite", NOW, 102_000.0, heartbeat=NOW)
    s = by_id(client)["paper/ok"]
    assert s["equity"] == 102_000.0 and s["drawdown"] == 0.0 and s["heartbeat_age"] == 0.0
    assert client.get("/api/sessions/paper/ok/equity").json()["rows"] == 4


def test_runs_page_and_report_links(tmp_path, ledgers):
    runs = tmp_path / "runs"
    (runs / "backtest-1").mkdir(parents=True)
    (runs / "backtest-1" / "metrics.json").write_text(
        '{"run": {"strategy": "simple_ma", "symbols": ["AAPL"], "timeframe": "1d"}, "portfolio": '
        '{"total_return": 0.1234, "sharpe": 1.5, "max_drawdown": -0.2}, "warnings": ["<b>DIS</b> close outside"]}')
    (runs / "backtest-1" / "report.html").write_text("<html><body>report</body></html>")
    (runs / "no-metrics").mkdir()
    mon = make_monitor(tmp_path, ledgers, runs=runs)
    with TestClient(create_app(mon, hosts=LOCAL), base_url="http://127.0.0.1") as c:
        api = c.get("/api/runs").json()["runs"]
        assert [r["name"] for r in api] == ["backtest-1"] and api[0]["total_return"] == 0.1234
        page = c.get("/runs").text
        assert 'href="/runs/backtest-1/report.html"' in page and "12.34%" in page and "<b>DIS" not in page
        r = c.get("/runs/backtest-1/report.html")
        assert r.status_code == 200 and "report" in r.text and "connect-src 'none'" in r.headers["content-security-policy"]
        assert c.get("/runs/..%2F..%2Fetc/report.html").status_code == 404
        assert c.get("/runs/no-metrics/report.html").status_code == 404


def test_grafana_dashboard_charts_only_exported_metrics(client):
    import json
    import re
    from pathlib import Path

    dash = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
    if not dash.exists():
        pytest.skip("docs/grafana-dashboard.json is not in this tree")
    exprs = [t["expr"] for p in json.loads(dash.read_text())["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"gpt_trader_[a-z_]+", e)}
    text = client.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (\S+)", text, flags=re.M)) | set(re.findall(r"^(gpt_trader_[a-z_]+)", text, flags=re.M))
    assert used and used <= exported, used - exported
