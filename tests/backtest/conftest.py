"""Shared fixtures of the backtest tests (kept inside tests/backtest so the slice tests run alone)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=40, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def use_empty_default_store(tmp_path_factory, monkeypatch) -> None:
    """No named store and a HOME without ``~/.gpt-trader/store``: the default store is empty, so
    the embedded sample is read and a developer's real store never leaks into tests. (A named
    store, ``--store`` or $GPT_TRADER_STORE, never falls back to the sample: SLICES.md contract 1.)"""
    monkeypatch.delenv("GPT_TRADER_STORE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def empty_store(tmp_path_factory, monkeypatch):
    """Every test starts with an empty default store (see :func:`use_empty_default_store`)."""
    use_empty_default_store(tmp_path_factory, monkeypatch)


SP500 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"


@pytest.fixture(scope="session")
def sp500() -> Path:
    """The shared S&P 500 daily file (../shared/data); the test is skipped when it is absent."""
    if not SP500.exists():
        pytest.skip(f"shared data not present ({SP500})")
    return SP500
