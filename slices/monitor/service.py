"""The monitor itself: what every page, API route, metric and command reads.

:class:`Monitor` ties together the ledger root (contract 4), the bar store (contract 1), the
backtest runs root (contract 3), the rules and the monitor's own database. Its clock is
injectable (``clock``), so every time-dependent answer can be tested at a fixed time.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import ledgers as L
from .alerts import AlertStore, Notification, unacked_critical
from .channels import deliver
from .common import utcnow
from .rules import Condition, evaluate
from .runs import list_runs
from .store import store_status


@dataclass
class Monitor:
    """Everything the monitor looks at.

    ``ledgers``/``store``/``runs``/``db``: resolved roots and the database path; ``rules``: the
    effective rules (:func:`slices.monitor.rules.load_rules`); ``stale_after``: seconds (None or
    0: 3 bar intervals, or the rules' ``settings.stale_after``); ``clock``: returns aware UTC now.
    """

    ledgers: Path
    store: Path
    runs: Path
    db: Path
    rules: dict
    stale_after: float | None = None
    clock: Callable[[], datetime] = utcnow
    _cache: L.SummaryCache = field(init=False, repr=False)
    _alerts: AlertStore | None = field(init=False, default=None, repr=False)
    _eval_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self._cache = L.SummaryCache(self.ledgers)
        if not self.stale_after:
            self.stale_after = self.rules["settings"].get("stale_after") or None

    @property
    def alerts(self) -> AlertStore:
        """The monitor's database (opened on first use)."""
        if self._alerts is None:
            self._alerts = AlertStore(self.db)
        return self._alerts

    def sessions(self, now: datetime | None = None) -> list[dict]:
        """Derived summaries (:func:`slices.monitor.ledgers.derive`) of every session."""
        now = now or self.clock()
        return [L.derive(raw, now, self.stale_after) for raw in self._cache.summaries()]

    def session(self, kind: str, name: str, now: datetime | None = None) -> dict | None:
        """The derived summary of one session, or None when it has no ledger (reads only that
        ledger)."""
        ref = L.find(self.ledgers, kind, name)
        if ref is None:
            return None
        return L.derive(self._cache.summary(ref), now or self.clock(), self.stale_after)

    def change_token(self, kind: str | None = None, name: str | None = None) -> tuple:
        """A cheap token (file metadata only, no read) that changes whenever what the API shows
        may change: with ``kind``/``name`` that session's ledger (:func:`slices.monitor.ledgers.signature`),
        else every ledger under the root (:func:`slices.monitor.ledgers.root_token`); both with the
        monitor's own database (acknowledgements, alert state). A session's token ends with
        :func:`slices.monitor.ledgers.settled`, so an answer computed just after a commit is
        computed again once that commit is :data:`slices.monitor.ledgers.RACY_NS` old."""
        db = L.signature(self.alerts.path)  # (opened first: creating it is no change)
        if kind is None:
            return L.root_token(self.ledgers), db
        if kind not in L.KINDS or not L.SESSION_RE.match(name or ""):
            return None, db
        sig = L.signature(self.ledgers / kind / f"{name}.sqlite")
        return sig, db, L.settled(sig, time.time_ns())

    def store_status(self, now: datetime | None = None) -> dict:
        """:func:`slices.monitor.store.store_status` of the store root."""
        return store_status(self.store, now or self.clock(), self.stale_after)

    def runs_list(self) -> list[dict]:
        """:func:`slices.monitor.runs.list_runs` of the runs root."""
        return list_runs(self.runs)

    def conditions(self, now: datetime | None = None) -> list[Condition]:
        """The alert conditions holding at ``now`` (:func:`slices.monitor.rules.evaluate`)."""
        now = now or self.clock()
        return evaluate(self.rules, self.sessions(now), self.store_status(now), self.runs_list(), now)

    def run_alerts(self, log: bool = True) -> tuple[list[Condition], list[Notification]]:
        """Evaluate once, apply the state machine and send what it says through the channels.
        Returns (conditions holding now, notifications sent). Serialised per process."""
        with self._eval_lock:
            now = self.clock()
            conds = self.conditions(now)
            notes = self.alerts.process(conds, now, float(self.rules["settings"]["cooldown"]))
            for n, res in zip(notes, deliver(self.rules["channels"], notes, log=log)):
                self.alerts.record_delivery(n.history_id, res)
            return conds, notes

    def readiness(self, now: datetime | None = None) -> tuple[bool, dict]:
        """The deep check behind ``/readyz``: ``(ready, checks)``; ``checks`` maps ``heartbeats``,
        ``store``, ``critical_events`` and ``ledgers`` to ``{"ok": bool, "failing": [...]}``
        (``detail`` for the store)."""
        now = now or self.clock()
        sessions = self.sessions(now)
        hb = [{"session": s["id"], "heartbeat_at": s.get("heartbeat_at"), "age": s.get("heartbeat_age"),
               "stale_after": s.get("stale_after")} for s in sessions if s.get("stale")]
        st = self.store_status(now)
        stale_tf = [{"timeframe": tf, "newest": e["newest"], "reason": e["reason"]}
                    for tf, e in st["timeframes"].items() if e["stale"]]
        crit = unacked_critical([s for s in sessions if "error" not in s], self.alerts.acked())
        bad = [{"session": s["id"], "error": s["error"]} for s in sessions if "error" in s]
        checks = {
            "heartbeats": {"ok": not hb, "failing": hb},
            "store": {"ok": not stale_tf, "failing": stale_tf,
                      "detail": {tf: {k: e[k] for k in ("newest", "checked", "reason")} for tf, e in st["timeframes"].items()}},
            "critical_events": {"ok": not crit, "failing": crit},
            "ledgers": {"ok": not bad, "failing": bad},
        }
        return all(c["ok"] for c in checks.values()), checks
