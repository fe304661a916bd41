"""The bar store (SLICES.md, contract 1): paths, atomic writes, per-symbol metadata, the lock.

Layout: ``<root>/bars/<timeframe>/<SYMBOL>.parquet``. Per-symbol provenance lives in the Parquet
file's key-value metadata under the key ``gpt_trader`` (a JSON object, written in the same
atomic rename as the bars, so bars and provenance never disagree). The result of the last
``validate`` lives in ``<root>/meta/validation.json`` (validation does not rewrite bar files).
Writers hold ``<root>/.lock`` (``filelock``); readers need no lock because every file is
replaced by an atomic rename.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import polars as pl
from filelock import FileLock, Timeout

from slices.data.errors import DataError
from slices.data.schema import COLUMNS, SCHEMA, TIMEFRAMES, check_symbol, check_timeframe, price_fault_mask

META_KEY = "gpt_trader"
META_VERSION = 1
SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
DEFAULT_LOCK_TIMEOUT = 120.0


def resolve_root(store: str | os.PathLike | None) -> Path:
    """Store root: ``store`` if given, else ``$GPT_TRADER_STORE``, else ``~/.gpt-trader/store``."""
    if store:
        return Path(store).expanduser()
    env = os.environ.get("GPT_TRADER_STORE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".gpt-trader" / "store"


def open_store(store: str | os.PathLike | None, writing: bool = False) -> "Store":
    """The store a command uses (SLICES.md, "Which store").

    A path that is a file is an error. A store the user names (``store`` or
    ``$GPT_TRADER_STORE``) that does not exist is an error for reading commands; writing
    commands (``writing=True``) create it on their first write. Raises ``DataError``.
    """
    root = resolve_root(store)
    named = bool(store) or bool(os.environ.get("GPT_TRADER_STORE"))
    if root.exists() and not root.is_dir():
        raise DataError(f"store {root} is a file, not a folder")
    if named and not writing and not root.exists():
        how = "--store" if store else "$GPT_TRADER_STORE"
        raise DataError(f"store {root} does not exist (named by {how}); fetch or import into it first")
    return Store(root, named=named)


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 UTC string ``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Entry:
    """One stored series as shown by ``list``: rows, first/last bar, metadata."""

    timeframe: str
    symbol: str
    rows: int
    first: datetime | None
    last: datetime | None
    meta: dict


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write) -> None:
    """Write a file atomically: ``write(tmp_path)`` into a temporary file in the same folder,
    fsync it, then ``os.replace`` it over ``path`` and fsync the folder.

    The temporary name starts with ``.`` and does not end in ``.parquet``, so no reader ever
    globs it; an interrupted writer leaves at most such a temporary file, never a truncated
    ``path``. Source: POSIX rename(2) atomicity within one file system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some file systems do not allow fsync on a directory
        pass


