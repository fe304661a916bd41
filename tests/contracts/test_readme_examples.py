"""Every command example in the documentation runs as written.

From README.md, slices/*/README.md and docs/*.md, every line of a ```bash block that starts with
`python -m slices.` is run from the root of a temporary copy of the repository (so outputs such
as `runs/` or `report.html`, and a store's validation record, land in the copy), with HOME in the
copy, no GPT_TRADER_STORE (the default store, empty, falls back to the embedded sample) and
`../shared` linked beside the copy when it exists. A document's examples run in order in one copy,
so a later line may use what an earlier one made (a session, a file); documents run concurrently.

Conventions a document can use:
- "Save this as `NAME.py`:" before a ```python block writes that block to NAME.py in the copy first;
- `# needs the network` (or any `# needs ...`: a Dask cluster, Alpaca keys) at the end of a line
  skips it, as do `fetch`, `update`, `check-keys`, `--account` and `--follow`;
- `# error` at the end of a line: the example shows a mistake; it must fail as a one-line error, exit 2.
Every other example must exit 0.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, isolated_env, shown

SHARED = ROOT.parent / "shared"
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("slices/*/README.md")), *sorted(ROOT.glob("docs/*.md"))]
SAVE = re.compile(r"[Ss]ave (?:this|it) as `([^`/]+\.py)`")
NETWORK = re.compile(r"(^| )(fetch|update|check-keys)( |$)|--follow\b|--account\b|#\s*needs\b")
TIMEOUT = 240
IGNORE = shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks",
                                ".import_linter_cache", "*.egg-info", "tests")


def extract(doc: Path) -> tuple[list[tuple[int, str]], dict[str, str]]:
    """(line number, command) of the doc's bash examples, and the files it asks the reader to save."""
    commands, files, pending, fence, block, start = [], {}, None, None, [], 0
    lines = doc.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if fence is None:
            m = SAVE.search(line)
            if m:
                pending = m.group(1)
            if line.startswith("```"):
                fence, block, start = line[3:].strip(), [], n
            continue
        if not line.startswith("```"):
            block.append(line)
            continue
        if fence == "bash":
            parts, first = [], None
            for i, text in enumerate(block, start + 1):
                first = first or i
                parts.append(text.rstrip("\\").strip())
                if not text.endswith("\\"):
                    joined = " ".join(parts)
                    if joined.startswith("python -m slices."):
                        commands.append((first, joined))
                    parts, first = [], None
        elif fence == "python" and pending:
            files[pending] = "\n".join(block) + "\n"
            pending = None
        fence = None
    return commands, files


EXAMPLES = {doc: extract(doc) for doc in DOCS}


def skip_reason(command: str) -> str | None:
    if NETWORK.search(command):
        return "needs the network (or runs until stopped)"
    if "../shared" in command and not SHARED.exists():
        return "../shared is absent (a fresh clone)"
    return None


def run_doc(doc: Path, tmp: Path) -> dict[int, subprocess.CompletedProcess | str]:
    """Run a document's examples in order in a fresh copy of the repository."""
    copy = tmp / "repo"
    shutil.copytree(ROOT, copy, ignore=IGNORE, symlinks=True)
    if SHARED.exists():
        (tmp / "shared").symlink_to(SHARED, target_is_directory=True)
    commands, files = EXAMPLES[doc]
    for name, text in files.items():
        (copy / name).write_text(text)
    results = {}
    for n, command in commands:
        if skip_reason(command):
            continue
        argv = shlex.split(command, comments=True)
        try:
            results[n] = subprocess.run([sys.executable, *argv[1:]], cwd=copy, capture_output=True, text=True,
                                        timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                                        env=isolated_env(copy, GPT_TRADER_STORE=None, PYTHONPATH=str(copy),
                                                         HOME=str(copy / "home")))
        except subprocess.TimeoutExpired:
            results[n] = f"timed out after {TIMEOUT} s"
    return results


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    """Each document with a selected example runs in its own thread (its examples in order)."""
    docs = {item.callspec.params["doc"] for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec") and "doc" in item.callspec.params}
    pool = ThreadPoolExecutor(max_workers=3)
    futures = {d: pool.submit(run_doc, d, tmp_path_factory.mktemp(d.parent.name + "-" + d.stem)) for d in docs}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def cases():
    return [pytest.param(doc, n, command, id=f"{doc.relative_to(ROOT)}:{n}")
            for doc, (commands, _) in EXAMPLES.items() for n, command in commands]


@pytest.mark.parametrize(("doc", "line", "command"), cases())
def test_example_runs(results, doc, line, command):
    reason = skip_reason(command)
    if reason:
        pytest.skip(reason)
    res = results[doc].result()[line]
    assert not isinstance(res, str), f"{command}\n{res}"
    if re.search(r"#\s*error\b", command):
        assert_one_line_error(res)
    else:
        assert res.returncode == 0 and "Traceback" not in res.stderr, f"{command}\n{shown(res)}"


def test_examples_are_found():
    """The extractor sees the top-level README's examples, and the docs hold some runnable ones."""
    commands, _ = EXAMPLES[ROOT / "README.md"]
    assert any(c.startswith("python -m slices.backtest") for _, c in commands)
    assert sum(len(c) for c, _ in EXAMPLES.values()) >= 10


def test_extractor_handles_saved_files_continuations_and_other_blocks(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("Save this as `a.py`:\n\n```python\nPARAMS = {}\n```\n\n```bash\n"
                   "python -m slices.backtest run \\\n  --symbols AAPL\npip install x\n```\n\n"
                   "```text\npython -m slices.data fetch X\n```\n")
    commands, files = extract(doc)
    assert files == {"a.py": "PARAMS = {}\n"}
    assert commands == [(8, "python -m slices.backtest run --symbols AAPL")]
