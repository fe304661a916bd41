"""Fixtures for the data slice's tests (offline; network tests need GPT_TRADER_NETWORK_TESTS=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
SP500 = SHARED / "sp500_daily_2015_2020.parquet"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GPT_TRADER_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network; set GPT_TRADER_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "network: needs the internet (GPT_TRADER_NETWORK_TESTS=1)")


@pytest.fixture
def sp500() -> Path:
    if not SP500.is_file():
        pytest.skip(f"shared data absent: {SP500} (only in the project workspace, not in a fresh clone)")
    return SP500


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Never touch the user's store or real credentials."""
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path / "default-store"))
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    monkeypatch.delenv("GPT_TRADER_PROVIDER", raising=False)