class Store:
    """A bar store rooted at ``root`` (see the module docstring for the layout).

    ``read_only`` stores (the embedded sample) refuse every write with ``DataError``.
    ``named``: the user named this store (``--store`` or ``$GPT_TRADER_STORE``); only the
    default store falls back to the embedded sample (SLICES.md, "Which store").
    """

    def __init__(self, root: str | os.PathLike, read_only: bool | None = None, named: bool = False):
        self.root = Path(root)
        self.named = named
        if read_only is None:
            read_only = self.root.resolve() == SAMPLE_ROOT
        self.read_only = read_only
        self._lock: FileLock | None = None

    # ---- paths -------------------------------------------------------------------------
    def path(self, timeframe: str, symbol: str) -> Path:
        """``<root>/bars/<timeframe>/<SYMBOL>.parquet`` (symbol and timeframe checked)."""
        return self.root / "bars" / check_timeframe(timeframe) / f"{check_symbol(symbol)}.parquet"

    def has(self, timeframe: str, symbol: str) -> bool:
        """True if the series is stored."""
        return self.path(timeframe, symbol).is_file()

    def symbols(self, timeframe: str) -> list[str]:
        """Sorted symbols stored for ``timeframe`` (temporary and hidden files ignored)."""
        folder = self.root / "bars" / timeframe
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet") if not p.name.startswith("."))

    def timeframes(self) -> list[str]:
        """Timeframes that hold at least one symbol, in ``TIMEFRAMES`` order."""
        return [tf for tf in TIMEFRAMES if self.symbols(tf)]

    # ---- reading -----------------------------------------------------------------------
    def read(self, timeframe: str, symbol: str) -> pl.DataFrame:
        """The stored bars (store schema; extra columns dropped). ``DataError`` if absent/corrupt."""
        path = self.path(timeframe, symbol)
        if not path.is_file():
            raise DataError(f"{symbol} {timeframe} not in store {self.root}")
        try:
            df = pl.read_parquet(path)
        except Exception as exc:
            raise DataError(f"{path}: unreadable Parquet file ({type(exc).__name__})") from None
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        return df.select(COLUMNS)

    def meta(self, timeframe: str, symbol: str) -> dict:
        """The ``gpt_trader`` metadata of a stored series ({} if none, e.g. the sample)."""
        path = self.path(timeframe, symbol)
        try:
            kv = pl.read_parquet_metadata(path)
        except Exception:
            return {}
        raw = kv.get(META_KEY)
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def entry(self, timeframe: str, symbol: str) -> Entry:
        """Rows, first/last bar and metadata of a stored series (reads only the timestamp column)."""
        path = self.path(timeframe, symbol)
        ts = pl.scan_parquet(path).select(
            pl.len().alias("n"), pl.col("timestamp").min().alias("a"), pl.col("timestamp").max().alias("b")
        ).collect()
        return Entry(timeframe, symbol, int(ts["n"][0]), ts["a"][0], ts["b"][0], self.meta(timeframe, symbol))

    # ---- writing -----------------------------------------------------------------------
    def check_writable(self) -> None:
        """Raise ``DataError`` if this store is read-only (the embedded sample)."""
        if self.read_only:
            raise DataError(f"store {self.root} is read-only (the embedded sample); use --store DIR")

    @contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the store's writer lock ``<root>/.lock`` (``filelock.FileLock``).

        Raises ``DataError`` if another writer holds it longer than ``timeout`` seconds
        (default ``$GPT_TRADER_LOCK_TIMEOUT`` or 120).
        """
        self.check_writable()
        if timeout is None:
            raw = os.environ.get("GPT_TRADER_LOCK_TIMEOUT", "")
            try:
                timeout = float(raw) if raw.strip() else DEFAULT_LOCK_TIMEOUT
            except ValueError:
                raise DataError(f"GPT_TRADER_LOCK_TIMEOUT={raw!r}: use a number of seconds") from None
        if self._lock is None:
            self.root.mkdir(parents=True, exist_ok=True)
            # one FileLock per Store: re-entrant within this process (filelock counts nesting)
            self._lock = FileLock(str(self.root / ".lock"))
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise DataError(f"store {self.root} is locked by another writer ({self.root / '.lock'}); try again later") from None
        try:
            yield
        finally:
            self._lock.release()

    def write(self, timeframe: str, symbol: str, df: pl.DataFrame, meta: dict) -> Path:
        """Atomically replace the series with ``df`` (store schema) and ``meta`` (temporary
        files of an earlier killed writer of this series are removed first).

        ``meta`` is merged over the standard keys ``schema symbol timeframe rows first last``.
        The caller holds ``lock()``. Raises ``DataError`` if ``df`` breaks contract 1 (columns,
        dtypes, strictly increasing timestamps, finite positive prices, ``high >= low``).
        Imported bars may have open or close outside low..high (contract 2 warns, keeps them).
        """
        self.check_writable()
        if list(df.columns) != list(COLUMNS) or dict(df.schema) != SCHEMA:
            raise DataError(f"{symbol} {timeframe}: frame does not match the store schema: {dict(df.schema)}")
        if df.height and not df["timestamp"].is_sorted() or df["timestamp"].is_duplicated().any():
            raise DataError(f"{symbol} {timeframe}: timestamps are not strictly increasing")
        if df.height and df.select(price_fault_mask().alias("b"))["b"].any():
            raise DataError(f"{symbol} {timeframe}: non-positive/NaN prices or high below low; not written")
        full = {
            "schema": META_VERSION,
            "symbol": symbol,
            "timeframe": timeframe,
            **meta,
            "rows": df.height,
            "first": iso(df["timestamp"].min()) if df.height else None,
            "last": iso(df["timestamp"].max()) if df.height else None,
        }
        path = self.path(timeframe, symbol)
        self._remove_orphans(path)
        atomic_write_bytes(path, lambda tmp: df.write_parquet(tmp, metadata={META_KEY: json.dumps(full, sort_keys=True)}))
        return path

    def _remove_orphans(self, path: Path) -> None:
        """Delete temporary files a killed writer left for ``path`` (``.<name>.*.tmp``).

        Only while this process holds the lock: every store writer holds it while its temporary
        file exists, so any such file found then belongs to a writer that died.
        """
        if self._lock is None or not self._lock.is_locked or not path.parent.is_dir():
            return
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    def remove(self, timeframe: str, symbol: str) -> None:
        """Delete a stored series (the caller holds ``lock()``); ``DataError`` if absent."""
        self.check_writable()
        path = self.path(timeframe, symbol)
        if not path.is_file():
            raise DataError(f"{symbol} {timeframe} not in store {self.root}")
        path.unlink()
        self.record_validation({(timeframe, symbol): None})

    # ---- validation record -------------------------------------------------------------
    @property
    def validation_path(self) -> Path:
        """``<root>/meta/validation.json``: ``{timeframe: {SYMBOL: {last_validated, errors, warnings, infos}}}``."""
        return self.root / "meta" / "validation.json"

    def validation(self) -> dict:
        """The validation record ({} if none or unreadable)."""
        try:
            value = json.loads(self.validation_path.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def record_validation(self, results: dict[tuple[str, str], dict | None]) -> None:
        """Merge ``{(timeframe, symbol): record or None}`` into the record (None deletes).

        Written atomically; the caller holds ``lock()``.
        """
        self.check_writable()
        data = self.validation()
        for (tf, sym), rec in results.items():
            if rec is None:
                data.get(tf, {}).pop(sym, None)
            else:
                data.setdefault(tf, {})[sym] = rec
        payload = json.dumps(data, indent=1, sort_keys=True).encode()
        atomic_write_bytes(self.validation_path, lambda tmp: Path(tmp).write_bytes(payload))


def merge_bars(old: pl.DataFrame | None, new: pl.DataFrame, mode: str) -> pl.DataFrame:
    """Combine stored bars with new ones (both in store schema, sorted, unique).

    ``mode="replace_range"`` (fetch): stored bars inside ``[new.first, new.last]`` are
    replaced by ``new``, bars outside are kept. ``mode="upsert"`` (import, SLICES.md contract
    2): stored bars at the timestamps of ``new`` are replaced, every other stored bar is kept. ``mode="extend"`` (update): only new bars
    strictly after the last stored bar or strictly before the first are added; stored bars
    are never touched.
    """
    if old is None or old.height == 0:
        return new
    if new.height == 0:
        return old
    if mode == "replace_range":
        a, b = new["timestamp"].min(), new["timestamp"].max()
        kept = old.filter((pl.col("timestamp") < a) | (pl.col("timestamp") > b))
        return pl.concat([kept, new]).sort("timestamp")
    if mode == "upsert":
        kept = old.join(new.select("timestamp"), on="timestamp", how="anti")
        return pl.concat([kept, new]).sort("timestamp")
    if mode == "extend":
        a, b = old["timestamp"].min(), old["timestamp"].max()
        add = new.filter((pl.col("timestamp") < a) | (pl.col("timestamp") > b))
        return pl.concat([old, add]).sort("timestamp")
    raise ValueError(f"unknown merge mode {mode!r}")
