"""Helpers of the contract tests."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLICE_NAMES = ("data", "analyze", "backtest", "optimize", "paper_trade", "live_trade", "monitor")


def built_slices() -> list[str]:
    """The slices that exist as packages under slices/ (SLICES.md lists the planned ones too)."""
    return [n for n in SLICE_NAMES if (ROOT / "slices" / n / "__init__.py").exists()]
