"""The session ledger (SLICES.md contract 4): one SQLite file per session, one writer, WAL.

``<ledgers>/<kind>/<session>.sqlite`` where ``<ledgers>`` is ``--ledgers DIR``, else
``$GPT_TRADER_LEDGERS``, else ``~/.gpt-trader/ledgers``; ``kind`` is ``paper`` here.

* :class:`Writer` holds the exclusive lock file ``<session>.lock`` (filelock) for the whole life
  of the process, writes the pid sidecar ``<session>.pid`` after taking it, opens the database in
  WAL mode with ``synchronous=FULL`` and writes each bar in one transaction
  (:meth:`Writer.transaction`).
* :func:`open_reader` opens a ledger read-only (``file:<path>?mode=ro``); readers never block the
  writer.

Every SQLite or file-system failure becomes a :class:`LedgerError` with a one-line message
naming the file (the CLI prints ``error: ...`` and exits with code 2). Times are ISO-8601 UTC text
with microseconds (:func:`iso`); money is REAL in the account currency.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KIND = "paper"
SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, broker_id TEXT, symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL,
    qty REAL NOT NULL, limit_price REAL, stop_price REAL, time_in_force TEXT NOT NULL, status TEXT NOT NULL,
    filled_qty REAL NOT NULL DEFAULT 0, avg_fill_price REAL, signal_time TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, reason TEXT, note TEXT, parent_id TEXT);
CREATE TABLE IF NOT EXISTS fills (
    id TEXT PRIMARY KEY, order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    price REAL NOT NULL, commission REAL NOT NULL, time TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, qty REAL NOT NULL, avg_price REAL, realized_pnl REAL NOT NULL, updated_at TEXT,
    mark_price REAL, mark_time TEXT);
CREATE TABLE IF NOT EXISTS equity (
    time TEXT PRIMARY KEY, cash REAL NOT NULL, equity REAL NOT NULL, gross_exposure REAL NOT NULL,
    drawdown REAL NOT NULL, benchmark REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, level TEXT NOT NULL, kind TEXT NOT NULL, message TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS fills_order ON fills(order_id);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
"""
ORDER_COLUMNS = ("id", "broker_id", "symbol", "side", "type", "qty", "limit_price", "stop_price", "time_in_force",
                 "status", "filled_qty", "avg_fill_price", "signal_time", "created_at", "updated_at", "reason", "note",
                 "parent_id")
FILL_COLUMNS = ("id", "order_id", "symbol", "side", "qty", "price", "commission", "time", "reason")
POSITION_COLUMNS = ("symbol", "qty", "avg_price", "realized_pnl", "updated_at", "mark_price", "mark_time")
EQUITY_COLUMNS = ("time", "cash", "equity", "gross_exposure", "drawdown", "benchmark")
EVENT_COLUMNS = ("id", "time", "level", "kind", "message", "data")


class LedgerError(Exception):
    """A ledger that cannot be used (locked, corrupted, unwritable, full, wrong schema): one line."""


def iso(us: int | np.integer) -> str:
    """Microseconds since the Unix epoch (UTC) as ``2020-01-10T00:00:00.000000Z``."""
    return str(np.datetime64(int(us), "us")) + "Z"


def from_iso(text: str) -> int:
    """Inverse of :func:`iso`: microseconds since the epoch."""
    return int(np.datetime64(text.rstrip("Z"), "us").astype(np.int64))


