"""The chunked, compiled simulation gives exactly one answer (issue 13).

* :func:`simulate` over the timeline in chunks of any size, compiled (numba) or as Python, equals
  the one-chunk run bit for bit: equity, cash, positions, cash flows, every fill, trade and
  untaken entry, the halt;
* a whole run streamed with tiny chunks and batches of one symbol equals the default run
  (equity.parquet, trades.parquet, every metric, every warning);
* the batch loader gives load_bars' bars and warnings;
* the kernel's equity sum is numpy's pairwise sum to the last bit.

The equality with the event engine of the previous releases is held by the golden cases
(test_golden.py) and the money properties (test_properties.py), unchanged.
"""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from slices.backtest.bars import SAMPLE_ROOT, BarBatches, DataError, load_bars
from slices.backtest.engine import Config, Panel, compute_targets, simulate
from slices.backtest.run import _Spill, backtest, write_outputs
from slices.backtest.sim import _pairwise
from slices.backtest.strategies import resolve_params
from test_properties import random_bars, setups


def _same(a, b) -> None:
    for k in ("equity", "cash", "gross", "qty", "sym_cash", "close_ff"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.fills == b.fills
    assert a.trades == b.trades
    assert list(a.skipped) == list(b.skipped)
    assert (a.halted_at, a.notes) == (b.halted_at, b.notes)


@given(random_bars(n_symbols=st.integers(1, 4)), setups(), st.integers(1, 30))
def test_chunks_of_any_size_and_python_or_compiled_give_one_answer(df, setup, rows):
    name, params, cfg = setup
    strat, p = resolve_params(name, params)
    panel = Panel.from_bars(df)
    targets, atrs = compute_targets(panel, strat, p, cfg.allow_short, cfg.atr_window)
    whole = simulate(panel, targets, atrs, cfg, compiled=False)
    _same(whole, simulate(panel, targets, atrs, cfg, chunk_rows=rows, compiled=False))
    _same(whole, simulate(panel, targets, atrs, cfg, chunk_rows=rows, compiled=True))
    _same(whole, simulate(panel, targets, atrs, cfg, compiled=True))


def test_a_halt_on_the_last_bar_of_a_chunk_closes_at_the_next_chunks_first_bar():
    # one symbol long from bar 2; the close crashes on bar 5: the halt fills at bar 6's open
    close = np.array([100, 100, 101, 102, 103, 60, 61, 62, 63], float)
    ts = np.datetime64("2024-01-01", "us") + np.arange(close.size) * np.timedelta64(1, "D")
    panel = Panel(["A"], ts, close[:, None].copy(), close[:, None] * 1.01, close[:, None] * 0.99, close[:, None].copy())
    targets = np.array([[0], [1], [1], [1], [1], [1], [1], [1], [1]], np.int8)
    cfg = Config(cash=1000, commission=0, slippage_bps=0, max_drawdown=0.2)
    whole = simulate(panel, targets, np.full(panel.close.shape, np.nan), cfg)
    assert whole.halted_at == 6 and whole.fills[-1].reason == "halt" and whole.fills[-1].bar == 6
    for rows in (1, 2, 3, 6):  # the breach (bar 5) ends a chunk for 1, 2, 3 and 6
        _same(whole, simulate(panel, targets, np.full(panel.close.shape, np.nan), cfg, chunk_rows=rows))


@pytest.mark.parametrize("options", [
    {},
    {"config": Config(allow_short=True, whole_shares=False, commission=0, slippage_bps=0)},
    {"config": Config(sizing="atr-risk", stop_loss_atr=1.5, take_profit_atr=3, max_drawdown=0.08), "strategy": "breakout"},
    {"symbols": ["AAPL", "MSFT", "JPM"], "strategy": "momentum", "start": "2017-03-01"},
])
def test_a_streamed_run_in_tiny_chunks_and_batches_equals_the_default_run(options, monkeypatch):
    options = {"strategy": "simple_ma", **options}
    want = backtest(**options)
    monkeypatch.setitem(BarBatches.__init__.__kwdefaults__, "batch_rows", 1)
    monkeypatch.setattr(_Spill, "MEMORY_BYTES", 0)  # every symbol's arrays go to the temporary folder
    got = backtest(**options, chunk_cells=7)  # batches of one symbol, chunks of a bar or so
    assert_frame_equal(got.equity, want.equity, check_exact=True)
    assert_frame_equal(got.trades, want.trades, check_exact=True)
    assert (got.portfolio, got.per_symbol, got.benchmark) == (want.portfolio, want.per_symbol, want.benchmark)
    assert got.report.warnings == want.report.warnings and got.run == want.run
    for sym in ("AAPL", "MSFT"):
        if sym in want.prices:
            assert_frame_equal(got.prices[sym], want.prices[sym])
    assert got.prices.spill.root is not None and any(got.prices.spill.root.iterdir())  # it did go to disk


def test_batches_give_load_bars_bars_and_warnings(tmp_path):
    # the sample with two invalid symbols (a sub-penny quote, high below low): excluded, named once each
    root = tmp_path / "store" / "bars" / "1d"
    root.mkdir(parents=True)
    sample = sorted((SAMPLE_ROOT / "bars" / "1d").glob("*.parquet"))
    for i, f in enumerate(sample[:9]):
        df = pl.read_parquet(f)
        if i == 2:
            df = df.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(0.001).otherwise(pl.col("low")).alias("low"))
        if i == 6:
            df = df.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(pl.col("low") - 5).otherwise(pl.col("high"))
                                 .alias("high"))
        df.write_parquet(root / f.name)
    store = str(tmp_path / "store")
    bars, report = load_bars(None, store=store)
    for rows in (1, 2_000, 10_000_000):
        batches = BarBatches(None, store=store, batch_rows=rows)
        got = pl.concat(list(batches))
        assert_frame_equal(got, bars, check_exact=True)
        assert batches.report.warnings == report.warnings and batches.report.excluded == report.excluded
    assert len(report.excluded) == 2


