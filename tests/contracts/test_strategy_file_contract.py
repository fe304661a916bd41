"""Contract 5 (strategy files) is loaded the same way by every slice that runs strategies.

Each fixture of `fixtures/strategies/` goes through the command line of every slice that loads
strategy files, on the embedded sample (given as `--store`): `backtest run`, `analyze signals`,
`optimize search` (a one-combination grid: each `--param k=v` is one fixed value),
`paper_trade run --replay` and `live_trade run --replay` (a dry run: no `--account`, no keys, no
network). A bad file gives the same one-line error (exit 2) in all of them, and a good one runs in
all of them. Each reader's output is checked as far as it allows: the symbols and parameters the
run recorded; for good signal-form files the per-bar targets `analyze` prints equal the targets
computed here by importing the fixture directly (plain numpy) on the same bars, after the
long-only rule; paper and live sessions process every bar of the sample.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, assert_one_line_error, built_slices, run_cli, shown, start_selected, stderr_lines

FIX = Path(__file__).resolve().parent / "fixtures" / "strategies"
PKGROOT = FIX / "pkgroot"
SAMPLE = ROOT / "slices" / "sample"
SAMPLE_BARS = SAMPLE / "bars" / "1d"
# every slice that loads contract-5 strategy files (SLICES.md "Contract 5"); each one's copy of the
# loader is checked through its own command line, so copies cannot drift apart silently
READERS = ("backtest", "analyze", "optimize", "paper_trade", "live_trade")


def bar_time(i: int, symbol: str = "AAPL") -> str:
    """The date of the i-th sample bar, as the fixtures' error patterns name it."""
    return pl.read_parquet(SAMPLE_BARS / f"{symbol}.parquet")["timestamp"][i].strftime("%Y-%m-%d")


def f(name: str) -> str:
    return str(FIX / name)


# name: (--strategy value, extra args, symbols, patterns every slice's one error line must match)
BAD = {
    "missing_file": (f("bad/nope.py"), [], "AAPL", [r"nope\.py"]),
    "syntax_error": (f("bad/syntax_error.py"), [], "AAPL", [r"syntax_error\.py", r"\b5\b", r"(?i)syntax"]),
    "import_error": (f("bad/import_error.py"), [], "AAPL", [r"import_error\.py", r"gpt_trader_no_such_module_xyz"]),
    "imports_slices": (f("bad/imports_slices.py"), [], "AAPL", [r"imports_slices\.py", r"\b3\b", r"slices"]),
    "neither_form": (f("bad/neither_form.py"), [], "AAPL", [r"neither_form\.py", r"\btargets\b", r"\bweights\b"]),
    "both_forms": (f("bad/both_forms.py"), [], "AAPL", [r"both_forms\.py", r"\btargets\b", r"\bweights\b"]),
    "params_not_dict": (f("bad/params_not_dict.py"), [], "AAPL", [r"params_not_dict\.py", r"PARAMS"]),
    "params_bad_type": (f("bad/params_bad_type.py"), [], "AAPL", [r"params_bad_type\.py", r"\bwindows\b"]),
    "short_return": (f("bad/short_return.py"), [], "AAPL", [r"short_return\.py", r"\bAAPL\b"]),
    "value_two": (f("bad/value_two.py"), [], "AAPL", [r"value_two\.py", r"\bAAPL\b", bar_time(10)]),
    "nan_target": (f("bad/nan_target.py"), [], "AAPL", [r"nan_target\.py", r"\bAAPL\b", bar_time(20), r"(?i)nan"]),
    "text_targets": (f("bad/text_targets.py"), [], "AAPL", [r"text_targets\.py", r"\bAAPL\b"]),
    "raises": (f("bad/raises.py"), [], "AAPL", [r"raises\.py: AAPL: ZeroDivisionError: division by zero$"]),
    "writes_bars": (f("bad/writes_bars.py"), [], "AAPL", [r"writes_bars\.py: AAPL: ValueError: .*read-only"]),
    "weights_too_big": (f("bad/weights_too_big.py"), [], "AAPL,MSFT", [r"weights_too_big\.py"]),
    "weights_wrong_shape": (f("bad/weights_wrong_shape.py"), [], "AAPL,MSFT", [r"weights_wrong_shape\.py"]),
    "weights_raises": (f("bad/weights_raises.py"), [], "AAPL,MSFT",
                       [r"weights_raises\.py: weights: KeyError: 'no_such_field'$"]),
    "param_undeclared": (f("good/crossover_signal.py"), ["--param", "nope=1"], "AAPL", [r"\bnope\b"]),
    "param_int_given_float": (f("good/crossover_signal.py"), ["--param", "fast=5.5"], "AAPL", [r"\bfast\b", r"5\.5"]),
    "param_bool_given_text": (f("good/crossover_signal.py"), ["--param", "shorts=maybe"], "AAPL",
                              [r"\bshorts\b", r"maybe"]),
    "param_float_not_finite": (f("good/crossover_signal.py"), ["--param", "band=nan"], "AAPL", [r"\bband\b"]),
    "validate_rejects": (f("good/crossover_signal.py"), ["--param", "fast=30"], "AAPL",
                         [r"^error: (fixture_crossover|\S*crossover_signal\.py): fast \(30\) must be below slow \(20\)$"]),
    "lookback_too_long": (f("good/crossover_signal.py"), ["--param", "slow=5000"], "AAPL", [r"\bAAPL\b"]),
    "weights_lookback_too_long": (f("good/trend_weights.py"), ["--param", "window=5000"], "AAPL,MSFT",
                                  [r"trend_weights\.py", r"\b5,?000\b"]),
    # options of the other form (contract 5, decided details); see NOT_EXPRESSIBLE for readers without them
    "leverage_with_targets": (f("good/crossover_signal.py"), ["--leverage", "2"], "AAPL",
                              [r"--leverage", r"crossover_signal\.py", r"\btargets\b", r"\bweights\b"]),
    "threshold_with_targets": (f("good/crossover_signal.py"), ["--rebalance-threshold", "0.01"], "AAPL",
                               [r"--rebalance-threshold", r"crossover_signal\.py", r"\btargets\b", r"\bweights\b"]),
    "sizing_with_weights": (f("good/trend_weights.py"), ["--sizing", "fixed-fraction"], "AAPL,MSFT",
                            [r"--sizing", r"trend_weights\.py", r"\btargets\b", r"\bweights\b"]),
    "unknown_module": ("gpt_trader_no_such_pkg.strategy", [], "AAPL", [r"gpt_trader_no_such_pkg"]),
    "missing_attribute": ("fixture_strategies.flip:NOPE", [], "AAPL", [r"\bNOPE\b"]),
}

