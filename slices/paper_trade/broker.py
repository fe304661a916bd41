"""The simulated broker of the paper_trade slice: orders, fills, cash and positions.

Fill rules and cost model are the backtest slice's (this slice carries its own copy; see
slices/paper_trade/README.md "The simulated broker"):

* **market** orders fill at the symbol's bar open, moved against the trader by the slippage: buys
  at open x (1 + bps/1e4), sells at open x (1 - bps/1e4). The session places them after a bar's
  close, so they fill at the symbol's next bar (never on the signal bar).
* **stop** orders trigger when the bar's range reaches the stop (sell: low <= stop, buy: high >=
  stop) and fill at the stop price, or at the open when the bar gapped through it, then moved by
  the slippage (a triggered stop is a market order).
* **limit** orders trigger when the range reaches the limit (sell: high >= limit, buy: low <=
  limit) and fill at the limit, or at the open when the bar opened beyond it; no slippage.
* **stop_limit** orders become limit orders at ``limit_price`` once the stop triggers; on the
  trigger bar they fill at the limit when the bar also reaches it.
* An order placed during a bar (after its open, e.g. the legs of a bracket entered at the open)
  cannot fill at that bar's open; it can fill intrabar on that bar.
* Legs sharing an ``oco`` group (a bracket's stop-loss and take-profit) are evaluated together
  exactly like the backtest's stop/target rule: only when the bar's range reaches one of them;
  then a gap through the stop fills the stop at the open, else a gap beyond the target fills the
  target at the open, else the stop is assumed first. When one leg fills, the other is canceled.
* **Commission** on every fill: commission x |quantity| x fill price.
* ``max_volume_pct``: a fill takes at most that percent of the bar's volume (all orders of the
  symbol on that bar together; whole shares round it down); the rest stays open.
* Time in force ``day`` expires an unfilled order at the end of the first (UTC) day on which it
  could trade; ``gtc`` stays until filled or canceled.

Orders are plain dicts with the ledger's ``orders`` columns (contract 4) plus engine fields
(``oco``, ``placed_at``, ``day``); the whole broker state serialises to JSON (:meth:`Broker.state`).
"""
from __future__ import annotations

import math

import numpy as np

ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
TIME_IN_FORCE = ("day", "gtc")
WORKING = ("new", "accepted", "partially_filled")


