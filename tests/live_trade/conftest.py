"""Fixtures of the live_trade tests: a fake Alpaca on loopback, a temporary bar store with 1m bars
stamped near now, and a helper that runs the slice's command line as a subprocess (bounded waits)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, settings

from fake_alpaca import KEY_ID, SECRET, FakeAlpaca

settings.register_profile("default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parents[2]
STRATEGY = str(Path(__file__).parent / "strategies" / "threshold.py")
WEIGHTS = str(Path(__file__).parent / "strategies" / "fixed_weights.py")


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory, monkeypatch):
    """No real store, ledgers or Alpaca settings leak in."""
    for v in ("GPT_TRADER_STORE", "GPT_TRADER_LEDGERS", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_API_BASE_URL",
              "APCA_API_STREAM_URL"):
        monkeypatch.delenv(v, raising=False)
    for v in ("APCA_API_KEY_ID_PAPER", "APCA_API_SECRET_KEY_PAPER"):
        if os.environ.get("GPT_TRADER_NETWORK_TESTS") != "1":
            monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def fake():
    f = FakeAlpaca()
    f.fill_price["AAA"] = 101.0
    yield f
    f.close()


class Store:
    """A bar store with one symbol's 1m bars, the newest ``age`` minutes before now."""

    def __init__(self, root: Path, symbol: str = "AAA", t0: datetime | None = None):
        self.root, self.symbol = root, symbol
        self.folder = root / "bars" / "1m"
        self.folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        self.t0 = t0 or now - timedelta(minutes=60)
        self.closes: list[float] = []

    def write(self, closes: list[float]) -> None:
        """Append bars with these closes (one minute apart) and write the file atomically."""
        self.closes.extend(closes)
        n = len(self.closes)
        ts = [self.t0 + timedelta(minutes=i) for i in range(n)]
        df = pl.DataFrame({"timestamp": ts, "open": self.closes, "high": [c * 1.001 for c in self.closes],
                           "low": [c * 0.999 for c in self.closes], "close": self.closes, "volume": [1000.0] * n})
        df = df.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
        tmp = self.folder / f".{self.symbol}.parquet.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, self.folder / f"{self.symbol}.parquet")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    s.write([90.0] * 30)
    return s


def keys_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """Run ``python -m slices.live_trade ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "slices.live_trade", *map(str, args)], capture_output=True, text=True,
                          env=env or keys_env(), cwd=ROOT, timeout=timeout)


def start(*args, env=None) -> subprocess.Popen:
    """Start ``python -m slices.live_trade ARGS`` in the background (stop it with :func:`finish`)."""
    return subprocess.Popen([sys.executable, "-m", "slices.live_trade", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or keys_env(), cwd=ROOT)


def finish(p: subprocess.Popen, timeout: float = 20) -> tuple[int, str, str]:
    """SIGTERM (the session stops cleanly) and collect its output."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
    return p.returncode, out, err


def query(ledger: Path, sql: str, *params):
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_for(fn, timeout: float = 20.0, what: str = "condition"):
    """Poll ``fn()`` every 50 ms until truthy (bounded); returns its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def session_args(fake, store, ledgers, session="s1", *extra):
    return ["run", "--session", session, "--account", "paper", "--symbols", "AAA", "--timeframe", "1m",
            "--strategy", STRATEGY, "--store", store.root, "--ledgers", ledgers, "--base-url", fake.base_url,
            "--stream-url", fake.stream_url, "--data-url", fake.base_url, "--poll", "0.2", "--stale-after", "600", "--max-atr-pct", "100",
            "--reconcile-every", "600", "--timeout", "1", *extra]


def meta(ledger: Path) -> dict:
    return dict(query(ledger, "SELECT key, value FROM meta"))


def running(ledger: Path) -> bool:
    m = meta(ledger)
    return m.get("status") == "running" and "engine_state" in m


def bar_csv(tmp_path: Path, closes: list[float], name: str = "AAA.csv", adj: float | None = None) -> Path:
    """A contract-2 CSV of 1m bars from 2024-03-04 14:30 with these closes (``adj``: an ``Adj Close``
    column = close x adj)."""
    t0 = datetime(2024, 3, 4, 14, 30)
    df = pl.DataFrame({"timestamp": [(t0 + timedelta(minutes=i)).isoformat() for i in range(len(closes))],
                       "open": closes, "high": [c * 1.001 for c in closes], "low": [c * 0.999 for c in closes],
                       "close": closes, "volume": [1000.0] * len(closes)})
    if adj is not None:
        df = df.with_columns((pl.col("close") * adj).alias("Adj Close"))
    path = tmp_path / name
    df.write_csv(path)
    return path
