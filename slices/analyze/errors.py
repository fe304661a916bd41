"""Error and warning helpers of the analyze slice."""

from __future__ import annotations

import contextlib
import sys

_held: list[str] | None = None  # lines kept back while a command runs (see held())


class AnalyzeError(Exception):
    """Bad input (file, symbol, parameter). The CLI prints it as one line and exits with 2."""


def info(line: str) -> None:
    """Print ``line`` on stderr, or keep it back inside :func:`held`."""
    if _held is None:
        print(line, file=sys.stderr)
    else:
        _held.append(line)


@contextlib.contextmanager
def held():
    """Keep back every stderr line of :func:`info`, :func:`warn` and :func:`note` printed inside
    the block; print them when the block ends normally and drop them when it raises, so that an
    error line is the only line on stderr (SLICES.md command-line style). Nested blocks defer to
    the outermost one."""
    global _held
    if _held is not None:
        yield
        return
    _held = []
    try:
        yield
    except BaseException:
        _held = None
        raise
    lines, _held = _held, None
    for line in lines:
        print(line, file=sys.stderr)


def warn(message: str) -> None:
    """Print a one-line ``warning: ...`` on stderr (suspicious but usable data)."""
    info(f"warning: {message}")


def note(message: str) -> None:
    """Print a one-line ``note: ...`` on stderr."""
    info(f"note: {message}")


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
