"""The monitor's command line as a user runs it: rules, check (cron), digest, sessions, ack, and
serve end to end (a real server process, an alert reaching a local webhook receiver)."""
from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta, timezone

import pytest
from mon_helpers import HOSTILE, Server, make_ledger, run_cli, ts, wait_until

from slices.monitor.rules import DEFAULT_RULES, load_rules


def test_rules_prints_the_defaults_as_valid_toml():
    r = run_cli("rules")
    assert r.returncode == 0 and r.stdout == DEFAULT_RULES
    cfg = tomllib.loads(r.stdout)
    assert cfg["rules"]["drawdown"]["threshold"] == 0.10 and cfg["settings"]["cooldown"] == 900.0
    j = json.loads(run_cli("rules", "--format", "json").stdout)
    assert j["rules"]["heartbeat_stale"]["severity"] == "critical"


def test_rules_checks_a_file(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[rules.drawdown]\nthreshold = 0.2\n[[channels.webhook]]\nurl = "https://hooks.example/T0/B0/SECRET"\n')
    r = run_cli("rules", "--rules", str(p))
    assert r.returncode == 0 and "threshold=0.2" in r.stdout and "1 webhook(s)" in r.stdout
    assert "SECRET" not in run_cli("rules", "--rules", str(p), "-f", "json").stdout
    p.write_text("[rules.drawdown]\nthreshold = 'x'\n")
    r = run_cli("rules", "--rules", str(p))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_check_exits_1_when_something_fires_and_sends_once(tmp_path, receiver):
    root = tmp_path / "ledgers"
    now = datetime.now(timezone.utc)
    make_ledger(root, "ok", now=now, last_bar=now - timedelta(minutes=30))
    rules = tmp_path / "r.toml"
    rules.write_text(f'[[channels.webhook]]\nurl = "{receiver.url}"\nformat = "json"\n')
    (tmp_path / "store").mkdir()  # a named store must exist
    args = ["check", "--ledgers", str(root), "--db", str(tmp_path / "m.sqlite"), "--rules", str(rules),
            "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "store")]
    r = run_cli(*args)
    assert r.returncode == 0 and "ok: no alert condition holds" in r.stdout and receiver.bodies == []
    make_ledger(root, "broken", status="failed", now=now, last_bar=now - timedelta(minutes=30))
    r = run_cli(*args, "-f", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert [c["key"] for c in doc["firing"]] == ["session_state:paper/broken"]
    assert [b["alert"]["state"] for b in receiver.bodies] == ["firing"]
    r = run_cli(*args)
    assert r.returncode == 1 and "session_state" in r.stdout and len(receiver.bodies) == 1  # fired once
    (root / "paper" / "broken.sqlite").unlink()
    r = run_cli(*args)
    assert r.returncode == 0 and [b["alert"]["state"] for b in receiver.bodies] == ["firing", "resolved"]


def test_check_no_send_only_prints(tmp_path, ledgers, receiver):
    r = run_cli("check", "--no-send", "--ledgers", str(ledgers), "--db", str(tmp_path / "m.sqlite"))
    assert r.returncode == 1 and "paper/failed" in r.stdout and not (tmp_path / "m.sqlite").exists()


def test_sessions_and_bad_input(tmp_path, ledgers):
    r = run_cli("sessions", "--ledgers", str(ledgers))
    assert r.returncode == 0 and "paper/ok" in r.stdout and "running" in r.stdout
    doc = json.loads(run_cli("sessions", "--ledgers", str(ledgers), "-f", "json").stdout)
    assert {s["id"] for s in doc["sessions"]} >= {"paper/ok", "live/hostile"}
    r = run_cli("sessions", "--format", "xml")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = run_cli("check", "--rules", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml" in r.stderr and r.stderr.count("\n") == 1


def test_ack_clears_the_critical_check(tmp_path, ledgers):
    db = str(tmp_path / "m.sqlite")
    r = run_cli("ack", "--session", "paper/halted", "--event", "99", "--ledgers", str(ledgers), "--db", db)
    assert r.returncode == 2 and "no critical event" in r.stderr
    r = run_cli("ack", "--session", "nope", "--ledgers", str(ledgers), "--db", db)
    assert r.returncode == 2 and "no such session" in r.stderr
    r = run_cli("ack", "--session", "halted", "--ledgers", str(ledgers), "--db", db)
    assert r.returncode == 0 and "acknowledged 1 critical event(s) of paper/halted" in r.stdout
    from slices.monitor.alerts import AlertStore

    assert len(AlertStore(tmp_path / "m.sqlite").acked()) == 1


def test_digest_markdown_html_and_email_errors(tmp_path):
    root = tmp_path / "ledgers"
    day = datetime(2024, 3, 5, tzinfo=timezone.utc)
    make_ledger(root, "d", timeframe="1h", equity=[100_000.0, 100_400.0, 99_000.0, 101_000.0],
                last_bar=day + timedelta(hours=14), now=day + timedelta(hours=15),
                fills=[("f1", "o1", HOSTILE, "buy", 10.0, 100.0, 1.5, ts(day + timedelta(hours=12))),
                       ("f2", "o2", "AAPL", "sell", 5.0, 200.0, 0.5, ts(day + timedelta(hours=13))),
                       ("f3", "o3", "AAPL", "buy", 5.0, 200.0, 0.5, ts(day - timedelta(days=1)))],
                events=[("warning", "risk_block", f"{HOSTILE} | blocked", 3600), ("info", "start", "started", 7200)])
    r = run_cli("digest", "--day", "2024-03-05", "--ledgers", str(root))
    assert r.returncode == 0
    md = r.stdout
    # equity rows 11:00..14:00 all on the day, none before: P&L against the day's first row
    assert "| paper/d | running | 1,000.00 | 1.00% | 2 | 2,000.00 | 2.00 | 1 |" in md
    assert "&lt;script&gt;" in md and "<script>" not in md and "\\| blocked" in md
    out = tmp_path / "d.html"
    r = run_cli("digest", "--day", "2024-03-05", "--ledgers", str(root), "--as", "html", "-o", str(out))
    assert r.returncode == 0 and "<script>" not in out.read_text() and "1,000.00" in out.read_text()
    r = run_cli("digest", "--day", "2024-13-01", "--ledgers", str(root))
    assert r.returncode == 2 and "--day" in r.stderr
    r = run_cli("digest", "--day", "2024-03-05", "--ledgers", str(root), "--as", "email")
    assert r.returncode == 2 and "[channels.email]" in r.stderr


def test_a_named_store_that_does_not_exist_is_a_one_line_error(tmp_path):
    for cmd in ("check", "sessions"):
        r = run_cli(cmd, "--store", str(tmp_path / "nope"), "--ledgers", str(tmp_path / "ledgers"),
                    "--db", str(tmp_path / "m.sqlite"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: --store ") and "nope: no such folder" in r.stderr
        assert not (tmp_path / "m.sqlite").exists()
    r = run_cli("sessions", "--ledgers", str(tmp_path / "ledgers"), env={"GPT_TRADER_STORE": str(tmp_path / "gone")})
    assert r.returncode == 2 and r.stderr.startswith("error: $GPT_TRADER_STORE ") and "gone" in r.stderr


def test_digest_format_option_is_as_not_the_shared_format(tmp_path):
    r = run_cli("digest", "--day", "2024-03-05", "--ledgers", str(tmp_path), "--format", "html")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--format" in r.stderr


def test_serve_refuses_a_public_bind_without_token():
    r = run_cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2 and "needs --token" in r.stderr
    r = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--token", "short")
    assert r.returncode == 2 and "16 characters" in r.stderr


def test_serve_end_to_end_alert_reaches_the_webhook(tmp_path, receiver):
    """As a new user: a session is running, `monitor serve` is started, the dashboard shows it,
    the session fails, and an alert arrives at the webhook; then /readyz and /metrics agree."""
    root = tmp_path / "ledgers"
    now = datetime.now(timezone.utc)
    make_ledger(root, "demo", now=now, last_bar=now - timedelta(minutes=30))
    rules = tmp_path / "r.toml"
    rules.write_text(f'[settings]\ninterval = 0.3\n[[channels.webhook]]\nurl = "{receiver.url}"\nformat = "slack"\n')
    (tmp_path / "store").mkdir()  # a named store must exist
    srv = Server("--ledgers", str(root), "--db", str(tmp_path / "m.sqlite"), "--rules", str(rules),
                 "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "store"))
    try:
        assert srv.get("/healthz") == (200, '{"status":"ok"}')
        status, page = srv.get("/")
        assert status == 200 and "/sessions/paper/demo" in page
        assert srv.get("/readyz")[0] == 200
        make_ledger(root, "crash", status="failed", now=now, last_bar=now - timedelta(minutes=30),
                    events=[("critical", "stop", "session crash failed: OSError", 1)])
        got = wait_until(lambda: receiver.bodies, timeout=30)
        assert got and got[0] == {"text": "[FIRING critical] session_state paper/crash: status failed, trading active"}
        status, body = srv.get("/readyz")
        assert status == 503 and json.loads(body)["checks"]["critical_events"]["failing"][0]["session"] == "paper/crash"
        status, metrics = srv.get("/metrics")
        assert 'gpt_trader_session_status{kind="paper",session="crash",state="failed"} 1.0' in metrics
        assert wait_until(lambda: any("alert: [FIRING critical]" in x for x in srv.lines), timeout=10)
    finally:
        srv.stop()
    assert srv.proc.returncode is not None


def test_serve_with_token(tmp_path, ledgers):
    token = "abcdefghijklmnop-123"
    srv = Server("--ledgers", str(ledgers), "--db", str(tmp_path / "m.sqlite"), "--no-alerts",
                 env={"GPT_TRADER_MONITOR_TOKEN": token})
    try:
        assert srv.get("/healthz")[0] == 200
        assert srv.get("/api/sessions")[0] == 401
        status, body = srv.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and "paper/ok" in body
        assert any("token required" in x for x in srv.lines)
    finally:
        srv.stop()
