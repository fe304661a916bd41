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

Portfolio weights (:func:`simulate_weights`, the ``weights`` form of SLICES.md contract 5):

* Row t of the weights (after bar t's close) is the target fraction of equity per symbol; NaN
  means no change. A symbol rebalances to its latest non-NaN weight at its first bar after row t
  (its next bar's open; a symbol without a bar at t+1 keeps the order pending until its next bar,
  a newer row replacing a pending one). At that open the equity E is cash + positions marked at
  the open (the last close for symbols without a bar then); the target quantity is w x E / open
  (whole shares: rounded toward zero). Trades smaller than ``rebalance_threshold`` x E are skipped.
* Sells first (at open x (1 - slippage)), then buys (at open x (1 + slippage)); when the buys
  and their commission cost more than the buying power (cash + (leverage - 1) x E) every buy of
  that bar is scaled down by the same factor (whole shares: then rounded down), so with leverage
  1 cash never goes negative through buying. Commission as for signals.
* Trades are booked FIFO: a fill that adds to a position (or opens one) opens a lot; a fill that
  reduces it closes the oldest lots first, and each lot closed wholly or partly is one trade row
  with the quantity closed (``exit_reason`` ``signal``; ``reverse`` when the fill goes through
  zero; ``halt``). Lots still open at the end are open trades.

The signal form runs one kernel a chunk of bars at a time (:mod:`.sim`: compiled with numba for
large runs, the same code as Python for small ones); the weights form is a Python loop once per
rebalancing bar, everything per symbol numpy.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .sim import DEFAULT_FRACTION, REASONS, SIZINGS, Fills, Simulator, Skips, Trades, ffill
from .strategies import Strategy, StrategyError, atr, call_targets, call_weights, fmt_bar_time


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
        if not (1 <= self.leverage and math.isfinite(self.leverage)):
            raise ValueError(f"--leverage must be a finite number >= 1 (got {self.leverage})")
        if not 0 <= self.rebalance_threshold < 1:
            raise ValueError(f"--rebalance-threshold is a fraction of equity in [0, 1) (got {self.rebalance_threshold})")

    def check_form(self, form: str, label: str) -> None:
        """Raise ValueError when an option of the other strategy form is set: sizing options and
        stops belong to the ``targets`` form, ``leverage`` and ``rebalance_threshold`` to ``weights``."""
        if form == "weights":
            given = [name for name, v, default in (
                ("--sizing", self.sizing, "equal-weight"), ("--fraction", self.fraction, None),
                ("--stop-loss-atr", self.stop_loss_atr, None), ("--take-profit-atr", self.take_profit_atr, None),
                ("--max-position-pct", self.max_position_pct, 100.0)) if v != default]
        else:
            given = [name for name, v, default in (("--leverage", self.leverage, 1.0),
                                                   ("--rebalance-threshold", self.rebalance_threshold, 0.0)) if v != default]
        if given:
            other = "targets (per-symbol signal)" if form == "weights" else "weights (portfolio)"
            raise ValueError(f"{given[0]} applies to {other} strategies only; {label} is a {form} strategy")


@dataclass
class Panel:
    """Bars aligned on the union of timestamps: ``timestamps`` (T,) datetime64[us] (UTC);
    ``open high low close volume`` (T, N) float64 with NaN where a symbol has no bar (volume
    None: zeros); ``symbols`` (N,)."""

    symbols: list[str]
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray | None = None

    def symbol_bars(self, j: int, rows: np.ndarray) -> dict:
        """One symbol's bars as a strategy file receives them (SLICES.md contract 5): read-only
        1-D arrays ``open high low close volume`` float64 and ``timestamp`` datetime64[us] at
        ``rows`` (the rows where the symbol has a bar), and ``symbol`` (str)."""
        vol = self.volume[rows, j] if self.volume is not None else np.zeros(rows.size)
        out = {k: getattr(self, k)[rows, j] for k in ("open", "high", "low", "close")}
        out |= {"volume": vol, "timestamp": self.timestamps[rows]}
        for v in out.values():
            v.flags.writeable = False
        return out | {"symbol": self.symbols[j]}

    def as_dict(self, rows: int | None = None) -> dict:
        """The panel as a weights strategy receives it (SLICES.md contract 5): read-only views
        ``open high low close volume`` (T, N), ``timestamp`` (T,), ``symbols`` (list of N str);
        with ``rows``, only the first ``rows`` rows (a truncated history)."""
        T = self.close.shape[0] if rows is None else rows
        vol = self.volume if self.volume is not None else np.zeros_like(self.close)
        out = {}
        for k, v in (("open", self.open), ("high", self.high), ("low", self.low), ("close", self.close),
                     ("volume", vol), ("timestamp", self.timestamps)):
            view = v[:T]
            view.flags.writeable = False
            out[k] = view
        return out | {"symbols": list(self.symbols)}

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> "Panel":
        """Build from the long frame ``symbol timestamp open high low close [volume]``."""
        symbols = sorted(bars["symbol"].unique().to_list())
        ts = bars["timestamp"].unique().sort()
        t_idx = ts.search_sorted(bars["timestamp"]).to_numpy()
        s_idx = bars["symbol"].replace_strict(symbols, list(range(len(symbols))), return_dtype=pl.Int64).to_numpy()
        mats = {}
        for col in ("open", "high", "low", "close", "volume"):
            if col not in bars.columns:
                continue
            m = np.full((ts.len(), len(symbols)), np.nan)
            m[t_idx, s_idx] = bars[col].to_numpy()
            mats[col] = m
        return cls(symbols, ts.dt.replace_time_zone(None).to_numpy(), **mats)


@dataclass
class Result:
    """Outputs of :func:`simulate` and :func:`simulate_weights`.

    ``equity`` ``cash`` ``gross`` (T,) currency at each close; ``qty`` (T, N) signed position
    after each bar; ``sym_cash`` (T, N) cumulative cash flow of each symbol's fills (negative =
    spent), so ``sym_cash + qty x close`` is the symbol's P&L; ``fills`` :class:`.sim.Fills`
    (bar, symbol, quantity signed, price, commission, reason; execution order); ``trades``
    :class:`.sim.Trades` (the trades.parquet columns, times as bar indices); ``halted_at`` bar
    index of the halt fill or None; ``skipped`` :class:`.sim.Skips`, entries not taken,
    ``(bar, symbol index, reason)`` with reason ``no cash`` (cash below the wanted size),
    ``below one share`` (the wanted size buys less than one share) or ``no ATR`` (atr-risk
    sizing before the ATR exists)."""

    equity: np.ndarray
    cash: np.ndarray
    gross: np.ndarray
    qty: np.ndarray
    sym_cash: np.ndarray
    close_ff: np.ndarray
    fills: Fills
    trades: Trades
    halted_at: int | None = None
    skipped: Skips = field(default_factory=Skips.empty)
    notes: list[str] = field(default_factory=list)


def symbol_targets(strat: Strategy, params: dict, bars: dict, allow_short: bool, atr_window: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One symbol's targets (n,) int8 on its own ``bars`` (SLICES.md contract 5 dict, e.g. from
    :meth:`Panel.symbol_bars`; :func:`.strategies.call_targets`: StrategyError on a bad return or
    an exception inside), short targets set to 0 (flat) unless ``allow_short``; and its ATR (n,)
    over ``atr_window`` bars, or None when ``atr_window`` is None (no stop or atr-risk sizing)."""
    tgt = call_targets(strat, bars, params)
    if not allow_short:
        tgt = np.maximum(tgt, 0).astype(np.int8)
    a = atr(bars["high"], bars["low"], bars["close"], atr_window) if atr_window is not None else None
    return tgt, a


def compute_targets(panel: Panel, strat: Strategy, params: dict, allow_short: bool, atr_window: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, N) int8 and ATR (T, N) float, each symbol computed on its own bars only
    (:func:`symbol_targets`).

    Rows where a symbol has no bar repeat its previous target (no order can come from them).
    Short targets become 0 (flat) unless ``allow_short``.
    """
    T, N = panel.close.shape
    targets = np.zeros((T, N), dtype=np.int8)
    atrs = np.full((T, N), np.nan)
    for j in range(N):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        tgt, a = symbol_targets(strat, params, panel.symbol_bars(j, rows), allow_short, atr_window)
        full = np.full(T, np.nan)
        full[rows] = tgt
        targets[:, j] = np.nan_to_num(ffill(full[:, None])[:, 0], nan=0.0).astype(np.int8)
        atrs[rows, j] = a
    return targets, atrs


def compute_weights(panel: Panel, strat: Strategy, params: dict, allow_short: bool, leverage: float) -> tuple[np.ndarray, list[str]]:
    """Weights (T, N) float64 from a weights strategy (:func:`.strategies.call_weights`), NaN =
    no change. Without ``allow_short`` negative weights become 0 (one warning with the count).
    A row whose sum of |weights| exceeds ``leverage`` (+1e-9) is a StrategyError naming its time.
    Returns (weights, warnings)."""
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
        raise StrategyError(f"{strat.label}: weights row {t} ({fmt_bar_time(panel.timestamps[t])}): sum of |weights| "
                            f"{gross[t]:.6g} exceeds {leverage:g} ({how})")
    return w, warnings


def check_lookahead(panel: Panel, strat: Strategy, params: dict, samples: int = 20, last: int = 3) -> str:
    """Recompute the strategy on histories truncated at about ``samples`` evenly spaced bars plus
    the ``last`` bars before the end (per symbol for the targets form, on the whole panel for the
    weights form) and compare with the values computed on all bars. Raises StrategyError
    ``<strategy> looks ahead: <SYMBOL> <time>: target 1 with bars up to then, 0 with all bars``
    at the first bar whose value differs; returns a ``note:`` line when none does. Weights are
    compared with a relative tolerance of 1e-9 (NaN equal to NaN)."""
    checked = 0
    if strat.form == "targets":
        for j, sym in enumerate(panel.symbols):
            checked += check_lookahead_symbol(strat, params, panel.symbol_bars(j, np.flatnonzero(~np.isnan(panel.close[:, j]))),
                                              samples, last)
    else:
        full = call_weights(strat, panel.as_dict(), params)
        for k in _cuts(panel.close.shape[0], strat, params, samples, last):
            part = call_weights(strat, panel.as_dict(rows=k + 1), params)
            checked += 1
            same = np.isclose(part, full[: k + 1], rtol=1e-9, atol=1e-12, equal_nan=True)
            if not same.all():
                t, j = (int(x) for x in np.argwhere(~same)[0])
                raise StrategyError(_lookahead_msg(strat, panel.symbols[j], panel.timestamps, t, k,
                                                   f"weight {part[t, j]:g}", f"{full[t, j]:g}"))
    return lookahead_note(strat, checked, len(panel.symbols))


def lookahead_note(strat: Strategy, checked: int, n_symbols: int) -> str:
    """The ``note:`` line of a lookahead check that found nothing."""
    return (f"note: --check-lookahead: {strat.label}: no lookahead found ({checked:,} truncated histories, "
            f"{n_symbols:,} symbol(s))")


def _cuts(n: int, strat: Strategy, params: dict, samples: int, last: int) -> np.ndarray:
    """Where :func:`check_lookahead` cuts a history of ``n`` bars: ``samples`` evenly spaced bars
    from the strategy's warm-up on, plus the ``last`` bars before the end."""
    need = max(strat.needed_bars(params), 1)
    if n <= 1:
        return np.array([], int)
    even = np.linspace(min(need, n) - 1, n - 1, samples).round().astype(int)
    return np.unique(np.concatenate((even, np.arange(n - 1 - last, n - 1))).clip(0, n - 2))


def check_lookahead_symbol(strat: Strategy, params: dict, bars: dict, samples: int = 20, last: int = 3) -> int:
    """:func:`check_lookahead` for one symbol of a targets strategy (``bars``: its contract-5
    dict); returns the number of truncated histories checked, raises StrategyError as it does."""
    full = call_targets(strat, bars, params)
    checked = 0
    for k in _cuts(bars["close"].size, strat, params, samples, last):
        part = call_targets(strat, {key: (v[: k + 1] if key != "symbol" else v) for key, v in bars.items()}, params)
        checked += 1
        diff = np.flatnonzero(part != full[: k + 1])
        if diff.size:
            d = int(diff[0])
            raise StrategyError(_lookahead_msg(strat, bars["symbol"], bars["timestamp"], d, k, f"target {part[d]}", f"{full[d]}"))
    return checked


def _lookahead_msg(strat: Strategy, sym: str, stamps: np.ndarray, d: int, k: int, got: str, want: str) -> str:
    cut = "" if d == k else f" (history cut at {fmt_bar_time(stamps[k])})"
    return f"{strat.label} looks ahead: {sym} {fmt_bar_time(stamps[d])}: {got} with bars up to then, {want} with all bars{cut}"


def simulate(panel: Panel, targets: np.ndarray, atrs: np.ndarray, cfg: Config, chunk_rows: int | None = None,
             compiled: bool | None = None) -> Result:
    """Run the portfolio on a whole panel (:class:`.sim.Simulator`, ``chunk_rows`` bars at a
    time, default all; ``compiled`` as there); with ``cfg.max_drawdown`` trading halts after the
    first breach.

    ``targets`` (T, N) int8 in {-1, 0, 1} (target after each bar's close); ``atrs`` (T, N) ATR
    on each bar (used for stops and atr-risk sizing). See the module docstring for the rules."""
    T, N = panel.close.shape
    sim = Simulator(T, N, cfg, compiled)
    step = T if chunk_rows is None else max(1, int(chunk_rows))
    parts = []
    for a in range(0, T, step):
        z = slice(a, a + step)
        parts.append(sim.step(panel.open[z], panel.high[z], panel.low[z], panel.close[z],
                              np.ascontiguousarray(targets[z], dtype=np.int8), atrs[z]))
    fills, trades, skips = sim.finish()
    cash, qty, close_ff, equity = (np.concatenate([p[i] for p in parts]) for i in range(4))
    gross = np.abs(qty * np.nan_to_num(close_ff)).sum(axis=1)
    res = Result(equity, cash, gross, qty, cell_series(fills, fills.flow_after, T, N), close_ff, fills, trades,
                 sim.halt_bar, skips)
    if sim.breach is not None:
        res.notes.append(f"max-drawdown halt: drawdown reached -{cfg.max_drawdown:.2%} on bar {sim.breach}; no trading after")
    return res


def cell_series(fills: Fills, values: np.ndarray, T: int, N: int) -> np.ndarray:
    """(T, N): for each bar and symbol, ``values`` of the symbol's last fill at or before that
    bar (0 before its first fill); ``values`` (len(fills),), e.g. ``fills.flow_after``."""
    out = np.full((T, N), np.nan)
    if len(fills):
        key = fills.bar * N + fills.symbol
        order = np.lexsort((np.arange(key.size), key))
        k = key[order]
        keep = order[np.r_[k[1:] != k[:-1], True]]
        out[fills.bar[keep], fills.symbol[keep]] = values[keep]
    return np.nan_to_num(ffill(np.vstack([np.zeros(N), out]))[1:])


def simulate_weights(panel: Panel, weights: np.ndarray, cfg: Config) -> Result:
    """Run the portfolio on target weights (T, N) float64 (fractions of equity after each bar's
    close; NaN = no change), e.g. from :func:`compute_weights`; with ``cfg.max_drawdown``, run
    again halting after the first breach. Rules in the module docstring ("Portfolio weights").
    Fills have reason ``rebalance`` (or ``halt``)."""
    return _with_halt(lambda halt_bar: _run_weights(panel, weights, cfg, halt_bar), cfg)


def _with_halt(run, cfg: Config) -> Result:
    res = run(None)
    if cfg.max_drawdown is not None:
        peak = np.maximum.accumulate(res.equity)
        breach = np.flatnonzero(res.equity / peak - 1.0 <= -cfg.max_drawdown)
        if breach.size:
            k = int(breach[0])
            if k + 1 < len(res.equity):
                res = run(k + 1)
            res.notes.append(f"max-drawdown halt: drawdown reached -{cfg.max_drawdown:.2%} on bar {k}; no trading after")
    return res


class _Ledger:
    """Cash, signed quantities and each symbol's cumulative cash flow, the fills, and their values
    recorded after every bar that had a fill (forward-filled into per-bar series by :meth:`series`)."""

    def __init__(self, T: int, N: int, cash: float, commission: float):
        self.cash0 = self.cash = cash
        self.com = commission
        self.qty = np.zeros(N)
        self.flow = np.zeros(N)  # cumulative cash flow per symbol
        self.cash_rec = np.full(T, np.nan)
        self.qty_rec = np.full((T, N), np.nan)
        self.flow_rec = np.full((T, N), np.nan)
        self.fills: list[tuple] = []  # Fills columns, one tuple per fill

    def fill(self, b: int, j: int, q: float, price: float, reason: str) -> None:
        """Trade ``q`` (signed) of symbol ``j`` at ``price`` on bar ``b``, paying the commission."""
        c = abs(q) * price * self.com
        self.cash -= q * price + c
        self.flow[j] -= q * price + c
        self.qty[j] += q
        if abs(self.qty[j]) < 1e-12 * max(1.0, abs(q)):
            self.qty[j] = 0.0
        self.fills.append((b, j, q, price, c, REASONS.index(reason), self.qty[j], self.flow[j]))

    def record(self, b: int) -> None:
        self.cash_rec[b] = self.cash
        self.qty_rec[b] = self.qty
        self.flow_rec[b] = self.flow

    def result(self, close_ff: np.ndarray, trades: list[tuple], halt_bar: int | None) -> Result:
        """Per-bar cash, positions and equity (marked at the carried-forward closes) as a Result."""
        N = self.qty.size
        cash_s = ffill(np.concatenate(([self.cash0], self.cash_rec))[:, None])[1:, 0]
        qty_m = np.nan_to_num(ffill(np.vstack([np.zeros(N), self.qty_rec]))[1:])
        flow_m = np.nan_to_num(ffill(np.vstack([np.zeros(N), self.flow_rec]))[1:])
        value = qty_m * np.nan_to_num(close_ff)
        equity = cash_s + value.sum(axis=1)
        gross = np.abs(value).sum(axis=1)
        return Result(equity, cash_s, gross, qty_m, flow_m, close_ff, _columns(Fills, self.fills), _columns(Trades, trades),
                      halt_bar)


def _columns(kind, rows: list[tuple]):
    """Typed records of ``kind`` (:class:`.sim.Fills` or :class:`.sim.Trades`) from row tuples."""
    if not rows:
        return kind.empty()
    empty = kind.empty()
    cols = list(zip(*rows))
    return kind(*(np.array(c, dtype=getattr(empty, f).dtype) for c, f in zip(cols, empty.__dataclass_fields__)))


def _run_weights(panel: Panel, weights: np.ndarray, cfg: Config, halt_bar: int | None) -> Result:
    T, N = panel.close.shape
    o = panel.open
    close_ff = ffill(panel.close)
    slip = cfg.slippage_bps / 1e4
    com = cfg.commission

    # the order of each symbol at each bar: its latest non-NaN weight since its previous bar
    orders = np.full((T, N), np.nan)
    for j in range(N):
        w_rows = np.flatnonzero(~np.isnan(weights[:, j]))
        bars = np.flatnonzero(~np.isnan(panel.close[:, j]))
        k = np.searchsorted(bars, w_rows, side="right")
        ok = k < bars.size  # a weight after the symbol's last bar is never filled
        fill_rows, w_rows = bars[k[ok]], w_rows[ok]
        if not fill_rows.size:
            continue
        latest = np.append(fill_rows[1:] != fill_rows[:-1], True)
        orders[fill_rows[latest], j] = weights[w_rows[latest], j]

    book = _Ledger(T, N, cfg.cash, com)
    qty = book.qty
    lots: list[deque] = [deque() for _ in range(N)]  # open lots per symbol: [signed qty, price, bar, commission left]
    trades: list[tuple] = []

    def trade(b: int, j: int, q: float, price: float, reason: str) -> None:
        crossing = qty[j] != 0 and np.sign(qty[j]) != np.sign(q) and abs(q) > abs(qty[j])
        book.fill(b, j, q, price, "halt" if reason == "halt" else "rebalance")
        _book_lots(lots[j], trades, j, b, q, price, com, "reverse" if crossing and reason != "halt" else reason)

    for b in np.flatnonzero((~np.isnan(orders)).any(axis=1)):
        b = int(b)
        if halt_bar is not None and b >= halt_bar:
            break
        js = np.flatnonzero(~np.isnan(orders[b]))
        mark = np.where(np.isnan(o[b]), close_ff[b - 1], o[b])  # b >= 1: an order comes from an earlier row
        equity = max(book.cash + float(np.nansum(qty * mark)), 0.0)
        px = o[b, js]
        want = orders[b, js] * equity / px
        if cfg.whole_shares:
            want = np.trunc(want + np.sign(want) * 1e-9)
        delta = want - qty[js]
        keep = np.abs(delta) > 1e-12 * np.maximum(1.0, np.abs(qty[js]))
        if cfg.rebalance_threshold > 0:
            keep &= np.abs(delta) * px >= cfg.rebalance_threshold * equity
        for j, d in zip(js[keep & (delta < 0)], delta[keep & (delta < 0)]):  # sells first
            trade(b, int(j), float(d), o[b, j] * (1 - slip), "signal")
        buy = keep & (delta > 0)
        if buy.any():
            bj, bq = js[buy], delta[buy]
            price = px[buy] * (1 + slip)
            cost = float(np.sum(bq * price * (1 + com)))
            power = book.cash + (cfg.leverage - 1.0) * equity
            if cost > power:  # scale every buy of this bar down to the buying power
                bq = bq * max(power, 0.0) / cost
                if cfg.whole_shares:
                    bq = np.floor(bq + 1e-9)
            for j, q, p in zip(bj, bq, price):
                if q > 0:
                    trade(b, int(j), float(q), float(p), "signal")
        book.record(b)

    if halt_bar is not None and halt_bar < T:
        for j in np.flatnonzero(qty != 0):
            j = int(j)
            px = o[halt_bar, j] if not np.isnan(o[halt_bar, j]) else close_ff[halt_bar - 1, j]
            trade(halt_bar, j, -float(qty[j]), px * (1 - slip * np.sign(qty[j])), "halt")
        book.record(halt_bar)

    last = T - 1
    for j in range(N):
        px = close_ff[last, j]
        for q, entry, bar, c in lots[j]:
            trades.append(_trade_row(j, q, bar, entry, last, px, q * (px - entry) - c, c, "open", True))
    return book.result(close_ff, trades, halt_bar)


def _book_lots(lots: deque, trades: list[tuple], j: int, b: int, q: float, price: float, com: float, reason: str) -> None:
    """FIFO booking of a fill of ``q`` (signed) at ``price``: it closes the oldest opposite lots
    first, one trade row per lot closed wholly or partly (its share of the lot's entry commission
    plus the exit commission on the quantity closed); what is left opens a new lot."""
    rest = q
    eps = 1e-12 * max(1.0, abs(q))
    while lots and abs(rest) > eps and (lots[0][0] > 0) != (rest > 0):
        lot = lots[0]
        n = min(abs(rest), abs(lot[0]))
        d = 1.0 if lot[0] > 0 else -1.0
        entry_c = lot[3] * n / abs(lot[0])
        exit_c = n * price * com
        trades.append(_trade_row(j, d * n, lot[2], lot[1], b, price, d * n * (price - lot[1]) - entry_c - exit_c,
                                 entry_c + exit_c, reason, False))
        lot[0] -= d * n
        lot[3] -= entry_c
        rest += d * n
        if abs(lot[0]) <= eps:
            lots.popleft()
    if abs(rest) > eps:
        lots.append([rest, price, b, abs(rest) * price * com])


def _trade_row(j: int, q: float, entry_bar: int, entry_price: float, exit_bar: int, exit_price: float, pnl: float,
               commission: float, reason: str, is_open: bool) -> tuple:
    """One trade as a tuple of :class:`.sim.Trades` columns (``q`` signed, times as bar indices)."""
    return (j, q, entry_bar, entry_price, exit_bar, exit_price, pnl, commission, REASONS.index(reason), is_open)
