"""The pre-trade risk engine: limits with default-safe values, trading states, one check per order.

Trading states (stored in the ledger's ``meta.trading_state``):

* ``active``: every check below applies;
* ``reducing``: only orders that reduce an existing position (same symbol, opposite side, at most
  its size) pass; set by the ATR circuit breaker and by ``flatten``;
* ``halted``: no order passes (only cancels are sent); set by the daily-loss limit, ``halt`` and
  the ``HALT`` files; left only by ``resume``.

:func:`check` returns None (the order may be sent) or the reason it is refused (a ``risk_block``
event). Checks, in order: state; symbol allowlist; market hours; stale data (entries only);
order rate (orders per rolling 60 s); open-order count; price band; then for orders that add
exposure: order notional, position % of equity, gross exposure % of equity.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

STATES = ("active", "reducing", "halted")


@dataclass
class Limits:
    """Every limit with its default (README "Safety limits"). Units in the names: ``pct`` is
    percent; notional in the account currency; ``stale_after`` seconds (None: 3 bar intervals)."""

    max_order_notional: float = 1_000.0
    max_position_pct: float = 10.0
    max_gross_pct: float = 50.0
    max_daily_loss_pct: float = 2.0
    max_orders_per_minute: int = 10
    max_open_orders: int = 10
    price_band_pct: float = 5.0
    atr_window: int = 14
    max_atr_pct: float = 10.0
    stale_after: float | None = None
    allow_symbols: list[str] | None = None
    flatten_on_halt: bool = False

    def check(self) -> None:
        """ValueError naming the first limit out of range."""
        for name, v in (("--max-order-notional", self.max_order_notional), ("--price-band-pct", self.price_band_pct),
                        ("--max-atr-pct", self.max_atr_pct)):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be > 0 (got {v})")
        for name, v in (("--max-position-pct", self.max_position_pct), ("--max-gross-pct", self.max_gross_pct),
                        ("--max-daily-loss-pct", self.max_daily_loss_pct)):
            if not 0 < v <= 100:
                raise ValueError(f"{name} must be in (0, 100] (got {v})")
        for name, v in (("--max-orders-per-minute", self.max_orders_per_minute),
                        ("--max-open-orders", self.max_open_orders), ("--atr-window", self.atr_window)):
            if not v >= 1:
                raise ValueError(f"{name} must be >= 1 (got {v})")
        if self.stale_after is not None and not self.stale_after > 0:
            raise ValueError(f"--stale-after must be > 0 seconds (got {self.stale_after})")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RateWindow:
    """Orders per rolling 60 seconds: :meth:`allows` before an order, :meth:`record` once it is
    sent (times in seconds, any monotonic clock)."""

    limit: int
    times: deque = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] <= now - 60.0:
            self.times.popleft()

    def allows(self, now: float) -> bool:
        self._trim(now)
        return len(self.times) < self.limit

    def record(self, now: float) -> None:
        self._trim(now)
        self.times.append(now)


@dataclass
class Context:
    """What the checks look at. ``positions``: symbol -> signed qty; ``last_trade``: symbol ->
    the latest known trade price; ``equity`` currency; ``open_orders``: count of working orders;
    ``market_open``: the exchange is open now (or extended hours are allowed and on);
    ``stale``: no new bar for too long (entries refused); ``now`` seconds for the rate window."""

    state: str
    equity: float
    positions: dict[str, float]
    last_trade: dict[str, float]
    open_orders: int
    market_open: bool
    stale: bool
    now: float


def reduces(side: str, qty: float, position: float) -> bool:
    """True when an order of ``side``/``qty`` only reduces ``position`` (opposite side, qty <= |position|)."""
    return position != 0 and (side == "sell") == (position > 0) and qty <= abs(position) + 1e-9


def check(order: dict, ctx: Context, limits: Limits, rate: RateWindow, session_symbols: list[str]) -> str | None:
    """None when ``order`` (``symbol side qty price``: the limit price, or for a market order the
    price it was sized on) may be sent, else the reason it is refused (see the module docstring)."""
    sym, side, qty, px = order["symbol"], order["side"], float(order["qty"]), float(order["price"])
    pos = ctx.positions.get(sym, 0.0)
    reducing = reduces(side, qty, pos)
    if ctx.state == "halted":
        return "trading halted: only cancels are sent (resume to trade again)"
    allowed = limits.allow_symbols if limits.allow_symbols is not None else session_symbols
    if sym not in allowed:
        return f"{sym} is not in the symbol allowlist ({', '.join(allowed)})"
    if not ctx.market_open:
        return "market closed (Alpaca clock)"
    if ctx.state == "reducing" and not reducing:
        return "trading state reducing: only orders that reduce a position are sent"
    if ctx.stale and not reducing:
        return "bars are stale: no new entries until bars return"
    if not rate.allows(ctx.now):
        return f"order rate limit: {limits.max_orders_per_minute} order(s) per minute reached"
    if ctx.open_orders >= limits.max_open_orders:
        return f"open orders limit: {ctx.open_orders} working (max {limits.max_open_orders})"
    last = ctx.last_trade.get(sym)
    if last and abs(px / last - 1) * 100 > limits.price_band_pct + 1e-9:
        return (f"price band: {px:,.6g} is {abs(px / last - 1) * 100:,.2f}% from the last trade {last:,.6g} "
                f"(max {limits.price_band_pct:,.2f}%)")
    if reducing:
        return None
    notional = qty * px
    if notional > limits.max_order_notional + 1e-9:
        return f"order notional {notional:,.2f} above the max {limits.max_order_notional:,.2f}"
    if not ctx.equity > 0:
        return f"equity {ctx.equity:,.2f}: no exposure may be added"
    new_pos = pos + (qty if side == "buy" else -qty)
    pos_value = abs(new_pos) * px
    if pos_value > limits.max_position_pct / 100 * ctx.equity + 1e-9:
        return (f"position {sym} would be {pos_value:,.2f} = {pos_value / ctx.equity * 100:,.2f}% of equity "
                f"(max {limits.max_position_pct:,.2f}%)")
    gross = sum(abs(q) * ctx.last_trade.get(s, px if s == sym else 0.0) for s, q in ctx.positions.items() if s != sym)
    gross += pos_value
    if gross > limits.max_gross_pct / 100 * ctx.equity + 1e-9:
        return (f"gross exposure would be {gross:,.2f} = {gross / ctx.equity * 100:,.2f}% of equity "
                f"(max {limits.max_gross_pct:,.2f}%)")
    return None


def daily_loss_hit(equity: float, day_start_equity: float | None, max_daily_loss_pct: float) -> bool:
    """True when ``equity`` has lost at least ``max_daily_loss_pct`` % of the day's starting equity."""
    if not day_start_equity or day_start_equity <= 0:
        return False
    return equity <= day_start_equity * (1 - max_daily_loss_pct / 100) + 1e-9


def atr_pct(high, low, close, window: int) -> float:
    """ATR (Wilder, ``window`` bars) over the last close, in percent; NaN with too few bars."""
    import numpy as np

    from .strategies import atr

    if len(close) < window + 1:
        return math.nan
    a = atr(np.asarray(high, float), np.asarray(low, float), np.asarray(close, float), window)
    return float(a[-1] / close[-1] * 100)
