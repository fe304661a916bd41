"""Each built slice's tests pass with every other slice absent: the slice, slices/__init__.py,
the embedded sample and tests/<slice>/ are copied into a temporary directory and run there."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, built_slices


@pytest.mark.parametrize("name", built_slices())
def test_slice_tests_pass_alone(tmp_path, name):
    (tmp_path / "slices").mkdir()
    shutil.copy(ROOT / "slices" / "__init__.py", tmp_path / "slices" / "__init__.py")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "slices" / name, tmp_path / "slices" / name, ignore=ignore)
    shutil.copytree(ROOT / "slices" / "sample", tmp_path / "slices" / "sample", ignore=ignore)
    shutil.copytree(ROOT / "tests" / name, tmp_path / "tests" / name, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPT_TRADER_STORE")}
    env["PYTHONPATH"] = str(tmp_path)
    where = subprocess.run([sys.executable, "-c", "import slices, sys; print(slices.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert where.stdout.strip() == str(tmp_path / "slices" / "__init__.py"), "the copy must shadow the installed tree"
    others = [p.name for p in (tmp_path / "slices").iterdir() if p.is_dir() and p.name not in (name, "sample")]
    assert others == []
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{name}"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
