"""Crash safety (issue 9, SLICES.md contract 4): SIGKILL at random moments, resume, same ledger;
one writer per session; corrupted, read-only and full ledgers fail with one line, losing nothing."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from pt_helpers import SAMPLE, cli, ledger_path, meta, popen, read_tables

RUN = ["run", "--store", str(SAMPLE), "--symbols", "AAPL,NVDA,BA,XOM", "--strategy", "breakout", "--allow-short",
       "--stop-loss-atr", "2", "--take-profit-atr", "3", "--start", "2016-01-01", "--end", "2018-12-31", "-q"]


def _consistent(path: Path) -> None:
    """The ledger is at a whole bar: the engine state, the equity rows and last_bar_time agree."""
    m = meta(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        last = conn.execute("SELECT time, cash FROM equity ORDER BY time DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    if last is None:
        return
    state = json.loads(m["engine_state"])
    assert m["last_bar_time"] == last[0]
    assert state["broker"]["cash"] == last[1]


def test_twenty_kills_then_resume_equal_an_uninterrupted_run(tmp_path):
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    r = cli(*RUN, "--session", "k", ledgers=ref_dir)
    assert r.returncode == 0, r.stderr
    reference = read_tables(ledger_path(ref_dir, "k"))
    assert reference["orders"][0][0].startswith("k-AAPL-2016") or reference["orders"][0][0][:7] in ("k-BA-20", "k-NVDA-", "k-XOM-2")
    assert len(reference["fills"]) > 20 and len(reference["equity"]) > 700

    rng = random.Random(20240611)
    kills, runs = 0, 0
    path = ledger_path(kill_dir, "k")
    while True:
        runs += 1
        assert runs < 200, "the killed session never finished"
        p = popen(*RUN, "--session", "k", "--speed", "500", ledgers=kill_dir)
        if kills < 20:
            time.sleep(rng.uniform(0.05, 1.8))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=60)
            if path.exists():
                _consistent(path)
            continue
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        break
    assert kills >= 20
    got = read_tables(path)
    for table in ("orders", "fills", "positions", "equity"):
        assert got[table] == reference[table], table
    ids = [row[0] for row in got["orders"]]
    assert len(ids) == len(set(ids))
    assert meta(path)["status"] == "stopped"


def _has_equity(path: Path) -> bool:
    """Whether the ledger has an equity row yet (False while the writer is still creating it)."""
    try:
        return path.exists() and bool(read_tables(path)["equity"])
    except sqlite3.OperationalError:  # the file exists but its schema is not committed yet
        return False


def test_second_process_on_a_session_refuses_naming_the_pid(tmp_path):
    p = popen(*RUN, "--session", "busy", "--speed", "20", ledgers=tmp_path)
    try:
        path = ledger_path(tmp_path, "busy")
        deadline = time.monotonic() + 60
        while not (path.with_suffix(".pid").exists() and path.exists()):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        r = cli(*RUN, "--session", "busy", ledgers=tmp_path)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: session busy is already running")
        assert f"pid {p.pid}" in lines[0]
        # stop asks it to end after the current bar
        s = cli("stop", "busy", "--wait", "30", ledgers=tmp_path)
        assert s.returncode == 0 and "stopped" in s.stdout
        p.wait(timeout=30)
        assert p.returncode == 0
        assert meta(path)["status"] == "stopped"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigterm_stops_after_the_current_bar_and_resume_continues(tmp_path):
    p = popen(*RUN, "--session", "term", "--speed", "100", ledgers=tmp_path)
    path = ledger_path(tmp_path, "term")
    deadline = time.monotonic() + 60
    while not _has_equity(path):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 0, p.stderr.read()
    m = meta(path)
    assert m["status"] == "stopped"
    _consistent(path)
    done = len(read_tables(path)["equity"])
    r = cli(*RUN, "--session", "term", ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stdout
    assert len(read_tables(path)["equity"]) > done


def test_corrupted_ledger_is_one_line_error(tmp_path):
    path = ledger_path(tmp_path, "bad")
    path.parent.mkdir(parents=True)
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    for args in (RUN + ["--session", "bad"], ["status", "bad"], ["trades", "bad"]):
        r = cli(*args, ledgers=tmp_path)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "corrupted" in lines[0] and str(path) in lines[0]
        assert "Traceback" not in r.stderr
    assert path.read_bytes() == garbage  # nothing overwritten


def _ro_bind(folder: Path):
    """Make ``folder`` read-only even for root (a read-only bind mount), or by permissions otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder as root here (mount not permitted)")
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(folder)])
        pytest.skip("cannot remount read-only here")
    return lambda: subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("existing", [False, True])
