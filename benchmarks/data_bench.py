"""Benchmark of the data slice (prints figures; not a test).

Run from the repository root: ``python benchmarks/data_bench.py``. Needs
``../shared/data/sp500_daily_2015_2020.parquet``. Targets (issue 3): importing the 482-symbol
file into an empty store under 5 s; validating all 482 stored symbols under 3 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slices.data.service import Target, import_files, validate_targets  # noqa: E402
from slices.data.store import Store  # noqa: E402

SP500 = ROOT.parent / "shared" / "data" / "sp500_daily_2015_2020.parquet"


def main(repeats: int = 3) -> None:
    if not SP500.is_file():
        print(f"skip: {SP500} not found")
        return
    imports, validations = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            st = Store(Path(tmp) / "store")
            t0 = time.perf_counter()
            reports, _ = import_files(st, [SP500])
            imports.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            targets = [Target(s, "1d", st.read("1d", s), "store") for s in st.symbols("1d")]
            findings = validate_targets(targets, "auto", datetime(2020, 1, 10, 23, tzinfo=timezone.utc))
            validations.append(time.perf_counter() - t0)
    rows = sum(r.total for r in reports)
    print(f"import {len(reports)} symbols ({rows} rows) into an empty store: "
          f"median {statistics.median(imports):.2f} s (runs: {', '.join(f'{x:.2f}' for x in imports)}; target < 5 s)")
    print(f"validate {len(targets)} stored symbols (read + all checks, {len(findings)} findings): "
          f"median {statistics.median(validations):.2f} s (runs: {', '.join(f'{x:.2f}' for x in validations)}; target < 3 s)")


if __name__ == "__main__":
    main()
