"""Reading a session ledger (read-only): orders, fills, positions, equity, events, trades, status.

Every function takes a read-only connection from :func:`.ledger.open_reader`. Frames use the
ledger's columns (SLICES.md contract 4) with times as Datetime(us, UTC); :func:`trades_frame`
derives round trips from the fills (FIFO per symbol) with the columns of contract 3's
``trades.parquet``; :func:`equity_frame` has the columns of contract 3's ``equity.parquet``.
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import numpy as np
import polars as pl

from .ledger import EQUITY_COLUMNS, EVENT_COLUMNS, FILL_COLUMNS, ORDER_COLUMNS, POSITION_COLUMNS, read_meta

UTC_US = pl.Datetime("us", "UTC")
TRADE_SCHEMA = {
    "symbol": pl.String, "side": pl.String, "quantity": pl.Float64, "entry_time": UTC_US, "entry_price": pl.Float64,
    "exit_time": UTC_US, "exit_price": pl.Float64, "pnl": pl.Float64, "return_pct": pl.Float64,
    "commission": pl.Float64, "exit_reason": pl.String, "is_open": pl.Boolean,
}
_TIME_COLS = {"signal_time", "created_at", "updated_at", "time", "mark_time"}
_FLOATS = {"qty", "limit_price", "stop_price", "filled_qty", "avg_fill_price", "price", "commission", "avg_price",
           "realized_pnl", "mark_price", "cash", "equity", "gross_exposure", "drawdown", "benchmark"}


def _times(col: pl.Series) -> pl.Series:
    return col.str.strip_suffix("Z").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us").dt.replace_time_zone("UTC")


def _frame(conn: sqlite3.Connection, table: str, cols: tuple[str, ...], order: str) -> pl.DataFrame:
    rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
    schema = {c: (pl.Float64 if c in _FLOATS else pl.Int64 if c == "id" and table == "events" else pl.String) for c in cols}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    return df.with_columns([_times(df[c]).alias(c) for c in cols if c in _TIME_COLS])


def orders_frame(conn: sqlite3.Connection) -> pl.DataFrame:
    """Every order, in placement order (ledger columns)."""
    return _frame(conn, "orders", ORDER_COLUMNS, "rowid")


def fills_frame(conn: sqlite3.Connection) -> pl.DataFrame:
    """Every fill, in execution order (ledger columns plus ``reason``, the order's reason)."""
    return _frame(conn, "fills", FILL_COLUMNS, "rowid")


def positions_frame(conn: sqlite3.Connection) -> pl.DataFrame:
    """Current positions: symbol, signed qty, avg_price, realized_pnl, mark_price (last close)."""
    return _frame(conn, "positions", POSITION_COLUMNS, "symbol")


def events_frame(conn: sqlite3.Connection) -> pl.DataFrame:
    """Every event (id, wall-clock time, level, kind, message, data JSON)."""
    return _frame(conn, "events", EVENT_COLUMNS, "id")


def equity_frame(conn: sqlite3.Connection) -> pl.DataFrame:
    """One row per processed bar: ``timestamp`` Datetime(us, UTC), ``equity cash gross_exposure``
    (currency), ``drawdown`` (fraction <= 0), ``benchmark`` (equal-weight buy and hold, no costs)."""
    df = _frame(conn, "equity", EQUITY_COLUMNS, "time")
    return df.rename({"time": "timestamp"}).select("timestamp", "equity", "cash", "gross_exposure", "drawdown", "benchmark")


def trades_frame(conn: sqlite3.Connection, meta: dict | None = None) -> pl.DataFrame:
    """Round trips from the fills, FIFO per symbol (contract 3 ``trades.parquet`` columns).

    A fill against the position closes the oldest open lots first: pnl = signed quantity x (exit
    - entry) - entry commission - exit commission (commissions pro rata for a partial lot);
    return_pct = 100 x pnl / (quantity x entry price); exit_reason the closing order's reason,
    except that a ``rebalance`` fill (weights form) gives ``signal``, or ``reverse`` when it goes
    through zero (the backtest's weights trades).
    Lots still open are marked at the last close (``positions.mark_price``) at the session's last
    bar, with ``exit_reason`` ``open`` and no exit commission. Sorted by entry_time, symbol."""
    meta = meta if meta is not None else read_meta(conn)
    fills = conn.execute("SELECT symbol, side, qty, price, commission, time, reason FROM fills ORDER BY rowid").fetchall()
    lots: dict[str, list[list]] = {}
    out: list[tuple] = []
    for sym, side, q, price, com, t, reason in fills:
        d = 1 if side == "buy" else -1
        book = lots.setdefault(sym, [])
        left = q
        eps = 1e-12 * max(1.0, q)  # what is left of a lot below this is rounding: the lot is closed
        if reason == "rebalance":  # weights form: "reverse" when the fill goes through zero (as backtest)
            against = sum(x[0] for x in book) if book and book[0][4] != d else 0.0
            reason = "reverse" if against > 0 and q - against > 1e-9 * max(1.0, q) else "signal"
        while left > eps and book and book[0][4] != d:
            lq, lp, lc, lt, ld = book[0]
            take = min(left, lq)
            ec = lc if take == lq else lc * take / lq
            xc = com if take == q else com * take / q
            pnl = (ld * take) * (price - lp) - ec - xc
            out.append((sym, "long" if ld > 0 else "short", take, lt, lp, t, price, pnl, 100.0 * pnl / (take * lp),
                        ec + xc, reason, False))
            if lq - take <= eps:
                book.pop(0)
            else:
                book[0] = [lq - take, lp, lc - ec, lt, ld]
            left -= take
        if left > eps:
            book.append([left, price, com if left == q else com * left / q, t, d])
    marks = dict(conn.execute("SELECT symbol, mark_price FROM positions").fetchall())
    last = meta.get("last_bar_time")
    for sym, book in lots.items():
        for lq, lp, lc, lt, ld in book:
            px = marks.get(sym)
            if px is None:
                continue
            pnl = (ld * lq) * (px - lp) - lc
            out.append((sym, "long" if ld > 0 else "short", lq, lt, lp, last, px, pnl, 100.0 * pnl / (lq * lp), lc,
                        "open", True))
    if not out:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    df = pl.DataFrame(out, schema={k: (pl.String if v == UTC_US else v) for k, v in TRADE_SCHEMA.items()}, orient="row")
    return df.with_columns(_times(df["entry_time"]).alias("entry_time"), _times(df["exit_time"]).alias("exit_time")) \
        .sort("entry_time", "symbol", maintain_order=True)


def heartbeat_age(meta: dict) -> float | None:
    """Seconds since ``meta.heartbeat_at`` (None when never beaten)."""
    hb = meta.get("heartbeat_at")
    if not hb:
        return None
    t = datetime.strptime(hb, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - t).total_seconds()


def status_doc(conn: sqlite3.Connection, meta: dict, running_pid: int | None) -> dict:
    """``status`` as a document: session, status, trading_state, cash, equity, drawdown, positions,
    open orders, pending signals, last bar, heartbeat age (seconds), counts."""
    eq = conn.execute("SELECT time, cash, equity, gross_exposure, drawdown FROM equity ORDER BY time DESC LIMIT 1").fetchone()
    peak = conn.execute("SELECT max(equity) FROM equity").fetchone()[0]
    settings = json.loads(meta.get("settings", "{}"))
    state = json.loads(meta.get("engine_state") or "{}")
    positions = [dict(zip(("symbol", "qty", "avg_price", "mark_price", "realized_pnl"), r)) for r in conn.execute(
        "SELECT symbol, qty, avg_price, mark_price, realized_pnl FROM positions WHERE qty != 0 ORDER BY symbol")]
    for p in positions:
        p["market_value"] = p["qty"] * (p["mark_price"] or 0.0)
        p["unrealized_pnl"] = p["qty"] * ((p["mark_price"] or 0.0) - (p["avg_price"] or 0.0))
    open_orders = [dict(zip(("id", "symbol", "side", "type", "qty", "filled_qty", "limit_price", "stop_price", "reason"), r))
                   for r in conn.execute("SELECT id, symbol, side, type, qty, filled_qty, limit_price, stop_price, reason "
                                         "FROM orders WHERE status IN ('new', 'accepted', 'partially_filled') ORDER BY rowid")]
    syms = json.loads(meta.get("symbols", "[]"))
    pending = [{"symbol": syms[int(j)], "target": p["tgt"], "signal_time": _iso_us(p["sig"])}
               for j, p in sorted(state.get("pending", {}).items(), key=lambda kv: int(kv[0])) if p.get("entry") is None and p["tgt"]]
    pending += [{"symbol": syms[int(j)], "weight": w, "signal_time": _iso_us(sig)}  # weights form
                for j, (w, sig) in sorted(state.get("wpending", {}).items(), key=lambda kv: int(kv[0]))]
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("orders", "fills", "equity", "events")}
    status = meta.get("status")
    if status == "running" and running_pid is None:
        status = "stopped (not running: the process ended without a clean stop)"
    return {
        "session": meta.get("session"), "kind": meta.get("kind"), "status": status, "pid": running_pid,
        "trading_state": meta.get("trading_state"), "strategy": meta.get("strategy"),
        "params": json.loads(meta.get("params", "{}")), "symbols": syms, "timeframe": meta.get("timeframe"),
        "mode": settings.get("mode"), "created_at": meta.get("created_at"),
        "cash": eq[1] if eq else settings.get("cash"), "equity": eq[2] if eq else settings.get("cash"),
        "gross_exposure": eq[3] if eq else 0.0, "drawdown": eq[4] if eq else 0.0,
        "max_equity": peak, "start_cash": settings.get("cash"),
        "total_return": (eq[2] / settings["cash"] - 1) if eq and settings.get("cash") else 0.0,
        "positions": positions, "open_orders": open_orders, "pending_signals": pending,
        "last_bar_time": meta.get("last_bar_time"), "heartbeat_at": meta.get("heartbeat_at"),
        "heartbeat_age_s": heartbeat_age(meta), "counts": counts,
    }


