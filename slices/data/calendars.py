"""Trading calendars: which session dates a series should have.

- ``XNYS`` (US equities): sessions from ``exchange_calendars`` (NYSE holidays and early closes).
- ``FX``: 24/5, one session per weekday Monday..Friday (UTC date of the bar).
- ``none``: no calendar rules.
- any other ``exchange_calendars`` code (``XLON``, ``XETR``...) is accepted as is.

``auto`` picks ``FX`` for six-letter currency pairs of ISO-4217 majors (``EURUSD``, also
``EURUSD=X``) and ``XNYS`` otherwise.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import numpy as np

from slices.data.errors import DataError

_CCY = {"USD", "EUR", "JPY", "GBP", "CHF", "AUD", "NZD", "CAD", "SEK", "NOK", "DKK", "HKD", "SGD", "CNH", "MXN", "ZAR", "TRY", "PLN"}
_FX_RE = re.compile(r"^([A-Z]{3})([A-Z]{3})(=X)?$")
_EPOCH = date(1970, 1, 1)


def calendar_for(symbol: str, name: str = "auto") -> str:
    """Calendar code for a symbol: ``name`` unless it is ``auto`` (then FX pair -> ``FX``, else ``XNYS``)."""
    if name != "auto":
        return name if name in ("FX", "none") else name.upper()
    m = _FX_RE.match(symbol.upper())
    if m and m.group(1) in _CCY and m.group(2) in _CCY:
        return "FX"
    return "XNYS"


@lru_cache(maxsize=8)
def _exchange(code: str, start_year: int):
    import warnings

    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            # exchange_calendars 4.x trips a pandas 3.1 deprecation warning inside its own code
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            return xcals.get_calendar(code, start=f"{start_year}-01-01")
    except Exception as exc:
        raise DataError(f"unknown or unusable calendar {code!r} ({type(exc).__name__})") from None


@lru_cache(maxsize=32)
def _session_days(code: str, start_year: int) -> np.ndarray:
    """Sorted session dates as int days since 1970-01-01 (int32), full calendar range."""
    cal = _exchange(code, start_year)
    return (cal.sessions.values.astype("datetime64[D]").astype(np.int64)).astype(np.int32)


def to_days(d: date) -> int:
    """Days since 1970-01-01 (the int encoding of session dates)."""
    return (d - _EPOCH).days


def _start_year(first: date) -> int:
    # One cached calendar per decade keeps construction cheap (~0.1 s) and covers old data.
    return min(first.year, 2000) // 10 * 10


def sessions(code: str, first: date, last: date) -> np.ndarray:
    """Session dates in ``[first, last]`` as int days since 1970-01-01 (sorted, int32).

    ``FX``: weekdays. Exchange codes: ``exchange_calendars`` sessions; dates beyond the
    calendar's range are not judged (the array just ends). ``none``: empty.
    """
    if code == "none" or last < first:
        return np.empty(0, dtype=np.int32)
    lo, hi = to_days(first), to_days(last)
    if code == "FX":
        days = np.arange(lo, hi + 1, dtype=np.int32)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
        return days[weekday < 5]
    arr = _session_days(code, _start_year(first))
    return arr[(arr >= lo) & (arr <= hi)]


@lru_cache(maxsize=64)
def last_completed_session(code: str, asof: datetime) -> date | None:
    """The most recent session whose close is at or before ``asof`` (UTC).

    Exchange codes use the calendar's session close times; ``FX`` takes a weekday complete at
    22:00 UTC (the New York 17:00 roll, standard time); ``none`` returns None.
    """
    if asof.tzinfo is None:
        asof = asof.replace(tzinfo=timezone.utc)
    if code == "none":
        return None
    if code == "FX":
        d = (asof - timedelta(hours=22)).date()
        while d.weekday() >= 5:
            d -= timedelta(days=1)
        return d
    cal = _exchange(code, _start_year(asof.date() - timedelta(days=30)))
    days = _session_days(code, _start_year(asof.date() - timedelta(days=30)))
    idx = int(np.searchsorted(days, to_days(asof.date()), side="right")) - 1
    while idx >= 0:
        d = _EPOCH + timedelta(days=int(days[idx]))
        close = cal.session_close(d.isoformat()).to_pydatetime()
        if close <= asof:
            return d
        idx -= 1
    return None


def day_to_date(day: int) -> date:
    """Inverse of the int-day encoding used by ``sessions``."""
    return _EPOCH + timedelta(days=int(day))
