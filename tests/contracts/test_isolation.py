"""Slice isolation (SLICES.md): import-linter's independence contract over slices.*, checked on
the real tree and shown to fail on a planted violation."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT, SLICE_NAMES, built_slices

LINT = """
import sys
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))
"""


def lint(cwd) -> subprocess.CompletedProcess:
    """import-linter through its Python API in the test's own interpreter (never skipped: import-linter is a
    test dependency, and `lint-imports` may be missing from PATH even when the package is installed)."""
    return subprocess.run([sys.executable, "-c", LINT, str(cwd / "pyproject.toml")], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_independence_contract_is_configured_over_every_slice():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert cfg["root_package"] == "slices"
    (contract,) = [c for c in cfg["contracts"] if c["type"] == "independence"]
    assert contract["modules"] == ["slices.*"]


def test_slices_are_independent():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout


def test_slices_package_holds_no_code():
    tree = ast.parse((ROOT / "slices" / "__init__.py").read_text())
    assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in tree.body)


def test_only_known_slices_and_the_sample_live_under_slices():
    children = {p.name for p in (ROOT / "slices").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert children <= set(SLICE_NAMES) | {"sample"}
    assert not list((ROOT / "slices" / "sample").rglob("*.py")), "the embedded sample is data only"


@pytest.mark.parametrize("bad", ["cross_slice", "shared_package"])
def test_linter_catches_a_planted_violation(tmp_path, bad):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    pkg = tmp_path / "slices"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("backtest", "optimize"):
        (pkg / name).mkdir()
        (pkg / name / "__init__.py").write_text("")
    if bad == "cross_slice":
        (pkg / "optimize" / "search.py").write_text("from slices.backtest import engine\n")
        (pkg / "backtest" / "engine.py").write_text("X = 1\n")
    else:
        (pkg / "common").mkdir()
        (pkg / "common" / "__init__.py").write_text("")
        (pkg / "optimize" / "search.py").write_text("import slices.common\n")
    res = lint(tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout + res.stderr
