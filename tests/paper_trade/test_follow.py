"""--follow: bars appended to the store (atomic rename, as the data slice writes) while a session
runs are traded once complete, exactly as a replay of the same bars; the heartbeat advances."""
from __future__ import annotations

import signal
import time

from pt_helpers import cli, ledger_path, meta, popen, read_tables, sample_bars, write_store
from pt_helpers import last_bar as _last_bar, wait_until as _wait

SYMS = ("AAPL", "MSFT", "XOM")
ARGS = ["--symbols", ",".join(SYMS), "--strategy", "momentum", "--param", "lookback=5", "--allow-short",
        "--stop-loss-atr", "2", "-q"]


def test_follow_trades_appended_bars_like_a_replay(tmp_path):
    store, led = tmp_path / "store", tmp_path / "ledgers"
    full = {s: sample_bars(s).head(360) for s in SYMS}
    for s in SYMS:
        write_store(store, s, full[s].head(300))
    start = str(full["AAPL"]["timestamp"][0].date())
    p = popen("run", "--session", "f", "--follow", "--poll", "0.2", "--store", str(store), "--start", start,
              "--exit-after-idle", "60", *ARGS, ledgers=led)
    path = ledger_path(led, "f")
    try:
        t299 = full["AAPL"]["timestamp"][299].strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        _wait(lambda: _last_bar(path) == t299, 90, p)
        hb0 = meta(path)["heartbeat_at"]
        time.sleep(0.6)
        assert meta(path)["heartbeat_at"] > hb0  # beats every --poll while idle
        n_before = len(read_tables(path)["equity"])
        for end in (320, 340, 360):  # three landings of 20 bars each, every symbol rewritten atomically
            for s in SYMS:
                write_store(store, s, full[s].head(end))
            t_last = full["AAPL"]["timestamp"][end - 1].strftime("%Y-%m-%dT%H:%M:%S.000000Z")
            _wait(lambda: _last_bar(path) == t_last, 60, p)
        got = read_tables(path)
        assert len(got["equity"]) == n_before + 60
        new_fills = [f for f in got["fills"] if f[7] > t299]
        assert new_fills, "no trade on the appended bars"
        s = cli("stop", "f", "--wait", "30", ledgers=led)
        assert s.returncode == 0, s.stderr
        p.wait(timeout=30)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert meta(path)["status"] == "stopped"
    # the same bars replayed give the same ledger
    r = cli("run", "--session", "f", "--store", str(store), "--start", start, *ARGS, ledgers=tmp_path / "replay")
    assert r.returncode == 0, r.stderr
    want = read_tables(ledger_path(tmp_path / "replay", "f"))
    for table in ("orders", "fills", "positions", "equity"):
        assert got[table] == want[table], table


def test_follow_without_start_trades_only_new_bars(tmp_path):
    store, led = tmp_path / "store", tmp_path / "ledgers"
    full = {s: sample_bars(s).head(330) for s in SYMS}
    for s in SYMS:
        write_store(store, s, full[s].head(300))
    p = popen("run", "--session", "g", "--follow", "--poll", "0.2", "--store", str(store), "--exit-after-idle", "60",
              *ARGS, ledgers=led)
    path = ledger_path(led, "g")
    try:
        t299 = full["AAPL"]["timestamp"][299].strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        _wait(lambda: _last_bar(path) == t299, 90, p)
        assert read_tables(path)["equity"] == []  # history only warms the strategy up
        for s in SYMS:
            write_store(store, s, full[s])
        t_last = full["AAPL"]["timestamp"][329].strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        _wait(lambda: _last_bar(path) == t_last, 60, p)
        rows = read_tables(path)
        assert [r[0] for r in rows["equity"]] == [t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
                                                  for t in full["AAPL"]["timestamp"][300:330]]
        assert all(f[7] > t299 for f in rows["fills"])
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
