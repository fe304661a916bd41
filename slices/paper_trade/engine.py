"""The paper-trading engine: one bar at a time, the backtest's execution rules, a simulated broker.

:class:`Engine` turns a strategy's per-symbol targets into orders on the :class:`~.broker.Broker`
and steps through a timeline of bars with :meth:`Engine.step` (one call per bar, in time order).
Its whole state (broker included) is JSON (:meth:`Engine.state`), written with every bar in the
same ledger transaction, so a resumed session continues exactly where the last whole bar left it.

Rules (the backtest slice's, reproduced exactly; slices/paper_trade/README.md):

* The target on bar t (+1 long, 0 flat, -1 short; -1 is flat without ``allow_short``) is
  computed on t's close. Where a symbol's target changes, the session places at t's close a
  market order closing a position of the other direction (reason ``reverse`` when the new target
  is not flat, else ``signal``), and at the symbol's next bar's open it sizes and places the
  entry (a market order, reason ``signal``). Both fill at that open with slippage.
* Within a bar: halt fills, else exits at the open (symbol order), then entries at the open sized
  on the equity at the open (cash after the exits + positions at the open, or at the last close
  for a symbol without a bar), then stops/targets intrabar.
* Sizing: ``equal-weight`` equity / N; ``fixed-fraction`` fraction x equity; ``atr-risk``
  fraction x equity / (stop_loss_atr (default 2) x ATR on the signal bar) x price; capped at
  ``max_position_pct`` % of equity and at the cash; quantity = value / (price x (1 +
  commission)), floored (+1e-9) with whole shares. An entry of size 0 (no cash, ATR unknown) is
  not placed (event ``reject``).
* Brackets: with ``stop_loss_atr``/``take_profit_atr`` and a positive ATR on the signal bar, the
  entry's fill places a stop (fill price -/+ k x ATR) and a limit (fill price +/- k x ATR) as one
  oco pair, working from the entry bar on. After a stop or target the symbol stays flat until its
  target changes again.
* Equity at each close: cash + sum(qty x last close); drawdown = equity / running peak - 1.
* Max-drawdown halt: when the drawdown at a close reaches -``max_drawdown``, every working order
  is canceled and every position gets a market order (reason ``halt``) filled at the next bar's
  open (at the last close for a symbol without a bar then); then nothing more is traded.

Portfolio weights (the ``weights`` form of SLICES.md contract 5; the backtest's
``simulate_weights`` rules, reproduced exactly):

* Row t of the weights (decided on t's close) is the target fraction of equity per symbol; NaN
  means no change. At t's close each non-NaN weight becomes the symbol's pending target,
  replacing an older one; it is traded at the symbol's next bar's open (a symbol without a bar
  then keeps it pending until its next bar).
* At that open the equity E is cash + positions marked at the open (the last close for symbols
  without a bar), floored at 0; the wanted quantity is w x E / open (whole shares: rounded toward
  zero); trades smaller than ``rebalance_threshold`` x E are skipped. Sells first (market orders,
  reason ``rebalance``, filled at open x (1 - slippage)), then buys (open x (1 + slippage)); when
  the buys and their commission cost more than the buying power cash + (leverage - 1) x E, every
  buy of that bar is scaled down by the same factor (whole shares: then rounded down).
* The max-drawdown halt is the same as for signals.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .broker import Broker
from .ledger import iso
from .strategies import StrategyError, atr, call_targets, call_weights, fmt_bar_time

SIZINGS = ("equal-weight", "fixed-fraction", "atr-risk")
DEFAULT_FRACTION = {"equal-weight": None, "fixed-fraction": 0.10, "atr-risk": 0.01}


@dataclass
class Config:
    """Run settings. Units: ``cash`` currency; ``commission`` fraction of traded value;
    ``slippage_bps`` basis points; ``fraction`` of equity; ``stop_loss_atr``/``take_profit_atr``
    ATR multiples; ``max_position_pct`` percent of equity; ``max_drawdown`` fraction;
    ``max_volume_pct`` percent of a bar's volume (None: no cap)."""

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
    max_volume_pct: float | None = None
    leverage: float = 1.0
    rebalance_threshold: float = 0.0

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
        if self.max_volume_pct is not None and not 0 < self.max_volume_pct <= 100:
            raise ValueError(f"--max-volume-pct must be in (0, 100] (got {self.max_volume_pct})")
        if not (1 <= self.leverage and math.isfinite(self.leverage)):
            raise ValueError(f"--leverage must be a finite number >= 1 (got {self.leverage})")
        if not 0 <= self.rebalance_threshold < 1:
            raise ValueError(f"--rebalance-threshold is a fraction of equity in [0, 1) (got {self.rebalance_threshold})")

    def check_form(self, form: str, label: str) -> None:
        """Raise ValueError when an option of the other strategy form is set (the backtest's rule
        and message): sizing options, stops, ``--max-position-pct`` and (this slice's own)
        ``--max-volume-pct`` belong to the ``targets`` form, ``leverage`` and
        ``rebalance_threshold`` to ``weights``."""
        if form == "weights":
            given = [name for name, v, default in (
                ("--sizing", self.sizing, "equal-weight"), ("--fraction", self.fraction, None),
                ("--stop-loss-atr", self.stop_loss_atr, None), ("--take-profit-atr", self.take_profit_atr, None),
                ("--max-position-pct", self.max_position_pct, 100.0), ("--max-volume-pct", self.max_volume_pct, None))
                if v != default]
        else:
            given = [name for name, v, default in (("--leverage", self.leverage, 1.0),
                                                   ("--rebalance-threshold", self.rebalance_threshold, 0.0)) if v != default]
        if given:
            other = "targets (per-symbol signal)" if form == "weights" else "weights (portfolio)"
            raise ValueError(f"{given[0]} applies to {other} strategies only; {label} is a {form} strategy")

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def needs_atr(self) -> bool:
        """Whether the ATR is used (stops, targets or atr-risk sizing); without it none is computed."""
        return bool(self.stop_loss_atr or self.take_profit_atr or self.sizing == "atr-risk")


