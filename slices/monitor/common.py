"""Small shared pieces of the monitor slice: the error type, roots of the files it reads, times.

Every function here is pure or only reads the environment; nothing writes a ledger or the store.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

# Seconds per bar of each timeframe name (SLICES.md shared definitions; 1mo taken as 30 days).
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400,
                     "1d": 86400, "1w": 7 * 86400, "1mo": 30 * 86400}


class MonitorError(Exception):
    """Bad input for the monitor (a rules file, an option, a path): one line naming what and where.
    The command line prints it as ``error: ...`` and exits with code 2."""


def utcnow() -> datetime:
    """The wall-clock time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def parse_time(text: str | None) -> datetime | None:
    """ISO-8601 text (``2020-01-10T00:00:00.000000Z``, ``2020-01-10``) as aware UTC; None when
    empty or unreadable (a reader of someone else's file never fails on one bad time)."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def iso(t: datetime) -> str:
    """Aware datetime as ISO-8601 UTC text with microseconds (the ledger's time format)."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def human_time(text: str | None) -> str:
    """Ledger time text for people: ``2020-01-10`` at midnight, ``2020-01-10T14:30:00Z`` otherwise."""
    t = parse_time(text)
    if t is None:
        return text or ""
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _root(option: str | os.PathLike | None, env: str, default: Path) -> Path:
    if option:
        return Path(option).expanduser()
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def ledgers_root(option: str | os.PathLike | None = None) -> Path:
    """``--ledgers DIR``, else ``$GPT_TRADER_LEDGERS``, else ``~/.gpt-trader/ledgers`` (contract 4)."""
    return _root(option, "GPT_TRADER_LEDGERS", Path.home() / ".gpt-trader" / "ledgers")


def store_root(option: str | os.PathLike | None = None) -> Path:
    """``--store DIR``, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store`` (contract 1).

    A store the user names (the option or the variable) must be an existing folder: MonitorError
    otherwise (SLICES.md contract 1, "Which store"); the default store may be missing."""
    root = _root(option, "GPT_TRADER_STORE", Path.home() / ".gpt-trader" / "store")
    by = "--store" if option else "$GPT_TRADER_STORE" if os.environ.get("GPT_TRADER_STORE") else None
    if by is not None and not root.is_dir():
        raise MonitorError(f"{by} {root}: {'not a folder' if root.exists() else 'no such folder'}")
    return root


def db_path(option: str | os.PathLike | None = None) -> Path:
    """The monitor's own SQLite file: ``--db FILE``, else ``$GPT_TRADER_MONITOR_DB``, else
    ``~/.gpt-trader/monitor/monitor.sqlite``."""
    return _root(option, "GPT_TRADER_MONITOR_DB", Path.home() / ".gpt-trader" / "monitor" / "monitor.sqlite")


def runs_root(option: str | os.PathLike | None = None) -> Path:
    """Backtest run folders (contract 3): ``--runs DIR``, else ``$GPT_TRADER_RUNS``, else ``./runs``
    (where ``backtest run`` writes by default)."""
    return _root(option, "GPT_TRADER_RUNS", Path("runs"))


def money(x: float | None) -> str:
    """``100,000.00`` (empty for None)."""
    return "" if x is None else f"{x:,.2f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals: ``-0.0123`` -> ``-1.23%`` (empty for None)."""
    return "" if x is None else f"{x * 100:.2f}%"


def age_text(seconds: float | None) -> str:
    """``42 s``, ``5.0 min``, ``3.2 h``, ``2.1 d`` (empty for None)."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.1f} d"