def _iso_us(us: int) -> str:
    return str(np.datetime64(int(us), "us")) + "Z"


def digest_doc(conn: sqlite3.Connection, meta: dict, day: str | None = None) -> dict:
    """The daily digest of ``day`` (``YYYY-MM-DD``, UTC; default: the day of the last bar):
    that day's fills, P&L (equity change from the previous day's last bar), exposure at the day's
    last bar, and risk events (levels warning and above, by bar time)."""
    last = meta.get("last_bar_time")
    if day is not None:
        _check_day(conn, meta, day)
    day = day or (last[:10] if last else None)
    if day is None:
        return {"session": meta.get("session"), "day": None, "fills": [], "pnl": 0.0, "events": []}
    fills = [dict(zip(("time", "symbol", "side", "qty", "price", "commission", "reason"), r)) for r in conn.execute(
        "SELECT time, symbol, side, qty, price, commission, reason FROM fills WHERE substr(time, 1, 10) = ? ORDER BY rowid",
        (day,))]
    end = conn.execute("SELECT time, equity, gross_exposure, drawdown, cash FROM equity WHERE substr(time, 1, 10) <= ? "
                       "ORDER BY time DESC LIMIT 1", (day,)).fetchone()
    before = conn.execute("SELECT equity FROM equity WHERE substr(time, 1, 10) < ? ORDER BY time DESC LIMIT 1",
                          (day,)).fetchone()
    start_eq = before[0] if before else json.loads(meta.get("settings", "{}")).get("cash")
    events = []
    for t, level, kind, msg, data in conn.execute("SELECT time, level, kind, message, data FROM events "
                                                  "WHERE level IN ('warning', 'error', 'critical') ORDER BY id"):
        bt = (json.loads(data or "{}") or {}).get("bar_time") or t
        if bt[:10] == day:
            events.append({"time": bt, "level": level, "kind": kind, "message": msg})
    eq = end[1] if end else start_eq
    return {
        "session": meta.get("session"), "day": day, "equity": eq, "cash": end[4] if end else start_eq,
        "pnl": (eq - start_eq) if (eq is not None and start_eq is not None) else None,
        "return": (eq / start_eq - 1) if start_eq else None,
        "gross_exposure": end[2] if end else 0.0, "exposure": (end[2] / end[1]) if end and end[1] else 0.0,
        "drawdown": end[3] if end else 0.0, "fills": fills, "events": events,
        "trading_state": meta.get("trading_state"),
        "bars": conn.execute("SELECT COUNT(*) FROM equity WHERE substr(time, 1, 10) = ?", (day,)).fetchone()[0],
    }


def _check_day(conn: sqlite3.Connection, meta: dict, day: str) -> None:
    """ValueError unless ``day`` is a ``YYYY-MM-DD`` date within the session's bars."""
    try:
        ok = len(day) == 10 and datetime.strptime(day, "%Y-%m-%d") is not None
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"--day {day!r}: expected a date YYYY-MM-DD")
    first, last = conn.execute("SELECT MIN(time), MAX(time) FROM equity").fetchone()
    if first is None:
        raise ValueError(f"--day {day}: session {meta.get('session')} has no bar yet")
    if not first[:10] <= day <= last[:10]:
        raise ValueError(f"--day {day}: session {meta.get('session')} has bars from {first[:10]} to {last[:10]}")
