"""The paper_trade command line: run, resume rules, readers, report, stop/remove, errors."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from slices.paper_trade import ledger as ledger_mod
from slices.paper_trade.cli import cli as pt_cli
from pt_helpers import SAMPLE, cli, ledger_path, meta, read_tables, sample_bars

BASE = ["--store", str(SAMPLE), "--symbols", "AAPL,MSFT", "--start", "2018-01-01", "-q"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    led = tmp_path_factory.mktemp("led")
    r = cli("run", "--session", "demo", *BASE, "--allow-short", "--stop-loss-atr", "2", "--max-drawdown", "0.3",
            "--strategy", "momentum", ledgers=led)
    assert r.returncode == 0, r.stderr
    return led


def test_run_summary_and_status_json(session):
    r = cli("status", "demo", "--format", "json", ledgers=session)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for k in ("session", "status", "trading_state", "cash", "equity", "drawdown", "positions", "open_orders",
              "pending_signals", "last_bar_time", "heartbeat_age_s", "counts"):
        assert k in d
    assert d["status"] == "stopped" and d["last_bar_time"] == "2020-01-10T00:00:00.000000Z"
    assert d["equity"] == pytest.approx(d["cash"] + sum(p["market_value"] for p in d["positions"]), rel=1e-12)
    t = cli("status", "demo", ledgers=session)
    assert "equity" in t.stdout and "last bar      2020-01-10" in t.stdout


def test_sessions_lists_it(session):
    r = cli("sessions", "--format", "json", ledgers=session)
    assert [s["session"] for s in json.loads(r.stdout)["sessions"]] == ["demo"]
    assert "demo" in cli("sessions", ledgers=session).stdout


@pytest.mark.parametrize("what", ["orders", "fills", "trades", "equity", "events"])
def test_readers_table_json_and_files(session, what, tmp_path):
    t = cli(what, "demo", ledgers=session)
    assert t.returncode == 0 and t.stdout.strip()
    j = json.loads(cli(what, "demo", "--format", "json", ledgers=session).stdout)
    rows = j[what]
    for ext in ("parquet", "csv"):
        out = tmp_path / f"x.{ext}"
        r = cli(what, "demo", "--out", str(out), ledgers=session)
        assert r.returncode == 0, r.stderr
        assert r.stderr == f"note: {len(rows):,} {what} row(s) written to {out}\n"  # a note, as the CLI style says
        df = pl.read_parquet(out) if ext == "parquet" else pl.read_csv(out)
        assert df.height == len(rows) > 0


def test_equity_reconciles_with_fills_and_closes(session, tmp_path):
    """At every bar: cash = start - sum of fills' cash flows so far; equity = cash + qty x last close."""
    cli("equity", "demo", "--out", str(tmp_path / "e.parquet"), ledgers=session)
    cli("fills", "demo", "--out", str(tmp_path / "f.parquet"), ledgers=session)
    eq, fills = pl.read_parquet(tmp_path / "e.parquet"), pl.read_parquet(tmp_path / "f.parquet")
    closes = {s: sample_bars(s).filter(pl.col("timestamp") >= eq["timestamp"][0]) for s in ("AAPL", "MSFT")}
    signed = fills.with_columns(q=pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty")))
    for i in range(0, eq.height, 37):
        t = eq["timestamp"][i]
        upto = signed.filter(pl.col("time") <= t)
        cash = 100_000.0 - float((upto["q"] * upto["price"] + upto["commission"]).sum())
        assert eq["cash"][i] == pytest.approx(cash, rel=1e-9)
        value = 0.0
        for s, bars in closes.items():
            q = float(upto.filter(pl.col("symbol") == s)["q"].sum())
            value += q * float(bars.filter(pl.col("timestamp") <= t)["close"][-1])
        assert eq["equity"][i] == pytest.approx(cash + value, rel=1e-9)
        assert eq["drawdown"][i] == pytest.approx(eq["equity"][i] / eq["equity"][: i + 1].max() - 1, abs=1e-12)


def test_no_fill_before_the_bar_after_its_signal(session, tmp_path):
    cli("orders", "demo", "--out", str(tmp_path / "o.parquet"), ledgers=session)
    cli("fills", "demo", "--out", str(tmp_path / "f.parquet"), ledgers=session)
    o, f = pl.read_parquet(tmp_path / "o.parquet"), pl.read_parquet(tmp_path / "f.parquet")
    j = f.join(o.select("id", "signal_time", "reason"), left_on="order_id", right_on="id")
    assert j.height == f.height
    assert (j["time"] > j["signal_time"]).all() or (
        j.filter(pl.col("time") <= pl.col("signal_time"))["reason"].is_in(["stop_loss", "take_profit"]).all())
    ids = o["id"].to_list()
    assert len(ids) == len(set(ids))
    assert all(i.startswith("demo-") and i.split("-")[2][8] == "T" for i in ids)


def test_report_html_is_offline_and_digest(session, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", "demo", "--out", str(out), "--digest", "json", ledgers=session)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"note: report written to {out}\n"
    page = out.read_text()
    found = {k: k in page for k in ("Plotly", "Open positions", "Equity and drawdown", "<script src=", "<link ",
                                    'src="http')}
    assert found == {"Plotly": True, "Open positions": True, "Equity and drawdown": True, "<script src=": False,
                     "<link ": False, 'src="http': False}
    d = json.loads(r.stdout)
    assert d["day"] == "2020-01-10" and {"fills", "pnl", "exposure", "events"} <= set(d)
    txt = cli("report", "demo", "--no-html", ledgers=session)
    assert txt.stdout.startswith("Daily digest  demo  2020-01-10")


def test_resume_keeps_settings_and_refuses_a_changed_one(tmp_path):
    r = cli("run", "--session", "s", *BASE, "--end", "2018-06-30", ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    again = cli("run", "--session", "s", ledgers=tmp_path)  # no options: the stored settings
    assert again.returncode == 0, again.stderr
    assert "resumed, 0 bar(s) processed" in again.stdout
    bad = cli("run", "--session", "s", *BASE, "--end", "2018-06-30", "--commission", "0.01", ledgers=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: session s: --commission changed (0.0005 -> 0.01); resume with the same "
                                  "settings, or pass --force-new to start the session again")
    p = cli("run", "--session", "s", "--param", "fast=5", ledgers=tmp_path)
    assert p.returncode == 2 and "--param changed" in p.stderr
    new = cli("run", "--session", "s", *BASE, "--end", "2018-06-30", "--commission", "0.01", "--force-new", ledgers=tmp_path)
    assert new.returncode == 0, new.stderr
    assert json.loads(meta(ledger_path(tmp_path, "s"))["settings"])["commission"] == 0.01


@pytest.mark.parametrize("day,needle", [("notaday", "--day 'notaday': expected a date YYYY-MM-DD"),
                                        ("2020-1-10", "--day '2020-1-10': expected a date YYYY-MM-DD"),
                                        ("2030-01-01", "--day 2030-01-01: session demo has bars from 2018-01-02 to "
                                                       "2020-01-10"),
                                        ("2017-12-29", "has bars from 2018-01-02")])
def test_digest_day_outside_the_session_or_not_a_date_is_an_error(session, day, needle):
    """A bad --day used to print a digest of nothing under that day's name, exit 0."""
    r = cli("report", "demo", "--no-html", "--day", day, ledgers=session)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and needle in r.stderr


def test_digest_of_a_day_without_a_bar_says_so(session):
    sat = cli("report", "demo", "--no-html", "--day", "2019-12-07", ledgers=session)  # a Saturday
    assert sat.returncode == 0, sat.stderr
    assert "no bar on this day" in sat.stdout.splitlines()[0]
    fri = json.loads(cli("report", "demo", "--no-html", "--digest", "json", "--day", "2019-12-06", ledgers=session).stdout)
    d = json.loads(cli("report", "demo", "--no-html", "--digest", "json", "--day", "2019-12-07", ledgers=session).stdout)
    assert (fri["bars"], d["bars"], d["pnl"], d["fills"]) == (1, 0, 0.0, [])
    assert d["equity"] == fri["equity"]


def test_negative_rows_is_an_error(session):
    r = cli("orders", "demo", "--rows", "-1", ledgers=session)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--rows" in r.stderr and r.stdout == ""


def test_force_new_keeps_the_stored_settings_not_given(tmp_path):
    """--force-new after the changed-setting error restarts the same session with only that option
    changed (it used to fall back to every default: simple_ma on all 30 sample symbols)."""
    r = cli("run", "--session", "f", *BASE, "--end", "2018-06-30", "--strategy", "simple_ma", "--param", "fast=5",
            ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    new = cli("run", "--session", "f", "--commission", "0.01", "--force-new", "-q", ledgers=tmp_path)
    assert new.returncode == 0, new.stderr
    m = meta(ledger_path(tmp_path, "f"))
    s = json.loads(m["settings"])
    assert (m["strategy"], json.loads(m["symbols"]), s["end"], s["commission"]) == ("simple_ma", ["AAPL", "MSFT"],
                                                                                   "2018-06-30", 0.01)
    assert json.loads(m["params"]) == {"fast": 5, "slow": 30}
    p = cli("run", "--session", "f", "--param", "slow=40", "--force-new", "-q", ledgers=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(meta(ledger_path(tmp_path, "f"))["params"]) == {"fast": 5, "slow": 40}
    other = cli("run", "--session", "f", "--strategy", "momentum", "--force-new", "-q", ledgers=tmp_path)
    assert other.returncode == 0, other.stderr  # another strategy: its own defaults, not fast/slow
    m = meta(ledger_path(tmp_path, "f"))
    assert m["strategy"] == "momentum" and "fast" not in json.loads(m["params"])
    assert json.loads(m["symbols"]) == ["AAPL", "MSFT"] and json.loads(m["settings"])["commission"] == 0.01


def test_resume_with_a_later_end_is_a_changed_setting(tmp_path):
    r0 = cli("run", "--session", "e", *BASE, "--end", "2018-06-01", ledgers=tmp_path)
    assert r0.returncode == 0, r0.stderr
    r = cli("run", "--session", "e", *BASE, "--end", "2018-07-01", ledgers=tmp_path)
    assert r.returncode == 2 and "--end changed" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "--session", "../x", *BASE], "--session '../x'"),
    (["run", "--session", "x", *BASE, "--cash", "-5"], "--cash must be > 0"),
    (["run", "--session", "x", *BASE, "--max-volume-pct", "0"], "--max-volume-pct"),
    (["run", "--session", "x", *BASE, "--strategy", "nope"], "nope"),
    (["run", "--session", "x", "--store", str(SAMPLE), "--symbols", "ZZZZ"], "ZZZZ"),
    (["run", "--session", "x", "--data", "/no/such.csv"], "/no/such.csv"),
    (["run", "--session", "x", "--symbols", "AAPL", "MSFT"], "hint: --symbols takes one comma list"),
    (["status", "nosuch"], "no such session"),
    (["remove", "nosuch"], "no such session"),
    (["trades", "nosuch"], "no such session"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    r = cli(*args, ledgers=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "paper" / "x.sqlite").exists()


def test_out_with_unknown_extension(session, tmp_path):
    r = cli("equity", "demo", "--out", str(tmp_path / "x.xlsx"), ledgers=session)
    assert r.returncode == 2 and "use a .parquet or .csv file" in r.stderr


def test_schema_version_mismatch_is_refused(tmp_path):
    cli("run", "--session", "v", *BASE, "--end", "2018-06-30", ledgers=tmp_path)
    path = ledger_path(tmp_path, "v")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    for args in (["status", "v"], ["run", "--session", "v"]):
        r = cli(*args, ledgers=tmp_path)
        assert r.returncode == 2 and "schema_version 99" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_remove_deletes_the_ledger(tmp_path):
    cli("run", "--session", "gone", *BASE, "--end", "2018-06-30", ledgers=tmp_path)
    assert ledger_path(tmp_path, "gone").exists()
    r = cli("remove", "gone", ledgers=tmp_path)
    assert r.returncode == 0 and not ledger_path(tmp_path, "gone").exists()
    assert "no paper sessions" in cli("sessions", ledgers=tmp_path).stdout


def test_disk_full_in_process_is_one_line_and_keeps_earlier_bars(tmp_path, monkeypatch):
    """sqlite raising `database or disk is full` in the middle of a bar: exit 2, one line, the
    bars before stay whole and a resume continues from them."""
    real = ledger_mod.Writer.transaction
    calls = {"n": 0}

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 60:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM equity")  # half a bar: must be rolled back
            self.conn.execute("ROLLBACK")
            raise ledger_mod.ledger_error(sqlite3.OperationalError("database or disk is full"), self.path)
        return real(self)

    monkeypatch.setattr(ledger_mod.Writer, "transaction", failing)
    args = ["run", "--session", "df", *BASE, "--end", "2018-12-31", "--ledgers", str(tmp_path)]
    r = CliRunner().invoke(pt_cli, args, catch_exceptions=False)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith("error: ") and "disk full" in r.output
    rows = read_tables(ledger_path(tmp_path, "df"))
    m = meta(ledger_path(tmp_path, "df"))
    assert len(rows["equity"]) > 50 and m["last_bar_time"] == rows["equity"][-1][0]
    monkeypatch.setattr(ledger_mod.Writer, "transaction", real)
    again = CliRunner().invoke(pt_cli, args[:2] + ["df", "--ledgers", str(tmp_path), "-q"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    ref = cli("run", "--session", "df", *BASE, "--end", "2018-12-31", ledgers=tmp_path / "ref")
    assert ref.returncode == 0
    assert read_tables(ledger_path(tmp_path, "df")) == read_tables(ledger_path(tmp_path / "ref", "df"))


def test_max_volume_pct_leaves_partial_fills_open(tmp_path):
    r = cli("run", "--session", "pv", *BASE, "--max-volume-pct", "0.0005", "--fractional", ledgers=tmp_path)
    assert r.returncode == 0, r.stderr
    o = json.loads(cli("orders", "pv", "--format", "json", ledgers=tmp_path).stdout)["orders"]
    f = json.loads(cli("fills", "pv", "--format", "json", ledgers=tmp_path).stdout)["fills"]
    multi = [x for x in o if sum(1 for y in f if y["order_id"] == x["id"]) > 1]
    assert multi, "no order filled over several bars"
    for x in o:
        done = sum(y["qty"] for y in f if y["order_id"] == x["id"])
        assert done == pytest.approx(x["filled_qty"], rel=1e-12)
        assert x["status"] != "filled" or done == pytest.approx(x["qty"], rel=1e-9)
    vols = {s: dict(zip(sample_bars(s)["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), sample_bars(s)["volume"]))
            for s in ("AAPL", "MSFT")}
    per_bar = {}
    for y in f:
        per_bar[(y["symbol"], y["time"])] = per_bar.get((y["symbol"], y["time"]), 0.0) + y["qty"]
    assert all(q <= 0.0005 / 100 * vols[s][t] * (1 + 1e-9) for (s, t), q in per_bar.items())
    assert np.isfinite([x["qty"] for x in o]).all()
