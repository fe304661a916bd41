"""The fast path of a sweep: the targets-form simulation of :mod:`.engine` compiled with numba.

:func:`simulate_targets` gives what :func:`.engine.simulate` gives for the metrics (the equity
curve, the gross exposure, every trade's P&L and return in (entry bar, symbol) order), for every
option of the per-symbol signal form: next-open fills with slippage and commission, the three
sizings, whole or fractional shares, the cash cap, ``max_position_pct``, shorts and reversals,
ATR stops and targets, the max-drawdown halt, and ragged multi-symbol panels. It does not build
the fill and trade dicts (the backtest's trades.parquet columns), which a sweep never needs.

Why it is fast: :func:`.engine._run` is a Python loop over fill events (about 1 ms for 1,259
daily bars of one symbol); :func:`_kernel` runs the same rules once per bar and symbol in
machine code (tens of microseconds there), compiled once and cached on disk (numba
``cache=True``, in ``__pycache__``). The portfolio sums that decide a fill (the equity at an
open) add the positions in symbol order; the per-bar equity curve is then computed with the
very numpy expression the engine uses, so metrics that compare equities (drawdown duration,
the halt) see identical numbers. Equality with the engine on every metric to 1e-9 and the same
number of trades is proven by ``tests/optimize/test_fast.py`` (hypothesis: random bars, ragged
panels, costs, sizings, shorts, stops, halts).

:data:`AVAILABLE` is False when numba cannot be imported; :func:`.evaluate.run_signals` then
uses the event engine, which gives the same results.
"""
from __future__ import annotations

import numpy as np

from .engine import DEFAULT_FRACTION, SIZINGS, Config, Panel
from .metrics import equity_formulas, ordered, trade_formulas

try:
    from numba import njit
    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is a core dependency; the engine is the fallback
    AVAILABLE = False


def jit(fn):
    """``fn`` compiled with numba (nogil, cached on disk), or ``fn`` itself without numba."""
    return njit(cache=True, nogil=True)(fn) if AVAILABLE else fn

NO_FILL = 2  # fill_tgt value: no signal fill of that symbol on that bar


def _fill(j, q, price, cash, com, qty):
    """Trade ``q`` (signed) of symbol ``j`` at ``price`` paying the commission (engine
    ``_Ledger.fill``); returns the new cash."""
    c = abs(q) * price * com
    cash -= q * price + c
    qty[j] += q
    if abs(qty[j]) < 1e-12 * max(1.0, abs(q)):
        qty[j] = 0.0
    return cash


def _record(j, pnl, pos, trades, nt):
    """Trade row ``nt``: the open position of ``j`` (entry bar, symbol) with ``pnl``, and its
    return pct / 100 exactly as the engine computes it; the position is then closed."""
    p_open, p_qty, p_price, p_bar, p_com = pos
    tr_bar, tr_sym, tr_pnl, tr_ret = trades
    tr_bar[nt] = p_bar[j]
    tr_sym[nt] = j
    tr_pnl[nt] = pnl
    tr_ret[nt] = 100.0 * pnl / (abs(p_qty[j]) * p_price[j]) / 100
    p_open[j] = False


def _close(j, price, cash, com, qty, pos, trades, nt):
    """Close the open position of ``j`` at ``price`` (engine ``close_pos``) as trade row ``nt``;
    returns the new cash."""
    p_open, p_qty, p_price, p_bar, p_com = pos
    pq = p_qty[j]
    cash = _fill(j, -pq, price, cash, com, qty)
    _record(j, pq * (price - p_price[j]) - p_com[j] - abs(pq) * price * com, pos, trades, nt)
    return cash


