"""Contract 2 (direct bar files) is read the same way by every slice.

Each fixture of `fixtures/bars/cases.json` (written by `fixtures/bars/make_fixtures.py`, the
expectations computed there by hand from SLICES.md) goes through:

- `backtest`:     `python -m slices.backtest bars --data F ... --out OUT.parquet`
- `backtest-run`: `python -m slices.backtest run --data F ... --no-report --out DIR` (error cases)
- `analyze`:      `python -m slices.analyze indicators --data F ... -i sma:2 --out OUT.parquet`
- `data`:         `python -m slices.data import F ... --store S`, then the store files read back
- `optimize`:     `python -m slices.optimize search --data F ... --strategy simple_ma --param fast=2
                  --param slow=3 --no-report -o DIR -q` (every error case and a few load cases:
                  exit 0, the warnings and the excluded symbols; it writes no bars to compare)
- `paper_trade`:  `python -m slices.paper_trade run --session S --replay --data F ... --ledgers L -q`
- `live_trade`:   `python -m slices.live_trade run --session S --replay --data F ... --ledgers L -q`
                  (a dry run without --account; both: every error case)

and must give exactly the expected normalised bars (values and dtypes; prices after adjustment at
1e-12 relative), the expected warnings and excluded symbols, or the expected one-line error with
exit code 2. The commands of the selected tests run concurrently (each is a fresh interpreter), so
the module costs about the slowest slice's start-up time per case divided by the CPU count.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import assert_one_line_error, built_slices, shown, start_selected, stderr_lines

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bars"
CASES = {c["name"]: c for c in json.loads((FIXTURES / "cases.json").read_text())}
COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
STORE_COLUMNS = COLUMNS[1:]
SCHEMA = {"symbol": pl.String, "timestamp": pl.Datetime("us", "UTC"), **{c: pl.Float64 for c in COLUMNS[2:]}}
READERS = {"backtest": "backtest", "backtest-run": "backtest", "analyze": "analyze", "data": "data",
           "optimize": "optimize", "paper_trade": "paper_trade", "live_trade": "live_trade"}
ERRORS_ONLY = {"backtest-run", "paper_trade", "live_trade"}  # readers run on the error cases only
# optimize also runs these load cases (the cheapest slice start-ups are the error cases)
OPTIMIZE_LOADS = {"basic_csv", "bad_and_good", "subpenny", "zoned_midnight", "split_over_files", "gap_warning"}


def expectation(case: dict, reader: str) -> dict:
    return case.get(reader, case["expect"]) if reader == "data" else case["expect"]


def params():
    out = []
    for name, case in CASES.items():
        for reader in READERS:
            if reader in ERRORS_ONLY and "error" not in case["expect"]:
                continue
            if reader == "optimize" and "error" not in case["expect"] and name not in OPTIMIZE_LOADS:
                continue
            out.append(pytest.param(name, reader, id=f"{name}-{reader}"))
    return out


def command(case: dict, reader: str, work: Path) -> list[str]:
    files = [str(FIXTURES / f) for f in case["files"]]
    data = [a for f in files for a in ("--data", f)]
    if reader == "backtest":
        return ["slices.backtest", "bars", *data, *case["args"], "--out", str(work / "bars.parquet")]
    if reader == "backtest-run":
        return ["slices.backtest", "run", *data, *case["args"], "--no-report", "--out", str(work / "run")]
    if reader == "analyze":
        return ["slices.analyze", "indicators", *data, *case["args"], "-i", "sma:2", "--out", str(work / "bars.parquet")]
    if reader == "optimize":
        return ["slices.optimize", "search", *data, *case["args"], "--strategy", "simple_ma", "--param", "fast=2",
                "--param", "slow=3", "--no-report", "-o", str(work / "opt"), "-q"]
    if reader in ("paper_trade", "live_trade"):
        return [f"slices.{reader}", "run", "--session", "contract2", "--replay", *data, *case["args"],
                "--strategy", "simple_ma", "--ledgers", str(work / "ledgers"), "-q"]
    return ["slices.data", "import", *files, *case["args"], "--store", str(work / "store")]


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """Every selected (case, reader) command, started at once; each test waits for its own."""
    def build(p, work):
        if READERS[p["reader"]] not in built_slices():
            return None
        return {"args": command(CASES[p["case"]], p["reader"], work)}

    jobs, pool = start_selected(request, tmp_path_factory.mktemp("contract2"), build)
    yield jobs
    pool.shutdown(wait=True, cancel_futures=True)


def read_output(reader: str, work: Path, timeframe: str) -> pl.DataFrame:
    """The normalised long frame a reader produced (the store files carry the symbol in their name)."""
    if reader in ("backtest", "analyze"):
        got = pl.read_parquet(work / "bars.parquet")
        missing = [c for c in COLUMNS if c not in got.columns]
        assert not missing, f"{reader} output lacks {missing}: {got.columns}"
        if reader == "backtest":
            assert got.columns == COLUMNS, got.columns
        return got.select(COLUMNS)
    paths = sorted((work / "store" / "bars").glob("*/*.parquet"))
    assert paths, "data import wrote no bar file"
    assert {p.parent.name for p in paths} == {timeframe}, [str(p.relative_to(work)) for p in paths]
    frames = []
    for p in paths:
        df = pl.read_parquet(p)
        assert df.columns == STORE_COLUMNS, f"{p.name}: {df.columns} (contract 1 wants {STORE_COLUMNS})"
        frames.append(df.select(pl.lit(p.stem, pl.String).alias("symbol"), *STORE_COLUMNS))
    return pl.concat(frames)


def assert_same_bars(got: pl.DataFrame, want: pl.DataFrame, adjusted: bool) -> None:
    assert dict(got.schema) == SCHEMA, f"dtypes {dict(got.schema)} != {SCHEMA}"
    got = got.sort("symbol", "timestamp", maintain_order=True)
    assert got["symbol"].to_list() == want["symbol"].to_list() and got["timestamp"].to_list() == want["timestamp"].to_list(), (
        f"symbols/timestamps differ:\n{got.select('symbol', 'timestamp')}\nwant\n{want.select('symbol', 'timestamp')}")
    if adjusted:
        assert_frame_equal(got, want, rel_tol=1e-12, abs_tol=0.0)
    else:
        assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize(("case", "reader"), params())
def test_bar_file(runs, request, case, reader):
    if READERS[reader] not in built_slices():
        pytest.skip(f"slice {READERS[reader]} is not built")
    future, work = runs[request.node.name]
    res = future.result()
    c = CASES[case]
    want = expectation(c, reader)
    if "error" in want:
        assert_one_line_error(res, want["error"])
        if reader == "data":
            left = list((work / "store").rglob("*.parquet"))
            assert not left, f"a failed import wrote {left}"
        return
    assert res.returncode == 0 and "Traceback" not in res.stderr, shown(res)
    warnings = [line for line in stderr_lines(res) if line.startswith("warning: ")]
    for p in want["warnings"]:
        assert any(re.search(p, w) for w in warnings), f"no warning matches {p!r}\n{shown(res)}"
    for p in want.get("unwarned", []):
        assert not any(re.search(p, w) for w in warnings), f"a warning matches {p!r}\n{shown(res)}"
    exclusions = [w for w in warnings if "symbol excluded" in w]
    for sym, p in want["excluded"]:
        assert any(re.search(rf"\b{re.escape(sym)}\b", w) and re.search(p, w) for w in exclusions), (
            f"no `symbol excluded` warning for {sym} matching {p!r}\n{shown(res)}")
    named = {s for s, _ in want["excluded"]}
    unexpected = [w for w in exclusions if not any(re.search(rf"\b{re.escape(s)}\b", w) for s in named)]
    assert not unexpected, f"unexpected exclusions: {unexpected}"
    if reader == "optimize":
        return  # optimize writes no bars: exit 0, warnings and exclusions are what it can show
    got = read_output(reader, work, want["timeframe"])
    assert_same_bars(got, pl.read_parquet(FIXTURES / want["bars"]), want["adjusted"])


def test_manifest_covers_every_rule_and_the_listed_cases():
    covered = {r for c in CASES.values() for r in c["rules"]}
    assert covered == set(range(1, 15))
    for c in CASES.values():
        exp = c["expect"]
        assert ("error" in exp) != ("bars" in exp), c["name"]
        if "bars" in exp:
            df = pl.read_parquet(FIXTURES / exp["bars"])
            assert dict(df.schema) == SCHEMA and df.height > 0, c["name"]
            assert df.equals(df.sort("symbol", "timestamp")), f"{c['name']}: expected bars are not sorted"
        for f in c["files"]:
            assert (FIXTURES / f).exists() or c["name"] == "missing_file", f


def test_pandas_index_fixture_really_has_the_index_last():
    assert pl.read_parquet(FIXTURES / "pandas_index" / "AAPL.parquet").columns[-1] == "__index_level_0__"
