"""Freshness of the bar store (SLICES.md contract 1), read-only.

For each timeframe folder ``<root>/bars/<timeframe>/`` the newest bar over its ``*.parquet`` files
(only the ``timestamp`` column is read; cached per file until its mtime or size changes).

Freshness is judged during market hours only (the XNYS calendar from ``exchange_calendars``):
* intraday timeframes: stale when the market is open now and was open ``threshold`` ago, and the
  newest bar's open time is older than the threshold (``--stale-after`` seconds, else 3 bar
  intervals);
* ``1d``: stale when the market is open now and the newest bar is older than the previous session's
  date (bars are stamped 00:00 UTC of the session date);
* other timeframes (``1w``, ``1mo``) and any time outside market hours: not judged.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from .common import TIMEFRAME_SECONDS

_lock = threading.Lock()
_newest: dict[Path, tuple[tuple, datetime | None, str | None]] = {}


def _file_newest(path: Path) -> tuple[datetime | None, str | None]:
    """(newest timestamp, error) of one Parquet file, cached by (mtime, size)."""
    try:
        st = path.stat()
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    sig = (st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _newest.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1], hit[2]
    import polars as pl

    try:
        value = pl.scan_parquet(path).select(pl.col("timestamp").max()).collect().item()
        err = None
        if value is not None and not isinstance(value, datetime):
            value, err = None, f"{path}: timestamp is not a datetime column"
        elif value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
    except Exception as exc:  # polars raises several types for unreadable files
        first = str(exc).strip().splitlines()
        value, err = None, f"{path}: unreadable Parquet ({first[0] if first else type(exc).__name__})"
    with _lock:
        _newest[path] = (sig, value, err)
    return value, err


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xcals

    return xcals.get_calendar("XNYS")


def market_open(now: datetime) -> bool | None:
    """Whether XNYS is open at ``now`` (None when the calendar does not cover that date)."""
    try:
        cal = _calendar()
        minute = now.astimezone(timezone.utc).replace(second=0, microsecond=0, tzinfo=None)
        return bool(cal.is_open_on_minute(minute))
    except Exception:  # outside the calendar's bounds
        return None


def previous_session(now: datetime) -> datetime | None:
    """The XNYS session before the one open at ``now`` (00:00 UTC of its date), or None."""
    try:
        cal = _calendar()
        minute = now.astimezone(timezone.utc).replace(second=0, microsecond=0, tzinfo=None)
        current = cal.minute_to_session(minute, direction="previous")
        prev = cal.previous_session(current)
        return datetime(prev.year, prev.month, prev.day, tzinfo=timezone.utc)
    except Exception:
        return None


def store_status(root: Path, now: datetime, stale_after: float | None = None) -> dict:
    """``{"root", "exists", "timeframes": {tf: {...}}}``; per timeframe folder: ``symbols``
    (files read), ``newest`` (ISO time of the newest bar or None), ``age`` (seconds since that bar's
    open time), ``checked`` (whether freshness was judged now, see the module doc), ``stale``
    (bool), ``threshold`` (seconds), ``reason`` (text when stale or not checked), ``errors``
    (unreadable files)."""
    bars = root / "bars"
    out: dict = {"root": str(root), "exists": bars.is_dir(), "timeframes": {}}
    if not out["exists"]:
        return out
    is_open = None
    for folder in sorted(p for p in bars.iterdir() if p.is_dir()):
        tf = folder.name
        newest, errors, n = None, [], 0
        for f in sorted(folder.glob("*.parquet")):
            value, err = _file_newest(f)
            n += 1
            if err:
                errors.append(err)
            elif value is not None and (newest is None or value > newest):
                newest = value
        entry = {"symbols": n, "newest": newest.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if newest else None,
                 "age": (now - newest).total_seconds() if newest else None, "checked": False, "stale": False,
                 "threshold": None, "reason": "", "errors": errors}
        out["timeframes"][tf] = entry
        if tf not in TIMEFRAME_SECONDS or tf in ("1w", "1mo") or newest is None:
            entry["reason"] = "not judged for this timeframe" if newest is not None else "no bars"
            continue
        threshold = float(stale_after) if stale_after else 3.0 * TIMEFRAME_SECONDS[tf]
        entry["threshold"] = threshold
        if is_open is None:
            is_open = market_open(now)
        if not is_open:
            entry["reason"] = "market closed: not judged"
            continue
        if tf == "1d":
            prev = previous_session(now)
            if prev is None:
                entry["reason"] = "outside the calendar: not judged"
                continue
            entry["checked"] = True
            if newest < prev:
                entry["stale"] = True
                entry["reason"] = (f"newest 1d bar {newest:%Y-%m-%d} is older than the previous session "
                                   f"{prev:%Y-%m-%d}")
            continue
        if not market_open(now - timedelta(seconds=threshold)):
            entry["reason"] = "market opened less than the threshold ago: not judged"
            continue
        entry["checked"] = True
        if entry["age"] > threshold:
            entry["stale"] = True
            entry["reason"] = f"newest {tf} bar is {entry['age'] / 60:,.1f} min old (threshold {threshold / 60:,.1f} min)"
    return out
