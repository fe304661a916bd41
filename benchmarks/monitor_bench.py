"""Load benchmark of ``monitor serve``: 50 concurrent clients polling the API for 30 s against 20
sessions (issue 11: no error, p99 under 200 ms).

The 20 ledgers are written by ``python -m slices.paper_trade run --replay`` on the embedded
sample (1,259 daily bars each); during the run a writer appends an equity row and a heartbeat to
two of them every second, as live sessions would, so the monitor's caches are invalidated while it
is under load. Clients: 5 processes x 10 threads, each a keep-alive HTTP connection cycling, in a
closed loop with no pause between requests, over
``/api/sessions``, ``/api/sessions/paper/<s>``, ``/api/sessions/paper/<s>/equity`` and
``/metrics``. Usage::

    python benchmarks/monitor_bench.py [--clients 50] [--seconds 30] [--sessions 20] [--replayed DIR]

Prints the machine's load average when the load starts (the machine may be shared: latency
under load is inflated, so say it), requests, throughput and latency percentiles per route, and
the server's CPU seconds per 1,000 requests (user + system time of the ``serve`` process from
``/proc/<pid>/stat`` over the load window, including its alert loop and the writer's cache
invalidations): a figure far less dependent on how busy the machine is than latency (it still
grows somewhat with contention: compare runs taken together). The clients' CPU per
1,000 requests is printed beside it. ``--serve-arg`` passes an option to ``serve`` (e.g.
``--serve-arg=--cache-ttl=0``) for A/B runs. Exits 1 when a request failed or p99 >= 200 ms.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["AAPL", "MSFT", "NVDA", "INTC", "CSCO", "GOOGL", "FB", "NFLX", "DIS", "T", "VZ", "AMZN", "HD", "MCD", "WMT",
           "PG", "KO", "PEP", "JPM", "BAC", "GS", "V"]


def make_sessions(ledgers: Path, n: int) -> None:
    def one(i):
        pair = f"{SYMBOLS[i % len(SYMBOLS)]},{SYMBOLS[(i + 1) % len(SYMBOLS)]}"
        r = subprocess.run([sys.executable, "-m", "slices.paper_trade", "run", "--session", f"s{i:02d}", "--ledgers",
                            str(ledgers), "--symbols", pair, "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"paper_trade replay s{i:02d} failed: {r.stderr.strip()}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(n)))


def writer(ledgers: Path, stop: threading.Event) -> int:
    """Append one equity row and heartbeat per second to s00 and s01 (as running sessions do)."""
    t = datetime(2020, 1, 11, tzinfo=timezone.utc)
    n = 0
    while not stop.wait(1.0):
        t += timedelta(days=1)
        for name in ("s00", "s01"):
            conn = sqlite3.connect(ledgers / "paper" / f"{name}.sqlite", isolation_level=None, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            conn.execute("INSERT INTO equity (time, cash, equity, gross_exposure, drawdown) "
                         "SELECT ?, cash, equity * 1.001, gross_exposure, 0.0 FROM equity ORDER BY time DESC LIMIT 1", (stamp,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'heartbeat_at'",
                         (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),))
            conn.execute("COMMIT")
            conn.close()
            n += 1
    return n


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_process(port: int, threads: int, seconds: float, sessions: int, seed: int, out) -> None:
    cpu0 = time.process_time()
    results = []
    lock = threading.Lock()

    def run(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = seed * 1000 + k
        end = time.monotonic() + seconds
        local = []
        while time.monotonic() < end:
            s = f"s{i % sessions:02d}"
            path = ["/api/sessions", f"/api/sessions/paper/{s}", f"/api/sessions/paper/{s}/equity", "/metrics"][i % 4]
            route = re.sub(r"s\d\d", "<s>", path)
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            local.append((route, (time.perf_counter() - t0) * 1000.0, ok))
            i += 1
        conn.close()
        with lock:
            results.extend(local)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((results, time.process_time() - cpu0))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--replayed", type=Path, default=None,
                    help="keep the replayed ledgers in this folder and reuse them on the next run (copied per run)")
    ap.add_argument("--serve-arg", action="append", default=[], help="an extra option for `monitor serve` (repeatable)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ledgers = tmp / "ledgers"
        t0 = time.monotonic()
        if a.replayed is not None:
            if len(list(a.replayed.glob("paper/*.sqlite"))) != a.sessions:
                shutil.rmtree(a.replayed, ignore_errors=True)
                make_sessions(a.replayed, a.sessions)
            shutil.copytree(a.replayed, ledgers)
        else:
            make_sessions(ledgers, a.sessions)
        print(f"{a.sessions} sessions ready in {time.monotonic() - t0:.1f} s", flush=True)
        (tmp / "store").mkdir()
        (tmp / "runs").mkdir()
        rules = tmp / "rules.toml"
        rules.write_text("[settings]\ninterval = 5.0\n[channels]\nlog = false\n")
        srv = subprocess.Popen([sys.executable, "-m", "slices.monitor", "serve", "--port", "0", "--ledgers", str(ledgers),
                                "--db", str(tmp / "m.sqlite"), "--rules", str(rules), "--runs", str(tmp / "runs"),
                                "--store", str(tmp / "store"), *a.serve_arg], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            line = srv.stderr.readline()
            m = re.search(r"127\.0\.0\.1:(\d+)/", line)
            if not m:
                raise SystemExit(f"monitor serve did not start: {line}")
            port = int(m.group(1))
            threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
            stop = threading.Event()
            wt = threading.Thread(target=writer, args=(ledgers, stop), daemon=True)
            wt.start()
            load0 = os.getloadavg()
            cpu0 = cpu_seconds(srv.pid)
            procs, q = [], mp.Queue()
            per = max(1, a.clients // 5)
            for p in range(5):
                n = per if p < 4 else a.clients - 4 * per
                procs.append(mp.Process(target=client_process, args=(port, n, a.seconds, a.sessions, p, q)))
            for p in procs:
                p.start()
            results, client_cpu = [], 0.0
            for _ in procs:
                got, used = q.get(timeout=a.seconds + 120)
                results.extend(got)
                client_cpu += used
            for p in procs:
                p.join(timeout=30)
            server_cpu = cpu_seconds(srv.pid) - cpu0
            load1 = os.getloadavg()
            stop.set()
            wt.join(timeout=10)
        finally:
            srv.terminate()
            srv.wait(timeout=20)
    lat = [r[1] for r in results]
    errors = sum(1 for r in results if not r[2])
    print(f"{a.clients} clients x {a.seconds:.0f} s, {a.sessions} sessions: {len(results):,} requests "
          f"({len(results) / a.seconds:,.0f}/s), {errors:,} errors")
    print(f"{'route':<36} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    routes = sorted({r[0] for r in results})
    for route in routes + ["all"]:
        v = [r[1] for r in results if route == "all" or r[0] == route]
        print(f"{route:<36} {len(v):>7,} {pct(v, .5):>8.1f} {pct(v, .95):>8.1f} {pct(v, .99):>8.1f} {max(v):>8.1f}")
    per_k = 1000.0 / max(1, len(results))
    print(f"server CPU {server_cpu:.2f} s = {server_cpu * per_k * 1000:.1f} ms per 1,000 requests "
          f"({server_cpu / a.seconds * 100:.0f}% of one core); clients' CPU {client_cpu * per_k * 1000:.1f} ms per 1,000")
    print(f"load average (1 min) {load0[0]:.2f} at start, {load1[0]:.2f} at the end, on {os.cpu_count()} CPUs")
    p99 = pct(lat, .99)
    ok = errors == 0 and p99 < 200
    print(("PASS" if ok else "FAIL") + f": p99 {p99:.1f} ms (< 200 ms), {errors} errors (0)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
