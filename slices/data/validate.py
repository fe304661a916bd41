"""Integrity checks for bar series: the faults that real feeds have.

``validate_frame`` takes one symbol's bars in the store columns (raw: possibly unsorted, with
duplicates, NaN or non-positive prices) and returns ``Finding`` records. Every rule, its
threshold and its source is listed in ``Rules`` and in the slice README.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

import numpy as np
import polars as pl

from slices.data import calendars
from slices.data.schema import OHLC_RTOL, first_suspicious, fmt_price, fmt_time

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One fault: ``symbol``, ``timeframe``, ``kind``, ``severity`` (error|warning|info),
    ``start``/``end`` (UTC datetimes, equal for a single bar; for missing sessions the session
    dates at 00:00 UTC), ``count`` (bars or sessions concerned) and a human ``message``."""

    symbol: str
    timeframe: str
    kind: str
    severity: str
    start: datetime | None
    end: datetime | None
    count: int
    message: str

    def to_dict(self) -> dict:
        """JSON-ready dict (timestamps as ISO-8601 UTC strings)."""
        d = asdict(self)
        for k in ("start", "end"):
            v = d[k]
            d[k] = v.strftime("%Y-%m-%dT%H:%M:%SZ") if v is not None else None
        return d


@dataclass
class Rules:
    """Thresholds of the checks (defaults documented in the README with their sources).

    - ``outlier_window`` (63 bars, about one quarter of sessions) and ``outlier_min_periods``
      (20): the trailing window of log returns for the rolling median and MAD.
    - ``outlier_k`` (10): flag when ``|r - median| > k * 1.4826 * MAD`` (1.4826 makes the MAD a
      consistent estimate of sigma for normal data: Rousseeuw & Croux 1993; Hampel filter).
    - ``outlier_floor`` (0.25): the rolling scale is floored at this fraction of the whole
      series' MAD, so a quiet or stale window cannot make every move an outlier.
    - ``outlier_reversal`` (0.75) and ``outlier_big_log`` (ln 2): a flagged jump must also be
      either reversed by at least three quarters on the next bar (a bad print) or a
      halving/doubling (an unadjusted split or a unit error). A one-way earnings gap of 10-30 %
      is not flagged, nor is one that gives back half of it the next day (ABC 2016-11-02 in
      the shared S&P file: +8.8 % then -4.8 %).
    - ``outlier_min_move`` (0.01): absolute log returns below 1 % are never flagged (tick-size
      noise in quiet intraday series reaches 10 MADs without being a fault).
    - ``sub_penny`` (0.01): equity prices below one cent (SEC Rule 612 quotes >= $1 in pennies;
      a price under $0.01 in a large-cap series is a unit or placeholder fault).
    - ``zero_volume_run`` (1 bar daily, 10 bars intraday): minimum run length reported.
    - ``stale_repeats`` (1 repeat daily, 3 intraday): bars identical to the previous bar in all
      of open/high/low/close/volume.
    - ``stale_tolerance`` (1 session): a series is stale when it lacks more than this many
      completed sessions before ``asof``.
    """

    outlier_window: int = 63
    outlier_min_periods: int = 20
    outlier_k: float = 10.0
    outlier_floor: float = 0.25
    outlier_reversal: float = 0.75
    outlier_min_move: float = 0.01
    outlier_big_log: float = math.log(2.0)
    sub_penny: float = 0.01
    zero_volume_run: dict = field(default_factory=lambda: {"1d": 1, "intraday": 10})
    stale_repeats: dict = field(default_factory=lambda: {"1d": 1, "intraday": 3})
    stale_tolerance: int = 1

    def for_tf(self, table: dict, timeframe: str) -> int:
        """Look up a per-timeframe threshold (``1d`` or ``intraday``)."""
        return table["1d" if timeframe == "1d" else "intraday"]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the True runs of a boolean array."""
    if mask.size == 0 or not mask.any():
        return []
    m = np.concatenate(([False], mask.astype(bool), [False]))
    d = np.diff(m.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc)


def _day_dt(day: int) -> datetime:
    d = calendars.day_to_date(day)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _fmt(us: int, daily: bool) -> str:
    return fmt_time(int(us), daily)


class _Ctx:
    def __init__(self, symbol: str, timeframe: str):
        self.symbol, self.timeframe = symbol, timeframe
        self.daily = timeframe == "1d"
        self.out: list[Finding] = []

    def add(self, kind, severity, start, end, count, message):
        self.out.append(Finding(self.symbol, self.timeframe, kind, severity, start, end, count, message))

    def add_runs(self, kind, severity, ts, mask, what, min_len=1, extend_back=0):
        for a, b in _runs(mask):
            n = b - a + 1
            if n < min_len:
                continue
            a0 = max(0, a - extend_back)
            span = _fmt(ts[a0], self.daily) if a0 == b else f"{_fmt(ts[a0], self.daily)}..{_fmt(ts[b], self.daily)}"
            self.add(kind, severity, _dt(ts[a0]), _dt(ts[b]), n, f"{n} bar(s) {what} at {span}")


def _rolling_med_mad(r: np.ndarray, window: int, min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing robust location and scale of returns, excluding the current bar.

    ``med[t]`` = median of the up to ``window`` returns before ``t``; ``mad[t]`` = median of
    the absolute deviations ``|r[i] - med[i]|`` over the same trailing window (each return
    measured against its own trailing median: a streaming variant of the MAD that costs
    O(n log window) instead of a full sort per bar). NaN until ``min_periods`` values exist.
    """
    s = pl.Series(r)
    med = s.rolling_median(window, min_samples=min_periods).shift(1)
    dev = (s - med).abs()
    mad = dev.rolling_median(window, min_samples=min_periods).shift(1)
    return med.to_numpy().astype(np.float64), mad.to_numpy().astype(np.float64)