# name: (--strategy value, extra args, symbols, form, module loaded directly (path or module[:attr]), params)
GOOD = {
    "crossover_defaults": (f("good/crossover_signal.py"), [], "AAPL", "targets", None),
    "crossover_params": (f("good/crossover_signal.py"),
                         ["--param", "fast=3", "--param", "slow=10", "--param", "band=0.01", "--param", "shorts=false",
                          "--param", "price=open"], "AAPL", "targets",
                         {"fast": 3, "slow": 10, "band": 0.01, "shorts": False, "price": "open"}),
    "crossover_short": (f("good/crossover_signal.py"), ["--allow-short"], "AAPL", "targets", None),
    "breakout_list": (f("good/breakout_list.py"), ["--allow-short"], "AAPL", "targets", None),
    "breakout_list_long_only": (f("good/breakout_list.py"), [], "AAPL", "targets", None),
    "module": ("fixture_strategies.flip", [], "AAPL", "targets", None),
    "module_attribute": ("fixture_strategies.flip:STRATEGY", [], "AAPL", "targets", None),
    "weights": (f("good/trend_weights.py"), [], "AAPL,MSFT", "weights", None),
    # rows summing to 1.6: an error at the default leverage (BAD weights_too_big), valid with --leverage 2
    "weights_levered": (f("bad/weights_too_big.py"), ["--leverage", "2"], "AAPL,MSFT", "weights", None),
}

# (case, reader): why the reader cannot express the case. Such a test is skipped with this reason
# (shown by `pytest -rs`); every other (case, reader) pair runs.
NOT_EXPRESSIBLE = {
    ("threshold_with_targets", "analyze"): "analyze signals does not trade: it has no --rebalance-threshold",
    ("sizing_with_weights", "analyze"): "analyze signals does not trade: it has no --sizing",
    ("sizing_with_weights", "live_trade"): "live_trade has no --sizing (orders follow the strategy's targets, "
                                           "capped by its safety limits)",
}


