"""Backtest run folders (SLICES.md contract 3), read-only.

A run folder is a direct child of the runs root holding ``metrics.json``. Only names matching
:data:`RUN_RE` are listed, and every path is built from a checked name, so a URL can never reach
outside the root.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+=-]{0,199}$")
_lock = threading.Lock()
_cache: dict[Path, tuple[tuple, dict]] = {}


def _summary(folder: Path) -> dict:
    """``name strategy symbols timeframe start end total_return sharpe max_drawdown n_trades
    final_equity warnings (list of str) has_report modified (mtime, seconds since the epoch)``,
    or ``name error`` when metrics.json cannot be read."""
    mfile = folder / "metrics.json"
    st = mfile.stat()
    sig = (st.st_mtime_ns, st.st_size, (folder / "report.html").exists())
    with _lock:
        hit = _cache.get(folder)
    if hit is not None and hit[0] == sig:
        return hit[1]
    out = {"name": folder.name, "modified": st.st_mtime, "has_report": sig[2]}
    try:
        doc = json.loads(mfile.read_text(encoding="utf-8"))
        run, port = doc.get("run") or {}, doc.get("portfolio") or {}
        warnings = doc.get("warnings") or []
        out.update(strategy=run.get("strategy"), symbols=list(run.get("symbols") or []), timeframe=run.get("timeframe"),
                   start=run.get("start"), end=run.get("end"),
                   warnings=[str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)],
                   **{k: port.get(k) for k in ("total_return", "sharpe", "max_drawdown", "n_trades", "final_equity")})
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        out.update(error=f"{mfile}: unreadable metrics.json ({type(exc).__name__})", warnings=[])
    with _lock:
        _cache[folder] = (sig, out)
    return out


def list_runs(root: Path, limit: int = 500) -> list[dict]:
    """Summaries of the run folders under ``root``, newest (metrics.json mtime) first, at most
    ``limit``. A missing root gives an empty list."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if RUN_RE.match(p.name) and p.is_dir() and (p / "metrics.json").is_file():
            try:
                out.append(_summary(p))
            except OSError:
                continue
    out.sort(key=lambda r: r["modified"], reverse=True)
    return out[:limit]


def report_path(root: Path, name: str) -> Path | None:
    """``<root>/<name>/report.html`` when ``name`` is a valid run name and the file exists."""
    if not RUN_RE.match(name or ""):
        return None
    p = root / name / "report.html"
    return p if p.is_file() else None
