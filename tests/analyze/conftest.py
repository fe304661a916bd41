"""Fixtures for the analyze slice's tests (no network; ../shared is optional)."""

from __future__ import annotations

import pytest
from analyze_helpers import SP500


@pytest.fixture
def no_store(tmp_path, monkeypatch):
    """An empty store root, so that every symbol falls back to the embedded sample."""
    root = tmp_path / "empty-store"
    root.mkdir()
    monkeypatch.setenv("GPT_TRADER_STORE", str(root))
    return root


@pytest.fixture
def sample_aapl():
    from slices.analyze.bars import BarRequest, load_bars

    return load_bars(["AAPL"], BarRequest(store="/nonexistent-store"))["AAPL"]


@pytest.fixture
def sp500():
    if not SP500.exists():
        pytest.skip(f"shared data {SP500} absent (a fresh clone has no ../shared)")
    return SP500