def test_read_only_ledger_folder_is_one_line_error_and_loses_nothing(tmp_path, existing):
    folder = tmp_path / "paper"
    folder.mkdir()
    before = None
    if existing:
        r = cli(*RUN, "--session", "ro", "--end", "2016-06-30", ledgers=tmp_path)
        assert r.returncode == 0, r.stderr
        before = read_tables(ledger_path(tmp_path, "ro"))
    undo = _ro_bind(folder)
    try:
        r = cli(*RUN, "--session", "ro", "--end", "2016-06-30", ledgers=tmp_path)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
        assert "not writable" in lines[0] or "Read-only" in lines[0] or "read-only" in lines[0]
    finally:
        undo()
    if existing:
        assert read_tables(ledger_path(tmp_path, "ro")) == before
    else:
        assert not ledger_path(tmp_path, "ro").exists()


def test_a_ledger_in_a_read_only_folder_is_readable(tmp_path):
    """A stopped ledger copied alone (no -wal/-shm beside it) to a read-only folder: SQLite cannot
    open a WAL database with mode=ro there; `status` and the readers used to fail with `unable to
    open database file`."""
    r = cli(*RUN, "--session", "c", "--end", "2016-06-30", ledgers=tmp_path / "a")
    assert r.returncode == 0, r.stderr
    src, folder = ledger_path(tmp_path / "a", "c"), tmp_path / "b" / "paper"
    folder.mkdir(parents=True)
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(folder / "c.sqlite") as b:
        a.backup(b)
        assert b.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    b.close()
    assert sorted(x.name for x in folder.iterdir()) == ["c.sqlite"]
    want = cli("trades", "c", "--format", "json", ledgers=tmp_path / "a").stdout
    undo = _ro_bind(folder)
    try:
        st = cli("status", "c", "--format", "json", ledgers=tmp_path / "b")
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["status"] == "stopped"
        assert cli("trades", "c", "--format", "json", ledgers=tmp_path / "b").stdout == want
        again = cli(*RUN, "--session", "c", "--end", "2016-06-30", ledgers=tmp_path / "b")
        assert again.returncode == 2 and "not writable" in again.stderr and len(again.stderr.splitlines()) == 1
    finally:
        undo()


def test_disk_full_on_a_tiny_tmpfs_is_one_line_error_and_keeps_earlier_bars(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mount not permitted here")
    try:
        r = cli(*RUN, "--session", "full", ledgers=mnt)
        assert r.returncode == 2, r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "disk full" in lines[0] and "Traceback" not in r.stderr
        path = ledger_path(mnt, "full")
        rows = read_tables(path)
        assert len(rows["equity"]) > 0
        m = meta(path)
        assert m["last_bar_time"] == rows["equity"][-1][0]
        assert json.loads(m["engine_state"])["broker"]["cash"] == rows["equity"][-1][1]
    finally:
        subprocess.run(["umount", str(mnt)])


@pytest.mark.parametrize("state", ["no_tables", "tables_without_meta"])
def test_a_ledger_killed_while_being_created_starts_as_new(tmp_path, state):
    """A process killed before the ledger's first commit leaves a file without meta rows; a
    later run starts the session as new (it used to fail with `no such table: meta`)."""
    path = ledger_path(tmp_path, "early")
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    if state == "tables_without_meta":
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.commit()
    conn.close()
    st = cli("status", "early", ledgers=tmp_path)  # was `no such table: meta` / `schema_version missing`
    assert st.returncode == 2 and st.stderr == (f"error: {path}: not a session ledger yet (no meta: empty, or its run "
                                                "was killed while creating it); `run` starts it as new, or `remove` it\n")
    r = cli(*RUN, "--session", "early", "--end", "2016-03-31", ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    assert meta(path)["status"] == "stopped" and len(read_tables(path)["equity"]) > 40