def command(reader: str, strategy: str, extra: list[str], symbols: str, work: Path) -> list[str]:
    """The reader's command line for one case. Every case is expressible in every reader: all five take
    `--strategy`, `--param k=v`, `--allow-short`, `--symbols` and `--store` with the same meaning."""
    common = ["--strategy", strategy, *extra, "--symbols", symbols, "--store", str(SAMPLE)]
    if reader == "backtest":
        return ["slices.backtest", "run", *common, "--no-report", "--out", str(work / "run")]
    if reader == "analyze":
        return ["slices.analyze", "signals", *common, "--out", str(work / "signals.parquet")]
    if reader == "optimize":
        # `--param k=v` is one fixed value (optimize README), so the grid is the single combination the
        # other readers run; --min-trades 0 so a quiet combination still counts as run (loading is the
        # point here, not the objective); one process keeps the file light on 2 cores
        return ["slices.optimize", "search", *common, "--min-trades", "0", "--jobs", "1", "--no-report", "-q",
                "--out", str(work / "search")]
    # paper and live: a fresh session replaying the stored bars, then stopping; live without
    # --account is a dry run (no keys, nothing sent); -f json gives the session's state on stdout
    session = ["--session", "contract5", "--ledgers", str(work / "ledgers"), "--replay", "-q", "-f", "json"]
    if reader == "paper_trade":
        return ["slices.paper_trade", "run", *session, *common]
    assert reader == "live_trade", reader
    # live's pre-trade safety limits (not contract 5) would refuse every order of a strategy holding
    # 50 % of equity (default: 1,000 per order, 10 % per position, 50 % gross); raised to their
    # maximum so the dry run records the strategy's orders and the test can see that it traded
    # (--max-gross-pct is at most 100, so live refuses the buys of weights_levered beyond it)
    limits = ["--max-order-notional", "10000000", "--max-position-pct", "100", "--max-gross-pct", "100"]
    return ["slices.live_trade", "run", *session, *limits, *common]


ENV = {"PYTHONPATH": f"{ROOT}{os.pathsep}{PKGROOT}"}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    def build(p, work):
        case = p.get("bad") or p.get("good")
        if p.get("reader") not in built_slices() or (case, p["reader"]) in NOT_EXPRESSIBLE:
            return None
        strategy, extra, symbols = (BAD if "bad" in p else GOOD)[case][:3]
        return {"args": command(p["reader"], strategy, extra, symbols, work), "env": ENV}

    jobs, pool = start_selected(request, tmp_path_factory.mktemp("contract5"), build)
    yield jobs
    pool.shutdown(wait=True, cancel_futures=True)


def result(runs, request, case, reader):
    if reader not in built_slices():
        pytest.skip(f"slice {reader} is not built")
    if (case, reader) in NOT_EXPRESSIBLE:
        pytest.skip(f"{reader} cannot express {case}: {NOT_EXPRESSIBLE[case, reader]}")
    return runs[request.node.name]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("bad", list(BAD))
def test_bad_strategy_is_one_line_error(runs, request, bad, reader):
    future, _ = result(runs, request, bad, reader)
    assert_one_line_error(future.result(), BAD[bad][3])