def now_iso() -> str:
    """The wall-clock time as ISO-8601 UTC text with microseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ledgers_root(ledgers: str | os.PathLike | None) -> Path:
    """``--ledgers DIR``, else ``$GPT_TRADER_LEDGERS``, else ``~/.gpt-trader/ledgers``."""
    if ledgers:
        return Path(ledgers).expanduser()
    env = os.environ.get("GPT_TRADER_LEDGERS")
    return Path(env).expanduser() if env else Path.home() / ".gpt-trader" / "ledgers"


def check_session(name: str) -> str:
    """The session name checked against ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`` (ValueError otherwise)."""
    if not SESSION_RE.match(name or ""):
        raise ValueError(f"--session {name!r}: a session name is 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name


def session_path(root: Path, session: str, kind: str = KIND) -> Path:
    """``<root>/<kind>/<session>.sqlite`` (the session name is checked first)."""
    return root / kind / f"{check_session(session)}.sqlite"


def _describe(exc: BaseException, path: Path) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in msg or "malformed" in msg):
        return f"{path}: ledger file is corrupted ({msg}); move it away or `remove` the session"
    if "disk is full" in msg or "No space" in msg or getattr(exc, "errno", None) == 28:
        return f"{path}: disk full ({msg}); the ledger keeps every bar written before"
    if "readonly" in msg or "read-only" in msg or isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (13, 30):
        return f"{path}: ledger is not writable ({msg})"
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or msg}"
    return f"{path}: {msg}"


def ledger_error(exc: BaseException, path: Path) -> LedgerError:
    """A one-line LedgerError for an SQLite or OS failure on ``path``."""
    return LedgerError(_describe(exc, path))


class Writer:
    """The one writer of a session's ledger.

    ``synchronous``: ``FULL`` (every commit reaches the disk before the next bar: following
    sessions) or ``NORMAL`` (replays: a commit is atomic and survives a killed process, but a power
    cut may lose the last bars, which a resumed replay recomputes identically).

    ``Writer(path)`` takes the lock (LedgerError naming the holder's pid when another process has
    it), writes ``<session>.pid`` and opens (creating if needed) the database. ``is_new`` tells
    whether the ledger had no meta yet. Use :meth:`transaction` for every write and :meth:`close`
    at the end (also releases the lock).
    """

    def __init__(self, path: Path, synchronous: str = "FULL"):
        from filelock import FileLock, Timeout

        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.pid_path = path.with_suffix(".pid")
        self.conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.lock_path), timeout=0)
            try:
                self._lock.acquire()
            except Timeout:
                pid = _read_pid(self.pid_path)
                raise LedgerError(f"session {path.stem} is already running (pid {pid}; lock {self.lock_path})") from None
            self.pid_path.write_text(f"{os.getpid()}\n")
        except LedgerError:
            raise
        except OSError as exc:
            raise ledger_error(exc, self.lock_path) from None
        try:
            existed = path.exists() and path.stat().st_size > 0 and has_meta(path)
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.synchronous = "NORMAL" if synchronous == "NORMAL" else "FULL"
            self.conn.execute(f"PRAGMA synchronous={self.synchronous}")
            if existed:
                version = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if version is None or version[0] != str(SCHEMA_VERSION):
                    raise LedgerError(f"{path}: ledger schema_version {version[0] if version else 'missing'}, "
                                      f"this paper_trade reads version {SCHEMA_VERSION}")
            else:
                self.conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
            self.is_new = self.conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 0
        except LedgerError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise ledger_error(exc, path) from None

    @contextmanager
    def transaction(self, durable: bool = True):
        """``with writer.transaction() as cur:`` one atomic write (BEGIN IMMEDIATE .. COMMIT);
        rolled back on any error, which is re-raised (SQLite errors as LedgerError).
        ``durable=False`` (a heartbeat): committed with ``synchronous=NORMAL`` even in a FULL
        ledger, so no fsync waits for it (still atomic; the next durable commit syncs it too)."""
        cur = self.conn.cursor()
        light = not durable and self.synchronous == "FULL"
        if light:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise ledger_error(exc, self.path) from None
            raise
        finally:
            if light:
                self.conn.execute("PRAGMA synchronous=FULL")

    def meta(self) -> dict[str, str]:
        """Every meta key -> value (text)."""
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        """Close the database and release the lock (the pid sidecar is removed)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None
        lock = getattr(self, "_lock", None)
        if lock is not None and lock.is_locked:
            try:
                self.pid_path.unlink(missing_ok=True)
            except OSError:
                pass
            lock.release()


def has_meta(path: Path) -> bool:
    """Whether the ledger file at ``path`` holds its meta rows. A process killed while it created
    the ledger (before its first commit) leaves a file without them: such a ledger is new.
    LedgerError for a file that is not a readable SQLite database."""
    try:
        conn = connect_ro(path)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
                return False
            return conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ledger_error(exc, path) from None


def set_meta(cur: sqlite3.Cursor, items: dict) -> None:
    """Upsert meta keys (values that are not text are stored as JSON)."""
    cur.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    [(k, v if isinstance(v, str) or v is None else json.dumps(v)) for k, v in items.items()])


def _read_pid(pid_path: Path) -> str:
    try:
        return pid_path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (``file:<path>?mode=ro``). SQLite cannot open a WAL database that
    way in a folder it cannot write (no ``-shm`` to create there: a read-only mount, a copied
    ledger); when that fails and no ``-wal`` file holds commits, the file is read as immutable,
    which is exact then (every commit is in the main file, and no writer can run in a folder
    where it cannot take its lock). sqlite3.Error otherwise."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        wal = path.with_name(path.name + "-wal")
        if os.access(path.parent, os.W_OK) or (wal.exists() and wal.stat().st_size):
            raise
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def open_reader(path: Path) -> sqlite3.Connection:
    """Open a ledger read-only (``file:<path>?mode=ro``). LedgerError when it is missing,
    corrupted or of another schema version."""
    if not path.is_file():
        raise LedgerError(f"{path}: no such session ledger")
    try:
        conn = connect_ro(path)
        if not (conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
                and conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone()):
            conn.close()
            raise LedgerError(f"{path}: not a session ledger yet (no meta: empty, or its run was killed while "
                              "creating it); `run` starts it as new, or `remove` it")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.Error as exc:
        raise ledger_error(exc, path) from None
    if row is None or row[0] != str(SCHEMA_VERSION):
        conn.close()
        raise LedgerError(f"{path}: ledger schema_version {row[0] if row else 'missing'}, "
                          f"this paper_trade reads version {SCHEMA_VERSION}")
    return conn


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """meta as key -> text."""
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def list_sessions(root: Path, kind: str = KIND) -> list[Path]:
    """The ledger files under ``<root>/<kind>/`` sorted by name."""
    folder = root / kind
    return sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
