"""SLICES.md "Command-line style": every slice's commands look and behave alike.

The commands are discovered, not listed: a subprocess runs each built slice's `__main__` with
click's `Command.main` intercepted and dumps the command tree (options, arguments, choices), so a
slice added later (paper_trade, ...) is checked as soon as its package exists. Every behaviour is
then checked through the real command line (`python -m slices.<name> ...`), from a temporary
working folder with HOME pointed there, so nothing touches the user's store or the repository.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, TIMEOUT, assert_one_line_error, built_slices, isolated_env, shown, start_selected

# Run `python -m slices.<name>` up to the point where click would parse the command line, then
# describe the command tree as JSON on stdout instead.
INTROSPECT = r"""
import json, os, runpy, sys
import click

def describe(cmd, path):
    out = [{"path": path, "group": isinstance(cmd, click.Group), "params": [
        {"kind": "option" if isinstance(p, click.Option) else "argument", "name": p.name,
         "opts": list(p.opts), "secondary_opts": list(p.secondary_opts),
         "choices": [str(c) for c in p.type.choices] if isinstance(p.type, click.Choice) else None,
         "required": bool(p.required), "nargs": p.nargs, "multiple": bool(getattr(p, "multiple", False)),
         "is_flag": bool(getattr(p, "is_flag", False)), "metavar": p.metavar}
        for p in cmd.params]}]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            if not cmd.commands[name].hidden:
                out += describe(cmd.commands[name], path + [name])
    return out

def intercept(self, *args, **kwargs):
    sys.stdout.write(json.dumps(describe(self, [])))
    sys.stdout.flush()
    os._exit(0)

