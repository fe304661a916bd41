"""Helpers of the paper_trade tests: running the CLI as a real process, reading ledgers."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "slices" / "sample"
TABLES = {"orders": "id", "fills": "id", "positions": "symbol", "equity": "time"}


def env(ledgers: Path | None = None) -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    if ledgers is not None:
        e["GPT_TRADER_LEDGERS"] = str(ledgers)
    return e


def cli(*args: str, ledgers: Path | None = None, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m slices.paper_trade ARGS`` as a real process."""
    return subprocess.run([sys.executable, "-m", "slices.paper_trade", *args], capture_output=True, text=True,
                          env=env(ledgers), timeout=timeout, cwd=cwd or ROOT)


def popen(*args: str, ledgers: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slices.paper_trade", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(ledgers), cwd=ROOT)


def ledger_path(ledgers: Path, session: str) -> Path:
    return ledgers / "paper" / f"{session}.sqlite"


def read_tables(path: Path) -> dict[str, list[tuple]]:
    """orders, fills, positions and equity rows of a ledger (read-only), each sorted by its key."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall() for t, k in TABLES.items()}
    finally:
        conn.close()


def meta(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def write_store(root: Path, symbol: str, bars: pl.DataFrame, timeframe: str = "1d") -> None:
    """Write bars into a store the way the data slice does: a dot-file in the folder, then rename."""
    folder = root / "bars" / timeframe
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{symbol}.parquet.{os.getpid()}.tmp"
    bars.write_parquet(tmp)
    os.replace(tmp, folder / f"{symbol}.parquet")


def sample_bars(symbol: str, timeframe: str = "1d") -> pl.DataFrame:
    return pl.read_parquet(SAMPLE / "bars" / timeframe / f"{symbol}.parquet")


def close_enough(a: np.ndarray, b: np.ndarray, rel: float = 1e-9) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= rel * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))))


def last_bar(path: Path) -> str | None:
    """A ledger's ``last_bar_time`` (None before it exists or while its schema is being created)."""
    try:
        return meta(path).get("last_bar_time") if path.exists() else None
    except sqlite3.OperationalError:  # the file exists but its schema is not committed yet
        return None


def wait_until(cond, seconds: float, proc: subprocess.Popen, step: float = 0.05) -> None:
    """Poll ``cond()`` until true; fail when ``proc`` ended or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while not cond():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)
