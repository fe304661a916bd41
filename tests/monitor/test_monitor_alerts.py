"""Alert rules, the fire-once/cooldown/resolved state machine, and the channels (a local webhook
receiver, a local SMTP server with STARTTLS)."""
from __future__ import annotations

import json
import ssl
import threading
from datetime import timedelta

import pytest
from mon_helpers import HOSTILE, NOW, Receiver, append_equity, make_ledger, make_monitor

from slices.monitor.alerts import Notification
from slices.monitor.channels import ChannelError, send_email, send_webhook, webhook_payload
from slices.monitor.common import MonitorError
from slices.monitor.rules import load_rules


def rules_of(mon):
    return sorted((c.rule, c.target) for c in mon.conditions())


def test_every_session_rule_fires_on_its_state(tmp_path, ledgers):
    mon = make_monitor(tmp_path, ledgers)
    assert rules_of(mon) == [
        ("day_loss", "paper/halted"),            # 80k after 100k the same day: -20 %
        ("drawdown", "paper/halted"),            # and -20 % from the peak
        ("heartbeat_stale", "paper/stale"),
        ("rejects", "live/hostile"),             # one reject event a minute ago, max 0
        ("session_state", "paper/failed"),
        ("session_state", "paper/halted"),
    ]


def test_thresholds_and_windows_come_from_the_rules_file(tmp_path, ledgers):
    text = """
[rules.drawdown]
threshold = 0.25
[rules.rejects]
max = 1
[rules.heartbeat_stale]
enabled = false
[rules.session_state]
severity = "warning"
"""
    mon = make_monitor(tmp_path, ledgers, rules_text=text)
    got = {(c.rule, c.target): c for c in mon.conditions()}
    assert ("drawdown", "paper/halted") not in got and ("rejects", "live/hostile") not in got
    assert ("heartbeat_stale", "paper/stale") not in got
    assert got[("session_state", "paper/failed")].severity == "warning"
    # the reject event falls out of the default one-hour window
    mon2 = make_monitor(tmp_path / "b", ledgers, now=NOW + timedelta(hours=2))
    assert ("rejects", "live/hostile") not in {(c.rule, c.target) for c in mon2.conditions()}


def test_risk_blocks_rule(tmp_path):
    root = tmp_path / "l"
    make_ledger(root, "rb", events=[("warning", "risk_block", "max position reached", 10)] * 3)
    mon = make_monitor(tmp_path, root, rules_text="[rules.risk_blocks]\nmax = 2\n")
    c = [c for c in mon.conditions() if c.rule == "risk_blocks"]
    assert len(c) == 1 and "3 risk block event(s)" in c[0].message


@pytest.mark.parametrize("text, where", [
    ("[rules.drawdown]\nthreshhold = 0.1\n", "unknown key 'threshhold'"),
    ("[rules.drawdown]\nthreshold = 'ten'\n", "[rules.drawdown].threshold: expected float"),
    ("[rules.nope]\n", "unknown rule [rules.nope]"),
    ("[rules.drawdown]\nseverity = 'loud'\n", "severity must be one of"),
    ("[[channels.webhook]]\nurl = 'file:///etc/passwd'\n", "url must start with http"),
    ("[[channels.webhook]]\nurl = 'http://x'\nformat = 'teams'\n", "format must be slack"),
    ("[channels.email]\nhost = 'smtp'\n", "from is required"),
    ("[settings\n", "not valid TOML"),
    ("[other]\n", "unknown table [other]"),
])
def test_bad_rules_files_are_one_line_errors(tmp_path, text, where):
    p = tmp_path / "r.toml"
    p.write_text(text)
    with pytest.raises(MonitorError) as err:
        load_rules(p)
    assert where in str(err.value) and str(p) in str(err.value) and "\n" not in str(err.value)


