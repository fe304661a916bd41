"""The search space: --param ranges and lists, and the safe --constraint parser."""
from __future__ import annotations

import pytest

from slices.optimize.space import Constraint, grid, parse_dimension, parse_space
from slices.optimize.strategies import STRATEGIES, StrategyError, resolve_params

MA = STRATEGIES["simple_ma"]
MR = STRATEGIES["mean_reversion"]


def test_int_range_is_inclusive():
    d = parse_dimension(MA, "fast=5:50:5")
    assert d.values == tuple(range(5, 51, 5)) and d.kind is int and (d.low, d.high, d.step) == (5, 50, 5)
    assert parse_dimension(MA, "fast=5:52:5").values[-1] == 50  # stop not on the grid: the last point below it


def test_float_range_and_list():
    d = parse_dimension(MR, "z_entry=1:2:0.25")
    assert d.values == (1.0, 1.25, 1.5, 1.75, 2.0)
    assert parse_dimension(MR, "z_entry=0.1:0.3:0.1").values == (0.1, 0.2, 0.3)  # no 0.30000000000000004
    assert parse_dimension(MA, "slow=20,30,50").values == (20, 30, 50)
    assert parse_dimension(MA, "slow=40").values == (40,)


@pytest.mark.parametrize("text, match", [
    ("fast=5.5:10:1", "expected an integer"), ("fast=10:5:1", "below start"), ("fast=1:5:0", "step must be > 0"),
    ("zz=1", "no parameter 'zz'"), ("fast", "expected k=v"), ("fast=1:2", "start:stop:step"),
    ("slow=20,20", "listed twice"),
])
def test_bad_params(text, match):
    with pytest.raises(StrategyError, match=match):
        parse_dimension(MA, text)


def test_space_fills_defaults_and_grid_order():
    dims = parse_space(MA, ["fast=5,10"])
    assert [d.values for d in dims] == [(5, 10), (30,)]
    assert grid(parse_space(MA, ["fast=5,10", "slow=20,30"])) == [
        {"fast": 5, "slow": 20}, {"fast": 5, "slow": 30}, {"fast": 10, "slow": 20}, {"fast": 10, "slow": 30}]
    with pytest.raises(StrategyError, match="given twice"):
        parse_space(MA, ["fast=5", "fast=6"])


def test_constraint_evaluates():
    c = Constraint("fast < slow and slow - fast >= 10", ["fast", "slow"])
    assert c({"fast": 5, "slow": 20}) and not c({"fast": 15, "slow": 20}) and not c({"fast": 30, "slow": 20})
    assert Constraint("max(fast, 3) * 2 <= slow if fast > 1 else True", ["fast", "slow"])({"fast": 5, "slow": 10})
    assert Constraint("1 < fast < slow", ["fast", "slow"])({"fast": 2, "slow": 3})
    assert not Constraint("not (fast % 2 == 0)", ["fast"])({"fast": 4})


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hi')", "fast.__class__", "[x for x in (1,)]", "open('x')", "lambda: 1",
    "fast[0]", "(fast := 3)", "fast is None", "b'x' == fast",
])
def test_constraint_refuses_code(text):
    with pytest.raises(StrategyError, match="not allowed|unknown name|syntax error"):
        Constraint(text, ["fast", "slow"])


def test_constraint_unknown_name_and_runtime_error():
    with pytest.raises(StrategyError, match="unknown name 'fsat'"):
        Constraint("fsat < slow", ["fast", "slow"])
    with pytest.raises(StrategyError, match="ZeroDivisionError"):
        Constraint("slow / (fast - 5) > 1", ["fast", "slow"])({"fast": 5, "slow": 10})


def test_resolve_params_still_checks_types():
    with pytest.raises(StrategyError):
        resolve_params("simple_ma", {"fast": "x"})