class Broker:
    """Cash, signed positions and working orders of one account over ``symbols`` (fixed order).

    ``cash`` currency; ``qty`` (N,) signed units per symbol; ``commission`` fraction of traded
    value; ``slippage_bps`` basis points; ``whole_shares`` rounds volume caps down to whole units;
    ``max_volume_pct`` percent of a bar's volume per symbol-bar (None: no cap).

    Every change is also collected for the ledger: ``dirty_orders`` (ids), ``new_fills`` (dicts
    with the ``fills`` columns) and ``dirty_positions`` (symbol indices); :meth:`drain` hands them
    over and clears them.
    """

    def __init__(self, symbols: list[str], cash: float, commission: float, slippage_bps: float,
                 whole_shares: bool = True, max_volume_pct: float | None = None):
        self.symbols = list(symbols)
        self.index = {s: j for j, s in enumerate(self.symbols)}
        self.cash = float(cash)
        self.qty = np.zeros(len(self.symbols))
        self.avg_price = np.zeros(len(self.symbols))
        self.realized = np.zeros(len(self.symbols))
        self.commission = commission
        self.slip = slippage_bps / 1e4
        self.whole_shares = whole_shares
        self.max_volume_pct = max_volume_pct
        self.orders: dict[str, dict] = {}  # working orders by id, in placement order
        self.volume_used: dict[int, float] = {}
        self.dirty_orders: dict[str, dict] = {}
        self.new_fills: list[dict] = []
        self.dirty_positions: set[int] = set()

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """JSON-serialisable state (exact floats): cash, positions, working orders."""
        return {"cash": self.cash, "qty": self.qty.tolist(), "avg_price": self.avg_price.tolist(),
                "realized": self.realized.tolist(), "orders": list(self.orders.values())}

    def restore(self, st: dict) -> None:
        """Load :meth:`state` output."""
        self.cash = float(st["cash"])
        self.qty = np.array(st["qty"], dtype=float)
        self.avg_price = np.array(st["avg_price"], dtype=float)
        self.realized = np.array(st["realized"], dtype=float)
        self.orders = {o["id"]: o for o in st["orders"]}

    def drain(self) -> tuple[list[dict], list[dict], list[int]]:
        """(changed orders, new fills, changed symbol indices) since the last drain."""
        out = (list(self.dirty_orders.values()), self.new_fills, sorted(self.dirty_positions))
        self.dirty_orders, self.new_fills, self.dirty_positions = {}, [], set()
        return out

    # ------------------------------------------------------------------ orders
    def place(self, order_id: str, symbol: str, side: str, type_: str, qty: float, time: str, *,
              limit_price: float | None = None, stop_price: float | None = None, tif: str = "gtc",
              signal_time: str | None = None, reason: str = "signal", parent_id: str | None = None,
              oco: str | None = None, note: str | None = None, after_open: bool = False) -> dict:
        """Accept a new order (status ``accepted``) and return it. ``after_open``: placed during
        the bar of ``time`` after its open, so it cannot fill at that open.
        Raises ValueError for an unknown type, side or time in force, a non-positive quantity or
        a missing price (the session turns those into ``rejected`` orders)."""
        if side not in ("buy", "sell"):
            raise ValueError(f"order {order_id}: side must be buy or sell (got {side!r})")
        if type_ not in ORDER_TYPES:
            raise ValueError(f"order {order_id}: unknown type {type_!r} (one of {', '.join(ORDER_TYPES)})")
        if tif not in TIME_IN_FORCE:
            raise ValueError(f"order {order_id}: time in force must be day or gtc (got {tif!r})")
        if not (qty > 0 and math.isfinite(qty)):
            raise ValueError(f"order {order_id}: quantity must be > 0 (got {qty})")
        if type_ in ("limit", "stop_limit") and not (limit_price and limit_price > 0):
            raise ValueError(f"order {order_id}: a {type_} order needs a limit price > 0")
        if type_ in ("stop", "stop_limit") and not (stop_price and stop_price > 0):
            raise ValueError(f"order {order_id}: a {type_} order needs a stop price > 0")
        if order_id in self.orders:
            raise ValueError(f"order {order_id}: duplicate order id")
        o = {"id": order_id, "broker_id": order_id, "symbol": symbol, "side": side, "type": type_, "qty": float(qty),
             "limit_price": limit_price, "stop_price": stop_price, "time_in_force": tif, "status": "accepted",
             "filled_qty": 0.0, "avg_fill_price": None, "signal_time": signal_time, "created_at": time,
             "updated_at": time, "reason": reason, "note": note, "parent_id": parent_id,
             "oco": oco, "placed_at": time if after_open else None, "day": None, "triggered": False, "n_fills": 0}
        self.orders[order_id] = o
        self.dirty_orders[order_id] = o
        return o

    def record_rejected(self, order: dict) -> None:
        """Record an order that was never working (status already set, e.g. ``rejected``)."""
        self.dirty_orders[order["id"]] = order

    def cancel(self, order_id: str, time: str, note: str | None = None, status: str = "canceled") -> None:
        """Cancel a working order (its filled part stays filled); unknown ids are ignored."""
        o = self.orders.pop(order_id, None)
        if o is None:
            return
        o["status"], o["updated_at"] = status, time
        if note:
            o["note"] = note
        self.dirty_orders[order_id] = o

    def working(self, symbol: str | None = None) -> list[dict]:
        """Working orders (all, or one symbol's), in placement order."""
        return [o for o in self.orders.values() if symbol is None or o["symbol"] == symbol]

    def remaining(self, o: dict) -> float:
        """Quantity of ``o`` still to fill."""
        return o["qty"] - o["filled_qty"]

    def set_qty(self, o: dict, qty: float, time: str) -> None:
        """Change a working order's total quantity (the session sizes entries at the open)."""
        o["qty"], o["updated_at"] = float(qty), time
        self.dirty_orders[o["id"]] = o

    # ------------------------------------------------------------------ fills
    def new_bar(self) -> None:
        """Start a bar: volume caps count from zero again."""
        self.volume_used = {}

    def capped(self, j: int, want: float, volume: float) -> float:
        """How much of ``want`` may fill on symbol ``j``'s bar of ``volume`` under the volume cap."""
        if self.max_volume_pct is None:
            return want
        cap = self.max_volume_pct / 100.0 * volume - self.volume_used.get(j, 0.0)
        if self.whole_shares:
            cap = math.floor(cap + 1e-9)
        return max(0.0, min(want, cap))

    def fill(self, o: dict, q: float, price: float, time: str) -> dict:
        """Fill ``q`` (> 0) units of order ``o`` at ``price``: commission, cash, position, order
        status (``partially_filled``/``filled``, removed from the working orders when filled).
        Cash and quantity arithmetic is the backtest's: cash -= signed q x price + commission."""
        j = self.index[o["symbol"]]
        signed = q if o["side"] == "buy" else -q
        c = abs(signed) * price * self.commission
        self.cash -= signed * price + c
        old = self.qty[j]
        self.qty[j] += signed
        if abs(self.qty[j]) < 1e-12 * max(1.0, abs(signed)):
            self.qty[j] = 0.0
        # average price and realised P&L (net of commission)
        self.realized[j] -= c
        if old == 0 or np.sign(old) == np.sign(signed):
            self.avg_price[j] = (abs(old) * self.avg_price[j] + q * price) / (abs(old) + q)
        else:
            closed = min(q, abs(old))
            self.realized[j] += closed * (price - self.avg_price[j]) * np.sign(old)
            if self.qty[j] == 0:
                self.avg_price[j] = 0.0
            elif np.sign(self.qty[j]) != np.sign(old):
                self.avg_price[j] = price
        self.dirty_positions.add(j)
        if self.max_volume_pct is not None:
            self.volume_used[j] = self.volume_used.get(j, 0.0) + q
        prev = o["filled_qty"]
        o["filled_qty"] = prev + q
        o["avg_fill_price"] = price if not prev else (prev * o["avg_fill_price"] + q * price) / (prev + q)
        o["updated_at"] = time
        done = o["filled_qty"] >= o["qty"] - 1e-9 * max(1.0, o["qty"])
        o["status"] = "filled" if done else "partially_filled"
        if done:
            self.orders.pop(o["id"], None)
        self.dirty_orders[o["id"]] = o
        k = o["n_fills"] = o["n_fills"] + 1
        f = {"id": f"{o['id']}-F{k}", "order_id": o["id"], "symbol": o["symbol"], "side": o["side"], "qty": float(q),
             "price": float(price), "commission": float(c), "time": time, "reason": o["reason"]}
        self.new_fills.append(f)
        return f

    def market_price(self, side: str, open_: float) -> float:
        """A market fill price: the open moved against the trader by the slippage."""
        return open_ * (1 + self.slip) if side == "buy" else open_ * (1 - self.slip)

    def fill_market(self, o: dict, open_: float, volume: float, time: str) -> float:
        """Fill what the volume cap allows of market order ``o`` at this bar's open; returns the quantity."""
        j = self.index[o["symbol"]]
        q = self.capped(j, self.remaining(o), volume)
        if q > 0:
            self.fill(o, q, self.market_price(o["side"], open_), time)
        return q

    def process_resting(self, j: int, time: str, day: str, open_: float, high: float, low: float,
                        volume: float) -> None:
        """Stop, limit and stop-limit orders of symbol ``j`` on its bar (see the module rules),
        oco groups together; in placement order."""
        sym = self.symbols[j]
        seen: set[str] = set()
        for o in list(self.orders.values()):
            if o["symbol"] != sym or o["type"] == "market" or o["id"] not in self.orders or o["id"] in seen:
                continue
            group = [o]
            if o["oco"]:
                group = [x for x in self.orders.values() if x["oco"] == o["oco"]]
            seen.update(x["id"] for x in group)
            self._evaluate(j, group, time, open_, high, low, volume)

    def _evaluate(self, j: int, group: list[dict], time: str, open_: float, high: float, low: float,
                  volume: float) -> None:
        d = 1 if group[0]["side"] == "sell" else -1  # +1: sells (protecting a long), -1: buys
        stop = next((x for x in group if x["type"] == "stop" or (x["type"] == "stop_limit" and not x["triggered"])), None)
        lim = next((x for x in group if x["type"] == "limit" or (x["type"] == "stop_limit" and x["triggered"])), None)
        sl = stop["stop_price"] if stop is not None else None
        tp = lim["limit_price"] if lim is not None else None
        hit = False
        if sl is not None:
            hit |= (low <= sl) if d > 0 else (high >= sl)
        if tp is not None:
            hit |= (high >= tp) if d > 0 else (low <= tp)
        if not hit:
            return
        fresh = group[0]["placed_at"] == time  # placed after this bar's open: no fill at the open
        if not fresh and sl is not None and (open_ - sl) * d <= 0:
            chosen, price = stop, ("gap", open_)
        elif not fresh and tp is not None and (open_ - tp) * d >= 0:
            chosen, price = lim, ("limit", open_)
        elif sl is not None and ((low <= sl) if d > 0 else (high >= sl)):
            chosen, price = stop, ("stop", sl)
        else:
            chosen, price = lim, ("limit", tp)
        kind, px = price
        if chosen["type"] == "stop_limit" and not chosen["triggered"]:
            chosen["triggered"] = True  # becomes a limit at limit_price
            chosen["updated_at"] = time
            self.dirty_orders[chosen["id"]] = chosen
            lp = chosen["limit_price"]
            trig = px
            if (trig - lp) * d >= 0:  # marketable at the trigger price
                px = trig
            elif (high >= lp) if d > 0 else (low <= lp):
                px = lp
            else:
                return
        elif chosen["type"] == "stop":
            px = px * (1 - d * self.slip)
        q = self.capped(j, self.remaining(chosen), volume)
        if q <= 0:
            return
        self.fill(chosen, q, px, time)
        if chosen["id"] not in self.orders:  # fully filled: one cancels the other
            for x in group:
                if x is not chosen:
                    self.cancel(x["id"], time, note=f"oco: {chosen['id']} filled")
        else:
            for x in group:
                if x is not chosen and x["id"] in self.orders:
                    self.set_qty(x, x["filled_qty"] + self.remaining(chosen), time)

    def expire_day_orders(self, j: int, day: str, time: str) -> None:
        """Expire symbol ``j``'s ``day`` orders whose trading day (UTC date) is before ``day``;
        stamp the others with their trading day."""
        sym = self.symbols[j]
        for o in list(self.orders.values()):
            if o["symbol"] != sym or o["time_in_force"] != "day":
                continue
            if o["day"] is None:
                o["day"] = day
            elif o["day"] < day:
                self.cancel(o["id"], time, note="day order expired", status="expired")