def test_fires_once_resolves_and_cooldown_suppresses_flapping(tmp_path, receiver):
    root = tmp_path / "l"
    path = make_ledger(root, "dd", equity=[100.0, 95.0])  # -5 %
    rules = f"""
[settings]
cooldown = 600.0
[rules.drawdown]
threshold = 0.04
[rules.day_loss]
enabled = false
[channels]
log = false
[[channels.webhook]]
url = "{receiver.url}"
format = "json"
"""
    mon = make_monitor(tmp_path, root, rules_text=rules)
    clock = mon._test_clock
    conds, sent = mon.run_alerts()
    assert [n.state for n in sent] == ["firing"] and receiver.bodies[0]["alert"]["rule"] == "drawdown"
    conds, sent = mon.run_alerts()  # still holding: nothing more is sent
    assert len(conds) == 1 and sent == []
    append_equity(path, NOW, 101.0, heartbeat=NOW)  # recovered
    clock["now"] = NOW + timedelta(seconds=60)
    conds, sent = mon.run_alerts()
    assert conds == [] and [n.state for n in sent] == ["resolved"]
    assert receiver.bodies[-1]["alert"]["state"] == "resolved"
    append_equity(path, NOW + timedelta(hours=1), 90.0, heartbeat=NOW)  # back within the cooldown
    clock["now"] = NOW + timedelta(seconds=120)
    conds, sent = mon.run_alerts()
    assert len(conds) == 1 and sent == []
    append_equity(path, NOW + timedelta(hours=2), 102.0, heartbeat=NOW)  # clears: its resolution is not sent
    clock["now"] = NOW + timedelta(seconds=180)
    assert mon.run_alerts()[1] == []
    append_equity(path, NOW + timedelta(hours=3), 50.0, heartbeat=NOW)  # after the cooldown: sent again
    clock["now"] = NOW + timedelta(seconds=900)
    assert [n.state for n in mon.run_alerts()[1]] == ["firing"]
    assert len(receiver.bodies) == 3
    states = [h["state"] for h in mon.alerts.history()][::-1]
    assert states == ["firing", "resolved", "suppressed", "firing"]
    assert mon.alerts.history()[0]["delivered"] == {"webhook#1": "ok"}


def note(message=f"paper/x: drawdown -12.00% {HOSTILE}"):
    return Notification("drawdown:paper/x", "drawdown", "warning", "paper/x", message, "firing", "2024-03-06T15:00:00.000000Z")


def test_webhook_payloads_are_slack_and_discord_compatible():
    n = note()
    text = f"[FIRING warning] drawdown paper/x: drawdown -12.00% {HOSTILE}"  # the target is not said twice
    assert webhook_payload(n, "slack") == {"text": text}
    assert webhook_payload(n, "discord") == {"content": text}
    other = note("store 1d: stale")  # a message not starting with the target is kept whole
    assert webhook_payload(other, "slack") == {"text": "[FIRING warning] drawdown paper/x: store 1d: stale"}
    long = note("x" * 5000)
    assert len(webhook_payload(long, "discord")["content"]) == 2000
    j = webhook_payload(n, "json")
    assert j["alert"]["severity"] == "warning" and j["alert"]["target"] == "paper/x" and "history_id" not in j["alert"]


def test_webhook_retries_with_exponential_backoff():
    r = Receiver(fail_first=2, fail_status=503)
    waits = []
    try:
        attempts = send_webhook({"url": r.url, "format": "slack", "retries": 3, "backoff": 0.5, "timeout": 5}, note(),
                                sleep=waits.append)
    finally:
        r.close()
    assert attempts == 3 and waits == [0.5, 1.0] and len(r.bodies) == 1


def test_webhook_client_errors_are_not_retried_and_secrets_not_printed():
    r = Receiver(fail_first=10, fail_status=404)
    waits = []
    try:
        with pytest.raises(ChannelError) as err:
            send_webhook({"url": r.url, "retries": 3, "backoff": 0.1}, note(), sleep=waits.append)
    finally:
        r.close()
    assert r.attempts == 1 and waits == [] and "HTTP 404" in str(err.value) and "secret-path" not in str(err.value)