def _kernel(o, hi, lo, close_ff, atrs, targets, has_bar, cash0, com, slip, sizing, fraction, stop_k,
            sl_atr, tp_atr, max_pos, whole, halt_bar):
    """The rules of :func:`.engine._run`, one bar at a time (module docstring of :mod:`.engine`).

    Arrays (T, N): ``o hi lo`` with NaN where a symbol has no bar, ``close_ff`` closes carried
    forward (NaN before a symbol's first bar), ``atrs``, ``targets`` int8, ``has_bar`` bool.
    ``sizing`` 0 equal-weight, 1 fixed-fraction, 2 atr-risk; ``sl_atr``/``tp_atr`` 0 = off;
    ``halt_bar`` T = no halt. Returns (cash (T,), qty (T, N) after each bar, trade entry bars,
    trade symbols, trade pnl, trade returns (fractions)), trades in the engine's append order."""
    T, N = o.shape
    # signal fills: a target change on a symbol's bar fills at that symbol's next bar
    fill_tgt = np.full((T, N), NO_FILL, dtype=np.int8)
    fill_sig = np.zeros((T, N), dtype=np.int64)
    n_fills = 0
    for j in range(N):
        prev_t = 0
        prev_row = -1
        for t in range(T):
            if not has_bar[t, j]:
                continue
            if prev_row >= 0 and targets[prev_row, j] != prev_t:
                fill_tgt[t, j] = targets[prev_row, j]
                fill_sig[t, j] = prev_row
                n_fills += 1
            if prev_row >= 0:
                prev_t = targets[prev_row, j]
            prev_row = t
    cap = n_fills + N + 1
    tr_bar = np.empty(cap, dtype=np.int64)
    tr_sym = np.empty(cap, dtype=np.int64)
    tr_pnl = np.empty(cap)
    tr_ret = np.empty(cap)
    trades = (tr_bar, tr_sym, tr_pnl, tr_ret)
    nt = 0

    cash = cash0
    qty = np.zeros(N)
    p_open = np.zeros(N, dtype=np.bool_)
    p_qty = np.zeros(N)  # signed
    p_price = np.zeros(N)
    p_bar = np.zeros(N, dtype=np.int64)
    p_com = np.zeros(N)
    p_stops = np.zeros(N, dtype=np.bool_)
    p_sl = np.full(N, np.nan)
    p_tp = np.full(N, np.nan)
    pos = (p_open, p_qty, p_price, p_bar, p_com)
    cash_rec = np.empty(T)
    qty_rec = np.empty((T, N))
    stop_on = sl_atr > 0 or tp_atr > 0
    end = min(halt_bar, T)

    for b in range(end):
        # exits first (the close half of a reversal included)
        any_entry = False
        for j in range(N):
            tgt = fill_tgt[b, j]
            if tgt == NO_FILL:
                continue
            if p_open[j] and np.sign(p_qty[j]) != tgt:
                side = -np.sign(p_qty[j])
                price = o[b, j] * (1 + slip * side)
                cash = _close(j, price, cash, com, qty, pos, trades, nt)
                nt += 1
            if tgt != 0 and not p_open[j]:
                any_entry = True
        # then entries, sized on the equity at this open (after the exits)
        if any_entry:
            equity = 0.0
            for j in range(N):
                if qty[j] != 0.0:
                    m = o[b, j]
                    if np.isnan(m):
                        m = close_ff[b - 1, j] if b > 0 else 0.0
                    equity += qty[j] * m
            equity = cash + equity
            for j in range(N):
                tgt = fill_tgt[b, j]
                if tgt == NO_FILL or tgt == 0 or p_open[j]:
                    continue
                direction = 1 if tgt > 0 else -1
                price = o[b, j] * (1 + slip * direction)
                a = atrs[fill_sig[b, j], j]
                if sizing == 0:
                    value = equity / N
                elif sizing == 1:
                    value = fraction * equity
                else:
                    if not a > 0:
                        continue
                    value = fraction * equity / (stop_k * a) * price
                wanted = min(value, max_pos / 100 * equity)
                value = min(wanted, cash)
                q = value / (price * (1 + com))
                if whole:
                    q = np.floor(q + 1e-9)
                if not q > 0:
                    continue
                sq = direction * q
                cash = _fill(j, sq, price, cash, com, qty)
                p_open[j] = True
                p_qty[j] = sq
                p_price[j] = price
                p_bar[j] = b
                p_com[j] = q * price * com
                p_stops[j] = stop_on and a > 0
                if p_stops[j]:
                    p_sl[j] = price - direction * sl_atr * a if sl_atr > 0 else np.nan
                    p_tp[j] = price + direction * tp_atr * a if tp_atr > 0 else np.nan
        # then stops and targets within the bar
        if stop_on:
            for j in range(N):
                if not (p_open[j] and p_stops[j]):
                    continue
                d = 1 if p_qty[j] > 0 else -1
                sl, tp = p_sl[j], p_tp[j]
                has_sl, has_tp = not np.isnan(sl), not np.isnan(tp)
                lo_b, hi_b = lo[b, j], hi[b, j]
                hit_sl = has_sl and ((lo_b <= sl) if d > 0 else (hi_b >= sl))
                hit_tp = has_tp and ((hi_b >= tp) if d > 0 else (lo_b <= tp))
                if not (hit_sl or hit_tp):
                    continue
                op = o[b, j]
                first = b == p_bar[j]
                if not first and has_sl and (op - sl) * d <= 0:
                    price = op * (1 - d * slip)
                elif not first and has_tp and (op - tp) * d >= 0:
                    price = op
                elif hit_sl:
                    price = sl * (1 - d * slip)
                else:
                    price = tp
                cash = _close(j, price, cash, com, qty, pos, trades, nt)
                nt += 1
        cash_rec[b] = cash
        qty_rec[b] = qty

    if halt_bar < T:  # the halt: every position closed at the next open
        for j in range(N):
            if not p_open[j]:
                continue
            side = -np.sign(p_qty[j])
            px = o[halt_bar, j]
            if np.isnan(px):
                px = close_ff[halt_bar - 1, j]
            price = px * (1 + slip * side)
            cash = _close(j, price, cash, com, qty, pos, trades, nt)
            nt += 1
        for b in range(halt_bar, T):
            cash_rec[b] = cash
            qty_rec[b] = qty

    last = T - 1
    for j in range(N):  # still open at the end: marked at the last close
        if p_open[j]:
            _record(j, p_qty[j] * (close_ff[last, j] - p_price[j]) - p_com[j], pos, trades, nt)
            nt += 1
    return cash_rec, qty_rec, tr_bar[:nt], tr_sym[:nt], tr_pnl[:nt], tr_ret[:nt]


