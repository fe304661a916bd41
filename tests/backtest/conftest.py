"""Shared fixtures of the backtest tests (kept inside tests/backtest so the slice tests run alone)."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=40, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def empty_store(tmp_path_factory, monkeypatch):
    """Point GPT_TRADER_STORE at an empty folder so a developer's real store never leaks into tests."""
    monkeypatch.setenv("GPT_TRADER_STORE", str(tmp_path_factory.mktemp("store")))