@settings(max_examples=200)
@given(st.lists(st.one_of(st.floats(-1e12, 1e12), st.just(0.0), st.just(-0.0)), max_size=700))
def test_the_kernels_sum_is_numpys_pairwise_sum(values):
    a = np.array(values, dtype=float)
    assert _pairwise(a) == np.sum(a) or (np.isnan(_pairwise(a)) and np.isnan(np.sum(a)))


def test_an_unusable_tmpdir_is_a_one_line_error_when_a_run_needs_it(monkeypatch, tmp_path):
    monkeypatch.setattr(_Spill, "MEMORY_BYTES", 0)
    for bad in (tmp_path / "missing", "/proc"):
        monkeypatch.setenv("TMPDIR", str(bad))
        with pytest.raises(DataError, match=f"^TMPDIR {bad}: "):
            backtest("simple_ma", ["AAPL", "MSFT"])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    o = backtest("simple_ma", ["AAPL", "MSFT"])
    assert o.prices.spill.root.parent == tmp_path  # the folder asked for, not a quiet fallback
    root = o.prices.spill.root
    del o
    import gc

    gc.collect()
    assert not root.exists()  # removed with the run


def test_an_interrupted_write_leaves_the_previous_runs_files_whole(tmp_path, monkeypatch):
    first = backtest("simple_ma", ["AAPL", "MSFT"])
    out = tmp_path / "run"
    write_outputs(first, out)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    second = backtest("breakout", ["AAPL", "MSFT"])

    def boom(*a, **k):
        raise KeyboardInterrupt

    import slices.backtest.report as report_module

    monkeypatch.setattr(report_module, "write_report", boom)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(second, out)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # no partial file, nothing mixed
    monkeypatch.undo()
    write_outputs(second, out, report=False)
    assert sorted(f.name for f in out.iterdir()) == ["equity.parquet", "metrics.json", "trades.parquet"]
    assert json.loads((out / "metrics.json").read_text())["run"]["strategy"] == "breakout"
