"""Alert rules: a TOML file (``--rules FILE``) over built-in defaults, and their evaluation.

:data:`DEFAULT_RULES` is the one source of the defaults (printed by ``monitor rules``). A user
file overrides any key; an unknown table or key, or a value of the wrong type, is a
:class:`MonitorError` naming the file and the key.

:func:`evaluate` turns the sessions, the store and the backtest runs into the list of
:class:`Condition` that hold now. Sending them (once per condition, cooldown, resolved messages)
is :mod:`slices.monitor.alerts`'s job.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .common import MonitorError, age_text, pct
from .ledgers import count_since

DEFAULT_RULES = """\
# GPT-Trader monitor rules (python -m slices.monitor rules prints these defaults).
# Copy this file, change what you need and pass it with --rules FILE. Fractions, not percent.

[settings]
interval = 15.0      # serve: seconds between two evaluations of the rules
cooldown = 900.0     # seconds: a condition that clears and comes back sooner is not sent again
stale_after = 0.0    # seconds; 0 = 3 bar intervals of each session's (or store folder's) timeframe

[rules.drawdown]           # a session's drawdown (equity / running peak - 1) at or below -threshold
enabled = true
severity = "warning"
threshold = 0.10

[rules.day_loss]           # a session's loss today (vs the last equity before today's UTC date)
enabled = true
severity = "warning"
threshold = 0.03

[rules.heartbeat_stale]    # a running session whose heartbeat is older than stale_after
enabled = true
severity = "critical"

[rules.session_state]      # status failed or halted, or trading_state halted
enabled = true
severity = "critical"

[rules.rejects]            # more than max reject events within the last window seconds
enabled = true
severity = "warning"
max = 0
window = 3600.0

[rules.risk_blocks]        # more than max risk_block events within the last window seconds
enabled = true
severity = "warning"
max = 0
window = 3600.0

[rules.store_stale]        # a store timeframe whose newest bar is stale during market hours
enabled = true
severity = "warning"

[rules.run_warnings]       # a backtest run folder whose metrics.json lists warnings
enabled = true
severity = "info"