@pytest.mark.parametrize("bad", list(BAD))
def test_bad_strategy_same_error_in_every_reader(runs, bad, tmp_path):
    """Not only the patterns: the error line is word for word the same in every reader that can express
    the case, so a copy of the loader (or of a check beside it) that drifts shows here. Reuses the
    commands of test_bad_strategy_is_one_line_error when they were selected, else runs them."""
    readers = [r for r in READERS if r in built_slices() and (bad, r) not in NOT_EXPRESSIBLE]
    if len(readers) < 2:
        pytest.skip(f"fewer than two readers can run {bad}")
    strategy, extra, symbols = BAD[bad][:3]
    lines = {}
    for reader in readers:
        job = runs.get(f"test_bad_strategy_is_one_line_error[{bad}-{reader}]")
        if job is not None:
            res = job[0].result()
        else:
            work = tmp_path / reader
            work.mkdir()
            res = run_cli(command(reader, strategy, extra, symbols, work), work, **ENV)
        lines[reader] = " | ".join(stderr_lines(res)) + ("" if res.returncode == 2 else f"  [exit {res.returncode}]")
    variants = {}
    for reader, line in lines.items():
        variants.setdefault(line, []).append(reader)
    assert len(variants) == 1, f"{bad}: the readers disagree:\n" + "\n".join(
        f"  {', '.join(rs)}: {line}" for line, rs in variants.items())


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("good", list(GOOD))
def test_good_strategy_runs(runs, request, good, reader):
    future, work = result(runs, request, good, reader)
    res = future.result()
    assert res.returncode == 0 and "Traceback" not in res.stderr, shown(res)
    symbols = GOOD[good][2].split(",")
    params = effective_params(good)
    if reader == "backtest":
        metrics = json.loads((work / "run" / "metrics.json").read_text())
        assert metrics["run"]["symbols"] == symbols
        return
    if reader == "optimize":
        best = json.loads((work / "search" / "best.json").read_text())
        assert best["search"]["combinations"] == 1, best["search"]
        assert best["params"] == params, best["params"]
        return
    if reader in ("paper_trade", "live_trade"):
        state = json.loads(res.stdout)
        assert state["symbols"] == symbols and state["mode"] == "replay", state
        assert state["params"] == params, state["params"]
        assert state["bars_processed"] == len(sample_timeline(symbols)), state
        assert state["counts"]["orders"] > 0, f"{reader}: the strategy never traded: {state['counts']}"
        return
    out = pl.read_parquet(work / "signals.parquet")
    form = GOOD[good][3]
    column = "target" if form == "targets" else "weight"
    assert out.columns[:4] == ["symbol", "timestamp", "close", column], out.columns
    want = direct(good)
    for sym, expected in want.items():
        got = out.filter(pl.col("symbol") == sym).sort("timestamp")
        bars = pl.read_parquet(SAMPLE_BARS / f"{sym}.parquet")
        assert got["timestamp"].to_list() == bars["timestamp"].to_list(), f"{sym}: analyze signals skipped bars"
        assert got["close"].to_list() == bars["close"].to_list()
        if form == "targets":
            assert got[column].dtype == pl.Int8
            diff = np.flatnonzero(got[column].to_numpy() != expected)
            assert diff.size == 0, f"{sym}: first differing bar {bars['timestamp'][int(diff[0])]}: analyze " \
                                   f"{got[column][int(diff[0])]}, the file itself {expected[diff[0]]}"
        else:
            known = ~np.isnan(expected)
            assert known.any()
            np.testing.assert_array_equal(got[column].to_numpy()[known], expected[known])


# ---------------------------------------------------------------- evaluating a fixture directly

