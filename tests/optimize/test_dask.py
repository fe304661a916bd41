"""--scheduler: a Dask scheduler and two workers on 127.0.0.1 give the local run's results."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import polars as pl
import pytest

from conftest import ROOT, SAMPLE, optimize

pytest.importorskip("distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_cluster_equals_local(tmp_path):
    dask = shutil.which("dask") or shutil.which("dask", path=os.path.dirname(sys.executable))
    if dask is None:
        pytest.skip("the dask command is not installed")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(tmp_path / "cluster.log", "w")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=log, stderr=log, env=env, cwd=ROOT, start_new_session=True)]
    try:
        time.sleep(2)
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", addr, "--nthreads", "1", "--no-dashboard"], stdout=log,
                                          stderr=log, env=env, cwd=ROOT, start_new_session=True))
        args = ["search", "--store", str(SAMPLE), "-s", "AAPL,MSFT", "--param", "fast=5:25:5", "--param", "slow=30:60:10",
                "--no-report", "-f", "json"]
        deadline = time.time() + 60
        while True:
            remote = optimize(*args, "--scheduler", addr, "--out", str(tmp_path / "remote"), timeout=120)
            if remote.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert remote.returncode == 0, remote.stderr + (tmp_path / "cluster.log").read_text()[-2000:]
        local = optimize(*args, "--jobs", "1", "--out", str(tmp_path / "local"))
        assert local.returncode == 0, local.stderr
        a = pl.read_parquet(tmp_path / "remote" / "results.parquet")
        b = pl.read_parquet(tmp_path / "local" / "results.parquet")
        assert a.equals(b)
        ra, rb = json.loads(remote.stdout), json.loads(local.stdout)
        assert ra["params"] == rb["params"] and ra["overfitting"] == rb["overfitting"]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        log.close()