def _stats(equity, pnl, ret):
    """The sums :func:`.metrics.equity_formulas` and :func:`.metrics.trade_formulas` need, in one
    pass each (two-pass mean and deviations, as numpy's ``std``): (n returns, total return, mean
    return, std ddof 1, mean squared negative return, max drawdown, its duration in bars; then
    n trades, wins, losses, win sum, loss sum, pnl mean, pnl std ddof 1, return max, min, mean)."""
    T = equity.size
    n = T - 1
    total = equity[T - 1] / equity[0] - 1.0
    s = 0.0
    for t in range(1, T):
        s += equity[t] / equity[t - 1] - 1.0
    mean = s / n if n > 0 else np.nan
    dev = 0.0
    down = 0.0
    for t in range(1, T):
        r = equity[t] / equity[t - 1] - 1.0
        dev += (r - mean) ** 2
        if r < 0.0:
            down += r * r
    sd = np.sqrt(dev / (n - 1)) if n > 1 else np.nan
    down_sq = down / n if n > 0 else np.nan
    peak, peak_i, mdd, longest, under = equity[0], 0, 0.0, 0, False
    for t in range(T):
        if equity[t] < peak:
            under = True
        else:
            if under:
                longest = max(longest, t - peak_i)
            under = False
            peak, peak_i = equity[t], t
        mdd = min(mdd, equity[t] / peak - 1.0)
    if under:
        longest = max(longest, T - 1 - peak_i)
    k = pnl.size
    n_w, n_l, w_sum, l_sum, p_sum, r_sum = 0, 0, 0.0, 0.0, 0.0, 0.0
    r_max, r_min = -np.inf, np.inf
    for i in range(k):
        p = pnl[i]
        p_sum += p
        if p > 0:
            n_w += 1
            w_sum += p
        elif p < 0:
            n_l += 1
            l_sum += p
        r_sum += ret[i]
        r_max = max(r_max, ret[i])
        r_min = min(r_min, ret[i])
    p_mean = p_sum / k if k else 0.0
    p_dev = 0.0
    for i in range(k):
        p_dev += (pnl[i] - p_mean) ** 2
    p_sd = np.sqrt(p_dev / (k - 1)) if k > 1 else 0.0
    return (n, total, mean, sd, down_sq, mdd, longest, k, n_w, n_l, w_sum, l_sum, p_mean, p_sd, r_max, r_min,
            r_sum / k if k else 0.0)


