"""Shared fixtures of the optimize tests (kept inside tests/optimize so the slice tests run alone)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "slices" / "sample"
SP500 = ROOT.parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"


@pytest.fixture(autouse=True)
def empty_store(tmp_path_factory, monkeypatch):
    """No named store and an empty HOME: the embedded sample is read, never a developer's store."""
    monkeypatch.delenv("GPT_TRADER_STORE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def sp500() -> Path:
    """The shared S&P 500 daily file (../shared/data); the test is skipped when it is absent."""
    if not SP500.exists():
        pytest.skip(f"shared data not present ({SP500})")
    return SP500


def optimize(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m slices.optimize ARGS`` as a subprocess with an empty HOME store."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GPT_TRADER_STORE", None)
    return subprocess.run([sys.executable, "-m", "slices.optimize", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)
