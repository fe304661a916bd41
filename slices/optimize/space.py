"""The search space: ``--param`` ranges and lists, and ``--constraint`` expressions.

``--param fast=5:50:5`` is the inclusive range start:stop:step (ints for an int parameter,
floats for a float one); ``--param slow=20,30,50`` a list; ``--param k=v`` one fixed value.
Values are parsed to the parameter's type exactly as ``--param`` of a backtest
(:func:`.strategies.parse_param`: an int takes integer text only).

``--constraint "fast < slow"`` is parsed with :mod:`ast` and evaluated by walking the tree over a
whitelist of node types (numbers, strings, booleans, parameter names, arithmetic ``+ - * / // %
**``, comparisons, ``and or not``, ``x if c else y``, and the calls ``abs min max``); anything else
(attributes, subscripts, other calls, lambdas, comprehensions ...) is refused when it is parsed,
so nothing of the user's text is ever passed to ``eval``.
"""
from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from dataclasses import dataclass

from .strategies import Param, Strategy, StrategyError, parse_param


@dataclass(frozen=True)
class Dimension:
    """One parameter of the search: ``values`` (the grid points, in order) and, for a range,
    ``low``/``high``/``step`` (Bayesian search samples the range; lists are categorical)."""

    name: str
    kind: type
    values: tuple
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None


def parse_dimension(strat: Strategy, text: str) -> Dimension:
    """One ``--param`` value: ``k=start:stop:step`` (inclusive), ``k=a,b,c`` or ``k=v``.
    Raises StrategyError naming the option: no ``=``, an undeclared parameter, a value of the
    wrong type, a step <= 0, stop < start, a range over a bool or str parameter, a duplicate value."""
    if "=" not in text:
        raise StrategyError(f"--param {text!r}: expected k=v, k=start:stop:step or k=a,b,c")
    key, value = (s.strip() for s in text.split("=", 1))
    spec = strat.params.get(key)
    if spec is None:
        has = f"has {', '.join(strat.params)}" if strat.params else "it takes no parameters"
        raise StrategyError(f"--param {key}={value}: {strat.label} has no parameter {key!r} ({has})")
    if ":" in value and spec.kind in (int, float):
        parts = value.split(":")
        if len(parts) != 3:
            raise StrategyError(f"--param {key}={value}: a range is start:stop:step (inclusive)")
        try:
            lo, hi, step = (parse_param(strat.label, key, p, spec) for p in parts)
        except StrategyError as exc:  # name the whole range, not the part
            raise StrategyError(str(exc).replace(f"--param {key}=", f"--param {key}={value} (", 1).replace(": ", "): ", 1)) from None
        if not step > 0:
            raise StrategyError(f"--param {key}={value}: the step must be > 0")
        if hi < lo:
            raise StrategyError(f"--param {key}={value}: stop {hi} is below start {lo}")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        values = tuple(lo + i * step for i in range(n)) if spec.kind is int else \
            tuple(float(round(lo + i * step, 12)) for i in range(n))
        return Dimension(key, spec.kind, values, lo, values[-1], step)
    items = [v for v in value.split(",")] if "," in value and spec.kind is not str else [value]
    values = tuple(parse_param(strat.label, key, v, spec) for v in items)
    if len(set(values)) != len(values):
        raise StrategyError(f"--param {key}={value}: a value is listed twice")
    return Dimension(key, spec.kind, values)


def parse_space(strat: Strategy, texts: list[str]) -> list[Dimension]:
    """Every ``--param``; a parameter named twice is an error. Parameters not named keep their
    default (a one-value dimension), so every combination is complete."""
    dims: dict[str, Dimension] = {}
    for t in texts:
        d = parse_dimension(strat, t)
        if d.name in dims:
            raise StrategyError(f"--param {d.name}: given twice")
        dims[d.name] = d
    out = []
    for k, p in strat.params.items():
        out.append(dims.get(k) or Dimension(k, p.kind, (p.default,)))
    return out


def grid(dims: list[Dimension]) -> list[dict]:
    """Every combination, the last dimension varying fastest."""
    return [dict(zip((d.name for d in dims), vals)) for vals in itertools.product(*(d.values for d in dims))]


def grid_size(dims: list[Dimension]) -> int:
    return math.prod(len(d.values) for d in dims)


# ----------------------------------------------------------------------------- constraints
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CALLS = {"abs": abs, "min": min, "max": max}


class Constraint:
    """A safe boolean expression over the parameters (see the module docstring).

    ``Constraint("fast < slow", ["fast", "slow"])(dict(fast=5, slow=20))`` is True. Raises
    StrategyError at construction for a syntax error, a name that is not a parameter, or a
    construct outside the whitelist; at evaluation for an arithmetic error (division by zero)."""

    def __init__(self, text: str, names: list[str]):
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise StrategyError(f"--constraint {text!r}: syntax error: {exc.msg}") from None
        self._check(tree.body, set(names))
        self.tree = tree.body

    def _check(self, node: ast.AST, names: set[str]) -> None:
        where = f"--constraint {self.text!r}"
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool)):
                raise StrategyError(f"{where}: constant {node.value!r} is not allowed")
            return
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise StrategyError(f"{where}: unknown name {node.id!r} (parameters: {', '.join(sorted(names))})")
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            children = [node.operand]
        elif isinstance(node, ast.BoolOp):
            children = node.values
        elif isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.IfExp):
            children = [node.test, node.body, node.orelse]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
              and not node.keywords and node.args):
            children = node.args
        else:
            what = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
            raise StrategyError(f"{where}: {what!r} is not allowed (numbers, parameter names, + - * / // % **, "
                                "comparisons, and/or/not, x if c else y, abs/min/max)")
        for c in children:
            self._check(c, names)

    def __call__(self, params: dict) -> bool:
        try:
            return bool(self._eval(self.tree, params))
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise StrategyError(f"--constraint {self.text!r} with {params}: {type(exc).__name__}: {exc}") from None

    def _eval(self, node: ast.AST, p: dict):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return p[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, p), self._eval(node.right, p)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise ValueError("exponent above 1000")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, p))
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._eval(v, p) for v in node.values)
            return any(self._eval(v, p) for v in node.values)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, p)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, p)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self._eval(node.body, p) if self._eval(node.test, p) else self._eval(node.orelse, p)
        return _CALLS[node.func.id](*(self._eval(a, p) for a in node.args))


def param_text(v) -> str:
    """A parameter value as ``--param`` takes it: bools true/false, ints as digits, floats with
    repr (round-trips exactly), text as is."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if not v.is_integer() or abs(v) >= 1e16 else f"{v:.1f}"
    return str(v)


_SAFE = re.compile(r"^[A-Za-z0-9_./:=,+-]+$")


def shell_quote(s: str) -> str:
    """``s`` quoted for a POSIX shell when it needs it."""
    return s if _SAFE.match(s) else "'" + s.replace("'", "'\"'\"'") + "'"


__all__ = ["Dimension", "parse_dimension", "parse_space", "grid", "grid_size", "Constraint", "param_text",
           "shell_quote", "Param"]