[channels]
log = true                 # serve: one line per alert on stderr
# [[channels.webhook]]     # JSON POST; format slack ({"text"}), discord ({"content"}) or json (all fields)
# url = "https://hooks.slack.com/services/..."
# format = "slack"
# retries = 3              # attempts after the first, with exponential backoff
# backoff = 1.0            # seconds before the first retry, doubled each time
# timeout = 5.0
# [channels.email]         # SMTP with STARTTLS
# host = "smtp.example.com"
# port = 587
# starttls = true
# username = "alerts@example.com"
# password_env = "GPT_TRADER_SMTP_PASSWORD"   # the password is read from this variable
# from = "alerts@example.com"
# to = ["me@example.com"]
# ca_file = ""             # extra CA bundle to trust (a private SMTP server)
# timeout = 10.0
"""

SEVERITIES = ("info", "warning", "critical")
RULE_KEYS = {
    "drawdown": {"threshold": float}, "day_loss": {"threshold": float}, "heartbeat_stale": {},
    "session_state": {}, "rejects": {"max": int, "window": float}, "risk_blocks": {"max": int, "window": float},
    "store_stale": {}, "run_warnings": {},
}
SETTINGS_KEYS = {"interval": float, "cooldown": float, "stale_after": float}
WEBHOOK_KEYS = {"url": str, "format": str, "retries": int, "backoff": float, "timeout": float}
EMAIL_KEYS = {"host": str, "port": int, "starttls": bool, "username": str, "password_env": str, "from": str,
              "to": list, "ca_file": str, "timeout": float}
WEBHOOK_DEFAULTS = {"format": "slack", "retries": 3, "backoff": 1.0, "timeout": 5.0}
EMAIL_DEFAULTS = {"port": 587, "starttls": True, "username": "", "password_env": "", "ca_file": "", "timeout": 10.0}


@dataclass(frozen=True)
class Condition:
    """One alert condition that holds now. ``key`` identifies it across evaluations
    (``<rule>:<target>``); ``target`` is a session id (``paper/demo``), ``store/<tf>`` or
    ``run/<folder>``."""

    key: str
    rule: str
    severity: str
    target: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def _check_type(where: str, value, typ):
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ in (str, bool, list) and isinstance(value, typ):
        return value
    raise MonitorError(f"{where}: expected {typ.__name__}, got {value!r}")


def _merge_table(where: str, base: dict, user: dict, keys: dict) -> None:
    for k, v in user.items():
        if k not in keys:
            raise MonitorError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(keys))})")
        base[k] = _check_type(f"{where}.{k}", v, keys[k])


def load_rules(path: str | Path | None = None) -> dict:
    """The effective rules: :data:`DEFAULT_RULES` with ``path`` (a TOML file) merged over it.

    Returns ``{"settings": {...}, "rules": {name: {enabled, severity, ...}}, "channels": {"log":
    bool, "webhook": [..], "email": {..} or None}}``. Raises MonitorError (one line, naming the
    file and key) for a missing file, bad TOML, unknown tables or keys, wrong types, a bad
    severity, a webhook url that is not http(s) or an unknown format, an e-mail without host,
    from or to.
    """
    cfg = tomllib.loads(DEFAULT_RULES)
    cfg["channels"].setdefault("webhook", [])
    cfg["channels"].setdefault("email", None)
    if path is None:
        return cfg
    p = Path(path)
    try:
        user = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MonitorError(f"--rules {p}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MonitorError(f"--rules {p}: not valid TOML ({exc})") from None
    for top in user:
        if top not in ("settings", "rules", "channels"):
            raise MonitorError(f"{p}: unknown table [{top}] (known: settings, rules, channels)")
    _merge_table(f"{p}: [settings]", cfg["settings"], user.get("settings", {}), SETTINGS_KEYS)
    for name, table in user.get("rules", {}).items():
        if name not in RULE_KEYS:
            raise MonitorError(f"{p}: unknown rule [rules.{name}] (known: {', '.join(RULE_KEYS)})")
        if not isinstance(table, dict):
            raise MonitorError(f"{p}: rules.{name} must be a table")
        _merge_table(f"{p}: [rules.{name}]", cfg["rules"][name], table,
                     {"enabled": bool, "severity": str, **RULE_KEYS[name]})
        if cfg["rules"][name]["severity"] not in SEVERITIES:
            raise MonitorError(f"{p}: rules.{name}.severity must be one of {', '.join(SEVERITIES)}")
    ch = user.get("channels", {})
    for k in ch:
        if k not in ("log", "webhook", "email"):
            raise MonitorError(f"{p}: unknown channel {k!r} (known: log, webhook, email)")
    if "log" in ch:
        cfg["channels"]["log"] = _check_type(f"{p}: channels.log", ch["log"], bool)
    hooks = ch.get("webhook", [])
    hooks = [hooks] if isinstance(hooks, dict) else hooks
    for i, hook in enumerate(hooks):
        h = dict(WEBHOOK_DEFAULTS)
        _merge_table(f"{p}: [[channels.webhook]] #{i + 1}", h, hook, WEBHOOK_KEYS)
        if not str(h.get("url", "")).startswith(("http://", "https://")):
            raise MonitorError(f"{p}: [[channels.webhook]] #{i + 1}: url must start with http:// or https://")
        if h["format"] not in ("slack", "discord", "json"):
            raise MonitorError(f"{p}: [[channels.webhook]] #{i + 1}: format must be slack, discord or json")
        cfg["channels"]["webhook"].append(h)
    if "email" in ch:
        e = dict(EMAIL_DEFAULTS)
        _merge_table(f"{p}: [channels.email]", e, ch["email"], EMAIL_KEYS)
        for need in ("host", "from", "to"):
            if not e.get(need):
                raise MonitorError(f"{p}: [channels.email]: {need} is required")
        if not all(isinstance(x, str) for x in e["to"]):
            raise MonitorError(f"{p}: [channels.email]: to must be a list of addresses")
        cfg["channels"]["email"] = e
    return cfg


def default_rules() -> dict:
    """A deep copy of the parsed defaults (:func:`load_rules` without a file)."""
    return copy.deepcopy(load_rules(None))


def evaluate(cfg: dict, sessions: list[dict], store: dict | None, runs: list[dict], now: datetime) -> list[Condition]:
    """The conditions that hold at ``now``.

    ``sessions``: derived summaries (:func:`slices.monitor.ledgers.derive`); ``store``:
    :func:`slices.monitor.store.store_status` (or None); ``runs``: :func:`slices.monitor.runs.list_runs`.
    One condition per rule and target, with a one-line message naming the session and the figure.
    """
    rules = cfg["rules"]
    out: list[Condition] = []

    def add(rule: str, target: str, message: str) -> None:
        r = rules[rule]
        if r["enabled"]:
            out.append(Condition(f"{rule}:{target}", rule, r["severity"], target, message))

    for s in sessions:
        sid = s["id"]
        if "error" in s:
            continue
        dd = s.get("drawdown")
        if dd is not None and dd <= -rules["drawdown"]["threshold"]:
            add("drawdown", sid, f"{sid}: drawdown {pct(dd)} beyond -{pct(rules['drawdown']['threshold'])}")
        dr = s.get("day_return")
        if dr is not None and dr <= -rules["day_loss"]["threshold"]:
            add("day_loss", sid, f"{sid}: day loss {pct(dr)} ({s['day_pnl']:,.2f}) beyond -{pct(rules['day_loss']['threshold'])}")
        if s.get("stale"):
            age = s.get("heartbeat_age")
            add("heartbeat_stale", sid, f"{sid}: running but heartbeat "
                + (f"{age_text(age)} old" if age is not None else "missing") + f" (stale after {age_text(s['stale_after'])})")
        status, ts = s.get("status"), s.get("trading_state")
        if status in ("failed", "halted") or ts == "halted":
            add("session_state", sid, f"{sid}: status {status}, trading {ts}")
        for rule, kind, label in (("rejects", "reject", "reject"), ("risk_blocks", "risk_block", "risk block")):
            r = rules[rule]
            n = count_since(s.get("event_times", {}).get(kind, []), now - timedelta(seconds=r["window"]))
            if n > r["max"]:
                add(rule, sid, f"{sid}: {n:,} {label} event(s) in the last {age_text(r['window'])} (max {r['max']:,})")
    for tf, e in ((store or {}).get("timeframes") or {}).items():
        if e.get("stale"):
            add("store_stale", f"store/{tf}", f"store {tf}: {e['reason']}")
    for run in runs:
        if run.get("warnings"):
            first = run["warnings"][0]
            add("run_warnings", f"run/{run['name']}",
                f"backtest run {run['name']}: {len(run['warnings']):,} warning(s), first: {first}")
    return out


def describe_rules(cfg: dict) -> list[dict]:
    """One row per rule: ``rule enabled severity settings`` (text), for ``monitor rules --rules``."""
    rows = []
    for name, r in cfg["rules"].items():
        extra = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("enabled", "severity"))
        rows.append({"rule": name, "enabled": r["enabled"], "severity": r["severity"], "settings": extra})
    return rows

