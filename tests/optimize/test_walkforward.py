"""Walk-forward: fold windows (rolling, anchored, purge), each fold's OOS run, stitching, WFE."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conftest import SAMPLE, optimize
from slices.optimize.engine import Config
from slices.optimize.evaluate import DataSpec, evaluate_window, prepare
from slices.optimize.search import SearchSettings
from slices.optimize.strategies import STRATEGIES
from slices.optimize.walkforward import add_period, folds, parse_period, walk_forward

DAYS = np.arange(np.datetime64("2015-01-01"), np.datetime64("2020-01-01")).astype("datetime64[us]")


def test_rolling_and_anchored_windows():
    f = folds(DAYS, (2, "y"), (6, "m"), (6, "m"), anchored=False, purge=0)
    a, b, c, d = f[0]
    assert (str(DAYS[a])[:10], str(DAYS[b])[:10], str(DAYS[c])[:10], str(DAYS[d - 1])[:10]) == (
        "2015-01-01", "2017-01-01", "2017-01-01", "2017-06-30")
    assert str(DAYS[f[1][0]])[:10] == "2015-07-01" and len(f) == 6
    anch = folds(DAYS, (2, "y"), (1, "y"), (1, "y"), anchored=True, purge=5)
    assert all(x[0] == 0 for x in anch) and [x[2] for x in anch] == [731, 1096, 1461]
    assert all(x[1] == x[2] - 5 for x in anch)  # purge: 5 bars dropped before each test window
    with pytest.raises(ValueError, match="no walk-forward fold"):
        folds(DAYS[:100], (2, "y"), (6, "m"), (6, "m"), False, 0)
    assert str(add_period(np.datetime64("2019-01-31", "us"), (1, "m")))[:10] == "2019-02-28"
    with pytest.raises(ValueError):
        parse_period("6x", "--test")


def test_folds_trade_the_training_winner_out_of_sample():
    s = SearchSettings(space=["fast=5:20:5", "slow=30:60:10"], jobs=1, config=Config(),
                       data=DataSpec(symbols=["AAPL", "MSFT"], store=str(SAMPLE)))
    wf = walk_forward(s, "2y", "1y", purge=3)
    prep = prepare(STRATEGIES["simple_ma"], Config(), s.data, 61)
    ts = prep.panel.timestamps
    assert len(wf["folds"]) == 3
    level = s.config.cash
    for r in wf["folds"]:
        c = int(np.searchsorted(ts, np.datetime64(r["test_start"])))
        d = int(np.searchsorted(ts, np.datetime64(r["test_end"]))) + 1
        m, eq, _ = evaluate_window(prep, r["params"], c, d)
        assert m == r["oos"]
        part = wf["oos_equity"].filter(pl.col("fold") == r["fold"])["equity"].to_numpy()
        np.testing.assert_allclose(part, level * eq / eq[0], rtol=1e-12)
        level = part[-1]
        assert r["train_bars"] == int(np.searchsorted(ts, np.datetime64(r["test_start"]))) - int(
            np.searchsorted(ts, np.datetime64(r["train_start"]))) - 3
    assert wf["oos_metrics"]["final_equity"] == pytest.approx(level)
    assert wf["wfe"] == pytest.approx(wf["oos_metrics"]["cagr"] / np.mean([r["is"]["cagr"] for r in wf["folds"]]))


def test_walk_forward_cli(tmp_path):
    r = optimize("walk-forward", "--store", str(SAMPLE), "-s", "AAPL", "--param", "fast=5,10", "--param", "slow=30,50",
                 "--train", "18m", "--test", "6m", "--anchored", "-o", str(tmp_path / "w"), "-f", "json", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["folds"]) >= 5 and {"oos_metrics", "wfe", "is_cagr_mean"} <= set(doc)
    f = pl.read_parquet(tmp_path / "w" / "folds.parquet")
    assert {"fast", "slow", "is_sharpe", "oos_sharpe", "test_start"} <= set(f.columns)
    eq = pl.read_parquet(tmp_path / "w" / "oos_equity.parquet")
    assert eq["timestamp"].is_sorted() and eq["equity"][0] == 100_000.0
    assert "<svg" in (tmp_path / "w" / "report.html").read_text()