@dataclass
class Panel:
    """Bars on the union of the symbols' timestamps: ``times`` (T,) int64 microseconds (UTC);
    ``open high low close volume`` (T, N) float64, NaN where a symbol has no bar; ``targets``
    (T, N) int8 and ``atr`` (T, N) float64 on each symbol's own bars; for a weights strategy
    ``weights`` (T, N) float64 (fractions of equity, NaN = no change; :func:`compute_weights`)."""

    symbols: list[str]
    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    targets: np.ndarray = field(default=None)
    atr: np.ndarray = field(default=None)
    weights: np.ndarray | None = None

    def as_dict(self) -> dict:
        """The panel as a weights strategy receives it (SLICES.md contract 5): read-only (T, N)
        float64 ``open high low close volume`` (NaN where a symbol has no bar), ``timestamp`` (T,)
        datetime64[us] (UTC) and ``symbols`` (list of N str)."""
        out = {k: getattr(self, k).view() for k in ("open", "high", "low", "close", "volume")}
        out["timestamp"] = self.times.astype("datetime64[us]")
        for v in out.values():
            v.flags.writeable = False
        return out | {"symbols": list(self.symbols)}


def compute_weights(panel: Panel, strat, params: dict, allow_short: bool, leverage: float) -> tuple[np.ndarray, list[str]]:
    """Weights (T, N) float64 of a weights strategy on ``panel`` (:func:`.strategies.call_weights`),
    NaN = no change; the backtest's rules: without ``allow_short`` negative weights become 0 (one
    warning with the count); a row whose sum of |weights| exceeds ``leverage`` (+1e-9) is a
    StrategyError naming its time. Returns (weights, warnings)."""
    w = call_weights(strat, panel.as_dict(), params)
    warnings = []
    if not allow_short:
        neg = w < 0
        if neg.any():
            warnings.append(f"{strat.label}: {int(neg.sum()):,} negative weight(s) set to 0 (long-only; --allow-short to short)")
            w[neg] = 0.0
    gross = np.nansum(np.abs(w), axis=1)
    over = np.flatnonzero(gross > leverage + 1e-9)
    if over.size:
        t = int(over[0])
        how = "--leverage L allows up to L" if leverage == 1 else f"--leverage {leverage:g}"
        raise StrategyError(f"{strat.label}: weights row {t} ({fmt_bar_time(np.datetime64(int(panel.times[t]), 'us'))}): "
                            f"sum of |weights| {gross[t]:.6g} exceeds {leverage:g} ({how})")
    return w, warnings