def _outliers(ctx: _Ctx, ts: np.ndarray, close: np.ndarray, rules: Rules) -> None:
    if close.size < rules.outlier_min_periods + 2:
        return
    r = np.diff(np.log(close))
    med, mad = _rolling_med_mad(r, rules.outlier_window, rules.outlier_min_periods)
    gmad = float(np.median(np.abs(r - np.median(r))))
    floor = max(rules.outlier_floor * 1.4826 * gmad, 1e-8)
    scale = np.maximum(1.4826 * mad, floor)
    with np.errstate(invalid="ignore"):
        z = np.abs(r - med) / scale
    nxt = np.append(r[1:], np.nan)
    with np.errstate(invalid="ignore"):
        reversed_ = (nxt * r < 0) & (np.abs(nxt) >= rules.outlier_reversal * np.abs(r))
        flag = (z > rules.outlier_k) & (np.abs(r) >= rules.outlier_min_move) & (
            (np.abs(r) > rules.outlier_big_log) | reversed_)
    for i in np.flatnonzero(flag).tolist():
        us = int(ts[i + 1])
        pct = (math.exp(r[i]) - 1) * 100
        why = "reversed next bar" if reversed_[i] else "price halves or doubles"
        ctx.add(
            "outlier_return",
            "warning",
            _dt(us),
            _dt(us),
            1,
            f"close moves {pct:+.1f}% at {_fmt(us, ctx.daily)}: {z[i]:.0f} robust sigmas "
            f"(rolling {rules.outlier_window}-bar MAD), {why}",
        )