_fill, _record, _close, _kernel, _stats = (jit(f) for f in (_fill, _record, _close, _kernel, _stats))


def metrics(equity: np.ndarray, ann: float, exposure: float, pnl: np.ndarray, ret: np.ndarray, bh: float) -> dict:
    """:func:`.metrics.all_metrics` with the sums taken by :func:`_stats` (compiled), the
    formulas shared: the same metrics to about 1e-15 relative (summation order only)."""
    st = _stats(equity, pnl, ret)
    n, total, mean, sd, down_sq, mdd, duration = st[:7]
    return ordered(equity_formulas(float(equity[-1]), total, n, mean, sd, down_sq, mdd, duration, ann),
                   trade_formulas(*st[7:]), exposure, bh)


def _half_sharpe(a, b, n):
    """:func:`.overfit.half_sharpe` for one combination (the same operations)."""
    var = (b - a * a / n) / (n - 1)
    sd = np.sqrt(max(var, 0.0))
    return (a / n) / sd if sd > 1e-15 else 0.0


def _rank_of_best(ins, oos):
    """Rank in ``oos`` of the first maximum of ``ins`` (as :func:`.overfit.cscv_ranks`)."""
    best, best_v = 0, -np.inf
    for k in range(ins.size):
        if ins[k] > best_v:
            best, best_v = k, ins[k]
    ob, less, same = oos[best], 0, 0
    for k in range(oos.size):
        if oos[k] < ob:
            less += 1
        elif oos[k] == ob:
            same += 1
    return less + (same + 1) / 2.0


def cscv_ranks(codes, comp, lo_tab, hi_tab, h, n):
    """:func:`.overfit.cscv_ranks` compiled, identical ranks: each split and its complement are
    handled together (the in-sample Sharpe ratios of one are the out-of-sample ones of the other),
    so every half's Sharpe ratios are computed once, in O(N) memory."""
    full = (1 << h) - 1
    N = lo_tab.shape[2]
    rank = np.empty(codes.size)
    one, two = np.empty(N), np.empty(N)
    for i in range(codes.size):
        j = comp[i]
        if j < i:
            continue
        for row, c in ((one, codes[i]), (two, codes[j])):
            lo, hi = c & full, c >> h
            for k in range(N):
                row[k] = _half_sharpe(lo_tab[0, lo, k] + hi_tab[0, hi, k], lo_tab[1, lo, k] + hi_tab[1, hi, k], n)
        rank[i] = _rank_of_best(one, two)
        rank[j] = _rank_of_best(two, one)
    return rank


_half_sharpe, _rank_of_best, cscv_ranks = jit(_half_sharpe), jit(_rank_of_best), jit(cscv_ranks)


_WARM = False


