"""Loading user strategies from files and modules (SLICES.md contract 5).

``--strategy PATH.py`` (a value ending in ``.py`` or holding a path separator) loads a file,
relative to the working directory, with its folder first on ``sys.path`` while it loads (so it may
import helpers beside it). Any other value that is not a built-in is a module (``package.module``)
or an object in one (``package.module:attribute``: a module, class or instance) holding:

- ``PARAMS`` (required): dict name -> default; the default's type (bool, int, float, str) is the
  parameter's type;
- exactly one of ``targets(bars, params)`` (per-symbol signal) and ``weights(panel, params)``
  (portfolio weights);
- optional ``NAME`` (default: the file stem or the module's last name), ``DESCRIPTION`` (one
  line), ``lookback(params) -> int`` (default 1), ``validate(params)`` raising ValueError.

A strategy imports nothing from ``slices``: the source is parsed (``ast``) before it runs and an
``import slices...`` anywhere in it is refused, naming the line. Every problem is a
:class:`~.strategies.StrategyError` with a one-line message naming the file (or module); an
exception raised while the file runs is kept as the ``__cause__`` for ``--debug``.

This slice's own copy of the backtest slice's loader (same rules and messages). Imported lazily
by :func:`.strategies.resolve_params`, so runs of built-ins never pay for it.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from .strategies import PARAM_KINDS, STRATEGIES, Param, Strategy, StrategyError, one_line


def load_strategy(spec: str) -> Strategy:
    """The strategy named by ``spec`` (not a built-in): a file or a module. Raises StrategyError."""
    if spec.endswith(".py") or "/" in spec or os.sep in spec or (os.altsep and os.altsep in spec):
        return _load_file(spec)
    return _load_module(spec)


def _load_file(spec: str) -> Strategy:
    path = Path(spec)
    if not path.is_file():
        what = "is a folder, not a strategy file" if path.is_dir() else "no such strategy file"
        raise StrategyError(f"{spec}: {what}")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StrategyError(f"{spec}: cannot read: {one_line(exc)}") from None
    _refuse_slices_imports(source, spec)
    folder = str(path.resolve().parent)
    mod_name = f"_gpt_trader_strategy_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, folder)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the file's own top-level code failed
        raise StrategyError(_load_failure(spec, path, exc)) from exc
    finally:
        sys.modules.pop(mod_name, None)
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return _from_namespace(module, spec, path.stem, str(path))


def _load_module(spec: str) -> Strategy:
    mod_name, _, attr = spec.partition(":")
    unknown = (f"--strategy: unknown strategy {spec!r} (not a built-in ({', '.join(STRATEGIES)}), "
               "a .py file or an importable module)")
    if not mod_name or not all(part.isidentifier() for part in mod_name.split(".")):
        raise StrategyError(unknown)
    if mod_name == "slices" or mod_name.startswith("slices."):
        raise StrategyError(f"{spec}: a strategy must not come from the slices package (SLICES.md contract 5)")
    try:
        found = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        found = None
    except Exception as exc:  # a parent package failed to import
        raise StrategyError(f"{spec}: import error: {type(exc).__name__}: {one_line(exc)}") from exc
    if found is None:
        raise StrategyError(unknown)
    if found.origin and found.origin.endswith(".py") and os.path.isfile(found.origin):
        try:
            _refuse_slices_imports(Path(found.origin).read_text(encoding="utf-8"), found.origin)
        except (OSError, UnicodeDecodeError):
            pass
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:
        origin = Path(found.origin) if found.origin else None
        raise StrategyError(_load_failure(spec, origin, exc)) from exc
    obj = module
    if attr:
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise StrategyError(f"{spec}: module {mod_name} has no attribute {attr!r}") from None
    return _from_namespace(obj, spec, attr.split(".")[-1] if attr else mod_name.split(".")[-1], found.origin or mod_name)


def _refuse_slices_imports(source: str, where: str) -> None:
    """Parse ``source``; a syntax error or any import of ``slices``/``slices.*`` is a StrategyError."""
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise StrategyError(f"{where}:{exc.lineno}: syntax error: {exc.msg}") from None
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name == "slices" or name.startswith("slices."):
                raise StrategyError(f"{where}:{node.lineno}: a strategy file must not import from slices "
                                    f"(`{ast.get_source_segment(source, node) or 'import ' + name}`); "
                                    "carry what you need in the file or beside it")


def _load_failure(spec: str, path: Path | None, exc: Exception) -> str:
    """``<spec>:<line>: import error: ...`` (or ``error while loading``), the line being the
    deepest frame of the traceback inside the strategy file."""
    line = ""
    if path is not None:
        target = str(path.resolve())
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename and os.path.abspath(frame.filename) == target:
                line = f":{frame.lineno}"
    kind = "import error" if isinstance(exc, ImportError) else "error while loading"
    return f"{spec}{line}: {kind}: {type(exc).__name__}: {one_line(exc)}"


def _from_namespace(ns, spec: str, default_name: str, source: str) -> Strategy:
    """Build a Strategy from the names a module, class or instance holds; StrategyError when a
    required name is missing or malformed."""
    targets, weights = getattr(ns, "targets", None), getattr(ns, "weights", None)
    if targets is not None and weights is not None:
        raise StrategyError(f"{spec}: defines both targets and weights; a strategy has exactly one of them")
    if targets is None and weights is None:
        raise StrategyError(f"{spec}: defines neither targets(bars, params) nor weights(panel, params)")
    fn = targets if targets is not None else weights
    if not callable(fn):
        raise StrategyError(f"{spec}: {'targets' if targets is not None else 'weights'} is not a function")
    raw = getattr(ns, "PARAMS", None)
    if raw is None:
        raise StrategyError(f"{spec}: PARAMS missing: a dict name -> default ({{}} for none)")
    if not isinstance(raw, dict):
        raise StrategyError(f"{spec}: PARAMS must be a dict name -> default (got {type(raw).__name__})")
    params = {}
    for key, default in raw.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise StrategyError(f"{spec}: PARAMS: parameter name {key!r} is not an identifier")
        kind = next((k for k in PARAM_KINDS if isinstance(default, k)), None)
        if kind is None:
            raise StrategyError(f"{spec}: PARAMS[{key!r}]: default {default!r} is a {type(default).__name__}; "
                                "use a bool, int, float or str")
        params[key] = Param(default, kind)
    name = getattr(ns, "NAME", None) or default_name
    description = getattr(ns, "DESCRIPTION", None) or ""
    if not isinstance(name, str) or not isinstance(description, str):
        raise StrategyError(f"{spec}: NAME and DESCRIPTION must be strings")
    lookback = getattr(ns, "lookback", None)
    validate = getattr(ns, "validate", None)
    for label, f in (("lookback", lookback), ("validate", validate)):
        if f is not None and not callable(f):
            raise StrategyError(f"{spec}: {label} must be a function of params")
    return Strategy(
        name=name, description=description.strip().splitlines()[0] if description.strip() else "",
        params=params, lookback=lookback or (lambda p: 1), targets=targets, weights=weights,
        validate=validate, label=spec, source=source,
    )