def build_panel(frames: dict[str, dict], symbols: list[str]) -> Panel:
    """Align per-symbol bars ``{SYMBOL: {"timestamp": int64 us (T_s,), "open".., ["targets", "atr"]}}``
    on the union of their timestamps (symbols in the given order); ``targets`` 0 and ``atr`` NaN
    where a frame has none (a weights strategy)."""
    times = np.unique(np.concatenate([frames[s]["timestamp"] for s in symbols])) if symbols else np.zeros(0, np.int64)
    T, N = times.size, len(symbols)
    mats = {k: np.full((T, N), np.nan) for k in ("open", "high", "low", "close", "volume", "atr")}
    targets = np.zeros((T, N), dtype=np.int8)
    panel = Panel(symbols, times, mats["open"], mats["high"], mats["low"], mats["close"], mats["volume"], targets, mats["atr"])
    for j, s in enumerate(symbols):
        put_column(panel, j, frames[s])
    return panel


def extend_panel(panel: Panel, times: np.ndarray) -> None:
    """Append timeline rows ``times`` (int64 us, sorted, all after the panel's last time) to
    ``panel`` in place: NaN bars, targets 0, ATR NaN (weights are recomputed by the caller)."""
    n, N = times.size, len(panel.symbols)
    panel.times = np.concatenate([panel.times, times])
    for k in ("open", "high", "low", "close", "volume", "atr"):
        setattr(panel, k, np.concatenate([getattr(panel, k), np.full((n, N), np.nan)]))
    panel.targets = np.concatenate([panel.targets, np.zeros((n, N), dtype=np.int8)])


def put_column(panel: Panel, j: int, f: dict, first: int = 0) -> None:
    """Write symbol ``j``'s bars ``f`` (as :func:`build_panel` takes them) from its row ``first``
    on into its panel column; every timestamp of ``f`` must be on the panel's timeline."""
    rows = np.searchsorted(panel.times, f["timestamp"][first:])
    for k in ("open", "high", "low", "close", "volume", "atr"):
        if k in f:
            getattr(panel, k)[rows, j] = f[k][first:]
    if "targets" in f:
        panel.targets[rows, j] = f["targets"][first:]


def symbol_signals(strat, params: dict, sym: str, bars: dict, allow_short: bool, atr_window: int | None) -> dict:
    """One symbol's bars (numpy arrays ``timestamp`` int64 us, ``open high low close volume``)
    plus ``targets`` (int8, shorts flattened unless ``allow_short``) and ``atr`` (Wilder over
    ``atr_window`` bars, price units; all NaN when ``atr_window`` is None: not needed), computed
    on the symbol's own bars (contract 5 signal form)."""
    view = {k: bars[k] for k in ("open", "high", "low", "close", "volume")}
    view["timestamp"] = bars["timestamp"].astype("datetime64[us]")
    for v in view.values():
        v.flags.writeable = False
    view["symbol"] = sym
    tgt = call_targets(strat, view, params)
    if not allow_short:
        tgt = np.maximum(tgt, 0).astype(np.int8)
    out = dict(bars)
    out["targets"] = tgt
    out["atr"] = (atr(bars["high"], bars["low"], bars["close"], atr_window) if atr_window is not None
                  else np.full(tgt.size, np.nan))
    return out