def _sessions(ctx: _Ctx, ts: np.ndarray, code: str, asof: datetime | None, rules: Rules) -> None:
    if code == "none" or ts.size == 0:
        return
    days = np.unique((ts // 86_400_000_000).astype(np.int32))
    first, last = calendars.day_to_date(days[0]), calendars.day_to_date(days[-1])
    expected = calendars.sessions(code, first, last)
    if expected.size:
        missing = ~np.isin(expected, days)
        for a, b in _runs(missing):
            n = b - a + 1
            da, db = calendars.day_to_date(expected[a]), calendars.day_to_date(expected[b])
            span = da.isoformat() if n == 1 else f"{da}..{db}"
            ctx.add("missing_sessions", "warning", _day_dt(expected[a]), _day_dt(expected[b]), n,
                    f"{n} {code} session(s) without bars: {span}")
        if code != "FX":
            in_range = (days >= expected[0]) & (days <= expected[-1])
            extra = in_range & ~np.isin(days, expected)
            for d in days[extra].tolist():
                ctx.add("non_session_bar", "info", _day_dt(d), _day_dt(d), 1,
                        f"bar(s) on {calendars.day_to_date(d)}, not a {code} session")
    if asof is not None:
        due = calendars.last_completed_session(code, asof)
        if due is not None and due > last:
            behind = calendars.sessions(code, last, due)
            n_behind = int((behind > days[-1]).sum())
            if n_behind > rules.stale_tolerance:
                ctx.add("stale_series", "warning", _day_dt(days[-1]), _day_dt(calendars.to_days(due)), n_behind,
                        f"last bar {last} is {n_behind} {code} session(s) behind {due} (as of {fmt_time(asof, False)})")


def validate_frame(
    df: pl.DataFrame,
    symbol: str,
    timeframe: str,
    calendar: str = "auto",
    asof: datetime | None = None,
    rules: Rules | None = None,
    keep_suspicious: bool = False,
) -> list[Finding]:
    """Check one symbol's bars and return the findings, in check order.

    ``df``: columns ``timestamp`` (Datetime, UTC) ``open high low close volume`` (Float64), raw.
    ``calendar``: ``auto``/``XNYS``/``FX``/``none``/an exchange_calendars code (see
    ``calendars.calendar_for``). ``asof``: reference time for the stale-series check (None
    skips it). Kinds and severities:

    - error (what contract 2 refuses): ``null_timestamp``, ``empty``, ``unsorted``,
      ``duplicate``, ``bad_price`` (null, NaN, inf or <= 0), ``high_below_low``,
      ``negative_volume``, ``suspicious_series`` (SLICES.md shared definitions; a warning with
      ``keep_suspicious``);
    - warning: ``ohlc_inconsistent`` (open or close outside low..high), ``missing_sessions``,
      ``zero_volume``, ``missing_volume``, ``stale_bars``, ``outlier_return``, ``sub_penny``,
      ``stale_series``;
    - info: ``non_session_bar``.

    Later checks run on the sorted, de-duplicated rows, and the return-based checks on the
    rows whose prices are valid.
    """
    rules = rules or Rules()
    ctx = _Ctx(symbol, timeframe)
    code = calendars.calendar_for(symbol, calendar)
    tcol = df["timestamp"]
    if tcol.null_count():
        ctx.add("null_timestamp", "error", None, None, tcol.null_count(), f"{tcol.null_count()} row(s) without a timestamp")
        df = df.filter(pl.col("timestamp").is_not_null())
    if df.height == 0:
        ctx.add("empty", "error", None, None, 0, "no bars")
        return ctx.out
    ts = df["timestamp"].dt.cast_time_unit("us").dt.epoch("us").to_numpy()
    o, h, lo, c, v = (df[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume"))
    d = np.diff(ts)
    back = np.flatnonzero(d < 0)
    if back.size:
        us = int(ts[back[0] + 1])
        ctx.add("unsorted", "error", _dt(us), _dt(us), int(back.size),
                f"{back.size} timestamp(s) earlier than the previous row (first at {_fmt(us, ctx.daily)})")
    prices = np.vstack((o, h, lo, c))
    with np.errstate(invalid="ignore"):
        bad = (~np.isfinite(prices) | (prices <= 0)).any(axis=0)
    # Sort by time, valid rows after invalid ones at equal times, so that keeping the last row
    # of a duplicate group keeps a valid bar when there is one (CBS 2019-12-04 in the S&P file).
    order = np.lexsort((~bad, ts))
    ts, o, h, lo, c, v, bad = ts[order], o[order], h[order], lo[order], c[order], v[order], bad[order]
    d = np.diff(ts)
    dup = np.concatenate(([False], d == 0))
    ctx.add_runs("duplicate", "error", ts, dup, "repeat the previous timestamp")
    ctx.add_runs("bad_price", "error", ts, bad, "with a null, NaN, infinite or non-positive price")
    tol = OHLC_RTOL * np.abs(h)
    with np.errstate(invalid="ignore"):
        below = ~bad & (h < lo)
        incons = ~bad & ~below & ((h < np.maximum(o, c) - tol) | (lo > np.minimum(o, c) + tol))
    for kind, severity, mask, what in (("high_below_low", "error", below, "high below low"),
                                       ("ohlc_inconsistent", "warning", incons, "open or close outside low..high")):
        for i in np.flatnonzero(mask).tolist():
            us = int(ts[i])
            ctx.add(kind, severity, _dt(us), _dt(us), 1, f"{what} at {_fmt(us, ctx.daily)}: open {fmt_price(o[i])} "
                    f"high {fmt_price(h[i])} low {fmt_price(lo[i])} close {fmt_price(c[i])}")
    with np.errstate(invalid="ignore"):
        ctx.add_runs("negative_volume", "error", ts, v < 0, "with a negative volume")
    if dup.any():
        keep = np.concatenate((d != 0, [True]))  # the last row of each duplicate group
        ts, o, h, lo, c, v, bad = ts[keep], o[keep], h[keep], lo[keep], c[keep], v[keep], bad[keep]
    prices = np.vstack((o, h, lo, c))
    if code != "FX":
        with np.errstate(invalid="ignore"):
            sub = ~bad & (prices.min(axis=0) < rules.sub_penny)
        ctx.add_runs("sub_penny", "warning", ts, sub, f"with a price below {rules.sub_penny}")
    vnan = ~np.isfinite(v)
    ctx.add_runs("missing_volume", "warning", ts, vnan, "with a missing volume")
    ctx.add_runs("zero_volume", "warning", ts, v == 0, "with zero volume",
                 min_len=rules.for_tf(rules.zero_volume_run, timeframe))
    allv = np.vstack((prices, v))
    same = np.concatenate(([False], (allv[:, 1:] == allv[:, :-1]).all(axis=0))) & ~bad
    ctx.add_runs("stale_bars", "warning", ts, same, "identical to the previous bar (open/high/low/close/volume)",
                 min_len=rules.for_tf(rules.stale_repeats, timeframe), extend_back=1)
    good = ~bad
    sus = first_suspicious(prices.min(axis=0)[good], c[good])
    if sus is not None:
        us = int(ts[good][sus[0]])
        ctx.add("suspicious_series", "warning" if keep_suspicious else "error", _dt(us), _dt(us), sus[2],
                f"{_fmt(us, ctx.daily)}: {sus[1]}" + ("" if keep_suspicious else "; import would exclude it"))
    _outliers(ctx, ts[good], c[good], rules)
    _sessions(ctx, ts, code, asof, rules)
    return ctx.out


def summarize(findings: list[Finding]) -> dict[str, int]:
    """Counts per severity: ``{"error": n, "warning": n, "info": n}``."""
    out = {s: 0 for s in SEVERITIES}
    for f in findings:
        out[f.severity] += 1
    return out


def parse_asof(value: str | None) -> datetime | None:
    """``--asof``: ``now`` (default), ``none`` (skip the stale check) or an ISO date/datetime (UTC)."""
    if value is None or value == "now":
        return datetime.now(timezone.utc)
    if value == "none":
        return None
    dt = datetime.fromisoformat(value)
    if isinstance(dt, date) and not isinstance(dt, datetime):
        dt = datetime(dt.year, dt.month, dt.day)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if len(value) <= 10:  # a bare date means the end of that day
        dt = dt.replace(hour=23, minute=59, second=59)
    return dt
