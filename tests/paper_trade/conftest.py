"""Shared fixtures of the paper_trade tests (kept inside tests/paper_trade so the slice tests run alone)."""
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
def isolated(tmp_path_factory, monkeypatch):
    """No named store, a HOME without ~/.gpt-trader, ledgers in a temporary folder: a developer's
    real store and sessions never leak into tests."""
    monkeypatch.delenv("GPT_TRADER_STORE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("GPT_TRADER_LEDGERS", str(tmp_path_factory.mktemp("ledgers")))
