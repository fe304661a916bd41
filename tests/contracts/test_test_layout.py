"""The test tree itself: every test module has a basename unique across tests/ (pytest imports
test modules by basename in its default import mode, so two `test_cli.py` in different slice
folders break the collection of the whole suite while each folder passes alone)."""
from __future__ import annotations

from collections import defaultdict

from conftest import ROOT


def test_test_module_basenames_are_unique_across_slices():
    seen = defaultdict(list)
    for path in (ROOT / "tests").rglob("*.py"):
        if "fixtures" in path.parts or path.name == "conftest.py" or path.name == "__init__.py":
            continue
        seen[path.name].append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename so each basename is unique (prefix with the slice): {clashes}"
