"""Fixtures for the analyze slice's tests (no network; ../shared is optional)."""

from __future__ import annotations

import pytest
from analyze_helpers import SP500


@pytest.fixture
def no_store(tmp_path, monkeypatch):
    """No named store and an empty HOME, so the default store ~/.gpt-trader/store is absent and
    every symbol falls back to the embedded sample (only the default store does: SLICES.md)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GPT_TRADER_STORE", raising=False)
    return home / ".gpt-trader" / "store"


@pytest.fixture
def sample_aapl():
    from slices.analyze.bars import SAMPLE_ROOT, BarRequest, load_bars

    return load_bars(["AAPL"], BarRequest(store=str(SAMPLE_ROOT)))["AAPL"]


@pytest.fixture
def sp500():
    if not SP500.exists():
        pytest.skip(f"shared data {SP500} absent (a fresh clone has no ../shared)")
    return SP500
