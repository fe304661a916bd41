"""Portfolio simulation for the backtest slice.

Execution semantics (also in slices/backtest/README.md):

* A strategy's target on bar t is computed on bar t's close. Where the target changes, a market
  order fills at the symbol's next bar's open (t+1 at the earliest), moved against the trader by
  the slippage: buys at open x (1 + bps/1e4), sells at open x (1 - bps/1e4).
* Commission is charged on every fill: commission x |quantity| x fill price.
* Sizing at an entry uses the equity at that bar's open (cash + positions marked at the open,
  or at the last close for a symbol without a bar then). ``equal-weight``: equity / number of
  symbols; ``fixed-fraction``: fraction x equity; ``atr-risk``: fraction x equity / (stop
  distance), the stop distance being stop_loss_atr (default 2) x ATR on the signal bar. The value
  is capped at max_position_pct% of equity and at the cash available, so cash never goes negative
  through buying. With whole shares an amount A buys floor(A / (price x (1 + commission))) shares,
  so the commission is paid from A; fractional buys A / (price x (1 + commission)).
* Within one bar: first every exit at the open (including the close half of a reversal), then
  every entry at the open, then stop-loss / take-profit triggers intrabar.
* A reversal is one close plus one open at the same fill price.
* Stops and targets (ATR multiples from the fill price, ATR taken on the signal bar) trigger on
  the bar's low/high: a stop fills at the stop price, or at the open when the bar gaps through it,
  then moved by the slippage (it becomes a market order); a target (a limit order) fills at the
  target price, or at the open when the bar gaps beyond it. If both could trigger within one bar
  the stop is assumed first (conservative). After a stop or target exit the symbol stays flat until
  its target changes again.
* Equity is marked at each bar's close: cash + sum(quantity x close), the close carried forward
  for a symbol that has no bar at that timestamp.
* Max-drawdown halt: when the drawdown at a close reaches ``max_drawdown``, every position is
  closed at the next bar's open and the run trades no more.
* A position still open at the end is marked at its last close and reported as an open trade.

The Python loop runs once per trade event (fills and stop hits), never once per bar; everything
per bar is numpy.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .strategies import Strategy, atr

SIZINGS = ("equal-weight", "fixed-fraction", "atr-risk")
DEFAULT_FRACTION = {"equal-weight": None, "fixed-fraction": 0.10, "atr-risk": 0.01}


@dataclass
class Config:
    """Run settings. Units: ``cash`` in currency; ``commission`` a fraction of traded value;
    ``slippage_bps`` basis points of price; ``fraction`` of equity (fixed-fraction: per position,
    atr-risk: risked per trade); ``stop_loss_atr`` / ``take_profit_atr`` ATR multiples;
    ``max_position_pct`` percent of equity; ``max_drawdown`` a fraction (0.2 = halt at -20 %)."""

    cash: float = 100_000.0
    commission: float = 0.0005
    slippage_bps: float = 2.0
    allow_short: bool = False
    whole_shares: bool = True
    sizing: str = "equal-weight"
    fraction: float | None = None
    stop_loss_atr: float | None = None
    take_profit_atr: float | None = None
    atr_window: int = 14
    max_position_pct: float = 100.0
    max_drawdown: float | None = None

    def check(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        if not (self.cash > 0 and math.isfinite(self.cash)):
            raise ValueError(f"--cash must be > 0 (got {self.cash})")
        if not 0 <= self.commission < 1:
            raise ValueError(f"--commission is a fraction of traded value in [0, 1) (got {self.commission})")
        if not 0 <= self.slippage_bps < 10_000:
            raise ValueError(f"--slippage-bps must be in [0, 10000) (got {self.slippage_bps})")
        if self.sizing not in SIZINGS:
            raise ValueError(f"--sizing: unknown sizing {self.sizing!r} (one of {', '.join(SIZINGS)})")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1] (got {self.fraction})")
        for name, v in (("--stop-loss-atr", self.stop_loss_atr), ("--take-profit-atr", self.take_profit_atr)):
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 (got {v})")
        if not 0 < self.max_position_pct <= 100:
            raise ValueError(f"--max-position-pct must be in (0, 100] (got {self.max_position_pct})")
        if self.max_drawdown is not None and not 0 < self.max_drawdown < 1:
            raise ValueError(f"--max-drawdown is a fraction in (0, 1) (got {self.max_drawdown})")
        if self.atr_window < 1:
            raise ValueError(f"--atr-window must be >= 1 (got {self.atr_window})")


@dataclass
class Panel:
    """Bars aligned on the union of timestamps: ``timestamps`` (T,) datetime64[us] (UTC);
    ``open high low close`` (T, N) float64 with NaN where a symbol has no bar; ``symbols`` (N,)."""

    symbols: list[str]
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> "Panel":
        """Build from the long frame ``symbol timestamp open high low close [volume]``."""
        symbols = sorted(bars["symbol"].unique().to_list())
        ts = bars["timestamp"].unique().sort()
        t_idx = ts.search_sorted(bars["timestamp"]).to_numpy()
        s_idx = bars["symbol"].replace_strict(symbols, list(range(len(symbols))), return_dtype=pl.Int64).to_numpy()
        mats = {}
        for col in ("open", "high", "low", "close"):
            m = np.full((ts.len(), len(symbols)), np.nan)
            m[t_idx, s_idx] = bars[col].to_numpy()
            mats[col] = m
        return cls(symbols, ts.dt.replace_time_zone(None).to_numpy(), **mats)


@dataclass
class Result:
    """Outputs of :func:`simulate`.

    ``equity`` ``cash`` ``gross`` (T,) currency at each close; ``qty`` (T, N) signed position
    after each bar; ``sym_cash`` (T, N) cumulative cash flow of each symbol's fills (negative =
    spent), so ``sym_cash + qty x close`` is the symbol's P&L; ``fills`` list of dicts (bar, symbol,
    quantity signed, price, commission, reason); ``trades`` list of dicts (the trades.parquet
    columns, times as bar indices); ``halted_at`` bar index of the halt fill or None;
    ``skipped`` count of entries not taken (no cash, size rounded to 0, ATR unavailable)."""

    equity: np.ndarray
    cash: np.ndarray
    gross: np.ndarray
    qty: np.ndarray
    sym_cash: np.ndarray
    close_ff: np.ndarray
    fills: list[dict]
    trades: list[dict]
    halted_at: int | None = None
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def ffill(m: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value of each column forward (axis 0); leading NaNs stay NaN."""
    idx = np.where(np.isnan(m), 0, np.arange(m.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(m, idx, axis=0)


def compute_targets(panel: Panel, strat: Strategy, params: dict, allow_short: bool, atr_window: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, N) int8 and ATR (T, N) float, each symbol computed on its own bars only.

    Rows where a symbol has no bar repeat its previous target (no order can come from them).
    Short targets become 0 (flat) unless ``allow_short``.
    """
    T, N = panel.close.shape
    targets = np.zeros((T, N), dtype=np.int8)
    atrs = np.full((T, N), np.nan)
    for j in range(N):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        o, h, l, c = (getattr(panel, k)[rows, j] for k in ("open", "high", "low", "close"))
        tgt = strat.fn(o, h, l, c, params)
        if not allow_short:
            tgt = np.maximum(tgt, 0).astype(np.int8)
        full = np.full(T, np.nan)
        full[rows] = tgt
        targets[:, j] = np.nan_to_num(ffill(full[:, None])[:, 0], nan=0.0).astype(np.int8)
        atrs[rows, j] = atr(h, l, c, atr_window)
    return targets, atrs


def simulate(panel: Panel, targets: np.ndarray, atrs: np.ndarray, cfg: Config) -> Result:
    """Run the portfolio; with ``cfg.max_drawdown``, run again halting after the first breach.

    ``targets`` (T, N) int8 in {-1, 0, 1} (target after each bar's close); ``atrs`` (T, N) ATR
    on each bar (used for stops and atr-risk sizing). See the module docstring for the rules.
    """
    res = _run(panel, targets, atrs, cfg, halt_bar=None)
    if cfg.max_drawdown is not None:
        peak = np.maximum.accumulate(res.equity)
        breach = np.flatnonzero(res.equity / peak - 1.0 <= -cfg.max_drawdown)
        if breach.size:
            k = int(breach[0])
            if k + 1 < len(res.equity):
                res = _run(panel, targets, atrs, cfg, halt_bar=k + 1)
            res.notes.append(f"max-drawdown halt: drawdown reached -{cfg.max_drawdown:.2%} on bar {k}; no trading after")
    return res


def _run(panel: Panel, targets: np.ndarray, atrs: np.ndarray, cfg: Config, halt_bar: int | None) -> Result:
    T, N = panel.close.shape
    o, hi, lo = panel.open, panel.high, panel.low
    close_ff = ffill(panel.close)
    slip = cfg.slippage_bps / 1e4
    com = cfg.commission
    fraction = cfg.fraction if cfg.fraction is not None else DEFAULT_FRACTION[cfg.sizing]
    stop_k = cfg.stop_loss_atr if cfg.stop_loss_atr is not None else 2.0

    # signal fills: for each symbol, bars where the target changes, filled at its next bar
    fills_at: dict[int, list[tuple[int, int, int]]] = {}
    next_fill_bars: list[np.ndarray] = []
    for j in range(N):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        tg = targets[rows, j]
        change = np.flatnonzero(np.diff(np.concatenate(([0], tg))) != 0)
        change = change[change + 1 < rows.size]  # a change on the last bar has no next bar to fill on
        sig_rows, fill_rows = rows[change], rows[change + 1]
        next_fill_bars.append(fill_rows)
        for s, f in zip(sig_rows, fill_rows):
            fills_at.setdefault(int(f), []).append((j, int(targets[s, j]), int(s)))

    queue = sorted(fills_at)
    stops: list[tuple[int, int, int]] = []  # heap of (bar, symbol, position id)
    cash = cfg.cash
    qty = np.zeros(N)
    flow = np.zeros(N)  # cumulative cash flow per symbol
    pos: dict[int, dict] = {}  # open position per symbol
    pid = 0
    cash_rec = np.full(T, np.nan)
    qty_rec = np.full((T, N), np.nan)
    flow_rec = np.full((T, N), np.nan)
    fills: list[dict] = []
    trades: list[dict] = []
    skipped = 0

    def fill(b: int, j: int, q: float, price: float, reason: str) -> None:
        nonlocal cash
        c = abs(q) * price * com
        cash -= q * price + c
        flow[j] -= q * price + c
        qty[j] += q
        if abs(qty[j]) < 1e-12 * max(1.0, abs(q)):
            qty[j] = 0.0
        fills.append({"bar": b, "symbol": j, "quantity": q, "price": price, "commission": c, "reason": reason})

    def close_pos(b: int, j: int, price: float, reason: str) -> None:
        p = pos.pop(j)
        q = p["qty"]
        fill(b, j, -q, price, reason)
        exit_c = abs(q) * price * com
        pnl = q * (price - p["price"]) - p["commission"] - exit_c
        trades.append(_trade(j, p, b, price, pnl, p["commission"] + exit_c, reason, False))

    def open_pos(b: int, j: int, direction: int, sig: int, equity: float) -> None:
        nonlocal pid, skipped
        price = o[b, j] * (1 + slip * direction)
        a = atrs[sig, j]
        if cfg.sizing == "equal-weight":
            value = equity / N
        elif cfg.sizing == "fixed-fraction":
            value = fraction * equity
        else:
            if not (a > 0):
                skipped += 1
                return
            value = fraction * equity / (stop_k * a) * price
        value = min(value, cfg.max_position_pct / 100 * equity, cash)
        q = value / (price * (1 + com))
        if cfg.whole_shares:
            q = math.floor(q + 1e-9)
        if not q > 0:
            skipped += 1
            return
        pid += 1
        fill(b, j, direction * q, price, "entry")
        pos[j] = {"id": pid, "qty": direction * q, "price": price, "bar": b, "commission": q * price * com}
        if (cfg.stop_loss_atr or cfg.take_profit_atr) and a > 0:
            sl = price - direction * cfg.stop_loss_atr * a if cfg.stop_loss_atr else None
            tp = price + direction * cfg.take_profit_atr * a if cfg.take_profit_atr else None
            pos[j].update(sl=sl, tp=tp)
            nf = next_fill_bars[j]
            k = np.searchsorted(nf, b, side="right")
            end = int(nf[k]) if k < nf.size else T  # the next signal fill handles the position itself
            if halt_bar is not None:
                end = min(end, halt_bar)
            hit = _first_trigger(lo[b:end, j], hi[b:end, j], direction, sl, tp)
            if hit is not None:
                heapq.heappush(stops, (b + hit, j, pid))

    def record(b: int) -> None:
        cash_rec[b] = cash
        qty_rec[b] = qty
        flow_rec[b] = flow

    while queue or stops:
        b = min(queue[0] if queue else T, stops[0][0] if stops else T)
        if halt_bar is not None and b >= halt_bar:
            break
        if queue and queue[0] == b:
            queue.pop(0)
            orders = sorted(fills_at[b])
            for j, tgt, _ in orders:  # exits first
                if j in pos and np.sign(pos[j]["qty"]) != tgt:
                    side = -np.sign(pos[j]["qty"])
                    close_pos(b, j, o[b, j] * (1 + slip * side), "reverse" if tgt != 0 else "signal")
            entries = [(j, tgt, s) for j, tgt, s in orders if tgt != 0 and j not in pos]
            if entries:
                mark = np.where(np.isnan(o[b]), close_ff[b - 1] if b else 0.0, o[b])
                equity = cash + float(np.nansum(qty * mark))
                for j, tgt, s in entries:
                    open_pos(b, j, tgt, s, equity)
        while stops and stops[0][0] == b:
            _, j, p_id = heapq.heappop(stops)
            if j in pos and pos[j]["id"] == p_id:
                price, reason = _trigger_fill(pos[j], b, o[b, j], lo[b, j], hi[b, j], slip)
                close_pos(b, j, price, reason)
        record(b)

    if halt_bar is not None and halt_bar < T:
        for j in sorted(pos):
            side = -np.sign(pos[j]["qty"])
            px = o[halt_bar, j] if not np.isnan(o[halt_bar, j]) else close_ff[halt_bar - 1, j]
            close_pos(halt_bar, j, px * (1 + slip * side), "halt")
        record(halt_bar)

    cash_s = ffill(np.concatenate(([cfg.cash], cash_rec))[:, None])[1:, 0]
    qty_m = np.nan_to_num(ffill(np.vstack([np.zeros(N), qty_rec]))[1:])
    flow_m = np.nan_to_num(ffill(np.vstack([np.zeros(N), flow_rec]))[1:])
    marks = np.nan_to_num(close_ff)
    value = qty_m * marks
    equity = cash_s + value.sum(axis=1)
    gross = np.abs(value).sum(axis=1)
    last = T - 1
    for j, p in sorted(pos.items()):
        px = close_ff[last, j]
        pnl = p["qty"] * (px - p["price"]) - p["commission"]
        trades.append(_trade(j, p, last, px, pnl, p["commission"], "open", True))
    return Result(equity, cash_s, gross, qty_m, flow_m, close_ff, fills, trades, halt_bar, skipped)


def _trade(j: int, p: dict, b: int, price: float, pnl: float, commission: float, reason: str, is_open: bool) -> dict:
    q = p["qty"]
    return {
        "symbol": j, "side": "long" if q > 0 else "short", "quantity": abs(q),
        "entry_bar": p["bar"], "entry_price": p["price"], "exit_bar": b, "exit_price": price,
        "pnl": pnl, "return_pct": 100.0 * pnl / (abs(q) * p["price"]), "commission": commission,
        "exit_reason": reason, "is_open": is_open,
    }


def _first_trigger(low: np.ndarray, high: np.ndarray, direction: int, sl: float | None, tp: float | None) -> int | None:
    """Offset of the first bar whose range reaches the stop or the target, or None."""
    hit = np.zeros(low.shape, dtype=bool)
    if sl is not None:
        hit |= (low <= sl) if direction > 0 else (high >= sl)
    if tp is not None:
        hit |= (high >= tp) if direction > 0 else (low <= tp)
    idx = np.flatnonzero(hit)
    return int(idx[0]) if idx.size else None


def _trigger_fill(p: dict, b: int, open_: float, low: float, high: float, slip: float) -> tuple[float, str]:
    """Fill price and reason for a stop/target hit on bar ``b`` (see module docstring)."""
    d = 1 if p["qty"] > 0 else -1
    sl, tp = p.get("sl"), p.get("tp")
    entry_bar = b == p["bar"]
    if not entry_bar and sl is not None and (open_ - sl) * d <= 0:
        return open_ * (1 - d * slip), "stop_loss"
    if not entry_bar and tp is not None and (open_ - tp) * d >= 0:
        return open_, "take_profit"
    if sl is not None and ((low <= sl) if d > 0 else (high >= sl)):
        return sl * (1 - d * slip), "stop_loss"
    return tp, "take_profit"
