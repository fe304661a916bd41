"""Parameter search: methods, seeds, eligibility, outputs, --jobs, Ctrl-C and --resume, errors."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conftest import SAMPLE, optimize
from slices.optimize import search as search_mod
from slices.optimize.engine import Config
from slices.optimize.evaluate import DataSpec
from slices.optimize.metrics import METRICS
from slices.optimize.search import SearchSettings, run_search

SPEC = DataSpec(symbols=["AAPL", "MSFT"], store=str(SAMPLE), start="2016-01-01")


def _settings(**kw) -> SearchSettings:
    base = dict(space=["fast=5:25:5", "slow=20:60:10"], jobs=1, data=SPEC, config=Config())
    return SearchSettings(**(base | kw))


def test_grid_cli_outputs(tmp_path):
    out = tmp_path / "s"
    r = optimize("search", "--store", str(SAMPLE), "-s", "AAPL", "--param", "fast=5:25:5", "--param", "slow=20:60:10",
                 "--min-trades", "5", "--out", str(out), "-f", "json", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)
    frame = pl.read_parquet(out / "results.parquet")
    # 25 grid points; simple_ma rejects fast >= slow (fast=20,25 with slow=20): 2 rejected
    assert frame.height == 23 and best["search"]["rejected"] == 2
    assert frame.columns == ["trial", "fast", "slow", *METRICS, "objective", "eligible"]
    assert frame["fast"].dtype == pl.Int64
    assert (frame["objective"] == frame["sharpe"]).all()
    assert frame.filter(pl.col("eligible"))["n_trades"].min() >= 5
    assert not frame.filter(pl.col("n_trades") < 5)["eligible"].any()
    top = frame.filter(pl.col("eligible")).sort("objective", descending=True).row(0, named=True)
    assert best["params"] == {"fast": top["fast"], "slow": top["slow"]}
    assert best["metrics"]["sharpe"] == top["sharpe"]
    o = best["overfitting"]
    assert 0 <= o["deflated_sharpe"]["dsr"] <= 1 and o["deflated_sharpe"]["n_trials"] == 23
    assert 0 <= o["pbo"]["pbo"] <= 1 and o["pbo"]["combinations"] == 12870
    assert best["command"].startswith("python -m slices.backtest run --strategy simple_ma --symbols AAPL")
    page = (out / "report.html").read_text()
    assert "<svg" in page and "deflated Sharpe" in page and "http://" not in page and "<script" not in page


def test_constraint_and_objective_cli(tmp_path):
    r = optimize("search", "--store", str(SAMPLE), "-s", "AAPL", "--param", "fast=5:25:5", "--param", "slow=20:60:10",
                 "--constraint", "slow >= 2 * fast", "--objective", "-max_drawdown", "--out", str(tmp_path / "c"),
                 "-f", "json", "--no-report", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    frame = pl.read_parquet(tmp_path / "c" / "results.parquet")
    assert (frame["slow"] >= 2 * frame["fast"]).all() and frame.height == 5 + 5 + 4 + 3 + 2
    best = json.loads(r.stdout)
    assert best["metrics"]["max_drawdown"] == frame.filter(pl.col("eligible"))["max_drawdown"].max()


def test_random_is_a_seeded_subset_of_the_grid():
    full, _ = run_search(_settings())
    a, _ = run_search(_settings(method="random", trials=8, seed=4))
    b, _ = run_search(_settings(method="random", trials=8, seed=4))
    c, _ = run_search(_settings(method="random", trials=8, seed=5))
    assert a.params == b.params and a.params != c.params
    assert len(a.params) + len(a.rejected) == 8
    by = {json.dumps(p): m for p, m in zip(full.params, full.metrics)}
    for p, m in zip(a.params, a.metrics):
        assert by[json.dumps(p)] == m


def test_bayes_is_reproducible_with_a_seed():
    pytest.importorskip("optuna")
    s = _settings(method="bayes", trials=12, seed=11, space=["fast=2:30:1", "slow=20:80:5"], constraints=["fast < slow"])
    a, _ = run_search(s)
    b, _ = run_search(s)
    assert a.params == b.params and len(a.params) + len(a.rejected) == 12
    assert [m["sharpe"] for m in a.metrics] == [m["sharpe"] for m in b.metrics]
    assert all(p["fast"] < p["slow"] for p in a.params)


def test_jobs_do_not_change_results():
    one, _ = run_search(_settings(jobs=1))
    two, _ = run_search(_settings(jobs=2))
    assert one.params == two.params and one.metrics == two.metrics
    assert all(np.array_equal(x, y) for x, y in zip(one.equity, two.equity))


def test_ctrl_c_keeps_results_and_resume_finishes(tmp_path, monkeypatch):
    full, _ = run_search(_settings())
    calls = {"n": 0}
    real = search_mod.evaluate_many

    def interrupted(prep, combos):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(prep, combos)

    monkeypatch.setattr(search_mod, "evaluate_many", interrupted)
    monkeypatch.setattr(search_mod.Executor, "batch_size", lambda self, n: 4)
    part, _ = run_search(_settings(), out=tmp_path)
    assert not part.complete and 0 < len(part.params) + len(part.rejected) == 8
    assert (tmp_path / ".partial" / "settings.json").is_file()
    with pytest.raises(ValueError, match="options differ"):
        run_search(_settings(objective="cagr"), out=tmp_path, resume=True)
    monkeypatch.setattr(search_mod, "evaluate_many", real)
    done, _ = run_search(_settings(), out=tmp_path, resume=True)
    assert done.complete and done.params == full.params and done.metrics == full.metrics
    assert not (tmp_path / ".partial").exists()


@pytest.mark.parametrize("args, match", [
    (["--param", "fast=5:x:5"], "--param fast=5:x:5 (x): expected an integer"),
    (["--param", "zz=1"], "has no parameter 'zz'"),
    (["--constraint", "__import__('os')"], "not allowed"),
    (["--param", "fast=50", "--param", "slow=20"], "no eligible|needs fast < slow|no combination"),
    (["--constraint", "fast > 1000"], "no combination of the 1 meets"),
    (["-s", "NOPE"], "NOPE"),
    (["--cscv", "5"], "--cscv must be an even number"),
    (["--resume"], "no interrupted search"),
])
def test_errors_are_one_line(tmp_path, args, match):
    r = optimize("search", "--store", str(SAMPLE), *(["-s", "AAPL"] if "-s" not in args else []), *args,
                 "--out", str(tmp_path / "e"), "--no-report", "--jobs", "1")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("error", "warning"))]
    assert "Traceback" not in r.stderr
    if "no eligible" in match and r.returncode == 0:
        assert any("no eligible" in ln for ln in lines)
        return
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert any(m in lines[0] for m in match.split("|")), lines[0]
