"""Running a live session: bars in, signals, risk checks, orders to Alpaca (or dry-run), fills
from the ``trade_updates`` stream, reconciliation, kill switch, ledger (contract 4, kind ``live``).

Order of work (slices/live_trade/README.md has the full list of limits and state changes):

* Start: settings checked; keys from the environment (never written); the ledger lock taken;
  with an account, **startup reconciliation**: every order the ledger holds as working is looked
  up by client order id (fills that happened while the session was down are recorded; an order
  the broker never received is marked ``canceled``); then broker positions and open orders of the
  session's symbols are compared with the ledger. Any difference refuses the start (ValueError,
  exit 2) unless ``adopt`` (the broker's state is taken, event ``reconcile``).
* Each new complete bar (``follow``: bars landing in the store; ``replay``, dry runs only: the
  stored bars in order): targets on the bar's close (contract 5 signal form), the ATR circuit
  breaker, the daily-loss limit, then for each symbol whose target changed: cancel its working
  orders, an exit of the position, an entry sized ``equity x min(1/N, max position %)`` capped by
  the max order notional (whole shares), each through :func:`.risk.check` (a refusal is a
  ``risk_block`` event) and sent with a deterministic client order id
  ``<session>-<SYMBOL>-<YYYYMMDDTHHMMSS>-<n>``. The order row (status ``new``) is committed
  before it is sent, so a crash between the two is resolved by the lookup on restart; the bar's
  equity row, targets and heartbeat are one transaction.
* A weights-form strategy instead rebalances on each complete bar (:meth:`Session.rebalance`):
  target quantities ``w x equity / last close`` from the bar's weights row, the differences as
  market orders (reason ``rebalance``), reducing orders first, every one risk-checked.
* Before any decision on a symbol, its orders already sent are given up to ``SETTLE_WAIT`` seconds
  to settle (:meth:`Session.settle`), so a decision never rests on a fill still in flight.
* Between bars, every ``tick`` (0.1 s): the control files (``<session>.HALT`` or ``HALT`` in the
  ledger folder, ``<session>.RESUME``, ``<session>.FLATTEN``, ``<session>.stop``), stream updates,
  and every ``poll`` seconds the store, open orders, the clock and staleness; every
  ``reconcile_every`` seconds a reconciliation (a difference halts trading).
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from .bars import SAMPLE_ROOT, DataError, LoadReport, load_bars, store_root
from .broker import Alpaca, BarStream, Rejected, TradeUpdates, Unavailable
from .execution import parse_execution, split, vwap_weights
from .ledger import (EQUITY_COLUMNS, FILL_COLUMNS, KIND, ORDER_COLUMNS, SCHEMA_VERSION, Writer, iso, now_iso,
                     set_meta)
from .risk import Context, Limits, RateWindow, atr_pct, check, daily_loss_hit
from .strategies import StrategyError, call_targets, call_weights, fmt_bar_time, resolve_params

TF_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400,
              "1w": 7 * 86400, "1mo": 31 * 86400}
WORKING = ("new", "accepted", "partially_filled")
TICK = 0.1
SETTLE_WAIT = 3.0  # seconds a decision on a symbol waits for that symbol's orders already sent (Session.settle)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_STATUS = {"filled": "filled", "partially_filled": "partially_filled", "canceled": "canceled", "expired": "expired",
           "done_for_day": "expired", "rejected": "rejected", "replaced": "canceled", "stopped": "canceled",
           "suspended": "canceled"}
_UPSERT_ORDER = (f"INSERT INTO orders({', '.join(ORDER_COLUMNS)}) VALUES({', '.join('?' * len(ORDER_COLUMNS))}) "
                 "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in ORDER_COLUMNS[1:]))
_INSERT_FILL = f"INSERT OR IGNORE INTO fills({', '.join(FILL_COLUMNS)}) VALUES({', '.join('?' * len(FILL_COLUMNS))})"
_UPSERT_POS = ("INSERT INTO positions(symbol, qty, avg_price, realized_pnl, updated_at, mark_price, mark_time) "
               "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET qty=excluded.qty, "
               "avg_price=excluded.avg_price, realized_pnl=excluded.realized_pnl, updated_at=excluded.updated_at, "
               "mark_price=coalesce(excluded.mark_price, mark_price), mark_time=coalesce(excluded.mark_time, mark_time)")
_INSERT_EQUITY = f"INSERT OR REPLACE INTO equity({', '.join(EQUITY_COLUMNS)}) VALUES({', '.join('?' * len(EQUITY_COLUMNS))})"
_INSERT_EVENT = "INSERT INTO events(time, level, kind, message, data) VALUES(?, ?, ?, ?, ?)"


@dataclass
class RunResult:
    """What ``run`` did: bars processed now, orders placed/blocked, final status."""

    session: str
    path: Path
    bars_done: int
    status: str
    trading_state: str
    dry_run: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # the loader's (kind, symbol, text)


def control_files(path: Path) -> dict[str, Path]:
    """The kill-switch files beside the ledger ``<ledgers>/live/<session>.sqlite``: ``halt``
    (``<session>.HALT``), ``halt_all`` (``HALT``: every live session), ``resume``, ``flatten``, ``stop``."""
    return {"halt": path.with_suffix(".HALT"), "halt_all": path.parent / "HALT", "resume": path.with_suffix(".RESUME"),
            "flatten": path.with_suffix(".FLATTEN"), "stop": path.with_suffix(".stop")}


def client_order_id(session: str, symbol: str, signal_us: int, n: int) -> str:
    """``<session>-<SYMBOL>-<signal bar time YYYYMMDDTHHMMSS>-<n>`` (at most 64+32+15+3 < 128 characters)."""
    t = str(np.datetime64(int(signal_us), "us").astype("datetime64[s]")).replace("-", "").replace(":", "")
    cid = f"{session}-{symbol}-{t}-{n}"
    assert len(cid) <= 128
    return cid


def _complete(times: np.ndarray, timeframe: str) -> np.ndarray:
    """Complete bar times: a newer bar exists, or the bar's end (open + timeframe) has passed."""
    if times.size == 0:
        return times
    now_us = int(time.time() * 1e6)
    return times[(times < times[-1]) | (times + TF_SECONDS[timeframe] * 1_000_000 <= now_us)]


def _ready(lasts: np.ndarray, times: np.ndarray, timeframe: str, seen: dict[int, float], grace: float) -> np.ndarray:
    """The leading run of ``times`` (new timeline times, sorted) that are complete bars;
    ``lasts`` (N,) int64 us: each followed symbol's newest bar time.

    A time t is complete when every symbol has a bar newer than t; or every symbol has reached t
    and t's end time (t + timeframe) has passed; or, for a symbol whose file stopped updating,
    ``grace`` seconds after the session first saw t (``seen``: time -> monotonic seconds), when a
    newer bar exists or t's end passed. Processing stops at the first time that is not complete
    (bars are acted on in time order), so a symbol whose file lands a moment after another's still
    trades on that bar. The same rule as the paper_trade slice's follow loop."""
    if times.size == 0 or lasts.size == 0:
        return times[:0]
    min_last, max_last = lasts.min(), lasts.max()
    now_us = time.time() * 1e6
    now_mono = time.monotonic()
    out = []
    for t in times.tolist():
        ended = t + TF_SECONDS[timeframe] * 1_000_000 <= now_us
        if t < min_last or (t <= min_last and ended) or (now_mono - seen.get(t, now_mono) >= grace and (t < max_last or ended)):
            out.append(t)
        else:
            break
    return np.array(out, dtype=np.int64)