click.core.Command.main = intercept
sys.argv = ["x", "--help"]
runpy.run_module(sys.argv_module, run_name="__main__")
"""

SHARED = {"--timeframe": "-t", "--format": "-f", "--out": "-o", "--rows": "-n", "--symbols": "-s"}
WRITERS = {("data", "fetch"), ("data", "import")}  # create the store: a missing --store is not an error there
SERVERS = {"serve"}  # long-running commands: only their help and usage errors are run here
SYMBOLISH = re.compile(r"^(symbols?|tickers?)$")


def discover(name: str) -> list[dict]:
    code = INTROSPECT.replace("sys.argv_module", repr(f"slices.{name}"))
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                         env=isolated_env(Path(tempfile.mkdtemp(prefix="cli-introspect-"))))
    if res.returncode != 0 or not res.stdout.startswith("["):
        raise RuntimeError(f"cannot introspect slices.{name}: {res.stderr[-1500:]}")
    return json.loads(res.stdout)


def _collect() -> list[tuple[str, dict]]:
    out = []
    for name in built_slices():
        try:
            tree = discover(name)
        except Exception as exc:  # a slice mid-edit must fail a test, not the collection of every test
            out.append((name, {"path": [], "group": True, "params": [], "broken": str(exc)}))
            continue
        out += [(name, cmd) for cmd in tree]
    return out


COMMANDS = _collect()


def cid(name: str, cmd: dict) -> str:
    return " ".join([name, *cmd["path"]])


def params(leaves_only=False, where=lambda name, cmd: True):
    return [pytest.param(name, cmd, id=cid(name, cmd)) for name, cmd in COMMANDS
            if (not leaves_only or not cmd["group"]) and where(name, cmd)]


def options(cmd: dict) -> dict[str, dict]:
    """Every option string (long, short and secondary) -> the option."""
    return {o: p for p in cmd["params"] if p["kind"] == "option" for o in p["opts"] + p["secondary_opts"]}


def symbol_arguments(cmd: dict) -> list[dict]:
    return [p for p in cmd["params"] if p["kind"] == "argument" and SYMBOLISH.match(p["name"] or "")]


def takes_symbols(cmd: dict) -> bool:
    return bool(symbol_arguments(cmd)) or "--symbols" in options(cmd)


def argv(name: str, cmd: dict, *extra: str) -> list[str]:
    return [f"slices.{name}", *cmd["path"], *extra]


KNOWN_VALUES = {"--strategy": "simple_ma", "--session": "contracts", "--train": "2y", "--test": "6m"}  # not files


def filler(cmd: dict, tmp, symbol: str | None = "AAPL") -> list[str]:
    """Values for the command's required arguments and options, and one symbol when the command
    takes symbols (through --symbols when it has it), so that only the tested input is wrong."""
    out = []
    if symbol is not None and takes_symbols(cmd):
        out += ["--symbols", symbol] if "--symbols" in options(cmd) else [symbol]
    for p in cmd["params"]:
        if not p["required"] or SYMBOLISH.match(p["name"] or ""):
            continue
        known = [KNOWN_VALUES[o] for o in p["opts"] if o in KNOWN_VALUES]
        value = p["choices"][0] if p["choices"] else known[0] if known else str(tmp / "out.csv")
        if p["kind"] == "argument":
            out.append(value)
        elif not p["is_flag"]:
            out += [p["opts"][0], value]
    return out


# ---------------------------------------------------------------- commands that run concurrently

CHECKS = {
    "help_short": lambda name, cmd, tmp: argv(name, cmd, "-h"),
    "help_long": lambda name, cmd, tmp: argv(name, cmd, "--help"),
    "unknown_option": lambda name, cmd, tmp: argv(name, cmd, "--no-such-option"),
    "missing_store": lambda name, cmd, tmp: argv(name, cmd, *filler(cmd, tmp), "--store", "/nonexistent/store"),
    "traversal": lambda name, cmd, tmp: argv(name, cmd, *filler(cmd, tmp, symbol="../../evil")),
    "missing_argument": lambda name, cmd, tmp: argv(name, cmd),
    "comma_hint": lambda name, cmd, tmp: argv(name, cmd, *filler(cmd, tmp, symbol=None), "--symbols", "AAPL", "MSFT"),
}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """Every selected check's command, started at once from its own temporary working folder."""
    def build(p, work):
        if "check" not in p:
            return None
        return {"args": CHECKS[p["check"]](p["name"], p["cmd"], work), "cwd": work, "timeout": 90,
                "env": {"GPT_TRADER_STORE": None, "GPT_TRADER_NETWORK": "0"}}

    jobs, pool = start_selected(request, tmp_path_factory.mktemp("cli"), build)
    yield jobs
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_built_slice_is_discovered():
    assert built_slices(), "no slice is built"
    broken = [f"{n}: {c['broken']}" for n, c in COMMANDS if "broken" in c]
    assert not broken, "\n".join(broken)
    for name in built_slices():
        leaves = [c for n, c in COMMANDS if n == name and not c["group"]]
        assert leaves, f"slices.{name} has no command"


@pytest.mark.parametrize("check", ["help_short", "help_long"])
@pytest.mark.parametrize(("name", "cmd"), params())
def test_help(runs, request, name, cmd, check):
    res = runs[request.node.name][0].result()
    assert res.returncode == 0, shown(res)
    assert "Usage:" in res.stdout and "Traceback" not in res.stderr, shown(res)
    if cmd["group"]:
        assert "Commands:" in res.stdout, shown(res)
    for p in cmd["params"]:
        if p["choices"] and p["kind"] == "option":
            listed = "[" + "|".join(p["choices"]) + "]"
            assert listed in re.sub(r"\s+", "", res.stdout), (
                f"{p['opts']}: choices {listed} not listed in the help")


@pytest.mark.parametrize("check", ["unknown_option"])
@pytest.mark.parametrize(("name", "cmd"), params())
def test_unknown_option_is_a_one_line_usage_error(runs, request, name, cmd, check):
    assert_one_line_error(runs[request.node.name][0].result(), [r"--no-such-option"])


# ---------------------------------------------------------------- what the introspected tree must hold

@pytest.mark.parametrize(("name", "cmd"), params())
def test_shared_option_names_have_the_shared_short_forms(name, cmd):
    opts = options(cmd)
    for long, short in SHARED.items():
        if long in opts:
            assert short in opts[long]["opts"], f"{long} must also be {short} (has {opts[long]['opts']})"
        if short in opts:
            assert long in opts[short]["opts"], f"{short} is reserved for {long}, here it is {opts[short]['opts']}"


