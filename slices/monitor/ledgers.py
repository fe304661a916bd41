"""Read-only access to the session ledgers (SLICES.md contract 4).

``<ledgers>/<kind>/<session>.sqlite`` for kind ``paper`` and ``live``. Every ledger is opened with
``file:<path>?mode=ro`` plus ``PRAGMA query_only``, so the monitor never writes one and never
blocks its writer (WAL readers take no lock the writer waits for).

* :func:`discover` lists the sessions.
* :func:`read_summary` reads what the dashboard row, the metrics and the rules need (one short
  read transaction); :class:`SummaryCache` keeps it until the ledger's change token
  (:func:`signature`) changes.
* :func:`derive` turns a raw summary into the figures people see (ages, day P&L) at a given time.
* :func:`session_detail`, :func:`equity_series`, :func:`day_activity` read the rest on demand.

A ledger that cannot be read (corrupt, locked for too long, another schema) gives a summary with
an ``error`` text instead of raising: one bad file never hides the others.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .common import TIMEFRAME_SECONDS, parse_time

KINDS = ("paper", "live")
SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OPEN_ORDER_STATUSES = ("new", "accepted", "partially_filled")
ORDER_STATUSES = ("new", "accepted", "partially_filled", "filled", "canceled", "rejected", "expired", "dry_run")
META_KEYS = ("schema_version", "kind", "session", "strategy", "params", "symbols", "timeframe", "created_at",
             "status", "trading_state", "heartbeat_at", "last_bar_time", "pid")
RISK_EVENT_KINDS = ("risk_block", "halt", "reject")


@dataclass(frozen=True)
class SessionRef:
    """One ledger file: ``kind`` (paper/live), ``name`` (the session), ``path``."""

    kind: str
    name: str
    path: Path

    @property
    def id(self) -> str:
        """``<kind>/<name>``, the session's id in URLs, alert keys and metrics labels."""
        return f"{self.kind}/{self.name}"


def discover(root: Path) -> list[SessionRef]:
    """Every ``<root>/{paper,live}/<session>.sqlite`` whose name is a valid session name, sorted by
    kind then name. A missing root gives an empty list."""
    out = []
    for kind in KINDS:
        folder = root / kind
        try:
            with os.scandir(folder) as entries:
                names = sorted(e.name[:-7] for e in entries if e.name.endswith(".sqlite") and e.is_file())
        except OSError:  # no such folder (or not one)
            continue
        out += [SessionRef(kind, n, folder / f"{n}.sqlite") for n in names if SESSION_RE.match(n)]
    return out