class Session:
    """One live session (see the module docstring). ``alpaca`` None: a dry run without an account
    (no clock: the market-hours gate is off). ``dry_run``: nothing is sent; orders are recorded
    with status ``dry_run`` and a virtual book (filled at the signal bar's close) sizes the next ones."""

    def __init__(self, name: str, path: Path, writer: Writer, s: dict, limits: Limits, strat, params: dict,
                 alpaca: Alpaca | None, dry_run: bool):
        self.name, self.path, self.writer, self.s = name, path, writer, s
        self.limits, self.strat, self.params = limits, strat, params
        self.alpaca, self.dry_run = alpaca, dry_run
        self.symbols: list[str] = s["symbols"]
        self.tf = s["timeframe"]
        self.files = control_files(path)
        self.rate = RateWindow(limits.max_orders_per_minute)
        self.orders: dict[str, dict] = {}
        self.positions: dict[str, list[float]] = {}  # symbol -> [qty, avg, realized]
        self.last_target: dict[str, int] = {}
        self.last_close: dict[str, float] = {}
        self.last_time: int | None = None
        self.state = "active"
        self.state_reason = ""
        self.cash = float(s["cash"])  # dry runs: the virtual book's cash
        self.peak = -math.inf
        self.day: str | None = None
        self.day_start: float | None = None
        self.stale = False
        self.last_bar_wall = time.monotonic()
        self.market_open = alpaca is None
        self.frames: dict[str, dict] = {}
        self.pending_events: list[tuple] = []
        self.stop_requested = False
        self.placed = 0
        self.blocked = 0
        self.execution = parse_execution(s.get("execution"))
        self.schedules: dict[str, dict] = {}  # parent id -> child-order schedule (see work_schedules)
        self.parents: set[str] = set()
        self._md_failed: set[str] = set()
        self.base_bars: pl.DataFrame | None = None  # --bars alpaca: the stored history the stream extends
        self.stream_bars: dict[str, dict[int, tuple]] = {}  # --bars alpaca: symbol -> {minute us: (o, h, l, c, v)}
        self.updates: TradeUpdates | None = None  # the trade_updates stream (Session.settle reads it)
        self._w_key = None  # weights form: the bars the weights were computed on (see weights_row)
        self._w_times: np.ndarray | None = None
        self._w: np.ndarray | None = None

    # ------------------------------------------------------------------ ledger
    def event(self, level: str, kind: str, message: str, cur=None, **data) -> None:
        row = (now_iso(), level, kind, message, json.dumps(data, default=str))
        if cur is not None:
            cur.execute(_INSERT_EVENT, row)
        else:
            with self.writer.transaction() as c:
                c.execute(_INSERT_EVENT, row)
                set_meta(c, {"heartbeat_at": row[0]})

    def engine_state(self) -> dict:
        return {"last_target": self.last_target, "last_close": self.last_close, "cash": self.cash,
                "peak": None if self.peak == -math.inf else self.peak, "day": self.day, "day_start": self.day_start,
                "state_reason": self.state_reason, "last_time": self.last_time,
                "virtual_positions": self.positions if self.dry_run else {}, "schedules": self.schedules}

    def restore(self, meta: dict) -> None:
        st = json.loads(meta.get("engine_state") or "{}")
        self.last_target = {k: int(v) for k, v in st.get("last_target", {}).items()}
        self.last_close = st.get("last_close", {})
        self.cash = st.get("cash", self.cash)
        self.peak = -math.inf if st.get("peak") is None else st["peak"]
        self.day, self.day_start = st.get("day"), st.get("day_start")
        self.state_reason = st.get("state_reason", "")
        self.last_time = st.get("last_time")
        self.state = meta.get("trading_state", "active")
        self.schedules = st.get("schedules", {})
        conn = self.writer.conn
        cols = ", ".join(ORDER_COLUMNS)
        for row in conn.execute(f"SELECT {cols} FROM orders"):
            self.orders[row[0]] = dict(zip(ORDER_COLUMNS, row))
        self.parents = set(self.schedules) | {o["parent_id"] for o in self.orders.values() if o.get("parent_id")}
        if self.dry_run:
            self.positions = {k: list(v) for k, v in st.get("virtual_positions", {}).items()}
        else:
            for sym, q, avg, real in conn.execute("SELECT symbol, qty, avg_price, realized_pnl FROM positions"):
                self.positions[sym] = [q, avg or 0.0, real]

    def save_meta(self, cur, **extra) -> None:
        meta = {"heartbeat_at": now_iso(), "trading_state": self.state, "engine_state": json.dumps(self.engine_state())}
        if self.last_time is not None:
            meta["last_bar_time"] = iso(self.last_time)
        set_meta(cur, meta | extra)

    def write_order(self, cur, o: dict) -> None:
        self.orders[o["id"]] = o
        cur.execute(_UPSERT_ORDER, tuple(o.get(k) for k in ORDER_COLUMNS))

    def write_position(self, cur, sym: str) -> None:
        if self.dry_run:
            return
        q, avg, real = self.positions[sym]
        cur.execute(_UPSERT_POS, (sym, q, avg if q else None, real, now_iso(), self.last_close.get(sym),
                                  iso(self.last_time) if self.last_time is not None and sym in self.last_close else None))

    def set_state(self, state: str, reason: str, cur=None, level: str = "warning") -> None:
        """Change the trading state (event ``state``, or ``halt``/``resume``) and store it."""
        if state == self.state and reason == self.state_reason:
            return
        old, self.state, self.state_reason = self.state, state, reason
        kind = "halt" if state == "halted" else "resume" if state == "active" and old == "halted" else "state"
        msg = f"trading state {old} -> {state}: {reason}"

        def write(c):
            self.event("critical" if state == "halted" else level, kind, msg, c, old=old, new=state, reason=reason)
            self.save_meta(c)

        if cur is not None:
            write(cur)
        else:
            with self.writer.transaction() as c:
                write(c)

    # ------------------------------------------------------------------ fills and orders
    def _position_fill(self, sym: str, side: str, q: float, price: float) -> None:
        qty, avg, real = self.positions.get(sym, [0.0, 0.0, 0.0])
        signed = q if side == "buy" else -q
        new = qty + signed
        if abs(new) < 1e-9:
            new = 0.0
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (abs(qty) * avg + q * price) / (abs(qty) + q)
        else:
            real += min(q, abs(qty)) * (price - avg) * (1 if qty > 0 else -1)
            avg = 0.0 if new == 0 else price if (new > 0) != (qty > 0) else avg
        self.positions[sym] = [new, avg, real]

    def apply_broker_order(self, cur, bo, when: str | None = None) -> dict | None:
        """Bring the ledger's order up to the broker's view ``bo`` (an alpaca-py ``Order``): status,
        broker id and any newly filled quantity as a fill (price from the change of the cumulative
        average), so stream updates and REST look-ups can repeat without double counting."""
        o = self.orders.get(bo.client_order_id)
        if o is None:
            return None
        now = when or now_iso()
        filled = float(bo.filled_qty or 0)
        old = float(o["filled_qty"] or 0)
        if filled > old + 1e-9:
            avg = float(bo.filled_avg_price)
            price = (avg * filled - (o["avg_fill_price"] or 0.0) * old) / (filled - old)
            k = cur.execute("SELECT count(*) FROM fills WHERE order_id=?", (o["id"],)).fetchone()[0] + 1
            ftime = (bo.filled_at or bo.updated_at)
            ftime = ftime.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ftime else now
            cur.execute(_INSERT_FILL, (f"{o['id']}-F{k}", o["id"], o["symbol"], o["side"], filled - old, price, 0.0,
                                       ftime, o["reason"]))
            self._position_fill(o["symbol"], o["side"], filled - old, price)
            self.write_position(cur, o["symbol"])
            o["filled_qty"], o["avg_fill_price"] = filled, avg
        status = getattr(bo.status, "value", bo.status)
        o["status"] = _STATUS.get(status, "partially_filled" if filled > 0 else "accepted")
        o["broker_id"] = str(bo.id)
        o["updated_at"] = now
        if o["status"] == "rejected" and not o.get("note"):
            o["note"] = "rejected by the broker"
        self.write_order(cur, o)
        if o.get("parent_id"):
            self.refresh_parent(cur, o["parent_id"])
        return o

    def working(self, symbol: str | None = None, broker_only: bool = False) -> list[dict]:
        """Working orders (of ``symbol``); ``broker_only``: without the parents of child orders
        (they are never sent: only their children are)."""
        return [o for o in self.orders.values() if o["status"] in WORKING and (symbol is None or o["symbol"] == symbol)
                and not (broker_only and o["id"] in self.parents)]

    # ------------------------------------------------------------------ reconciliation
    def catch_up(self) -> None:
        """Look up every working order by client order id and record what changed."""
        if self.alpaca is None:
            return
        for o in self.working(broker_only=True):
            bo = self.alpaca.find(o["id"])
            with self.writer.transaction() as cur:
                if bo is None:
                    if o["status"] == "new":
                        o.update(status="canceled", updated_at=now_iso(),
                                 note="never reached the broker (not found by client order id)")
                        self.write_order(cur, o)
                    continue
                self.apply_broker_order(cur, bo)

    def differences(self) -> tuple[list[str], dict, list]:
        """Broker vs ledger for the session's symbols: (lines, broker positions, foreign open orders)."""
        broker_pos = self.alpaca.positions()
        open_orders = self.alpaca.open_orders()
        lines = []
        for sym in self.symbols:
            b = broker_pos.get(sym, (0.0, 0.0))[0]
            mine = self.positions.get(sym, [0.0])[0]
            if abs(b - mine) > 1e-9:
                lines.append(f"{sym}: broker position {b:,.6g}, ledger {mine:,.6g}")
        known = {o["id"] for o in self.working()}
        foreign = [o for o in open_orders if o.symbol in self.symbols and o.client_order_id not in known]
        for o in foreign:
            lines.append(f"{o.symbol}: open order {o.client_order_id} ({getattr(o.side, 'value', o.side)} "
                         f"{o.qty}) at the broker, not in the ledger")
        return lines, broker_pos, foreign

    def reconcile(self, adopt: bool, startup: bool) -> list[str]:
        """Catch up working orders, compare; on startup refuse (ValueError) or adopt, later halt."""
        if self.alpaca is None:
            return []
        self.catch_up()
        lines, broker_pos, foreign = self.differences()
        if lines and not startup:  # a fill may have landed between the two reads: look once more
            self.catch_up()
            lines, broker_pos, foreign = self.differences()
        if not lines:
            self.event("info", "reconcile", "broker and ledger agree", positions={s: self.positions.get(s, [0.0])[0]
                                                                                for s in self.symbols})
            return []
        if startup and not adopt:
            raise ValueError(f"session {self.name}: broker and ledger differ: {'; '.join(lines)}; "
                             "pass --adopt to take the broker's state")
        if startup:
            now = now_iso()
            with self.writer.transaction() as cur:
                for sym in self.symbols:
                    q, avg = broker_pos.get(sym, (0.0, 0.0))
                    real = self.positions.get(sym, [0.0, 0.0, 0.0])[2]
                    self.positions[sym] = [q, avg if q else 0.0, real]
                    self.write_position(cur, sym)
                for bo in foreign:
                    self.write_order(cur, {
                        "id": bo.client_order_id, "broker_id": str(bo.id), "symbol": bo.symbol,
                        "side": getattr(bo.side, "value", bo.side), "type": getattr(bo.type, "value", bo.type) or "market",
                        "qty": float(bo.qty or 0), "limit_price": float(bo.limit_price) if bo.limit_price else None,
                        "stop_price": float(bo.stop_price) if bo.stop_price else None,
                        "time_in_force": getattr(bo.time_in_force, "value", bo.time_in_force),
                        "status": "accepted", "filled_qty": float(bo.filled_qty or 0),
                        "avg_fill_price": float(bo.filled_avg_price) if bo.filled_avg_price else None,
                        "signal_time": None, "created_at": now, "updated_at": now, "reason": "adopted",
                        "note": "adopted from the broker at startup (--adopt)", "parent_id": None})
                self.event("warning", "reconcile", f"adopted the broker's state: {'; '.join(lines)}", cur,
                           differences=lines)
                self.save_meta(cur)
            return lines
        with self.writer.transaction() as cur:
            self.event("critical", "reconcile", f"broker and ledger differ: {'; '.join(lines)}", cur, differences=lines)
        self.halt("reconciliation found differences")
        return lines

    # ------------------------------------------------------------------ kill switch
    def cancel_all(self, why: str) -> None:
        self.schedules.clear()
        for o in self.working():
            if self.alpaca is not None and not self.dry_run and o.get("broker_id"):
                try:
                    self.alpaca.cancel(o["broker_id"])
                except (Rejected, Unavailable) as exc:
                    self.event("error", "reject", f"cancel {o['id']} failed: {exc}")
                    continue
            with self.writer.transaction() as cur:
                o.update(status="canceled", updated_at=now_iso(), note=why)
                self.write_order(cur, o)

    def halt(self, why: str, flatten: bool | None = None) -> None:
        """Cancel every working order, go ``halted`` (and close positions with ``flatten``)."""
        self.cancel_all(f"canceled: {why}")
        if flatten if flatten is not None else self.limits.flatten_on_halt:
            self.close_all("halt")
        self.set_state("halted", why)

    def close_all(self, reason: str) -> None:
        """Market orders closing every position of the session (they bypass the risk checks:
        they only take exposure to zero)."""
        t = self.last_time if self.last_time is not None else int(time.time() * 1e6)
        for sym in self.symbols:
            q = self.positions.get(sym, [0.0])[0]
            if q:
                self.place(sym, "sell" if q > 0 else "buy", abs(q), self.last_close.get(sym), t, reason, checked=False)

    def controls(self) -> None:
        """Apply the control files (within one tick of their creation)."""
        f = self.files
        if f["stop"].exists():
            self.stop_requested = True
        if (f["halt"].exists() or f["halt_all"].exists()) and self.state != "halted":
            self.halt(f"kill switch ({f['halt'].name if f['halt'].exists() else f['halt_all']})")
        if f["flatten"].exists():
            f["flatten"].unlink(missing_ok=True)
            self.cancel_all("canceled: flatten")
            self.close_all("flatten")
            if self.state != "halted":
                self.set_state("reducing", "flatten requested")
        if f["resume"].exists():
            f["resume"].unlink(missing_ok=True)
            if not (f["halt"].exists() or f["halt_all"].exists()):
                self.set_state("active", "resume requested", level="info")

    # ------------------------------------------------------------------ orders
    def next_cid(self, sym: str, signal_us: int) -> str:
        """The next free client order id of (session, symbol, signal bar)."""
        prefix = client_order_id(self.name, sym, signal_us, 0)[:-1]
        return client_order_id(self.name, sym, signal_us,
                               1 + sum(1 for o in self.orders if o.startswith(prefix) and "-c" not in o[len(prefix):]))

    def latest_trade(self, sym: str) -> float | None:
        """The latest trade price from Alpaca's market-data API (None without an account or when the
        API has none or fails: the price band then uses the last bar close; a failure is one
        ``market_data`` warning event per symbol until it works again)."""
        if self.alpaca is None:
            return None
        try:
            px = self.alpaca.latest_trade(sym)
        except (Rejected, Unavailable) as exc:
            if sym not in self._md_failed:
                self._md_failed.add(sym)
                self.event("warning", "market_data", f"{sym}: latest trade unavailable ({exc}); the price band uses "
                           "the last bar close", symbol=sym)
            return None
        self._md_failed.discard(sym)
        return px

    def rate_clock(self) -> float:
        """Seconds for the order-rate window: the wall clock, or in ``--replay`` the bar clock (a
        replay of months in a second is limited per minute of bars, as it would have traded)."""
        if self.s.get("mode") == "replay" and self.last_time is not None:
            return self.last_time / 1e6
        return time.monotonic()

    def risk_check(self, cid: str, sym: str, side: str, qty: float, px: float, open_orders: int | None = None) -> bool:
        """The pre-trade check (risk.check) of one order sized on ``px``; a refusal is a
        ``risk_block`` event and False. The price band compares ``px`` with Alpaca's latest trade
        when available, else with the last bar close."""
        last = dict(self.last_close)
        trade = self.latest_trade(sym)
        if trade:
            last[sym] = trade
        n_open = len(self.working(broker_only=True)) if open_orders is None else open_orders
        ctx = Context(self.state, self.equity(), {s: p[0] for s, p in self.positions.items()}, last, n_open,
                      self.market_open, self.stale, self.rate_clock())
        why = check({"symbol": sym, "side": side, "qty": qty, "price": px}, ctx, self.limits, self.rate, self.symbols)
        if not why:
            return True
        if why.startswith("price band"):
            why += " (Alpaca latest trade)" if trade else " (last bar close)"
        self.blocked += 1
        self.event("warning", "risk_block", f"{cid}: {side} {qty:,.6g} {sym}: {why}", order_id=cid, symbol=sym,
                   side=side, qty=qty, price=px, reason=why, reference=last.get(sym),
                   bar_time=iso(self.last_time) if self.last_time is not None else None)
        return False

    def place(self, sym: str, side: str, qty: float, price: float | None, signal_us: int, reason: str,
              checked: bool = True, cid: str | None = None, parent_id: str | None = None) -> dict | None:
        """Risk-check, record (status ``new``, committed) and send one market order (``limit`` at
        ``price`` in extended hours); returns the order, or None when refused. ``cid``/``parent_id``:
        a child order of a TWAP/VWAP parent."""
        self.controls_quick()
        cid = cid or self.next_cid(sym, signal_us)
        px = price if price else self.last_close.get(sym, 0.0)
        if checked and not self.risk_check(cid, sym, side, qty, px):
            return None
        now = now_iso()
        ext = self.strat.extended_hours and self.alpaca is not None and not self.clock_open
        o = {"id": cid, "broker_id": None, "symbol": sym, "side": side, "type": "limit" if ext else "market",
             "qty": float(qty), "limit_price": px if ext else None, "stop_price": None, "time_in_force": "day",
             "status": "dry_run" if self.dry_run else "new", "filled_qty": 0.0, "avg_fill_price": None,
             "signal_time": iso(signal_us), "created_at": now, "updated_at": now, "reason": reason,
             "note": "dry run: not sent" if self.dry_run else None, "parent_id": parent_id, "extended_hours": ext}
        self.rate.record(self.rate_clock())
        self.placed += 1
        with self.writer.transaction() as cur:
            self.write_order(cur, o)
        if self.dry_run:
            self._position_fill(sym, side, qty, px)
            self.cash -= (qty if side == "buy" else -qty) * px
            if parent_id:
                with self.writer.transaction() as cur:
                    self.refresh_parent(cur, parent_id)
            return o
        try:
            bo, sent = self.alpaca.submit(o)
        except Rejected as exc:
            with self.writer.transaction() as cur:
                o.update(status="rejected", updated_at=now_iso(), note=exc.message)
                self.write_order(cur, o)
                if parent_id:
                    self.refresh_parent(cur, parent_id)
                self.event("error", "reject", f"{cid}: rejected by the broker: HTTP {exc.status}: {exc.message}", cur,
                           order_id=cid, status=exc.status)
            return o
        except Unavailable as exc:
            with self.writer.transaction() as cur:
                self.event("error", "reject", f"{cid}: {exc}; the order stays 'new' and is looked up by its client "
                           "order id at the next reconciliation", cur, order_id=cid)
            return o
        with self.writer.transaction() as cur:
            self.apply_broker_order(cur, bo)
            if not sent:
                self.event("info", "reconcile", f"{cid}: already at the broker (found by client order id); not sent "
                           "again", cur, order_id=cid)
        return o

    def controls_quick(self) -> None:
        """Kill-switch files checked before every order, too."""
        if self.files["halt"].exists() or self.files["halt_all"].exists():
            if self.state != "halted":
                self.halt("kill switch")

    # ------------------------------------------------------------------ one bar
    def equity(self) -> float:
        if self.dry_run or self.alpaca is None:
            return self.cash + sum(p[0] * self.last_close.get(s, p[1]) for s, p in self.positions.items())
        return self._account_equity

    _account_equity = 0.0
    _account_cash = 0.0
    clock_open = True

    def refresh_account(self) -> None:
        if self.alpaca is None:
            return
        acct = self.alpaca.account()
        self._account_equity, self._account_cash = float(acct.equity), float(acct.cash)
        if acct.last_equity:
            self._last_equity = float(acct.last_equity)
        self.refresh_clock()

    def refresh_clock(self) -> None:
        if self.alpaca is None:
            return
        clock = self.alpaca.clock()
        self.clock_open = bool(clock.is_open)
        self.market_open = self.clock_open or (self.strat.extended_hours and self._extended_now(clock))

    def _extended_now(self, clock) -> bool:
        """Alpaca's extended hours: 04:00-20:00 New York time on a day the calendar lists."""
        from zoneinfo import ZoneInfo

        ny = clock.timestamp.astimezone(ZoneInfo("America/New_York"))
        if not 4 <= ny.hour < 20:
            return False
        return self.alpaca.calendar_today(ny.date()) is not None

    def on_bar(self, t_us: int) -> None:
        """Process the complete bar at ``t_us`` (every symbol that has one)."""
        self.refresh_account()
        day = iso(t_us)[:10] if self.alpaca is None else datetime.now(timezone.utc).strftime("%Y-%m-%d")
        changed = []
        atr_hot = []
        for sym in self.symbols:
            f = self.frames.get(sym)
            if f is None:
                continue
            k = int(np.searchsorted(f["timestamp"], t_us))
            if k >= f["timestamp"].size or f["timestamp"][k] != t_us:
                continue
            self.last_close[sym] = float(f["close"][k])
            a = atr_pct(f["high"][:k + 1], f["low"][:k + 1], f["close"][:k + 1], self.limits.atr_window)
            if a == a and a > self.limits.max_atr_pct:
                atr_hot.append(f"{sym} ATR {a:,.2f}% of price")
            if "targets" in f:
                tgt = int(f["targets"][k])
                if tgt != self.last_target.get(sym, 0):
                    changed.append((sym, tgt))
        if self.dry_run or self.alpaca is None:
            eq, cash = self.equity(), self.cash
        else:
            eq, cash = self._account_equity, self._account_cash
        if day != self.day:
            self.day = day
            self.day_start = getattr(self, "_last_equity", None) if self.alpaca is not None and not self.dry_run else eq
        self.last_time = t_us
        if atr_hot and self.state == "active":
            self.set_state("reducing", f"ATR circuit breaker: {', '.join(atr_hot)} (max {self.limits.max_atr_pct:,.2f}%)")
        elif not atr_hot and self.state == "reducing" and self.state_reason.startswith("ATR circuit breaker"):
            self.set_state("active", "ATR back under its limit", level="info")
        if self.state != "halted" and daily_loss_hit(eq, self.day_start, self.limits.max_daily_loss_pct):
            self.halt(f"daily loss limit: equity {eq:,.2f} is {(eq / self.day_start - 1) * 100:,.2f}% from the day's "
                      f"start {self.day_start:,.2f} (max {self.limits.max_daily_loss_pct:,.2f}%)")
        for sym, tgt in changed:
            self.trade(sym, tgt, t_us)
            self.last_target[sym] = tgt  # acted on (or refused: refusals are events, not retried)
        if self.strat.form == "weights":
            self.rebalance(t_us)
        if self.dry_run or self.alpaca is None:
            eq, cash = self.equity(), self.cash
        gross = sum(abs(p[0]) * self.last_close.get(s, p[1]) for s, p in self.positions.items())
        self.peak = max(self.peak, eq)
        dd = eq / self.peak - 1 if self.peak > 0 else 0.0
        with self.writer.transaction() as cur:
            cur.execute(_INSERT_EQUITY, (iso(t_us), cash, eq, gross, dd, None))
            for sym, p in self.positions.items():
                if p[0] and not self.dry_run:
                    cur.execute("UPDATE positions SET mark_price=?, mark_time=? WHERE symbol=?",
                                (self.last_close.get(sym), iso(t_us), sym))
            self.save_meta(cur)

    def trade(self, sym: str, tgt: int, t_us: int) -> None:
        """Target change on ``sym``: cancel its working orders, exit, enter (each risk-checked)."""
        if tgt < 0 and not self.s["allow_short"]:
            tgt = 0
        self.settle([sym])
        self.stop_schedules(sym, f"canceled: new signal on {sym}")
        for o in self.working(sym, broker_only=True):
            if self.alpaca is not None and o.get("broker_id") and not self.dry_run:
                try:
                    self.alpaca.cancel(o["broker_id"])
                except (Rejected, Unavailable) as exc:
                    self.event("error", "reject", f"cancel {o['id']} failed: {exc}")
        price = self.last_close[sym]
        q = self.positions.get(sym, [0.0])[0]
        if q and (tgt == 0 or (q > 0) != (tgt > 0)):
            self.order(sym, "sell" if q > 0 else "buy", abs(q), price, t_us, "signal" if tgt == 0 else "reverse")
        if tgt != 0 and not (q and (q > 0) == (tgt > 0)):
            value = min(self.equity() * min(1.0 / len(self.symbols), self.limits.max_position_pct / 100),
                        self.limits.max_order_notional)
            qty = math.floor(value / price + 1e-9) if price > 0 else 0
            if qty <= 0:
                self.event("warning", "reject", f"{sym}: entry of size 0 (value {value:,.2f} at {price:,.6g})")
                return
            self.order(sym, "buy" if tgt > 0 else "sell", qty, price, t_us, "signal")

    def settle(self, syms) -> bool:
        """Before deciding the next order of ``syms``: wait until the orders already sent for them
        are done (filled, canceled, rejected, expired) and their TWAP/VWAP schedules have sent
        every child, at most ``SETTLE_WAIT`` seconds, working the schedules, reading the
        trade_updates stream and looking each order up by client order id every 0.25 s; so a fast
        exit signal sees its entry's fill instead of a flat position. Returns True when it waited
        for something (the account is refreshed then). Dry runs fill at once: nothing to wait for."""
        if self.alpaca is None or self.dry_run:
            return False
        syms = set(syms)

        def still_open() -> list[dict]:
            return [o for o in self.working(broker_only=True) if o["symbol"] in syms]

        def scheduled() -> bool:
            return any(sc["symbol"] in syms for sc in self.schedules.values())

        if not still_open() and not scheduled():
            return False
        end = time.monotonic() + SETTLE_WAIT
        next_look = time.monotonic() + 0.25
        while ((todo := still_open()) or scheduled()) and time.monotonic() < end:
            self.work_schedules()
            self.drain_stream(self.updates)
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + 0.25
                for o in todo:
                    try:
                        bo = self.alpaca.find(o["id"])
                    except (Rejected, Unavailable):
                        continue
                    if bo is not None:
                        with self.writer.transaction() as cur:
                            self.apply_broker_order(cur, bo)
            time.sleep(0.02)
        try:
            self.refresh_account()
        except (Rejected, Unavailable) as exc:
            self.event("warning", "stream", f"account refresh: {exc}")
        return True

    def in_flight(self, sym: str) -> float:
        """Signed quantity of ``sym`` that working orders still have to fill (a TWAP/VWAP parent
        counts for its children), so a rebalance never orders again what is on its way."""
        return sum((1.0 if o["side"] == "buy" else -1.0) * (float(o["qty"]) - float(o["filled_qty"] or 0))
                   for o in self.working(sym) if not o.get("parent_id"))

    # ------------------------------------------------------------------ weights form
    def weights_row(self, t_us: int) -> np.ndarray | None:
        """The strategy's weights row of bar ``t_us`` (N,), NaN = no change; recomputed on the
        whole panel when new bars arrived (:func:`portfolio_weights`). A bad row in new bars is an
        ``error`` event ``strategy`` and the bar is not traded (None)."""
        key = tuple((sym, f["timestamp"].size, int(f["timestamp"][-1]) if f["timestamp"].size else 0)
                    for sym, f in sorted(self.frames.items()))
        if key != self._w_key:
            self._w_key = key
            try:
                self._w_times, self._w, _ = portfolio_weights(self.frames, self.symbols, self.strat, self.params,
                                                              bool(self.s["allow_short"]),
                                                              float(self.s.get("leverage") or 1.0))
            except StrategyError as exc:
                self.event("error", "strategy", f"weights not updated: {exc}", bar_time=iso(t_us))
        if self._w_times is None:
            return None
        i = int(np.searchsorted(self._w_times, t_us))
        if i >= self._w_times.size or self._w_times[i] != t_us:
            return None
        return self._w[i]

    def rebalance(self, t_us: int) -> None:
        """Weights form, on the complete bar ``t_us``: every symbol with a weight w (not NaN) in
        the bar's row gets the target quantity ``w x equity / last close`` (whole shares toward
        zero; ``--fractional``: 1e-6 shares); the difference from its position plus what its
        working orders still have to fill is ordered as market orders, reason ``rebalance``, ids
        ``<session>-<SYMBOL>-<bar time>-<n>``. Differences below ``--rebalance-threshold`` x
        equity are skipped. Orders that reduce a position go first (a trade through zero is split
        into a closing and an opening order); then, after those have settled (bounded, see
        :meth:`settle`), the orders that add exposure, buys scaled down together to the buying power
        ``cash + proceeds of the reducing orders (at the close) + (leverage - 1) x equity``. Every
        order passes the pre-trade risk check. A symbol already given a rebalance order for this
        bar (a restart in the middle of the bar) is not ordered again."""
        row = self.weights_row(t_us)
        if row is None:
            return
        sig = iso(t_us)
        done = {o["symbol"] for o in self.orders.values()
                if o.get("signal_time") == sig and o.get("reason") == "rebalance" and not o.get("parent_id")}
        syms = [sym for j, sym in enumerate(self.symbols)
                if not np.isnan(row[j]) and self.last_close.get(sym, 0.0) > 0 and sym not in done]
        if not syms:
            return
        self.settle(syms)
        virtual = self.dry_run or self.alpaca is None
        equity = self.equity()
        cash = self.cash if virtual else self._account_cash
        lev = float(self.s.get("leverage") or 1.0)
        thr = float(self.s.get("rebalance_threshold") or 0.0)
        step = 1e-6 if self.s.get("fractional") else 1.0
        reduce, add = [], []
        for sym in syms:
            px = self.last_close[sym]
            want = row[self.symbols.index(sym)] * max(equity, 0.0) / px
            want = math.trunc(want / step + math.copysign(1e-9, want)) * step
            have = self.positions.get(sym, [0.0])[0] + self.in_flight(sym)
            delta = want - have
            if abs(delta) < step / 2 or abs(delta) * px < thr * equity:
                continue
            side = "buy" if delta > 0 else "sell"
            closing = min(abs(delta), abs(have)) if have and (delta > 0) != (have > 0) else 0.0
            if closing:
                reduce.append((sym, side, closing, px))
            if abs(delta) - closing >= step / 2:
                add.append((sym, side, round(abs(delta) - closing, 6), px))
        for sym, side, q, px in reduce:
            o = self.order(sym, side, q, px, t_us, "rebalance")
            if o is not None and o["status"] != "rejected":
                cash += q * px if side == "sell" else -q * px
        if not add:
            return
        if reduce:
            self.settle([r[0] for r in reduce])
        buys = [a for a in add if a[1] == "buy"]
        cost = sum(q * px for _, _, q, px in buys)
        power = cash + (lev - 1.0) * equity
        if cost > power + 1e-9:
            scale = max(power, 0.0) / cost
            buys = [(sym, side, math.floor(q * scale / step + 1e-9) * step, px) for sym, side, q, px in buys]
            self.event("info", "execution", f"buys of {fmt_bar_time(np.datetime64(t_us, 'us'))} scaled by {scale:.4f} to the buying power {power:,.2f}",
                       bar_time=sig, cost=cost, power=power)
        for sym, side, q, px in [a for a in add if a[1] == "sell"] + buys:
            if q >= step / 2:
                self.order(sym, side, q, px, t_us, "rebalance")

    # ------------------------------------------------------------------ TWAP / VWAP child orders
    def order(self, sym: str, side: str, qty: float, price: float, t_us: int, reason: str) -> dict | None:
        """A signal order: one market order, or with ``--execution twap|vwap`` (and at least 2
        shares) a parent worked as child orders (slices/live_trade/execution.py). The parent is
        risk-checked as a whole, recorded (never sent: ``broker_id`` empty, note naming the
        schedule) with its schedule in ``meta.engine_state`` in one transaction; each child is
        risk-checked again when it is due."""
        if self.execution is None or qty < 2:
            return self.place(sym, side, qty, price, t_us, reason)
        algo, window, n = self.execution
        n = min(n, int(qty))
        pid = self.next_cid(sym, t_us)
        if not self.risk_check(pid, sym, side, qty, price, open_orders=len(self.working(broker_only=True))):
            return None
        step = window / n
        start = time.time()
        note = f"{algo} {window:g} s: {n} child orders {step:g} s apart"
        weights = np.ones(n)
        if algo == "vwap":
            f = self.frames.get(sym, {})
            weights, days = vwap_weights(f.get("timestamp", np.zeros(0, np.int64)), f.get("volume", np.zeros(0)),
                                         int(start * 1e6), step, n)
            note += f", volume profile of {days} day(s)" if days else ", no volume profile in the bars: equal weights"
        qtys = [q for q in split(qty, weights) if q > 0]
        now = now_iso()
        o = {"id": pid, "broker_id": None, "symbol": sym, "side": side, "type": "market", "qty": float(sum(qtys)),
             "limit_price": None, "stop_price": None, "time_in_force": "day",
             "status": "dry_run" if self.dry_run else "accepted", "filled_qty": 0.0, "avg_fill_price": None,
             "signal_time": iso(t_us), "created_at": now, "updated_at": now, "reason": reason, "note": note,
             "parent_id": None}
        self.parents.add(pid)
        self.schedules[pid] = {"symbol": sym, "side": side, "qtys": qtys, "start": start, "step": step,
                               "signal_us": int(t_us), "reason": reason, "next": 0}
        with self.writer.transaction() as cur:
            self.write_order(cur, o)
            self.event("info", "execution", f"{pid}: {side} {sum(qtys):,.6g} {sym} as {note}", cur, order_id=pid,
                       children=qtys, bar_time=iso(t_us))
            self.save_meta(cur)
        self.work_schedules(all_due=self.s["mode"] == "replay")
        return o

    def work_schedules(self, all_due: bool = False) -> None:
        """Send the child orders that are due (one per schedule per call; ``all_due``: every child
        at once, replay dry runs). Child k's id is ``<parent>-c<k>``: one already in the ledger is
        never placed again (a restart between its row and the schedule's progress), and the
        broker is asked for it by client id before it is sent (Alpaca.submit)."""
        now = time.time()
        for pid, sc in list(self.schedules.items()):
            parent = self.orders.get(pid)
            if parent is None or parent["status"] in ("canceled", "rejected", "expired"):
                self.schedules.pop(pid, None)
                continue
            while sc["next"] < len(sc["qtys"]) and (all_due or now >= sc["start"] + sc["next"] * sc["step"]):
                k = sc["next"] + 1
                cid = f"{pid}-c{k}"
                sc["next"] = k
                if cid not in self.orders:
                    placed = self.place(sc["symbol"], sc["side"], sc["qtys"][k - 1], None, sc["signal_us"], sc["reason"],
                                        cid=cid, parent_id=pid)
                    if placed is None:
                        parent["note"] = (parent.get("note") or "") + f"; child {k} refused"
                if sc["next"] >= len(sc["qtys"]):
                    self.schedules.pop(pid, None)
                with self.writer.transaction() as cur:
                    self.refresh_parent(cur, pid)
                    self.save_meta(cur)
                if not all_due:
                    break

    def refresh_parent(self, cur, pid: str) -> None:
        """The parent's filled quantity and average price from its children; its status: ``filled``
        when they fill it, ``canceled`` when the schedule is over and nothing works any more (the
        note says how much filled), else ``partially_filled``/``accepted`` (``dry_run`` in dry runs)."""
        p = self.orders.get(pid)
        if p is None:
            return
        kids = [o for o in self.orders.values() if o.get("parent_id") == pid]
        filled = sum(float(o["filled_qty"] or 0) for o in kids)
        cost = sum(float(o["filled_qty"] or 0) * float(o["avg_fill_price"] or 0) for o in kids)
        p["filled_qty"], p["avg_fill_price"] = filled, (cost / filled if filled else None)
        if p["status"] not in ("canceled", "dry_run"):
            if filled >= p["qty"] - 1e-9:
                p["status"] = "filled"
            elif pid not in self.schedules and not any(o["status"] in WORKING for o in kids):
                p["status"] = "canceled"
                p["note"] = (p.get("note") or "") + f"; schedule over: {filled:,.6g} of {p['qty']:,.6g} filled"
            else:
                p["status"] = "partially_filled" if filled else "accepted"
        p["updated_at"] = now_iso()
        self.write_order(cur, p)

    def stop_schedules(self, sym: str, why: str) -> None:
        """Stop the child-order schedules of ``sym`` (a new signal): no further child is sent; the
        parent is ``canceled`` (its children already sent are canceled with the symbol's orders)."""
        for pid, sc in list(self.schedules.items()):
            if sc["symbol"] != sym:
                continue
            self.schedules.pop(pid)
            p = self.orders.get(pid)
            if p is not None:
                with self.writer.transaction() as cur:
                    if p["status"] != "dry_run":
                        p["status"] = "canceled"
                    p["note"] = (p.get("note") or "") + f"; {why}"
                    self.refresh_parent(cur, pid)
                    self.save_meta(cur)

    # ------------------------------------------------------------------ stream
    def drain_stream(self, updates: TradeUpdates | None) -> None:
        if updates is None:
            return
        import queue as _q

        for _ in range(1000):
            try:
                u = updates.queue.get_nowait()
            except _q.Empty:
                return
            if isinstance(u, tuple):
                _, level, msg = u
                lv = "warning" if level in ("warning", "error", "critical") else "info"
                if lv == "warning":
                    self.event(lv, "stream", f"trade_updates: {msg}")
                continue
            with self.writer.transaction() as cur:
                self.apply_broker_order(cur, u.order)
                self.save_meta(cur)


    def take_stream_bars(self, stream) -> bool:
        """``--bars alpaca``: move the bar stream's 1-minute bars into the frames (True when a
        symbol got one). A minute repeated by the stream replaces the earlier one. The session's
        bars are the stored history followed by the streamed minutes after it, aggregated to the
        session's timeframe (buckets aligned on the epoch: open of the first minute, highest high,
        lowest low, close of the last minute, summed volume); a bucket is complete when its last
        minute has arrived or a later bucket has begun (1m: every streamed bar is complete)."""
        import queue as _q

        got = set()
        for _ in range(10_000):
            try:
                u = stream.queue.get_nowait()
            except _q.Empty:
                break
            if isinstance(u, tuple):
                _, level, msg = u
                if level in ("warning", "error", "critical"):
                    self.event("warning", "stream", f"bars: {msg}")
                continue
            if u.symbol not in self.symbols:
                continue
            t = (u.timestamp.astimezone(timezone.utc) - _EPOCH) // timedelta(microseconds=1)
            self.stream_bars.setdefault(u.symbol, {})[int(t)] = (float(u.open), float(u.high), float(u.low),
                                                               float(u.close), float(u.volume or 0.0))
            got.add(u.symbol)
        for sym in got:
            self.frames[sym] = self._stream_frame(sym)
        return bool(got)

    def _stream_frame(self, sym: str) -> dict:
        tf_us = TF_SECONDS[self.tf] * 1_000_000
        base = self.base_bars.filter(pl.col("symbol") == sym)
        last_base = int(base["timestamp"].dt.epoch("us").max()) if base.height else None
        buckets: dict[int, list] = {}
        for t, (o, h, lo, c, v) in sorted(self.stream_bars[sym].items()):
            b = t - t % tf_us
            x = buckets.get(b)
            if x is None:
                buckets[b] = [o, h, lo, c, v, t]
            else:
                x[1], x[2], x[3], x[4], x[5] = max(x[1], h), min(x[2], lo), c, x[4] + v, t
        keys = sorted(buckets)
        rows = [(sym, b, *buckets[b][:5]) for b in keys
                if (last_base is None or b > last_base) and (b != keys[-1] or buckets[b][5] >= b + tf_us - 60_000_000)]
        new = pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Int64, "open": pl.Float64,
                                         "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                                         "volume": pl.Float64}, orient="row")
        new = new.with_columns(pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        return symbol_frames(pl.concat([base, new]), self.strat, self.params)[sym]


# ----------------------------------------------------------------------------- bars
def symbol_frames(bars: pl.DataFrame, strat, params: dict) -> dict[str, dict]:
    """Long bars -> {SYMBOL: numpy arrays ``timestamp`` (int64 us), ``open..volume``, and for a
    signal-form strategy ``targets`` (int8)}."""
    out = {}
    for (sym,), g in bars.partition_by("symbol", as_dict=True, maintain_order=True).items():
        d = {k: g[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume")}
        d["timestamp"] = g["timestamp"].dt.epoch("us").to_numpy()
        view = {k: d[k].copy() for k in ("open", "high", "low", "close", "volume")}
        view["timestamp"] = d["timestamp"].astype("datetime64[us]")
        for v in view.values():
            v.flags.writeable = False
        view["symbol"] = sym
        if strat.form == "targets":
            d["targets"] = call_targets(strat, view, params)
        out[sym] = d
    return out


WEIGHTS_ONLY = (("leverage", "--leverage"), ("rebalance_threshold", "--rebalance-threshold"),
                ("fractional", "--fractional"))


def check_form_options(strat, s: dict) -> None:
    """Options of the other strategy form are an error (SLICES.md contract 5): ``--leverage``,
    ``--rebalance-threshold`` and ``--fractional`` apply to weights strategies only; their values
    are checked (leverage >= 1, threshold in [0, 1)). ValueError, one line."""
    if strat.form == "targets":
        for key, opt in WEIGHTS_ONLY:
            if s.get(key) not in (None, False):
                raise ValueError(f"{opt} applies to weights (portfolio) strategies only; {strat.label} is a targets "
                                 "strategy")
        return
    lev, thr = s.get("leverage"), s.get("rebalance_threshold")
    if lev is not None and not (math.isfinite(lev) and lev >= 1):
        raise ValueError(f"--leverage must be >= 1 (got {lev:g})")
    if thr is not None and not (math.isfinite(thr) and 0 <= thr < 1):
        raise ValueError(f"--rebalance-threshold is a fraction of equity in [0, 1) (got {thr:g})")


def portfolio_weights(frames: dict[str, dict], symbols: list[str], strat, params: dict, allow_short: bool,
                      leverage: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The weights form (SLICES.md contract 5) on the session's bars: the panel (read-only (T, N)
    float64 ``open high low close volume``, NaN where a symbol has no bar; ``timestamp`` (T,)
    datetime64[us] UTC on the union of the symbols' times; ``symbols`` in ``symbols`` order) goes
    to :func:`.strategies.call_weights`. As backtest's ``compute_weights``: without
    ``allow_short`` negative weights become 0 (one warning with the count); a row whose sum of
    |weights| exceeds ``leverage`` (+1e-9) is a StrategyError naming its time.
    Returns (times int64 us (T,), weights (T, N) fractions of equity, NaN = no change, warnings)."""
    times = np.unique(np.concatenate([frames[sym]["timestamp"] for sym in symbols]))
    panel: dict = {}
    for col in ("open", "high", "low", "close", "volume"):
        m = np.full((times.size, len(symbols)), np.nan)
        for j, sym in enumerate(symbols):
            f = frames[sym]
            m[np.searchsorted(times, f["timestamp"]), j] = f[col]
        m.flags.writeable = False
        panel[col] = m
    ts = times.astype("datetime64[us]")
    ts.flags.writeable = False
    panel["timestamp"], panel["symbols"] = ts, list(symbols)
    w = call_weights(strat, panel, params)
    warnings = []
    if not allow_short:
        neg = w < 0
        if neg.any():
            warnings.append(f"{strat.label}: {int(neg.sum()):,} negative weight(s) set to 0 (long-only; --allow-short "
                            "to short)")
            w[neg] = 0.0
    gross = np.nansum(np.abs(w), axis=1)
    over = np.flatnonzero(gross > leverage + 1e-9)
    if over.size:
        t = int(over[0])
        how = "--leverage L allows up to L" if leverage == 1 else f"--leverage {leverage:g}"
        raise StrategyError(f"{strat.label}: weights row {t} ({fmt_bar_time(ts[t])}): sum of |weights| "
                            f"{gross[t]:.6g} exceeds {leverage:g} ({how})")
    return times, w, warnings


def store_paths(s: dict) -> dict[str, Path]:
    """The store files the session follows (the embedded sample for the default store's missing symbols)."""
    root, named_by = store_root(s["store"])
    out = {}
    for sym in s["symbols"]:
        p = root / "bars" / s["timeframe"] / f"{sym}.parquet"
        if not p.exists() and named_by is None:
            p = SAMPLE_ROOT / "bars" / s["timeframe"] / f"{sym}.parquet"
        out[sym] = p
    return out


def _stat(p: Path):
    try:
        st = p.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return None


# ----------------------------------------------------------------------------- run
def run_session(name: str, s: dict, limits: Limits, *, ledgers_path: Path, alpaca: Alpaca | None,
                updates_factory=None, adopt: bool = False, poll: float = 5.0, reconcile_every: float = 300.0,
                max_idle: float | None = None, progress=None, bars_factory=None, on_start=None) -> RunResult:
    """Run (or resume) session ``name`` with settings ``s`` (see cli.run) and ``limits``.
    ``alpaca`` None: a dry run without an account. ``updates_factory()`` builds the
    :class:`~.broker.TradeUpdates` stream (None: no stream); ``bars_factory(symbols)`` the
    :class:`~.broker.BarStream` of ``--bars alpaca`` (None: bars from the store); ``on_start()``
    is called once the inputs are checked and the ledger is open (the CLI prints its notes then,
    so a bad input stays a one-line error). Raises ValueError, DataError, LedgerError."""
    limits.check()
    parse_execution(s.get("execution"))
    strat, params = resolve_params(s["strategy"], s["params"])
    check_form_options(strat, s)
    report = LoadReport()
    bars, rep = load_bars(s["symbols"], s["timeframe"], store=s["store"], data=s["data"] or None,
                          start=s["start"], end=s["end"], adjust=s.get("adjust", True),
                          keep_suspicious=s["keep_suspicious"])
    report.notes.extend(rep.notes)
    report.warnings.extend(rep.warnings)
    report.findings.extend(rep.findings)
    s["timeframe"] = rep.timeframe
    need = strat.needed_bars(params)
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:  # before any targets call, as backtest: a named symbol is an error, an unnamed one left out
        msgs = [f"{x}: {n:,} bars from {t:%Y-%m-%d}, fewer than the {need:,} that {strat.label} needs"
                for x, n, t in short.iter_rows()]
        if s["symbols"] or short.height == counts.height:
            raise DataError(msgs[0] + " (use a longer --start/--end span or smaller --param windows)")
        report.warnings.extend(m + "; symbol excluded" for m in msgs)
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    frames = symbol_frames(bars, strat, params)
    s["symbols"] = sorted(frames)
    s["params"] = params
    dry_run = s["dry_run"]
    if strat.form == "weights":  # every row checked before the ledger opens: a bad one is a one-line error
        _, _, warned = portfolio_weights(frames, s["symbols"], strat, params, bool(s["allow_short"]),
                                         float(s.get("leverage") or 1.0))
        report.warnings.extend(warned)
    writer = Writer(ledgers_path, synchronous="NORMAL" if s["mode"] == "replay" else "FULL")
    sess = Session(name, ledgers_path, writer, s, limits, strat, params, alpaca, dry_run)
    sess.frames = frames
    sess.base_bars = bars
    updates = bar_stream = None
    stop_file = sess.files["stop"]
    stop_file.unlink(missing_ok=True)
    prev = {}

    def on_signal(signum, frame):
        sess.stop_requested = True

    prev[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_signal)
    prev[signal.SIGINT] = signal.signal(signal.SIGINT, on_signal)
    done = 0
    try:
        if writer.is_new:
            now = now_iso()
            with writer.transaction() as cur:
                set_meta(cur, {"schema_version": str(SCHEMA_VERSION), "kind": KIND, "session": name,
                               "strategy": s["strategy"], "params": params, "symbols": s["symbols"],
                               "timeframe": s["timeframe"], "settings": s | {"limits": limits.as_dict()},
                               "created_at": now, "status": "running", "trading_state": "active",
                               "heartbeat_at": now, "pid": str(os.getpid())})
            if s["mode"] == "follow" and not s["start"]:
                done_times = _complete(np.unique(np.concatenate([f["timestamp"] for f in frames.values()])), s["timeframe"])
                if done_times.size:
                    last = int(done_times[-1])
                    sess.last_time = last
                    for sym, f in frames.items():
                        k = int(np.searchsorted(f["timestamp"], last, side="right")) - 1
                        if k >= 0:
                            if "targets" in f:
                                sess.last_target[sym] = int(f["targets"][k])
                            sess.last_close[sym] = float(f["close"][k])
            with writer.transaction() as cur:
                sess.event("info", "start", f"session {name} started ({'dry run' if dry_run else s['account']}, "
                           f"{s['mode']}, {strat.label}, {len(s['symbols'])} symbol(s))", cur,
                           settings=s | {"limits": limits.as_dict()})
                sess.save_meta(cur)
        else:
            meta = writer.meta()
            for key, want in (("strategy", s["strategy"]), ("timeframe", s["timeframe"])):
                if meta.get(key) != want:
                    raise ValueError(f"session {name}: --{key} changed ({meta.get(key)} -> {want}); a live session keeps "
                                     "its strategy and timeframe: start a new session")
            if json.loads(meta.get("symbols", "[]")) != s["symbols"]:
                raise ValueError(f"session {name}: --symbols changed ({', '.join(json.loads(meta['symbols']))} -> "
                                 f"{', '.join(s['symbols'])}); start a new session")
            stored = json.loads(meta.get("settings", "{}"))
            if bool(stored.get("dry_run")) != dry_run:
                raise ValueError(f"session {name}: was {'a dry run' if stored.get('dry_run') else 'trading'}; "
                                 "a session cannot switch between dry run and trading: start a new session")
            sess.restore(meta)
            with writer.transaction() as cur:
                sess.event("info", "resume", f"session {name} resumed after {meta.get('last_bar_time') or 'no bar'}", cur,
                           settings=s | {"limits": limits.as_dict()})
                sess.save_meta(cur, status="running", pid=str(os.getpid()), settings=s | {"limits": limits.as_dict()})
        if alpaca is not None and not dry_run:
            sess.reconcile(adopt, startup=True)
        if alpaca is not None:
            sess.refresh_account()
        sess.controls()
        if updates_factory is not None and not dry_run:
            updates = updates_factory()
            updates.start()
            sess.updates = updates
        if bars_factory is not None:
            bar_stream = bars_factory(s["symbols"])
            bar_stream.start()
        if on_start is not None:
            on_start()
        if s["mode"] == "replay":
            times = np.unique(np.concatenate([f["timestamp"] for f in frames.values()]))
            for t in times[times > sess.last_time] if sess.last_time is not None else times:
                sess.controls()
                if sess.stop_requested:
                    break
                sess.on_bar(int(t))
                done += 1
                if progress:
                    progress(done, times.size)
        else:
            done = _follow(sess, updates, poll, reconcile_every, max_idle, progress, bar_stream)
        final = "halted" if sess.state == "halted" else "stopped"
        with writer.transaction() as cur:
            sess.event("info", "stop", f"session {name} {final} after {done:,} bar(s)"
                       + (" (stop requested)" if sess.stop_requested else ""), cur)
            sess.save_meta(cur, status=final)
        stop_file.unlink(missing_ok=True)
        return RunResult(name, ledgers_path, done, final, sess.state, dry_run, report.notes, report.warnings,
                         report.findings)
    except BaseException as exc:
        if writer.conn is not None:
            try:
                with writer.transaction() as cur:
                    sess.event("error", "stop", f"session {name} failed: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}", cur)
                    set_meta(cur, {"status": "failed", "heartbeat_at": now_iso()})
            except Exception:
                pass
        raise
    finally:
        for stream in (updates, bar_stream):
            if stream is not None:
                stream.stop()
        for sig, h in prev.items():
            signal.signal(sig, h)
        writer.close()


def _follow(sess: Session, updates, poll: float, reconcile_every: float, max_idle: float | None, progress,
            bar_stream: BarStream | None = None) -> int:
    """Follow the store (or the ``--bars alpaca`` stream): new complete bars in time order; control
    files, trade updates, child-order schedules and staleness between."""
    s = sess.s
    paths = store_paths(s) if bar_stream is None else {}
    seen = {k: None for k in paths}  # the first look reloads: bars may have landed since they were loaded
    stale_after = sess.limits.stale_after or 3 * TF_SECONDS[sess.tf]
    done = 0
    next_poll = 0.0
    next_rec = time.monotonic() + reconcile_every
    idle_since = time.monotonic()
    first = True
    seen_at: dict[int, float] = {}  # timeline time -> when the session first saw it (monotonic)
    grace = max(30.0, 10 * poll)
    while not sess.stop_requested:
        sess.controls()
        sess.drain_stream(updates)
        sess.work_schedules()
        streamed = sess.take_stream_bars(bar_stream) if bar_stream is not None else False
        now = time.monotonic()
        if now >= next_poll or streamed:
            next_poll = now + poll
            changed = [k for k, p in paths.items() if _stat(p) != seen[k]]
            for k in changed:
                seen[k] = _stat(paths[k])
            if changed:
                try:
                    bars, _ = load_bars(changed, sess.tf, store=s["store"], start=s["start"], end=None,
                                        adjust=s.get("adjust", True), keep_suspicious=s["keep_suspicious"])
                    sess.frames.update(symbol_frames(bars, sess.strat, sess.params))
                except DataError as exc:
                    sess.event("warning", "data_gap", f"new bars not used: {exc}")
            if changed or first or streamed or seen_at:
                first = False
                times = np.unique(np.concatenate([f["timestamp"] for f in sess.frames.values()]))
                fresh = times[times > sess.last_time] if sess.last_time is not None else times
                now_mono = time.monotonic()
                for t in fresh.tolist():
                    seen_at.setdefault(t, now_mono)
                lasts = np.array([int(f["timestamp"][-1]) for f in sess.frames.values() if f["timestamp"].size],
                                 dtype=np.int64)
                todo = _ready(lasts, fresh, sess.tf, seen_at, grace)
                for t in todo.tolist():
                    seen_at.pop(t, None)
                for t in todo:
                    if sess.stop_requested:
                        break
                    idle_since = sess.last_bar_wall = time.monotonic()
                    if sess.stale:
                        sess.stale = False
                        sess.event("info", "data_gap", "bars are back: entries allowed again")
                    sess.on_bar(int(t))
                    done += 1
                    if progress:
                        progress(done, None)
            try:
                if sess.alpaca is not None:
                    sess.refresh_clock()
                    if not sess.dry_run:
                        sess.catch_up()
            except (Unavailable, Rejected) as exc:
                sess.event("warning", "stream", f"poll: {exc}")
            if (sess.market_open and not sess.stale and time.monotonic() - sess.last_bar_wall > stale_after):
                sess.stale = True
                sess.event("error", "data_gap", f"no new bar for {time.monotonic() - sess.last_bar_wall:,.0f} s during "
                           f"market hours (limit {stale_after:,.0f} s): no new entries until bars return")
            with sess.writer.transaction() as cur:
                sess.save_meta(cur)
        if sess.alpaca is not None and not sess.dry_run and time.monotonic() >= next_rec:
            next_rec = time.monotonic() + reconcile_every
            try:
                sess.reconcile(False, startup=False)
            except (Unavailable, Rejected) as exc:
                sess.event("warning", "reconcile", f"reconcile skipped: {exc}")
        if max_idle is not None and time.monotonic() - idle_since > max_idle:
            break
        time.sleep(TICK)
    return done