@pytest.mark.parametrize(("name", "cmd"), params(where=lambda n, c: "--format" in options(c)))
def test_format_offers_table_and_json(name, cmd):
    assert {"table", "json"} <= set(options(cmd)["--format"]["choices"] or []), options(cmd)["--format"]


@pytest.mark.parametrize(("name", "cmd"), params(where=lambda n, c: "--timeframe" in options(c)))
def test_timeframe_is_a_listed_choice(name, cmd):
    choices = options(cmd)["--timeframe"]["choices"] or []
    assert {"1m", "5m", "15m", "1h", "1d"} <= set(choices), f"--timeframe choices: {choices}"


@pytest.mark.parametrize(("name", "cmd"), params(leaves_only=True, where=lambda n, c: takes_symbols(c)))
def test_commands_taking_symbols_have_symbols_option(name, cmd):
    opt = options(cmd).get("--symbols")
    assert opt is not None, f"takes {[p['name'] for p in symbol_arguments(cmd)]} but has no --symbols"
    assert "-s" in opt["opts"] and opt["multiple"], f"--symbols must be `-s` and repeatable: {opt}"


def test_debug_option_exists_in_every_slice():
    for name in built_slices():
        cmds = [c for n, c in COMMANDS if n == name]
        root = next(c for c in cmds if c["path"] == [])
        missing = [cid(name, c) for c in cmds if not c["group"]
                   and "--debug" not in options(c) and "--debug" not in options(root)]
        assert not missing, f"no --debug on: {missing}"


# ---------------------------------------------------------------- behaviour of reading and symbol commands

def reads_store(name: str, cmd: dict) -> bool:
    return (not cmd["group"] and "--store" in options(cmd) and (name, cmd["path"][-1]) not in WRITERS
            and cmd["path"][-1] not in SERVERS)


@pytest.mark.parametrize("check", ["missing_store"])
@pytest.mark.parametrize(("name", "cmd"), params(leaves_only=True, where=reads_store))
def test_missing_store_is_an_error(runs, request, name, cmd, check):
    if any(p["required"] and "--session" in p["opts"] for p in cmd["params"]):
        pytest.skip("needs an existing session: the store cannot be the only wrong input")
    future, work = runs[request.node.name]
    assert_one_line_error(future.result(), [r"/nonexistent/store"])
    assert not (work / "runs").exists() and not (work / "out.csv").exists()


@pytest.mark.parametrize("check", ["traversal"])
@pytest.mark.parametrize(("name", "cmd"), params(
    leaves_only=True, where=lambda n, c: takes_symbols(c) and c["path"][-1] not in SERVERS))
def test_traversal_symbol_is_an_error(runs, request, name, cmd, check):
    future, work = runs[request.node.name]
    assert_one_line_error(future.result(), [r"(?i)\.\./\.\./evil"])
    assert not [p for p in work.rglob("*") if "evil" in p.name.lower()], "a path was built from the symbol"


@pytest.mark.parametrize("check", ["missing_argument"])
@pytest.mark.parametrize(("name", "cmd"), params(
    leaves_only=True, where=lambda n, c: [p for p in c["params"] if p["kind"] == "argument" and p["required"]]))
def test_missing_argument_is_a_one_line_usage_error(runs, request, name, cmd, check):
    assert_one_line_error(runs[request.node.name][0].result())


@pytest.mark.parametrize("check", ["comma_hint"])
@pytest.mark.parametrize(("name", "cmd"), params(
    leaves_only=True,
    where=lambda n, c: "--symbols" in options(c) and not [p for p in c["params"] if p["kind"] == "argument"]))
def test_space_separated_symbols_get_the_comma_hint(runs, request, name, cmd, check):
    res = runs[request.node.name][0].result()
    assert_one_line_error(res, [r"hint: --symbols takes one comma list: --symbols AAPL,MSFT$"])
