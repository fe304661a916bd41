"""Error and warning helpers of the analyze slice."""

from __future__ import annotations

import sys


class AnalyzeError(Exception):
    """Bad input (file, symbol, parameter). The CLI prints it as one line and exits with 2."""


def warn(message: str) -> None:
    """Print a one-line ``warning: ...`` on stderr (suspicious but usable data)."""
    print(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Print a one-line ``note: ...`` on stderr."""
    print(f"note: {message}", file=sys.stderr)


def warn_grouped(kind: str, items: list[tuple[str, int]], limit: int = 3) -> None:
    """Warn about ``kind`` for ``items`` ``[(symbol, count)]``: one line per symbol when there are
    at most ``limit``, else one summary line (``warning: 31 symbols with zero-volume bars (A, B, ...)``)."""
    if not items:
        return
    if len(items) <= limit:
        for sym, count in items:
            warn(f"{sym}: {count:,} {kind}")
        return
    names = ", ".join(s for s, _ in items[:8]) + (", ..." if len(items) > 8 else "")
    total = sum(c for _, c in items)
    warn(f"{len(items):,} symbols with {kind} ({total:,} in all: {names})")
