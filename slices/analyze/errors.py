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
