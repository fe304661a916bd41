"""Helpers of the monitor tests: hand-made contract-4 ledgers (SLICES.md) written the way a
session process writes them (WAL, one transaction), a Monitor with a fixed clock, and a local
webhook receiver. Kept inside tests/monitor so the slice's tests run alone."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


NOW = datetime(2024, 3, 6, 15, 0, tzinfo=timezone.utc)  # a Wednesday, NYSE open
HOSTILE = "<script>alert(1)</script>"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE orders (id TEXT PRIMARY KEY, broker_id TEXT, symbol TEXT, side TEXT, type TEXT, qty REAL,
    limit_price REAL, stop_price REAL, time_in_force TEXT, status TEXT, filled_qty REAL, avg_fill_price REAL,
    signal_time TEXT, created_at TEXT, updated_at TEXT, reason TEXT, note TEXT, parent_id TEXT);
CREATE TABLE fills (id TEXT PRIMARY KEY, order_id TEXT, symbol TEXT, side TEXT, qty REAL, price REAL,
    commission REAL, time TEXT);
CREATE TABLE positions (symbol TEXT PRIMARY KEY, qty REAL, avg_price REAL, realized_pnl REAL, updated_at TEXT,
    mark_price REAL);
CREATE TABLE equity (time TEXT PRIMARY KEY, cash REAL, equity REAL, gross_exposure REAL, drawdown REAL);
CREATE TABLE events (id INTEGER PRIMARY KEY, time TEXT, level TEXT, kind TEXT, message TEXT, data TEXT);
"""


def ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def drawdowns(equity: list[float]) -> list[float]:
    peak, out = float("-inf"), []
    for x in equity:
        peak = max(peak, x)
        out.append(x / peak - 1)
    return out


def make_ledger(root: Path, name: str, *, kind: str = "paper", status: str = "running", trading_state: str = "active",
                heartbeat_age: float | None = 30.0, timeframe: str = "1h", equity: list[float] | None = None,
                last_bar: datetime = NOW - timedelta(hours=1), symbols=("AAPL",), events=(), orders=(), fills=(),
                positions=(), now: datetime = NOW) -> Path:
    """A contract-4 ledger ``<root>/<kind>/<name>.sqlite``; equity rows are one bar interval apart
    ending at ``last_bar``; ``events`` are (level, kind, message, age seconds) tuples."""
    step = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "1m": timedelta(minutes=1)}[timeframe]
    equity = list(equity if equity is not None else [100_000.0, 101_000.0, 100_500.0])
    path = root / kind / f"{name}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
    conn.execute("BEGIN")
    meta = {"schema_version": "1", "kind": kind, "session": name, "strategy": "simple_ma", "params": "{}",
            "symbols": json.dumps(list(symbols)), "timeframe": timeframe, "settings": "{}",
            "created_at": ts(now - timedelta(days=2)), "status": status, "trading_state": trading_state,
            "last_bar_time": ts(last_bar), "pid": "12345"}
    if heartbeat_age is not None:
        meta["heartbeat_at"] = ts(now - timedelta(seconds=heartbeat_age))
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    times = [last_bar - step * (len(equity) - 1 - i) for i in range(len(equity))]
    for t, eq, dd in zip(times, equity, drawdowns(equity)):
        conn.execute("INSERT INTO equity VALUES (?, ?, ?, ?, ?)", (ts(t), eq * 0.5, eq, eq * 0.5, dd))
    for level, ek, msg, age in events:
        conn.execute("INSERT INTO events (time, level, kind, message, data) VALUES (?, ?, ?, ?, '{}')",
                     (ts(now - timedelta(seconds=age)), level, ek, msg))
    for o in orders:
        row = {"id": f"{name}-{o['symbol']}-{len(o)}", "broker_id": None, "side": "buy", "type": "market", "qty": 10.0,
               "limit_price": None, "stop_price": None, "time_in_force": "day", "filled_qty": 0.0, "avg_fill_price": None,
               "signal_time": ts(last_bar), "created_at": ts(last_bar), "updated_at": ts(last_bar), "reason": "signal",
               "note": None, "parent_id": None, **o}
        conn.execute(f"INSERT INTO orders ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    for f in fills:
        conn.execute("INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?)", f)
    for p in positions:
        conn.execute("INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?)", p)
    conn.execute("COMMIT")
    conn.close()
    return path


def append_equity(path: Path, t: datetime, equity: float, heartbeat: datetime | None = None) -> None:
    """The session's next bar: one equity row (drawdown against the running peak) and heartbeat."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    peak = max([equity] + [r[0] for r in conn.execute("SELECT equity FROM equity")])
    conn.execute("INSERT INTO equity VALUES (?, ?, ?, ?, ?)", (ts(t), equity * 0.5, equity, equity * 0.5, equity / peak - 1))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'last_bar_time'", (ts(t),))
    if heartbeat is not None:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'heartbeat_at'", (ts(heartbeat),))
    conn.execute("COMMIT")
    conn.close()


def make_monitor(tmp_path: Path, ledgers_root: Path, now: datetime = NOW, rules_text: str | None = None,
                 store: Path | None = None, runs: Path | None = None):
    """A Monitor over ``ledgers_root`` with a fixed clock and its own database under tmp_path."""
    from slices.monitor.rules import load_rules
    from slices.monitor.service import Monitor

    rules_path = None
    if rules_text is not None:
        rules_path = tmp_path / "rules.toml"
        rules_path.write_text(rules_text)
    clock = {"now": now}
    mon = Monitor(ledgers_root, store or tmp_path / "no-store", runs or tmp_path / "no-runs", tmp_path / "monitor.sqlite",
                  load_rules(rules_path), clock=lambda: clock["now"])
    mon._test_clock = clock
    return mon


class Receiver:
    """A local webhook receiver on 127.0.0.1 (ephemeral port): records every POSTed JSON body;
    answers ``fail_first`` requests with ``fail_status`` before succeeding."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500):
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.attempts += 1
                if outer.attempts <= fail_first:
                    self.send_response(fail_status)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Server:
    """``python -m slices.monitor serve --port 0 ARGS`` as a subprocess (127.0.0.1, ephemeral port);
    ``url`` once it listens; stderr lines collected in ``lines``. Stop with :meth:`stop` (this
    process only, by its pid)."""

    def __init__(self, *args: str, env: dict | None = None, timeout: float = 60.0):
        import re
        import subprocess
        import sys
        import time

        self.proc = subprocess.Popen([sys.executable, "-m", "slices.monitor", "serve", "--port", "0", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **(env or {})}, cwd=str(Path(__file__).resolve().parents[2]))
        self.lines: list[str] = []
        self.url = None
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.url is None and self.proc.poll() is None:
            for line in list(self.lines):
                m = re.search(r"serving (http://127\.0\.0\.1:\d+)/", line)
                if m:
                    self.url = m.group(1)
            time.sleep(0.05)
        if self.url is None:
            self.stop()
            raise RuntimeError("monitor serve did not start: " + "".join(self.lines))

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def get(self, path: str, headers: dict | None = None, timeout: float = 10.0):
        """(status, body text) of a GET."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=15)


def run_cli(*args: str, env: dict | None = None, timeout: float = 120.0, module: str = "slices.monitor"):
    """``python -m <module> ARGS`` -> CompletedProcess (text)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=str(Path(__file__).resolve().parents[2]))


def wait_until(predicate, timeout: float = 20.0, step: float = 0.1):
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` seconds pass (None)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None
