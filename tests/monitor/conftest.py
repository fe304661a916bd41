"""Fixtures of the monitor tests (helpers in mon_helpers.py, kept inside tests/monitor so the
slice's tests run alone)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from mon_helpers import HOSTILE, NOW, Receiver, make_ledger, ts
from datetime import timedelta


@pytest.fixture
def ledgers(tmp_path) -> Path:
    """A ledger root with one session per state: ``ok`` (running, fresh), ``stopped``, ``halted``
    (critical halt event), ``failed``, ``stale`` (running, heartbeat 1 day old on 1h bars),
    ``live/hostile`` (a <script> symbol, order, fill, position and event message)."""
    root = tmp_path / "ledgers"
    make_ledger(root, "ok", fills=[("f1", "o1", "AAPL", "buy", 10.0, 150.25, 0.75, ts(NOW - timedelta(hours=2)))],
                positions=[("AAPL", 10.0, 150.25, -0.75, ts(NOW), 151.0)],
                orders=[{"symbol": "AAPL", "status": "accepted"}])
    make_ledger(root, "stopped", status="stopped", heartbeat_age=86400 * 5)
    make_ledger(root, "halted", status="halted", trading_state="halted", equity=[100_000.0, 80_000.0],
                events=[("critical", "halt", "max-drawdown halt: drawdown -20.00%", 600)])
    make_ledger(root, "failed", status="failed", events=[("error", "stop", "session failed: RuntimeError: boom", 300)])
    make_ledger(root, "stale", heartbeat_age=86400.0)
    make_ledger(root, "hostile", kind="live", symbols=[HOSTILE],
                events=[("warning", "reject", f"{HOSTILE} order rejected", 60)],
                orders=[{"symbol": HOSTILE, "status": "new", "note": HOSTILE}],
                fills=[("f9", f"{HOSTILE}-1", HOSTILE, "buy", 1.0, 10.0, 0.01, ts(NOW - timedelta(hours=1)))],
                positions=[(HOSTILE, 1.0, 10.0, 0.0, ts(NOW), 11.0)])
    return root


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No developer state leaks in: HOME, ledgers, store, runs and database under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("GPT_TRADER_LEDGERS", "GPT_TRADER_STORE", "GPT_TRADER_RUNS", "GPT_TRADER_MONITOR_DB",
                "GPT_TRADER_MONITOR_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    os.environ.pop("GPT_TRADER_MONITOR_TOKEN", None)