class Engine:
    """The session's trading logic over a :class:`Panel` (see the module docstring).

    ``session`` names order ids ``<session>-<SYMBOL>-<YYYYMMDDTHHMMSS>-<n>``; ``form`` is the
    strategy's form (``targets``: :attr:`Panel.targets` drive it; ``weights``: :attr:`Panel.weights`).
    After each :meth:`step`, :meth:`drain` returns what changed for the ledger.
    """

    def __init__(self, session: str, symbols: list[str], cfg: Config, form: str = "targets"):
        self.session = session
        self.form = form
        self.symbols = list(symbols)
        self.N = len(symbols)
        self.cfg = cfg
        self.broker = Broker(symbols, cfg.cash, cfg.commission, cfg.slippage_bps, cfg.whole_shares, cfg.max_volume_pct)
        self.last_close = np.full(self.N, np.nan)
        self.first_close = np.full(self.N, np.nan)
        self.last_target = np.zeros(self.N, dtype=np.int8)
        self.peak = -math.inf
        self.halted = False
        self.halt_pending = False
        self.pending: dict[int, dict] = {}  # symbol index -> signal awaiting the symbol's next open
        self.wpending: dict[int, list] = {}  # weights form: symbol index -> [weight, weight row time us]
        self.legs: dict[int, list[str]] = {}  # symbol index -> bracket leg ids
        self.last_time: int | None = None
        self.events: list[tuple[str, str, str, dict]] = []
        self.skipped = 0

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """The whole engine state as JSON-serialisable data (floats exact)."""
        return {
            "broker": self.broker.state(), "last_close": _nan_list(self.last_close),
            "first_close": _nan_list(self.first_close), "last_target": self.last_target.tolist(),
            "peak": None if self.peak == -math.inf else self.peak, "halted": self.halted,
            "halt_pending": self.halt_pending, "pending": {str(j): p for j, p in self.pending.items()},
            "legs": {str(j): v for j, v in self.legs.items()}, "last_time": self.last_time, "skipped": self.skipped,
            "wpending": {str(j): v for j, v in self.wpending.items()},
        }

    def restore(self, st: dict) -> None:
        """Load :meth:`state` output."""
        self.broker.restore(st["broker"])
        self.last_close = np.array([np.nan if x is None else x for x in st["last_close"]], dtype=float)
        self.first_close = np.array([np.nan if x is None else x for x in st["first_close"]], dtype=float)
        self.last_target = np.array(st["last_target"], dtype=np.int8)
        self.peak = -math.inf if st["peak"] is None else st["peak"]
        self.halted, self.halt_pending = st["halted"], st["halt_pending"]
        self.pending = {int(j): p for j, p in st["pending"].items()}
        self.legs = {int(j): v for j, v in st["legs"].items()}
        self.last_time, self.skipped = st["last_time"], st.get("skipped", 0)
        self.wpending = {int(j): v for j, v in st.get("wpending", {}).items()}

    @property
    def trading_state(self) -> str:
        """``active``, ``reducing`` (halt orders waiting) or ``halted``."""
        return "halted" if self.halted else "reducing" if self.halt_pending else "active"

    def order_id(self, j: int, signal_us: int, n: int) -> str:
        """``<session>-<SYMBOL>-<signal bar time YYYYMMDDTHHMMSS>-<n>``."""
        t = str(np.datetime64(int(signal_us), "us").astype("datetime64[s]")).replace("-", "").replace(":", "")
        return f"{self.session}-{self.symbols[j]}-{t}-{n}"

    def event(self, level: str, kind: str, message: str, bar_time: str, **data) -> None:
        self.events.append((level, kind, message, {"bar_time": bar_time, **data}))

    def drain(self):
        """(orders, fills, position symbol indices, events) changed since the last drain."""
        orders, fills, pos = self.broker.drain()
        ev, self.events = self.events, []
        return orders, fills, pos, ev

    # ------------------------------------------------------------------ one bar
    def step(self, p: Panel, b: int) -> dict:
        """Process bar ``b`` of panel ``p``; returns the equity row (``time cash equity
        gross_exposure drawdown benchmark``)."""
        cfg, br = self.cfg, self.broker
        t_us = int(p.times[b])
        ts = iso(t_us)
        o, h, lo, c, v = p.open[b], p.high[b], p.low[b], p.close[b], p.volume[b]
        has = ~np.isnan(c)
        br.new_bar()
        if self.halt_pending:
            self._fill_halt(o, has, ts)
        elif self.form == "weights":
            if not self.halted:
                self._rebalance(o, has, ts)
        elif not self.halted:
            if any(x["time_in_force"] == "day" for x in br.orders.values()):
                day = ts[:10]
                for j in np.flatnonzero(has):
                    br.expire_day_orders(int(j), day, ts)
            self._open(p, b, o, v, has, ts)
            for j in sorted({br.index[x["symbol"]] for x in br.orders.values() if x["type"] != "market"}):
                if has[j]:
                    br.process_resting(j, ts, ts[:10], o[j], h[j], lo[j], v[j])
                    if j in self.legs and br.qty[j] == 0:  # a stop or target closed the position
                        for oid in self.legs.pop(j):
                            br.cancel(oid, ts, note="position closed")
                        self._cancel_market(j, ts, "position closed by its stop or target")
                        self.pending.pop(j, None)
        # marks at the close
        self.last_close = np.where(has, c, self.last_close)
        self.first_close = np.where(np.isnan(self.first_close) & has, c, self.first_close)
        value = br.qty * np.nan_to_num(self.last_close)
        equity = br.cash + value.sum()
        gross = np.abs(value).sum()
        self.peak = max(self.peak, equity)
        dd = equity / self.peak - 1.0
        rel = np.where(np.isnan(self.last_close), 1.0, self.last_close / self.first_close)
        bench = cfg.cash / self.N * rel.sum()
        if cfg.max_drawdown is not None and not (self.halted or self.halt_pending) and dd <= -cfg.max_drawdown:
            self._start_halt(t_us, ts, dd)
        elif not (self.halted or self.halt_pending):
            if self.form == "weights":
                for j in np.flatnonzero(~np.isnan(p.weights[b])).tolist():
                    self.wpending[j] = [float(p.weights[b, j]), t_us]
            else:
                self._signals(p, b, t_us, ts, has)
        self.last_time = t_us
        return {"time": ts, "cash": float(br.cash), "equity": float(equity), "gross_exposure": float(gross),
                "drawdown": float(dd), "benchmark": float(bench)}

    def _rebalance(self, o, has, ts: str) -> None:
        """Weights form: trade every symbol with a pending weight and a bar now to that weight at
        this open (the module rules; arithmetic in the backtest's order, so results are equal)."""
        js = np.array(sorted(j for j in self.wpending if has[j]), dtype=np.int64)
        if not js.size:
            return
        br, cfg = self.broker, self.cfg
        w = np.array([self.wpending[j][0] for j in js.tolist()])
        sig = [self.wpending.pop(j)[1] for j in js.tolist()]
        mark = np.where(np.isnan(o), self.last_close, o)
        equity = max(br.cash + float(np.nansum(br.qty * mark)), 0.0)
        px = o[js]
        want = w * equity / px
        if cfg.whole_shares:
            want = np.trunc(want + np.sign(want) * 1e-9)
        delta = want - br.qty[js]
        keep = np.abs(delta) > 1e-12 * np.maximum(1.0, np.abs(br.qty[js]))
        if cfg.rebalance_threshold > 0:
            keep &= np.abs(delta) * px >= cfg.rebalance_threshold * equity
        for i in np.flatnonzero(keep & (delta < 0)).tolist():  # sells first
            self._trade(int(js[i]), "sell", float(-delta[i]), float(o[js[i]] * (1 - br.slip)), sig[i], ts)
        buy = np.flatnonzero(keep & (delta > 0))
        if buy.size:
            bq = delta[buy]
            price = px[buy] * (1 + br.slip)
            cost = float(np.sum(bq * price * (1 + cfg.commission)))
            power = br.cash + (cfg.leverage - 1.0) * equity
            if cost > power:  # every buy of this bar scaled down to the buying power
                bq = bq * max(power, 0.0) / cost
                if cfg.whole_shares:
                    bq = np.floor(bq + 1e-9)
            for i, q, pr in zip(buy.tolist(), bq.tolist(), price.tolist()):
                if q > 0:
                    self._trade(int(js[i]), "buy", q, pr, sig[i], ts)

    def _trade(self, j: int, side: str, q: float, price: float, sig_us: int, ts: str) -> None:
        """Place and fill at ``price`` one rebalance market order (id from the weight row's time)."""
        br = self.broker
        o = br.place(self.order_id(j, sig_us, 1), self.symbols[j], side, "market", q, ts, signal_time=iso(sig_us),
                     reason="rebalance")
        br.fill(o, q, price, ts)

    def _open(self, p: Panel, b: int, o, v, has, ts: str) -> None:
        """Exits at the open, then entries sized on the equity at the open."""
        br, cfg = self.broker, self.cfg
        todo = [j for j in sorted(self.pending) if has[j]]
        if not todo:
            return
        for j in todo:  # exits first
            ex = self.pending[j].get("exit")
            if ex and ex in br.orders:
                br.fill_market(br.orders[ex], o[j], v[j], ts)
        entries = [j for j in todo if self.pending[j]["tgt"] != 0 and not (self.pending[j].get("exit") in br.orders)]
        if entries:
            mark = np.where(np.isnan(o), self.last_close, o)
            equity = br.cash + float(np.nansum(br.qty * mark))
            for j in entries:
                self._enter(j, o[j], v[j], equity, ts)
        for j in todo:
            pj = self.pending[j]
            if not (pj.get("exit") in br.orders or pj.get("entry") in br.orders) and (pj["tgt"] == 0 or pj.get("entry_done")):
                del self.pending[j]

    def _enter(self, j: int, open_: float, volume: float, equity: float, ts: str) -> None:
        br, cfg, pj = self.broker, self.cfg, self.pending[j]
        direction = pj["tgt"]
        oid = pj.get("entry")
        if oid is None:  # size and place the entry at this open
            price = open_ * (1 + br.slip * direction)
            a = pj["atr"]
            a = math.nan if a is None else a
            fraction = cfg.fraction if cfg.fraction is not None else DEFAULT_FRACTION[cfg.sizing]
            stop_k = cfg.stop_loss_atr if cfg.stop_loss_atr is not None else 2.0
            n = pj["n"]
            oid = self.order_id(j, pj["sig"], n)
            pj["n"] = n + 1
            pj["entry"] = oid
            if br.qty[j] != 0:  # already in this direction (a partially filled earlier entry)
                pj["entry_done"] = True
                return
            if cfg.sizing == "equal-weight":
                value = equity / self.N
            elif cfg.sizing == "fixed-fraction":
                value = fraction * equity
            else:
                value = fraction * equity / (stop_k * a) * price if a > 0 else 0.0
            value = min(value, cfg.max_position_pct / 100 * equity, br.cash)
            q = value / (price * (1 + cfg.commission))
            if cfg.whole_shares:
                q = math.floor(q + 1e-9)
            if not q > 0:
                self.skipped += 1
                pj["entry_done"] = True
                why = "ATR unavailable" if cfg.sizing == "atr-risk" and not a > 0 else "no cash left or size below one unit"
                self.event("warning", "reject", f"{self.symbols[j]}: entry signal not taken ({why})", ts,
                           order_id=oid, symbol=self.symbols[j])
                return
            side = "buy" if direction > 0 else "sell"
            br.place(oid, self.symbols[j], side, "market", q, ts, signal_time=iso(pj["sig"]), reason="signal")
        order = br.orders.get(oid)
        if order is None:
            return
        filled = br.fill_market(order, open_, volume, ts)
        if oid not in br.orders:
            pj["entry_done"] = True
        if filled > 0:
            self._bracket(j, order, ts)

    def _bracket(self, j: int, entry: dict, ts: str) -> None:
        """Place (or resize) the stop/target legs protecting the position opened by ``entry``."""
        br, cfg, pj = self.broker, self.cfg, self.pending[j]
        if j in self.legs:
            for oid in self.legs[j]:
                if oid in br.orders:
                    br.set_qty(br.orders[oid], br.orders[oid]["filled_qty"] + abs(br.qty[j]), ts)
            return
        a = pj["atr"]
        if not ((cfg.stop_loss_atr or cfg.take_profit_atr) and a is not None and a > 0):
            return
        d = pj["tgt"]
        price = entry["avg_fill_price"]
        side = "sell" if d > 0 else "buy"
        legs = []
        if cfg.stop_loss_atr:
            oid = self.order_id(j, pj["sig"], pj["n"])
            pj["n"] += 1
            br.place(oid, self.symbols[j], side, "stop", abs(br.qty[j]), ts, stop_price=price - d * cfg.stop_loss_atr * a,
                     signal_time=iso(pj["sig"]), reason="stop_loss", parent_id=entry["id"], oco=entry["id"], after_open=True)
            legs.append(oid)
        if cfg.take_profit_atr:
            oid = self.order_id(j, pj["sig"], pj["n"])
            pj["n"] += 1
            br.place(oid, self.symbols[j], side, "limit", abs(br.qty[j]), ts, limit_price=price + d * cfg.take_profit_atr * a,
                     signal_time=iso(pj["sig"]), reason="take_profit", parent_id=entry["id"], oco=entry["id"], after_open=True)
            legs.append(oid)
        self.legs[j] = legs

    def _cancel_market(self, j: int, ts: str, note: str) -> None:
        for x in self.broker.working(self.symbols[j]):
            if x["type"] == "market":
                self.broker.cancel(x["id"], ts, note=note)

    def _signals(self, p: Panel, b: int, t_us: int, ts: str, has) -> None:
        """Orders for every symbol whose target changed on this bar's close."""
        br = self.broker
        tg = p.targets[b]
        for j in np.flatnonzero(has & (tg != self.last_target)):
            j = int(j)
            tgt = int(tg[j])
            self._cancel_market(j, ts, "replaced by a new signal")
            n = 1
            pj = {"tgt": tgt, "sig": t_us, "atr": None if np.isnan(p.atr[b, j]) else float(p.atr[b, j]), "exit": None}
            q = br.qty[j]
            if q != 0 and np.sign(q) != tgt:
                for oid in self.legs.pop(j, []):
                    br.cancel(oid, ts, note="position exited by signal")
                oid = self.order_id(j, t_us, n)
                n += 1
                br.place(oid, self.symbols[j], "sell" if q > 0 else "buy", "market", abs(q), ts, signal_time=ts,
                         reason="reverse" if tgt != 0 else "signal")
                pj["exit"] = oid
            pj["n"] = n
            if pj["exit"] or tgt != 0:
                self.pending[j] = pj
            else:
                self.pending.pop(j, None)
        self.last_target = np.where(has, tg, self.last_target).astype(np.int8)

    def _start_halt(self, t_us: int, ts: str, dd: float) -> None:
        br = self.broker
        self.halt_pending = True
        for x in list(br.orders.values()):
            br.cancel(x["id"], ts, note="max-drawdown halt")
        self.pending.clear()
        self.wpending.clear()
        self.legs.clear()
        for j in np.flatnonzero(br.qty != 0):
            j = int(j)
            q = br.qty[j]
            br.place(self.order_id(j, t_us, 1), self.symbols[j], "sell" if q > 0 else "buy", "market", abs(q), ts,
                     signal_time=ts, reason="halt")
        self.event("critical", "halt", f"max-drawdown halt: drawdown {dd:.2%} reached -{self.cfg.max_drawdown:.2%}; "
                   "closing every position at the next open, no trading after", ts, drawdown=dd)

    def _fill_halt(self, o, has, ts: str) -> None:
        br = self.broker
        halt = {x["symbol"]: x for x in br.orders.values() if x["reason"] == "halt"}
        for j in range(self.N):
            x = halt.get(self.symbols[j])
            if x is None:
                continue
            px = o[j] if has[j] else self.last_close[j]
            br.fill(x, br.remaining(x), br.market_price(x["side"], px), ts)
        self.halt_pending, self.halted = False, True
        self.event("critical", "state", "trading halted: every position closed", ts)


def _nan_list(a: np.ndarray) -> list:
    return [None if x != x else x for x in a.tolist()]
