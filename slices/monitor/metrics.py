"""Prometheus exposition through ``prometheus-client`` (a custom collector on a private registry).

Every scrape reads the cached session summaries and the store's freshness at that moment. Labels:
``kind`` (paper/live), ``session``; ``status`` for order counts; ``state`` for the one-hot
status/trading-state gauges; ``timeframe`` for the store. Units in the names (seconds, ratio).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .ledgers import ORDER_STATUSES

PREFIX = "gpt_trader"
STATUSES = ("running", "stopped", "halted", "failed")
TRADING_STATES = ("active", "reducing", "halted")
SESSION_GAUGES = (  # (name, help, key in the derived summary)
    ("session_equity", "Equity at the newest equity row, account currency.", "equity"),
    ("session_cash", "Cash at the newest equity row, account currency.", "cash"),
    ("session_drawdown_ratio", "Drawdown at the newest equity row: equity / running peak - 1 (<= 0).", "drawdown"),
    ("session_gross_exposure", "Gross exposure (sum of |position value|), account currency.", "gross_exposure"),
    ("session_day_pnl", "Equity change since the last equity row before today's UTC date, currency.", "day_pnl"),
    ("session_open_positions", "Positions with a non-zero quantity.", "open_positions"),
    ("session_heartbeat_age_seconds", "Seconds since the session's heartbeat.", "heartbeat_age"),
)
SESSION_COUNTERS = (
    ("session_fills", "Fills in the ledger.", "fills"),
    ("session_rejects", "Events of kind reject (orders or signals refused).", "rejects"),
    ("session_risk_blocks", "Events of kind risk_block.", "risk_blocks"),
)


class MonitorCollector:
    """A prometheus-client collector over a :class:`slices.monitor.service.Monitor`."""

    def __init__(self, monitor):
        self.monitor = monitor

    def collect(self):
        """Yield the metric families (see the slice README for the list)."""
        now = self.monitor.clock()
        sessions = self.monitor.sessions(now)
        lab = ["kind", "session"]
        gauges = {key: GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=lab) for name, doc, key in SESSION_GAUGES}
        counters = {key: CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=lab) for name, doc, key in SESSION_COUNTERS}
        up = GaugeMetricFamily(f"{PREFIX}_session_readable", "1 when the ledger could be read, else 0.", labels=lab)
        stale = GaugeMetricFamily(f"{PREFIX}_session_stale", "1 when running with a stale heartbeat, else 0.", labels=lab)
        orders = GaugeMetricFamily(f"{PREFIX}_session_orders", "Orders in the ledger by status.", labels=lab + ["status"])
        status = GaugeMetricFamily(f"{PREFIX}_session_status", "1 for the session's status, 0 for the others.",
                                   labels=lab + ["state"])
        trading = GaugeMetricFamily(f"{PREFIX}_session_trading_state",
                                    "1 for the session's trading state, 0 for the others.", labels=lab + ["state"])
        for s in sessions:
            lv = [s["kind"], s["session"]]
            up.add_metric(lv, 0.0 if "error" in s else 1.0)
            if "error" in s:
                continue
            stale.add_metric(lv, 1.0 if s.get("stale") else 0.0)
            for key, fam in gauges.items():
                if s.get(key) is not None:
                    fam.add_metric(lv, float(s[key]))
            for key, fam in counters.items():
                fam.add_metric(lv, float(s.get(key) or 0))
            counts = s.get("orders") or {}
            for st in sorted(set(ORDER_STATUSES) | set(counts)):
                orders.add_metric(lv + [st], float(counts.get(st, 0)))
            for st in STATUSES:
                status.add_metric(lv + [st], 1.0 if s.get("status") == st else 0.0)
            for st in TRADING_STATES:
                trading.add_metric(lv + [st], 1.0 if s.get("trading_state") == st else 0.0)
        yield from gauges.values()
        yield from counters.values()
        yield from (up, stale, orders, status, trading)

        store = self.monitor.store_status(now)
        age = GaugeMetricFamily(f"{PREFIX}_store_newest_bar_age_seconds",
                                "Seconds since the open time of the newest bar in the store, per timeframe.",
                                labels=["timeframe"])
        nsym = GaugeMetricFamily(f"{PREFIX}_store_symbols", "Parquet files per store timeframe.", labels=["timeframe"])
        sstale = GaugeMetricFamily(f"{PREFIX}_store_stale", "1 when the timeframe is stale during market hours.",
                                   labels=["timeframe"])
        for tf, e in store["timeframes"].items():
            if e["age"] is not None:
                age.add_metric([tf], float(e["age"]))
            nsym.add_metric([tf], float(e["symbols"]))
            sstale.add_metric([tf], 1.0 if e["stale"] else 0.0)
        yield from (age, nsym, sstale)

        active = GaugeMetricFamily(f"{PREFIX}_monitor_alerts_active", "Alert conditions firing now, per rule.",
                                   labels=["rule", "severity"])
        per: dict[tuple[str, str], int] = {}
        for a in self.monitor.alerts.active():
            per[(a["rule"], a["severity"])] = per.get((a["rule"], a["severity"]), 0) + 1
        for (rule, sev), n in sorted(per.items()):
            active.add_metric([rule, sev], float(n))
        yield active


def exposition(monitor) -> bytes:
    """The Prometheus text exposition of ``monitor`` (``generate_latest`` on a private registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(monitor))
    return generate_latest(registry)