def find(root: Path, kind: str, name: str) -> SessionRef | None:
    """The session ``kind``/``name`` when its ledger exists (names are checked before any path is
    built, so a hostile URL never reaches the file system)."""
    if kind not in KINDS or not SESSION_RE.match(name or ""):
        return None
    path = root / kind / f"{name}.sqlite"
    return SessionRef(kind, name, path) if path.is_file() else None


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` URI, ``query_only``); rows as sqlite3.Row."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=2.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only=1")
    return conn


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read(ref: SessionRef, fn):
    """Run ``fn(conn)`` in one read transaction; sqlite errors become ``{"error": ...}``."""
    try:
        conn = connect(ref.path)
    except sqlite3.Error as exc:
        return {"error": f"{ref.path}: {_one_line(exc)}"}
    try:
        conn.execute("BEGIN")
        return fn(conn)
    except sqlite3.Error as exc:
        return {"error": f"{ref.path}: {_one_line(exc)}"}
    finally:
        conn.close()


def _json(text, default):
    try:
        return json.loads(text) if text else default
    except (TypeError, ValueError):
        return default


def read_summary(ref: SessionRef) -> dict:
    """The raw summary of one session.

    Keys: ``id kind session`` and the meta keys of contract 4 (``status trading_state
    heartbeat_at last_bar_time strategy timeframe symbols params created_at pid``), ``last``
    (the newest equity row: ``time cash equity gross_exposure drawdown``, or None), ``day_open``
    (equity at the last row before the newest row's UTC date, else the first row's equity),
    ``orders`` (status -> count), ``fills``, ``rejects`` (events of kind ``reject``),
    ``risk_blocks`` (events of kind ``risk_block``), ``open_positions`` (qty != 0),
    ``critical`` (list of ``{id, time, kind, message}`` of level-``critical`` events),
    ``event_times`` (kind -> list of event times, for reject/risk_block/halt windows).
    On a read failure: ``{"id", "kind", "session", "error"}``.
    """
    def q(conn):
        meta = {k: v for k, v in conn.execute("SELECT key, value FROM meta") if k in META_KEYS}
        last = conn.execute("SELECT time, cash, equity, gross_exposure, drawdown FROM equity "
                            "ORDER BY time DESC LIMIT 1").fetchone()
        day_open = None
        if last is not None:
            day = str(last["time"])[:10]
            row = conn.execute("SELECT equity FROM equity WHERE time < ? ORDER BY time DESC LIMIT 1", (day,)).fetchone()
            if row is None:
                row = conn.execute("SELECT equity FROM equity ORDER BY time LIMIT 1").fetchone()
            day_open = row["equity"]
        orders = {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM orders GROUP BY status")}
        fills = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
        kinds = {r[0]: r[1] for r in conn.execute(
            "SELECT kind, count(*) FROM events WHERE kind IN ('reject', 'risk_block', 'halt') GROUP BY kind")}
        times: dict[str, list[str]] = {k: [] for k in RISK_EVENT_KINDS}
        for r in conn.execute("SELECT kind, time FROM events WHERE kind IN ('reject', 'risk_block', 'halt') "
                              "ORDER BY id DESC LIMIT 5000"):
            times[r[0]].append(r[1])
        open_pos = conn.execute("SELECT count(*) FROM positions WHERE qty != 0").fetchone()[0]
        critical = [dict(r) for r in conn.execute(
            "SELECT id, time, kind, message FROM events WHERE level = 'critical' ORDER BY id")]
        return {
            **meta,
            "symbols": _json(meta.get("symbols"), []),
            "params": _json(meta.get("params"), {}),
            "last": dict(last) if last is not None else None,
            "day_open": day_open,
            "orders": orders,
            "fills": fills,
            "rejects": kinds.get("reject", 0),
            "risk_blocks": kinds.get("risk_block", 0),
            "open_positions": open_pos,
            "critical": critical,
            "event_times": times,
        }

    out = _read(ref, q)
    return {**out, "id": ref.id, "kind": ref.kind, "session": ref.name}


# A file changed this recently (ns) may change again within the file system's timestamp
# granularity without its (mtime, size) changing: what is read from it is not cached (the
# "racily clean" rule of git's index), so a cached answer is never older than the files' state.
RACY_NS = 50_000_000


def signature(path: Path) -> tuple:
    """The change token of a ledger: ``(mtime_ns, size, inode)`` of ``<session>.sqlite`` and of its
    ``-wal`` file (None for a missing or empty file: a reader may leave an empty WAL behind, and
    an empty WAL holds nothing). Every commit grows or rewrites the WAL and every
    checkpoint rewrites the database file, so a commit changes the token (see :data:`RACY_NS`)."""
    sig, name = [], os.fspath(path)
    for p in (name, name + "-wal"):
        try:
            st = os.stat(p)
        except OSError:
            st = None
        sig.append((st.st_mtime_ns, st.st_size, st.st_ino) if st is not None and st.st_size else None)
    return tuple(sig)


_listings: dict[str, tuple[tuple, list[tuple[str, str]]]] = {}


def root_token(root: Path) -> tuple:
    """A change token of every ledger under ``root``, from file metadata only: ``(mtime_ns,
    inode)`` of the ``paper/`` and ``live/`` folders and ``(name, mtime_ns, size, inode)`` of each
    non-empty ``*.sqlite-wal``. In WAL mode every commit writes the WAL, and creating, removing or
    renaming a ledger, its WAL or a rollback journal changes the folder, so any change to what
    a reader sees changes the token (within the file system's timestamp granularity, see
    :data:`RACY_NS`). The folder listings are kept until their folder changes."""
    out = []
    for kind in KINDS:
        folder = os.path.join(root, kind)
        try:
            st = os.stat(folder)
        except OSError:
            continue
        stamp = (st.st_mtime_ns, st.st_ino)
        hit = _listings.get(folder)
        if hit is None or hit[0] != stamp:
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.name.endswith(".sqlite"))
            except OSError:
                continue
            hit = _listings[folder] = (stamp, [(n, os.path.join(folder, n + "-wal")) for n in names])
        out.append((kind, *stamp))
        for name, wal in hit[1]:
            try:
                st = os.stat(wal)
            except OSError:
                continue
            if st.st_size:  # as signature(): an empty WAL holds nothing
                out.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def settled(sig: tuple, now_ns: int) -> bool:
    """True when no file of the token ``sig`` (:func:`signature`) changed within :data:`RACY_NS`
    of ``now_ns`` (``time.time_ns()``), so data read after ``now_ns`` may be cached under it."""
    return all(part is None or part[0] < now_ns - RACY_NS for part in sig)


class SummaryCache:
    """Raw summaries of every session under a ledger root, re-read only when a ledger's token
    (:func:`signature`) changed, so many dashboard clients cost one read per commit. A summary
    read within :data:`RACY_NS` of a change is not kept. Thread-safe."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple, dict]] = {}

    def summary(self, ref: SessionRef) -> dict:
        """The raw summary (:func:`read_summary`) of one session, from the cache when its ledger's
        token is unchanged."""
        now_ns, sig = time.time_ns(), signature(ref.path)
        with self._lock:
            hit = self._cache.get(ref.path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        summary = read_summary(ref)
        if "error" not in summary and settled(sig, now_ns):
            with self._lock:
                self._cache[ref.path] = (sig, summary)
        return summary

    def summaries(self) -> list[dict]:
        """Raw summaries (:func:`read_summary`) of :func:`discover` ``(root)``, in its order."""
        refs = discover(self.root)
        out = [self.summary(ref) for ref in refs]
        live = {r.path for r in refs}
        with self._lock:
            for p in [p for p in self._cache if p not in live]:
                del self._cache[p]
        return out


def stale_after_seconds(timeframe: str | None, stale_after: float | None) -> float:
    """The heartbeat age beyond which a running session is stale: ``stale_after`` seconds when
    given (> 0), else 3 bar intervals of the session's timeframe (1d when unknown)."""
    if stale_after:
        return float(stale_after)
    return 3.0 * TIMEFRAME_SECONDS.get(timeframe or "1d", 86400)


def derive(raw: dict, now: datetime, stale_after: float | None = None) -> dict:
    """The figures people see, computed at ``now`` from a raw summary (a new dict).

    Adds: ``heartbeat_age`` (seconds, None without a heartbeat), ``stale`` (status ``running`` and
    heartbeat older than :func:`stale_after_seconds`, or no heartbeat), ``stale_after`` (seconds),
    ``equity cash gross_exposure drawdown`` (currency; drawdown a fraction <= 0), ``exposure``
    (gross exposure / equity, a fraction), ``day_pnl`` (currency: equity - ``day_open``),
    ``day_return`` (fraction of ``day_open``), ``open_orders`` (new + accepted + partially filled),
    ``last_time`` (newest equity row time).
    """
    d = dict(raw)
    if "error" in raw:
        d.update(stale=False, heartbeat_age=None)
        return d
    hb = parse_time(raw.get("heartbeat_at"))
    d["heartbeat_age"] = None if hb is None else max(0.0, (now - hb).total_seconds())
    d["stale_after"] = stale_after_seconds(raw.get("timeframe"), stale_after)
    d["stale"] = raw.get("status") == "running" and (d["heartbeat_age"] is None or d["heartbeat_age"] > d["stale_after"])
    last = raw.get("last") or {}
    eq = last.get("equity")
    d.update(equity=eq, cash=last.get("cash"), gross_exposure=last.get("gross_exposure"),
             drawdown=last.get("drawdown"), last_time=last.get("time"))
    d["exposure"] = (last["gross_exposure"] / eq) if eq else None
    day_open = raw.get("day_open")
    d["day_pnl"] = (eq - day_open) if eq is not None and day_open is not None else None
    d["day_return"] = (d["day_pnl"] / day_open) if d["day_pnl"] is not None and day_open else None
    d["open_orders"] = sum(raw.get("orders", {}).get(s, 0) for s in OPEN_ORDER_STATUSES)
    return d


def count_since(times: list[str], since: datetime) -> int:
    """How many ISO times in ``times`` are at or after ``since``."""
    n = 0
    for t in times:
        tt = parse_time(t)
        if tt is not None and tt >= since:
            n += 1
    return n


def _downsample(rows: list[dict], max_points: int) -> list[dict]:
    """At most ``max_points`` rows, evenly strided, always keeping the last one."""
    if max_points <= 0 or len(rows) <= max_points:
        return rows
    step = len(rows) / max_points
    picked = [rows[int(i * step)] for i in range(max_points - 1)]
    return picked + [rows[-1]]


_reads_lock = threading.Lock()
_reads: dict[tuple, tuple[tuple, dict]] = {}


def _read_cached(ref: SessionRef, key: tuple, fn) -> dict:
    """:func:`_read` ``(ref, fn)``, kept under ``(ref.path, *key)`` until the ledger's token
    (:func:`signature`) changes; read failures and reads within :data:`RACY_NS` of a change are
    not kept. The same answer object is returned to every caller: do not mutate it."""
    key, now_ns, sig = (ref.path, *key), time.time_ns(), signature(ref.path)
    with _reads_lock:
        hit = _reads.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    out = _read(ref, fn)
    if "error" not in out and settled(sig, now_ns):
        with _reads_lock:
            if len(_reads) > 1000:
                _reads.clear()
            _reads[key] = (sig, out)
    return out


def equity_series(ref: SessionRef, max_points: int = 2000) -> dict:
    """``{"points": [{time, equity, drawdown, cash, gross_exposure}], "rows": n}`` oldest first,
    downsampled to ``max_points`` (the newest row always kept); ``{"error"}`` on a read failure.
    Kept until the ledger changes (:func:`_read_cached`: do not mutate the answer)."""
    def q(conn):
        rows = [dict(r) for r in conn.execute(
            "SELECT time, equity, drawdown, cash, gross_exposure FROM equity ORDER BY time")]
        return {"rows": len(rows), "points": _downsample(rows, max_points)}
    return _read_cached(ref, ("equity", max_points), q)


def session_detail(ref: SessionRef, limit: int = 50) -> dict:
    """Positions (every symbol with qty != 0, with ``mark_price`` and ``unrealized`` when the ledger
    has a mark), open orders, the newest ``limit`` fills and events (newest first) and the
    run settings. ``{"error"}`` on a read failure. Kept until the ledger changes
    (:func:`_read_cached`: do not mutate the answer)."""
    def q(conn):
        pcols = {r[1] for r in conn.execute("PRAGMA table_info(positions)")}
        positions = []
        for r in conn.execute("SELECT * FROM positions WHERE qty != 0 ORDER BY symbol"):
            p = {k: r[k] for k in ("symbol", "qty", "avg_price", "realized_pnl", "updated_at")}
            mark = r["mark_price"] if "mark_price" in pcols else None
            p["mark_price"] = mark
            p["value"] = mark * r["qty"] if mark is not None else None
            p["unrealized"] = (mark - r["avg_price"]) * r["qty"] if mark is not None and r["avg_price"] is not None else None
            positions.append(p)
        marks = ",".join("?" * len(OPEN_ORDER_STATUSES))
        orders = [dict(r) for r in conn.execute(
            "SELECT id, symbol, side, type, qty, filled_qty, limit_price, stop_price, status, reason, created_at "
            f"FROM orders WHERE status IN ({marks}) ORDER BY created_at DESC LIMIT ?", (*OPEN_ORDER_STATUSES, limit))]
        fills = [dict(r) for r in conn.execute(
            "SELECT id, order_id, symbol, side, qty, price, commission, time FROM fills "
            "ORDER BY time DESC, rowid DESC LIMIT ?", (limit,))]
        events = [dict(r) for r in conn.execute(
            "SELECT id, time, level, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,))]
        settings = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        return {"positions": positions, "open_orders": orders, "fills": fills, "events": events,
                "settings": _json(settings[0] if settings else None, {})}
    return _read_cached(ref, ("detail", limit), q)


def day_activity(ref: SessionRef, day: str) -> dict:
    """One UTC day ``YYYY-MM-DD`` of a session, for the digest.

    ``open`` (equity at the last row before the day, else the day's first row), ``close`` (the
    day's last row), ``pnl`` and ``return`` (close - open, fraction of open; None without rows that
    day), ``fills`` (count), ``traded`` (sum of qty x price), ``commission`` (sum), ``events``
    (warning/error/critical events and risk_block/halt/reject events of the day, by their time).
    """
    start = datetime.fromisoformat(day)
    nxt = (start + timedelta(days=1)).strftime("%Y-%m-%d")

    def q(conn):
        close = conn.execute("SELECT equity FROM equity WHERE time >= ? AND time < ? ORDER BY time DESC LIMIT 1",
                             (day, nxt)).fetchone()
        opened = conn.execute("SELECT equity FROM equity WHERE time < ? ORDER BY time DESC LIMIT 1", (day,)).fetchone()
        if opened is None:
            opened = conn.execute("SELECT equity FROM equity WHERE time >= ? AND time < ? ORDER BY time LIMIT 1",
                                  (day, nxt)).fetchone()
        f = conn.execute("SELECT count(*), coalesce(sum(qty * price), 0), coalesce(sum(commission), 0) FROM fills "
                         "WHERE time >= ? AND time < ?", (day, nxt)).fetchone()
        events = [dict(r) for r in conn.execute(
            "SELECT id, time, level, kind, message FROM events WHERE time >= ? AND time < ? AND "
            "(level IN ('warning', 'error', 'critical') OR kind IN ('risk_block', 'halt', 'reject')) ORDER BY id",
            (day, nxt))]
        o = opened[0] if opened else None
        c = close[0] if close else None
        pnl = c - o if c is not None and o is not None else None
        return {"open": o, "close": c, "pnl": pnl, "return": pnl / o if pnl is not None and o else None,
                "fills": f[0], "traded": f[1], "commission": f[2], "events": events}
    return _read(ref, q)