def warm() -> None:
    """Load the compiled kernels (from numba's disk cache, or compile them the first time) before
    the first combination, and before worker processes are forked so that they inherit them.

    numba's first load imports its numpy-math registry, which imports ``scipy.linalg`` only to
    find a BLAS for ``np.dot`` (0.2 to 0.4 s of start-up); these kernels use no BLAS, so that
    import is skipped while they load (when scipy.linalg is not loaded already) and allowed again
    right after. Does nothing without numba."""
    global _WARM
    if _WARM or not AVAILABLE:
        return
    import sys

    block = "scipy.linalg.cython_blas" not in sys.modules
    if block:
        sys.modules["scipy.linalg.cython_blas"] = None  # an ImportError for numba's BLAS probe
    try:
        one = np.ones((1, 1))
        out = _kernel(one, one, one, one, one, np.zeros((1, 1), dtype=np.int8), np.ones((1, 1), dtype=np.bool_),
                      1.0, 0.0, 0.0, 0, 0.0, 2.0, 0.0, 0.0, 100.0, True, 1)
        _stats(out[0], out[4], out[5])
    finally:
        if block:
            del sys.modules["scipy.linalg.cython_blas"]
    _WARM = True


class Frozen:
    """What the kernel needs from a panel that no combination changes: ``o hi lo`` (T, N),
    ``close_ff`` and its NaN-as-0 copy ``marks``, ``has_bar``; built once per sweep."""

    def __init__(self, panel: Panel):
        from .engine import ffill

        warm()

        self.o, self.hi, self.lo = (np.ascontiguousarray(a) for a in (panel.open, panel.high, panel.low))
        self.close_ff = np.ascontiguousarray(ffill(panel.close))
        self.marks = np.nan_to_num(self.close_ff)
        self.has_bar = np.ascontiguousarray(~np.isnan(panel.close))


def simulate_targets(frozen: Frozen, targets: np.ndarray, atrs: np.ndarray, cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The engine's :func:`.engine.simulate` for the metrics: returns (equity (T,) currency at
    each close, gross exposure (T,) currency, trade pnl (currency, net), trade returns
    (fractions of entry value)), the trades ordered by entry bar then symbol, open trades marked
    at the last close. ``targets`` (T, N) int8, ``atrs`` (T, N). With ``cfg.max_drawdown`` the
    run is repeated halting at the bar after the first breach, as the engine does."""
    fraction = cfg.fraction if cfg.fraction is not None else DEFAULT_FRACTION[cfg.sizing]
    args = (frozen.o, frozen.hi, frozen.lo, frozen.close_ff, np.ascontiguousarray(atrs),
            np.ascontiguousarray(targets, dtype=np.int8), frozen.has_bar, float(cfg.cash), float(cfg.commission),
            cfg.slippage_bps / 1e4, SIZINGS.index(cfg.sizing), float(fraction or 0.0),
            float(cfg.stop_loss_atr if cfg.stop_loss_atr is not None else 2.0), float(cfg.stop_loss_atr or 0.0),
            float(cfg.take_profit_atr or 0.0), float(cfg.max_position_pct), bool(cfg.whole_shares))
    T = targets.shape[0]
    out = _kernel(*args, T)
    equity, gross = _marked(frozen, out)
    if cfg.max_drawdown is not None:
        peak = np.maximum.accumulate(equity)
        breach = np.flatnonzero(equity / peak - 1.0 <= -cfg.max_drawdown)
        if breach.size and int(breach[0]) + 1 < T:
            out = _kernel(*args, int(breach[0]) + 1)
            equity, gross = _marked(frozen, out)
    bar, sym, pnl, ret = out[2:]
    order = np.lexsort((sym, bar))
    return equity, gross, pnl[order], ret[order]


def _marked(frozen: Frozen, out: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Equity and gross exposure at each close, with the engine's own expression
    (:meth:`.engine._Ledger.result`)."""
    cash, qty = out[0], out[1]
    value = qty * frozen.marks
    return cash + value.sum(axis=1), np.abs(value).sum(axis=1)
