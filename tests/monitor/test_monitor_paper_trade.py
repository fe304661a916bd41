"""The monitor over ledgers written by paper_trade through its command line (``run --replay`` on
the embedded sample): the API, metrics, rules and readiness agree with what paper_trade itself
reports. Skipped when the paper_trade slice is not in this tree."""
from __future__ import annotations

import importlib.util
import json

import pytest
from mon_helpers import make_monitor, run_cli
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from slices.monitor.web import create_app

if importlib.util.find_spec("slices.paper_trade") is None:
    pytest.skip("the paper_trade slice is not in this tree", allow_module_level=True)


def replay(root, session, *extra):
    r = run_cli("run", "--session", session, "--ledgers", str(root), "--symbols", "AAPL,MSFT", "-q", *extra,
                module="slices.paper_trade", timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt") / "ledgers"
    replay(root, "calm")
    replay(root, "halts", "--max-drawdown", "0.05")
    return root


def test_api_matches_paper_trade_status(tmp_path, replayed):
    r = run_cli("status", "calm", "--ledgers", str(replayed), "-f", "json", module="slices.paper_trade")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    mon = make_monitor(tmp_path, replayed)
    with TestClient(create_app(mon, hosts={"127.0.0.1"}), base_url="http://127.0.0.1") as c:
        s = {x["id"]: x for x in c.get("/api/sessions").json()["sessions"]}["paper/calm"]
        d = c.get("/api/sessions/paper/calm").json()
        eq = c.get("/api/sessions/paper/calm/equity").json()
        m = {(x.name, tuple(sorted(x.labels.items()))): x.value
             for f in text_string_to_metric_families(c.get("/metrics").text) for x in f.samples}
    for key in ("status", "trading_state", "strategy", "timeframe", "symbols"):
        assert s[key] == st[key], key
    for key in ("equity", "cash", "gross_exposure", "drawdown"):
        assert s[key] == pytest.approx(st[key]), key
    assert eq["rows"] == 1259 and eq["points"][-1]["equity"] == pytest.approx(st["equity"])
    assert sorted(p["symbol"] for p in d["positions"]) == sorted(p["symbol"] for p in st["positions"])
    assert {p["symbol"]: p["qty"] for p in d["positions"]} == {p["symbol"]: p["qty"] for p in st["positions"]}
    lab = (("kind", "paper"), ("session", "calm"))
    assert m[("gpt_trader_session_equity", lab)] == pytest.approx(st["equity"])
    assert m[("gpt_trader_session_fills_total", lab)] == s["fills"] > 0
    assert m[("gpt_trader_session_orders", lab + (("status", "filled"),))] == s["orders"]["filled"]
    assert m[("gpt_trader_session_status", lab + (("state", "stopped"),))] == 1.0


def test_a_drawdown_halt_fires_alerts_and_fails_readiness(tmp_path, replayed):
    mon = make_monitor(tmp_path, replayed)
    s = {x["id"]: x for x in mon.sessions()}
    assert s["paper/halts"]["trading_state"] == "halted" and s["paper/calm"]["trading_state"] == "active"
    rules = {(c.rule, c.target) for c in mon.conditions()}
    assert ("session_state", "paper/halts") in rules and ("session_state", "paper/calm") not in rules
    ready, checks = mon.readiness()
    assert not ready and {c["session"] for c in checks["critical_events"]["failing"]} == {"paper/halts"}
    r = run_cli("ack", "--session", "paper/halts", "--ledgers", str(replayed), "--db", str(tmp_path / "monitor.sqlite"))
    assert r.returncode == 0
    assert mon.readiness()[1]["critical_events"]["ok"]
