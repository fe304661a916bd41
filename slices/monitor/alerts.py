"""The monitor's own SQLite file: alert state, alert history and acknowledged critical events.

Never a ledger: ``--db FILE``, else ``$GPT_TRADER_MONITOR_DB``, else
``~/.gpt-trader/monitor/monitor.sqlite``.

State machine per condition key (:meth:`AlertStore.process`):
* a condition that appears is sent once (``firing``); while it holds nothing more is sent;
* when it clears, ``resolved`` is sent (only if its firing was sent);
* a condition that comes back less than ``cooldown`` seconds after its last sent firing is
  recorded as ``suppressed`` and not sent (a flapping condition does not spam), and its later
  resolution is not sent either.
Every transition is a row of ``alert_history`` with the channels it reached.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from .common import MonitorError, iso, parse_time
from .rules import Condition

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    key TEXT PRIMARY KEY, rule TEXT NOT NULL, target TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    active INTEGER NOT NULL, notified INTEGER NOT NULL, since TEXT, last_fired TEXT, last_resolved TEXT);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, key TEXT NOT NULL, rule TEXT NOT NULL, target TEXT NOT NULL,
    severity TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL, delivered TEXT);
CREATE TABLE IF NOT EXISTS acks (
    kind TEXT NOT NULL, session TEXT NOT NULL, event_id INTEGER NOT NULL, event_time TEXT NOT NULL,
    acked_at TEXT NOT NULL, note TEXT, PRIMARY KEY (kind, session, event_id, event_time));
"""


@dataclass
class Notification:
    """One message to send: a condition's ``state`` (``firing``/``resolved``) at ``time``;
    ``history_id`` is its row in ``alert_history``."""

    key: str
    rule: str
    severity: str
    target: str
    message: str
    state: str
    time: str
    history_id: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class AlertStore:
    """The monitor's SQLite file (created on first use, WAL). Each method opens its own
    connection, so the store is safe to share between threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise MonitorError(f"--db {self.path}: cannot open the monitor database ({exc})") from None

    @contextmanager
    def _conn(self):
        conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def process(self, conditions: list[Condition], now: datetime, cooldown: float) -> list[Notification]:
        """Apply the state machine (module doc) to the conditions holding at ``now``; returns the
        notifications to send (firing and resolved), already recorded in the history."""
        stamp = iso(now)
        out: list[Notification] = []
        current = {c.key: c for c in conditions}
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = {r["key"]: r for r in conn.execute("SELECT * FROM alert_state")}
                for key, c in current.items():
                    row = state.get(key)
                    if row is not None and row["active"]:
                        conn.execute("UPDATE alert_state SET message = ?, severity = ? WHERE key = ?",
                                     (c.message, c.severity, key))
                        continue
                    last = parse_time(row["last_fired"]) if row is not None else None
                    send = last is None or (now - last).total_seconds() >= cooldown
                    conn.execute(
                        "INSERT INTO alert_state (key, rule, target, severity, message, active, notified, since, "
                        "last_fired) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                        "severity = excluded.severity, message = excluded.message, active = 1, "
                        "notified = excluded.notified, since = excluded.since, last_fired = excluded.last_fired",
                        (key, c.rule, c.target, c.severity, c.message, int(send), stamp,
                         stamp if send else (row["last_fired"] if row is not None else None)))
                    n = Notification(key, c.rule, c.severity, c.target, c.message, "firing" if send else "suppressed", stamp)
                    n.history_id = self._history(conn, n)
                    if send:
                        out.append(n)
                for key, row in state.items():
                    if row["active"] and key not in current:
                        conn.execute("UPDATE alert_state SET active = 0, last_resolved = ? WHERE key = ?", (stamp, key))
                        n = Notification(key, row["rule"], row["severity"], row["target"],
                                         f"resolved: {row['message']}", "resolved", stamp)
                        if row["notified"]:
                            n.history_id = self._history(conn, n)
                            out.append(n)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return out

    @staticmethod
    def _history(conn, n: Notification) -> int:
        cur = conn.execute("INSERT INTO alert_history (time, key, rule, target, severity, state, message) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (n.time, n.key, n.rule, n.target, n.severity, n.state, n.message))
        return int(cur.lastrowid)

    def record_delivery(self, history_id: int, delivered: dict) -> None:
        """Store where a notification went (channel name -> ``ok`` or the error text)."""
        with self._conn() as conn:
            conn.execute("UPDATE alert_history SET delivered = ? WHERE id = ?", (json.dumps(delivered), history_id))

    def active(self) -> list[dict]:
        """The conditions firing now: ``key rule target severity message since notified``."""
        with self._conn() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT key, rule, target, severity, message, since, notified FROM alert_state WHERE active = 1 ORDER BY since, key")]

    def history(self, limit: int = 100) -> list[dict]:
        """The newest ``limit`` history rows (newest first), ``delivered`` decoded."""
        with self._conn() as conn:
            rows = [dict(r) for r in conn.execute("SELECT * FROM alert_history ORDER BY id DESC LIMIT ?", (limit,))]
        for r in rows:
            r["delivered"] = json.loads(r["delivered"]) if r["delivered"] else {}
        return rows

    def ack(self, kind: str, session: str, event_id: int, event_time: str, now: datetime, note: str = "") -> None:
        """Acknowledge one critical event of a session (idempotent)."""
        with self._conn() as conn:
            conn.execute("INSERT OR IGNORE INTO acks VALUES (?, ?, ?, ?, ?, ?)",
                         (kind, session, int(event_id), event_time, iso(now), note))

    def acked(self) -> set[tuple[str, str, int, str]]:
        """Every acknowledged ``(kind, session, event_id, event_time)``."""
        with self._conn() as conn:
            return {(r[0], r[1], r[2], r[3]) for r in conn.execute("SELECT kind, session, event_id, event_time FROM acks")}


def unacked_critical(sessions: list[dict], acked: set) -> list[dict]:
    """Critical events of the sessions not acknowledged: ``session kind id time event_kind message``."""
    out = []
    for s in sessions:
        for e in s.get("critical") or []:
            if (s["kind"], s["session"], e["id"], e["time"]) not in acked:
                out.append({"session": s["id"], "kind": s["kind"], "name": s["session"], "id": e["id"],
                            "time": e["time"], "event_kind": e["kind"], "message": e["message"]})
    return out