def test_webhook_gives_up_after_its_retries():
    r = Receiver(fail_first=10, fail_status=500)
    waits = []
    try:
        with pytest.raises(ChannelError, match="after 3 attempt"):
            send_webhook({"url": r.url, "retries": 2, "backoff": 0.1}, note(), sleep=waits.append)
    finally:
        r.close()
    assert r.attempts == 3 and waits == [0.1, 0.2]


@pytest.fixture
def smtp_server(tmp_path):
    """aiosmtpd on 127.0.0.1 requiring STARTTLS, with a certificate from a throwaway CA (trustme)."""
    trustme = pytest.importorskip("trustme")
    aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
    import socket

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
            self.messages.append((session.ssl is not None, envelope.mail_from, envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Handler()
    ctl = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
    ctl.start()
    yield {"port": port, "ca_file": str(ca_file), "handler": handler}
    ctl.stop()


def test_email_over_starttls_to_a_local_server(smtp_server):
    cfg = {"host": "127.0.0.1", "port": smtp_server["port"], "starttls": True, "username": "", "from": "mon@example.com",
           "to": ["me@example.com"], "ca_file": smtp_server["ca_file"], "timeout": 10.0}
    send_email(cfg, "subject line", "body text", "<p>body</p>")
    (tls, sender, rcpt, content), = smtp_server["handler"].messages
    assert tls and sender == "mon@example.com" and rcpt == ["me@example.com"]
    assert "Subject: subject line" in content and "body text" in content


def test_email_refuses_an_untrusted_certificate(smtp_server):
    cfg = {"host": "127.0.0.1", "port": smtp_server["port"], "starttls": True, "from": "a@b.c", "to": ["d@e.f"], "timeout": 10.0}
    with pytest.raises(ChannelError, match="SSL|certificate"):
        send_email(cfg, "s", "t")
    assert smtp_server["handler"].messages == []


def test_email_channel_delivers_alerts(tmp_path, ledgers, smtp_server):
    rules = f"""
[channels]
log = false
[channels.email]
host = "127.0.0.1"
port = {smtp_server['port']}
from = "mon@example.com"
to = ["ops@example.com"]
ca_file = "{smtp_server['ca_file']}"
"""
    mon = make_monitor(tmp_path, ledgers, rules_text=rules)
    conds, sent = mon.run_alerts()
    assert len(sent) == len(conds) == 6
    subjects = sorted(m[3].split("Subject: ", 1)[1].split("\n", 1)[0].strip() for m in smtp_server["handler"].messages)
    assert "GPT-Trader firing: session_state paper/failed" in subjects
    assert all(h["delivered"] == {"email": "ok"} for h in mon.alerts.history())


def test_one_broken_channel_does_not_stop_the_others(tmp_path, ledgers, receiver):
    rules = f"""
[channels]
log = false
[[channels.webhook]]
url = "http://127.0.0.1:9/nothing-listens-here"
retries = 0
timeout = 2.0
[[channels.webhook]]
url = "{receiver.url}"
format = "discord"
"""
    mon = make_monitor(tmp_path, ledgers, rules_text=rules)
    conds, sent = mon.run_alerts()
    assert len(receiver.bodies) == len(sent) == 6 and all("content" in b for b in receiver.bodies)
    d = mon.alerts.history()[0]["delivered"]
    assert d["webhook#2"] == "ok" and d["webhook#1"].startswith("webhook http://127.0.0.1:9/...")


def test_concurrent_evaluations_send_each_alert_once(tmp_path, ledgers, receiver):
    rules = f'[channels]\nlog = false\n[[channels.webhook]]\nurl = "{receiver.url}"\n'
    mons = [make_monitor(tmp_path, ledgers, rules_text=rules) for _ in range(4)]  # four processes' worth
    threads = [threading.Thread(target=m.run_alerts) for m in mons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    texts = [b["text"] for b in receiver.bodies]
    assert len(texts) == 6 == len(set(texts))
    assert json.dumps(receiver.bodies).count("FIRING") == 6