def load_strategy(spec: str):
    """Import a fixture the way contract 5 resolves it (its folder first on sys.path while loading)."""
    if spec.endswith(".py"):
        path = Path(spec)
        sys.path.insert(0, str(path.parent))
        try:
            module_spec = importlib.util.spec_from_file_location(f"fixture_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module
    sys.path.insert(0, str(PKGROOT))
    try:
        name, _, attr = spec.partition(":")
        module = importlib.import_module(name)
        return getattr(module, attr) if attr else module
    finally:
        sys.path.remove(str(PKGROOT))


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def sample_bars(sym: str) -> dict:
    df = pl.read_parquet(SAMPLE_BARS / f"{sym}.parquet")
    bars = {c: readonly(df[c].to_numpy().astype(np.float64)) for c in ("open", "high", "low", "close", "volume")}
    bars["timestamp"] = readonly(df["timestamp"].dt.replace_time_zone(None).to_numpy().astype("datetime64[us]"))
    bars["symbol"] = sym
    return bars


def effective_params(good: str) -> dict:
    """The parameters a run of GOOD[good] must record: the fixture's PARAMS with the given ones applied."""
    strategy, _, _, _, params = GOOD[good]
    return {**load_strategy(strategy).PARAMS, **(params or {})}


def sample_timeline(symbols: list[str]) -> list:
    """The union of the sample's bar times over `symbols`, oldest first."""
    return sorted(set().union(*(set(pl.read_parquet(SAMPLE_BARS / f"{s}.parquet")["timestamp"].to_list())
                                for s in symbols)))


def direct(good: str) -> dict[str, np.ndarray]:
    """Per symbol: the fixture's own targets (after the long-only rule unless --allow-short) or weights column."""
    strategy, extra, symbols, form, _ = GOOD[good]
    strat = load_strategy(strategy)
    params = effective_params(good)
    syms = symbols.split(",")
    if form == "targets":
        out = {}
        for sym in syms:
            t = np.asarray(strat.targets(sample_bars(sym), params)).astype(np.int8)
            out[sym] = t if "--allow-short" in extra else np.maximum(t, 0)
        return out
    frames = {s: pl.read_parquet(SAMPLE_BARS / f"{s}.parquet") for s in syms}
    stamps = sample_timeline(syms)
    panel = {"timestamp": readonly(np.array([t.replace(tzinfo=None) for t in stamps], dtype="datetime64[us]")),
             "symbols": syms}
    index = {t: i for i, t in enumerate(stamps)}
    for col in ("open", "high", "low", "close", "volume"):
        grid = np.full((len(stamps), len(syms)), np.nan)
        for j, s in enumerate(syms):
            rows = [index[t] for t in frames[s]["timestamp"].to_list()]
            grid[rows, j] = frames[s][col].to_numpy()
        panel[col] = readonly(grid)
    w = np.asarray(strat.weights(panel, params), dtype=np.float64)
    return {s: w[[index[t] for t in frames[s]["timestamp"].to_list()], j] for j, s in enumerate(syms)}


def test_direct_evaluation_is_not_trivial():
    """The comparison above means something: the fixtures give changing targets on the sample."""
    for good in ("crossover_defaults", "crossover_short", "breakout_list", "module"):
        t = direct(good)["AAPL"]
        assert len(set(t.tolist())) >= 2, good
    assert -1 in direct("crossover_short")["AAPL"] and -1 not in direct("crossover_defaults")["AAPL"]
    w = direct("weights")
    assert {0.0, 0.5} <= set(np.unique(w["AAPL"][~np.isnan(w["AAPL"])]).tolist())


# ---------------------------------------------------------------- backtest-only parts of contract 5

def needs_backtest():
    if "backtest" not in built_slices():
        pytest.skip("slice backtest is not built")


@pytest.mark.parametrize(("path", "name", "form", "params"), [
    ("good/crossover_signal.py", "fixture_crossover", "targets", ["fast", "slow", "band", "shorts", "price"]),
    ("good/breakout_list.py", "breakout_list", "targets", ["window"]),
    ("good/trend_weights.py", "fixture_trend_weights", "weights", ["window"]),
])
def test_strategies_lists_a_file(tmp_path, path, name, form, params):
    needs_backtest()
    res = run_cli(["slices.backtest", "strategies", "--strategy", f(path), "-f", "json"], tmp_path)
    assert res.returncode == 0, shown(res)
    text = json.dumps(json.loads(res.stdout))
    for word in (name, form, *params):
        assert re.search(rf'"{re.escape(word)}"', text), f"{word!r} missing from {text[:800]}"


@pytest.mark.parametrize(("path", "clean"), [("good/crossover_signal.py", True), ("good/breakout_list.py", True),
                                             ("good/trend_weights.py", True), ("bad/peeks_ahead.py", False)])
def test_check_lookahead(tmp_path, path, clean):
    needs_backtest()
    symbols = "AAPL,MSFT" if "weights" in path else "AAPL"
    res = run_cli(["slices.backtest", "run", "--strategy", f(path), "--symbols", symbols, "--store", str(SAMPLE),
                   "--check-lookahead", "--no-report", "--out", str(tmp_path / "run")], tmp_path)
    if clean:
        assert res.returncode == 0, shown(res)
    else:
        assert_one_line_error(res, [r"peeks_ahead\.py", r"(?i)look(s|ing)?[ -]?ahead|later bars", r"\d{4}-\d\d-\d\d"])


def test_peeking_file_is_otherwise_valid(tmp_path):
    """Without --check-lookahead the peeking file runs: only the check can catch it."""
    needs_backtest()
    res = run_cli(["slices.backtest", "run", "--strategy", f("bad/peeks_ahead.py"), "--symbols", "AAPL",
                   "--store", str(SAMPLE), "--no-report", "--out", str(tmp_path / "run")], tmp_path)
    assert res.returncode == 0, shown(res)
