"""Helpers of the contract tests."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLICE_NAMES = ("data", "analyze", "backtest", "optimize", "paper_trade", "live_trade", "monitor")


def built_slices() -> list[str]:
    """The slices that exist as packages under slices/ (SLICES.md lists the planned ones too)."""
    return [n for n in SLICE_NAMES if (ROOT / "slices" / n / "__init__.py").exists()]


# ---------------------------------------------------------------- running the slices' command lines
TIMEOUT = 180  # seconds per command: generous, the machine may be shared


def isolated_env(tmp: Path, **extra: str | None) -> dict[str, str]:
    """Environment for a slice run that cannot touch the user's real store or home.

    HOME and GPT_TRADER_STORE point into `tmp`; TZ is New York so a loader that reads naive times
    as local time (instead of UTC) is caught; no colour codes.
    """
    env = dict(os.environ)
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(tmp / "home"), GPT_TRADER_STORE=str(tmp / "default-store"), TZ="America/New_York",
               NO_COLOR="1", COLUMNS="200", PYTHONPATH=str(ROOT))
    for key, value in extra.items():  # None unsets a variable
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(args: list[str], tmp: Path, cwd: Path = ROOT, timeout: int = TIMEOUT, **env) -> subprocess.CompletedProcess:
    """`python -m <args>` from `cwd` (the repository root unless told) in an isolated environment."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          env=isolated_env(tmp, **env), timeout=timeout, stdin=subprocess.DEVNULL)


def shown(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout[-1500:]}\n--- stderr\n{res.stderr[-2500:]}"


def stderr_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


def assert_one_line_error(res: subprocess.CompletedProcess, patterns=()) -> str:
    """SLICES.md command-line style: exit code 2, exactly one stderr line `error: ...`, no traceback,
    and the line matches every regex of `patterns`. Returns the line."""
    assert "Traceback" not in res.stderr + res.stdout, shown(res)
    assert res.returncode == 2, shown(res)
    lines = stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: "), shown(res)
    for p in patterns:
        assert re.search(p, lines[0]), f"error line does not match {p!r}:\n{lines[0]}"
    return lines[0]


def start_selected(request, tmp: Path, build) -> tuple[dict[str, tuple[Future, Path]], ThreadPoolExecutor]:
    """Start the commands of every selected test of the requesting module at once, on a small pool.

    `build(params, work)` turns a test's parameters (and a fresh work folder) into keyword
    arguments of `run_cli` (`args`, optionally `cwd`, `env`), or None when the test runs nothing.
    Returns {test node name: (future of the CompletedProcess, work folder)} and the pool (shut it
    down when done). A test then waits only for its own command: `jobs[request.node.name]`.
    """
    pool = ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) + 1))
    jobs = {}
    for i, item in enumerate(request.session.items):
        if item.module is not request.module or not hasattr(item, "callspec"):
            continue
        work = tmp / f"{i:04d}"
        work.mkdir()
        spec = build(item.callspec.params, work)
        if spec is not None:
            env = spec.pop("env", {})
            jobs[item.name] = (pool.submit(run_cli, tmp=work, **spec, **env), work)
    return jobs, pool
