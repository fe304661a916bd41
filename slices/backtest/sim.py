"""The targets-form simulation, compiled with numba and run over the timeline in chunks.

The rules are those of the module docstring of :mod:`.engine` (next-open fills with slippage and
commission, the three sizings, whole or fractional shares, the cash cap, ``max_position_pct``,
shorts and reversals, ATR stops and targets, the max-drawdown halt). :class:`Simulator` walks
the timeline one chunk of bars at a time: between chunks it carries only the book (cash,
positions, their open trades and stops) and, per symbol, the last close and the last two
targets (a signal on a symbol's bar t fills at its next bar, which may be in the next chunk). So
memory is bounded by a chunk (rows x symbols), not by the whole timeline, and a run gives the
same numbers, bit for bit, whatever the chunk size (``tests/backtest/test_chunked.py``).

Exactness. The equity at an open that sizes an entry is ``cash + nansum(qty x mark)`` summed with
numpy's own pairwise summation (:func:`_pairwise`, numpy's ``pairwise_sum`` in
``numpy/_core/src/umath/loops_utils.h.src``); the equity curve at each close is computed with
numpy on each chunk (``cash + (qty x close).sum(axis=1)``, row by row), so every number equals
what the event engine of the previous releases computed (the golden cases and properties in
``tests/backtest`` are unchanged).

Fills, trades and untaken entries come back as typed, columnar records (:class:`Fills`,
:class:`Trades`, :class:`Skips`: numpy arrays, one :class:`Fill` / :class:`Trade` per index),
never as dicts.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np


REASONS = ("entry", "signal", "reverse", "stop_loss", "take_profit", "halt", "open", "rebalance")
"""Fill and exit reasons; the records store their index (int8)."""
SKIPS = ("no cash", "below one share", "no ATR")
"""Reasons an entry signal was not taken; :class:`Skips` stores their index."""
SIZINGS = ("equal-weight", "fixed-fraction", "atr-risk")
DEFAULT_FRACTION = {"equal-weight": None, "fixed-fraction": 0.10, "atr-risk": 0.01}
NO_FILL = 2  # no signal fill of a symbol on a bar
NEVER = np.iinfo(np.int64).max  # halt bar when there is no halt


COMPILE_CELLS = 150_000
"""Runs of at most this many bars x symbols execute the kernel as plain Python (the same code):
loading numba and its compiled kernel costs about 1.2 s a process (and compiling it, once per
install, about 20 s), more than Python needs for a few years of daily bars of 30-100 symbols."""
_KERNEL = ("_block", "_pairwise", "_fill", "_close", "_chunk")
_COMPILED: dict = {}


def kernel(compiled: bool):
    """The chunk kernel :func:`_chunk`: plain Python, or compiled with numba (nogil, cached on
    disk in ``__pycache__``) together with the functions it calls; the same source either way.
    Without numba the Python one is returned."""
    if not compiled:
        return _chunk
    if not _COMPILED:
        import types

        try:
            from numba import njit  # imported only for a large run (about 0.3 s)
        except ImportError:  # pragma: no cover - numba is a core dependency (pyproject.toml)
            return _chunk
        ns = dict(globals())  # the compiled functions call each other's compiled versions
        for name in _KERNEL:
            f = globals()[name]
            copy = types.FunctionType(f.__code__, ns, name, f.__defaults__, f.__closure__)
            try:
                ns[name] = njit(cache=True, nogil=True)(copy)
            except RuntimeError:  # no writable cache (a read-only install without a user cache): compile per process
                ns[name] = njit(cache=False, nogil=True)(copy)
        _COMPILED["_chunk"] = ns["_chunk"]
    return _COMPILED["_chunk"]


# ----------------------------------------------------------------------------- typed records
def _by_name(record, key):
    """A record's field by name (``fill["price"]``) or position."""
    return getattr(record, key) if isinstance(key, str) else tuple.__getitem__(record, key)


class Fill(NamedTuple):
    """One fill: ``bar`` index, ``symbol`` index, ``quantity`` signed (units), ``price``
    (currency, slippage included), ``commission`` (currency), ``reason`` (one of REASONS).
    ``fill["price"]`` reads a field by name as well as ``fill.price``."""

    bar: int
    symbol: int
    quantity: float
    price: float
    commission: float
    reason: str

    __getitem__ = _by_name


class Trade(NamedTuple):
    """One trade (a trades.parquet row with times as bar indices and the symbol as its index):
    ``side`` "long"/"short", ``quantity`` units (> 0), ``pnl`` and ``commission`` currency (pnl
    net of both fills' commission), ``return_pct`` PERCENT of the entry value, ``exit_reason``
    one of REASONS, ``is_open`` (marked at the last close). ``trade["pnl"]`` works too."""

    symbol: int
    side: str
    quantity: float
    entry_bar: int
    entry_price: float
    exit_bar: int
    exit_price: float
    pnl: float
    return_pct: float
    commission: float
    exit_reason: str
    is_open: bool

    __getitem__ = _by_name


class _Columns:
    """Columnar records: equal-length numpy arrays (the dataclass fields); ``len``, indexing
    (one record, or a slice / index array giving records of the same type), iteration."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def __iter__(self):
        return (self._record(i) for i in range(len(self)))

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            n = len(self)
            if not -n <= i < n:
                raise IndexError(f"{type(self).__name__} index {i} out of range ({n})")
            return self._record(int(i) % n)
        return type(self)(*(getattr(self, f.name)[i] for f in fields(self)))

    def __eq__(self, other) -> bool:
        """Equal to records of the same type with equal arrays, or to a list/tuple of equal records."""
        if isinstance(other, type(self)):
            return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    @classmethod
    def concat(cls, parts: list):
        """One record set from ``parts`` (in order); an empty one from no parts."""
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(eq=False)
class Fills(_Columns):
    """Fills in execution order (N,) arrays: ``bar`` int64, ``symbol`` int64, ``quantity`` f8
    signed, ``price`` f8, ``commission`` f8, ``reason`` int8 (index into REASONS); ``qty_after``
    and ``flow_after`` f8: the symbol's position and cumulative cash flow (negative = spent,
    commission included) right after the fill. ``fills[i]`` is a :class:`Fill`."""

    bar: np.ndarray
    symbol: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    commission: np.ndarray
    reason: np.ndarray
    qty_after: np.ndarray
    flow_after: np.ndarray

    @classmethod
    def empty(cls) -> "Fills":
        i, f = np.empty(0, np.int64), np.empty(0)
        return cls(i, i, f, f, f, np.empty(0, np.int8), f, f)

    def _record(self, i: int) -> Fill:
        return Fill(int(self.bar[i]), int(self.symbol[i]), float(self.quantity[i]), float(self.price[i]),
                    float(self.commission[i]), REASONS[self.reason[i]])


@dataclass(eq=False)
class Trades(_Columns):
    """Trades in the order they closed (open ones last, by symbol) (N,) arrays: ``symbol`` int64,
    ``quantity`` f8 SIGNED (> 0 long), ``entry_bar`` int64, ``entry_price`` f8, ``exit_bar``
    int64, ``exit_price`` f8, ``pnl`` f8, ``commission`` f8, ``reason`` int8 (REASONS),
    ``is_open`` bool. ``trades[i]`` is a :class:`Trade`; :meth:`return_pct` the returns."""

    symbol: np.ndarray
    quantity: np.ndarray
    entry_bar: np.ndarray
    entry_price: np.ndarray
    exit_bar: np.ndarray
    exit_price: np.ndarray
    pnl: np.ndarray
    commission: np.ndarray
    reason: np.ndarray
    is_open: np.ndarray

    @classmethod
    def empty(cls) -> "Trades":
        i, f = np.empty(0, np.int64), np.empty(0)
        return cls(i, f, i, f, i, f, f, f, np.empty(0, np.int8), np.empty(0, bool))

    def return_pct(self) -> np.ndarray:
        """PERCENT of the entry value: 100 x pnl / (|quantity| x entry price)."""
        return 100.0 * self.pnl / (np.abs(self.quantity) * self.entry_price)

    def _record(self, i: int) -> Trade:
        q, pnl, entry = float(self.quantity[i]), float(self.pnl[i]), float(self.entry_price[i])
        return Trade(int(self.symbol[i]), "long" if q > 0 else "short", abs(q), int(self.entry_bar[i]), entry,
                     int(self.exit_bar[i]), float(self.exit_price[i]), pnl, 100.0 * pnl / (abs(q) * entry),
                     float(self.commission[i]), REASONS[self.reason[i]], bool(self.is_open[i]))


@dataclass(eq=False)
class Skips(_Columns):
    """Entry signals not taken: ``bar`` int64, ``symbol`` int64, ``reason`` int8 (index into
    SKIPS), ``open`` f8 (the symbol's open on that bar). ``skips[i]`` is ``(bar, symbol, reason)``."""

    bar: np.ndarray
    symbol: np.ndarray
    reason: np.ndarray
    open: np.ndarray

    @classmethod
    def empty(cls) -> "Skips":
        i = np.empty(0, np.int64)
        return cls(i, i, np.empty(0, np.int8), np.empty(0))

    def _record(self, i: int) -> tuple[int, int, str]:
        return int(self.bar[i]), int(self.symbol[i]), SKIPS[self.reason[i]]


# ----------------------------------------------------------------------------- the compiled kernel
def _block(a, lo, n):
    """numpy's ``pairwise_sum`` on at most 128 elements: a plain loop below 8, else 8 partial sums."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    m = n - n % 8
    while i < m:
        k = lo + i
        r0 += a[k]
        r1 += a[k + 1]
        r2 += a[k + 2]
        r3 += a[k + 3]
        r4 += a[k + 4]
        r5 += a[k + 5]
        r6 += a[k + 6]
        r7 += a[k + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


def _pairwise(a):
    """Sum of the float64 array ``a`` exactly as numpy's ``pairwise_sum`` adds a contiguous array
    (``numpy/_core/src/umath/loops_utils.h.src``: blocks of at most 128 elements, larger ranges
    split in two at a multiple of 8), so a sum here equals ``np.sum`` / ``np.nansum`` (NaN given
    as 0) of the same values to the last bit. The recursion runs on an explicit stack (numba's
    disk cache does not keep recursive functions reliably)."""
    n = a.size
    if n <= 128:
        return _block(a, 0, n)
    s_lo = np.empty(64, np.int64)
    s_n = np.empty(64, np.int64)
    s_st = np.zeros(64, np.int64)
    vals = np.empty(64)
    sp = 0
    vp = 0
    s_lo[0], s_n[0], s_st[0] = 0, n, 0
    while sp >= 0:
        lo, m = s_lo[sp], s_n[sp]
        if m <= 128:
            vals[vp] = _block(a, lo, m)
            vp += 1
            sp -= 1
            continue
        half = m // 2
        half -= half % 8
        if s_st[sp] == 0:  # the left half first
            s_st[sp] = 1
            sp += 1
            s_lo[sp], s_n[sp], s_st[sp] = lo, half, 0
        elif s_st[sp] == 1:  # then the right half
            s_st[sp] = 2
            sp += 1
            s_lo[sp], s_n[sp], s_st[sp] = lo + half, m - half, 0
        else:  # both done: left + right
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


def _fill(j, q, price, com, book, qty, flow, fl, nf, b, reason):
    """Trade ``q`` (signed) of symbol ``j`` at ``price`` on bar ``b`` paying the commission
    (``book[0]`` is the cash); the fill becomes record ``nf`` of ``fl``."""
    c = abs(q) * price * com
    book[0] -= q * price + c
    flow[j] -= q * price + c
    qty[j] += q
    if abs(qty[j]) < 1e-12 * max(1.0, abs(q)):
        qty[j] = 0.0
    f_bar, f_sym, f_q, f_px, f_com, f_why, f_qa, f_fa = fl
    f_bar[nf] = b
    f_sym[nf] = j
    f_q[nf] = q
    f_px[nf] = price
    f_com[nf] = c
    f_why[nf] = reason
    f_qa[nf] = qty[j]
    f_fa[nf] = flow[j]


def _close(j, b, price, reason, com, book, qty, flow, pos, fl, nf, tr, nt):
    """Close symbol ``j``'s open position at ``price`` on bar ``b``: fill ``nf`` and trade ``nt``."""
    p_open, p_qty, p_price, p_bar, p_com = pos[0], pos[1], pos[2], pos[3], pos[4]
    q = p_qty[j]
    _fill(j, -q, price, com, book, qty, flow, fl, nf, b, reason)
    exit_c = abs(q) * price * com
    t_sym, t_q, t_eb, t_ep, t_xb, t_xp, t_pnl, t_com, t_why, t_open = tr
    t_sym[nt] = j
    t_q[nt] = q
    t_eb[nt] = p_bar[j]
    t_ep[nt] = p_price[j]
    t_xb[nt] = b
    t_xp[nt] = price
    t_pnl[nt] = q * (price - p_price[j]) - p_com[j] - exit_c
    t_com[nt] = p_com[j] + exit_c
    t_why[nt] = reason
    t_open[nt] = False
    p_open[j] = False


def _chunk(b0, o, hi, lo, cl, has, tg, at, book, qty, flow, p_open, p_qty, p_price, p_bar, p_com, p_stops, p_sl,
           p_tp, last_close, s_has, s_tgt, s_tgt0, s_atr, com, slip, sizing, fraction, stop_k, sl_atr, tp_atr,
           max_pos, whole, halt_bar):
    """Bars ``b0 .. b0 + C - 1`` of the run (module docstring of :mod:`.engine`), updating the
    carried state in place. Arrays (C, N): ``o hi lo cl`` NaN where a symbol has no bar, ``has``
    bool, ``tg`` int8 targets and ``at`` ATR (read only where ``has``). State: ``book[0]`` cash;
    (N,) ``qty flow`` (position, cumulative cash flow), the open position ``p_*``, the last close
    (NaN before the first bar), and per symbol its previous bar's target ``s_tgt``, the target
    before that ``s_tgt0`` and the previous bar's ATR ``s_atr`` (``s_has``: a previous bar
    exists). ``halt_bar``: every position closes at that bar's open and nothing trades after.

    Returns (cash (C,), qty (C, N) after each bar, the fills, the trades, the skips, each a tuple
    of arrays in record order)."""
    C, N = o.shape
    # capacity: count the signal fills of the chunk (a target change fills at the symbol's next bar)
    n_sig = 0
    for j in range(N):
        h, t1, t0 = s_has[j], s_tgt[j], s_tgt0[j]
        for r in range(C):
            if has[r, j]:
                if h and t1 != t0:
                    n_sig += 1
                t0 = t1
                t1 = tg[r, j]
                h = True
    nfc = 3 * n_sig + 2 * N + 1  # exits, entries and their stops; stops of positions carried in; the halt
    ntc = 2 * n_sig + 2 * N + 1
    fl = (np.empty(nfc, np.int64), np.empty(nfc, np.int64), np.empty(nfc), np.empty(nfc), np.empty(nfc),
          np.empty(nfc, np.int8), np.empty(nfc), np.empty(nfc))
    tr = (np.empty(ntc, np.int64), np.empty(ntc), np.empty(ntc, np.int64), np.empty(ntc), np.empty(ntc, np.int64),
          np.empty(ntc), np.empty(ntc), np.empty(ntc), np.empty(ntc, np.int8), np.empty(ntc, np.bool_))
    sk = (np.empty(n_sig + 1, np.int64), np.empty(n_sig + 1, np.int64), np.empty(n_sig + 1, np.int8),
          np.empty(n_sig + 1))
    nf = 0
    nt = 0
    ns = 0
    pos = (p_open, p_qty, p_price, p_bar, p_com)
    cash_rec = np.empty(C)
    qty_rec = np.empty((C, N))
    fill_tgt = np.empty(N, np.int8)
    fill_atr = np.empty(N)
    marks = np.empty(N)
    stop_on = sl_atr > 0 or tp_atr > 0
    for r in range(C):
        b = b0 + r
        if b < halt_bar:
            # the signal fills of this bar (symbols with a bar whose previous bar changed target)
            any_fill = False
            for j in range(N):
                fill_tgt[j] = NO_FILL
                if has[r, j]:
                    if s_has[j] and s_tgt[j] != s_tgt0[j]:
                        fill_tgt[j] = s_tgt[j]
                        fill_atr[j] = s_atr[j]
                        any_fill = True
                    s_tgt0[j] = s_tgt[j]
                    s_tgt[j] = tg[r, j]
                    s_atr[j] = at[r, j]
                    s_has[j] = True
            any_entry = False
            if any_fill:
                for j in range(N):  # exits first (the close half of a reversal included)
                    tgt = fill_tgt[j]
                    if tgt == NO_FILL:
                        continue
                    if p_open[j] and np.sign(p_qty[j]) != tgt:
                        side = -np.sign(p_qty[j])
                        _close(j, b, o[r, j] * (1 + slip * side), 2 if tgt != 0 else 1, com, book, qty, flow, pos,
                               fl, nf, tr, nt)
                        nf += 1
                        nt += 1
                    if tgt != 0 and not p_open[j]:
                        any_entry = True
            if any_entry:  # entries, sized on the equity at this open (after the exits)
                for j in range(N):
                    m = o[r, j]
                    if m != m:
                        m = last_close[j]
                    v = qty[j] * m
                    marks[j] = 0.0 if v != v else v
                equity = book[0] + _pairwise(marks)
                for j in range(N):
                    tgt = fill_tgt[j]
                    if tgt == NO_FILL or tgt == 0 or p_open[j]:
                        continue
                    direction = 1 if tgt > 0 else -1
                    price = o[r, j] * (1 + slip * direction)
                    a = fill_atr[j]
                    if sizing == 0:
                        value = equity / N
                    elif sizing == 1:
                        value = fraction * equity
                    else:
                        if not a > 0:
                            sk[0][ns], sk[1][ns], sk[2][ns], sk[3][ns] = b, j, 2, o[r, j]
                            ns += 1
                            continue
                        value = fraction * equity / (stop_k * a) * price
                    wanted = min(value, max_pos / 100 * equity)
                    value = min(wanted, book[0])
                    q = value / (price * (1 + com))
                    if whole:
                        q = np.floor(q + 1e-9)
                    if not q > 0:
                        sk[0][ns], sk[1][ns], sk[3][ns] = b, j, o[r, j]
                        sk[2][ns] = 0 if book[0] < wanted else 1
                        ns += 1
                        continue
                    sq = direction * q
                    _fill(j, sq, price, com, book, qty, flow, fl, nf, b, 0)
                    nf += 1
                    p_open[j] = True
                    p_qty[j] = sq
                    p_price[j] = price
                    p_bar[j] = b
                    p_com[j] = q * price * com
                    p_stops[j] = stop_on and a > 0
                    if p_stops[j]:
                        p_sl[j] = price - direction * sl_atr * a if sl_atr > 0 else np.nan
                        p_tp[j] = price + direction * tp_atr * a if tp_atr > 0 else np.nan
            if stop_on:  # then stops and targets within the bar
                for j in range(N):
                    if not (p_open[j] and p_stops[j]):
                        continue
                    d = 1 if p_qty[j] > 0 else -1
                    sl, tp = p_sl[j], p_tp[j]
                    has_sl, has_tp = sl == sl, tp == tp
                    lo_b, hi_b = lo[r, j], hi[r, j]
                    hit_sl = has_sl and ((lo_b <= sl) if d > 0 else (hi_b >= sl))
                    hit_tp = has_tp and ((hi_b >= tp) if d > 0 else (lo_b <= tp))
                    if not (hit_sl or hit_tp):
                        continue
                    op = o[r, j]
                    first = b == p_bar[j]
                    if not first and has_sl and (op - sl) * d <= 0:
                        price, why = op * (1 - d * slip), 3
                    elif not first and has_tp and (op - tp) * d >= 0:
                        price, why = op, 4
                    elif hit_sl:
                        price, why = sl * (1 - d * slip), 3
                    else:
                        price, why = tp, 4
                    _close(j, b, price, why, com, book, qty, flow, pos, fl, nf, tr, nt)
                    nf += 1
                    nt += 1
        elif b == halt_bar:  # the halt: every position closed at this open
            for j in range(N):
                if not p_open[j]:
                    continue
                side = -np.sign(p_qty[j])
                px = o[r, j]
                if px != px:
                    px = last_close[j]
                _close(j, b, px * (1 + slip * side), 5, com, book, qty, flow, pos, fl, nf, tr, nt)
                nf += 1
                nt += 1
        for j in range(N):
            if has[r, j]:
                last_close[j] = cl[r, j]
        cash_rec[r] = book[0]
        qty_rec[r] = qty
    # copies: a view would keep the whole capacity (about 3 x the fills) alive
    fills = (fl[0][:nf].copy(), fl[1][:nf].copy(), fl[2][:nf].copy(), fl[3][:nf].copy(), fl[4][:nf].copy(),
             fl[5][:nf].copy(), fl[6][:nf].copy(), fl[7][:nf].copy())
    trades = (tr[0][:nt].copy(), tr[1][:nt].copy(), tr[2][:nt].copy(), tr[3][:nt].copy(), tr[4][:nt].copy(),
              tr[5][:nt].copy(), tr[6][:nt].copy(), tr[7][:nt].copy(), tr[8][:nt].copy(), tr[9][:nt].copy())
    skips = (sk[0][:ns].copy(), sk[1][:ns].copy(), sk[2][:ns].copy(), sk[3][:ns].copy())
    return cash_rec, qty_rec, fills, trades, skips


# ----------------------------------------------------------------------------- the chunk driver
class Simulator:
    """The targets-form portfolio over a timeline of ``T`` bars and ``N`` symbols, fed one chunk
    of consecutive bars at a time (:meth:`step`), then :meth:`finish` for the open trades.
    ``compiled``: run the numba kernel (default: when T x N exceeds COMPILE_CELLS), else the
    same kernel as Python.

    ``cfg`` is an :class:`.engine.Config`. With ``cfg.max_drawdown`` the halt is found as the
    event engine found it: the first close whose drawdown reaches the limit (the peak carried
    across chunks); that chunk is run again from its starting state with every position closed
    at the next bar's open (the next chunk's first bar when the breach is a chunk's last bar)."""

    def __init__(self, T: int, N: int, cfg, compiled: bool | None = None):
        if compiled is None:
            compiled = T * N > COMPILE_CELLS
        if compiled:
            warm()
        self._kernel = kernel(compiled)
        self.T, self.N, self.cfg = T, N, cfg
        fraction = cfg.fraction if cfg.fraction is not None else DEFAULT_FRACTION[cfg.sizing]
        self.params = (float(cfg.commission), cfg.slippage_bps / 1e4, SIZINGS.index(cfg.sizing), float(fraction or 0.0),
                       float(cfg.stop_loss_atr if cfg.stop_loss_atr is not None else 2.0),
                       float(cfg.stop_loss_atr or 0.0), float(cfg.take_profit_atr or 0.0),
                       float(cfg.max_position_pct), bool(cfg.whole_shares))
        self.state = {
            "book": np.array([float(cfg.cash)]), "qty": np.zeros(N), "flow": np.zeros(N),
            "p_open": np.zeros(N, bool), "p_qty": np.zeros(N), "p_price": np.zeros(N), "p_bar": np.zeros(N, np.int64),
            "p_com": np.zeros(N), "p_stops": np.zeros(N, bool), "p_sl": np.full(N, np.nan), "p_tp": np.full(N, np.nan),
            "last_close": np.full(N, np.nan), "s_has": np.zeros(N, bool), "s_tgt": np.zeros(N, np.int8),
            "s_tgt0": np.zeros(N, np.int8), "s_atr": np.full(N, np.nan),
        }
        self.halt_bar: int | None = None
        self.breach: int | None = None
        self.peak = -np.inf
        self.b0 = 0
        self.fills: list[Fills] = []
        self.trades: list[Trades] = []
        self.skips: list[Skips] = []

    def step(self, o: np.ndarray, hi: np.ndarray, lo: np.ndarray, cl: np.ndarray, tg: np.ndarray,
             at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run the next chunk: (C, N) float64 ``o hi lo cl`` (NaN where a symbol has no bar),
        ``tg`` int8 targets, ``at`` ATR. Returns (cash (C,), qty (C, N) after each bar, closes
        carried forward (C, N) (NaN before a symbol's first bar), equity (C,) at each close)."""
        has = ~np.isnan(cl)
        carried = self.state["last_close"].copy()
        saved = {k: v.copy() for k, v in self.state.items()}
        out = self._run(o, hi, lo, cl, has, tg, at)
        close_ff = ffill(np.vstack([carried[None, :], cl]))[1:]  # from the closes before the chunk
        equity = out[0] + (out[1] * np.nan_to_num(close_ff)).sum(axis=1)
        if self.cfg.max_drawdown is not None and self.breach is None:
            peak = np.maximum.accumulate(np.concatenate(([self.peak], equity)))[1:]
            hit = np.flatnonzero(equity / peak - 1.0 <= -self.cfg.max_drawdown)
            self.peak = peak[-1]
            if hit.size:
                self.breach = k = self.b0 + int(hit[0])
                if k + 1 < self.T:
                    self.halt_bar = k + 1
                    if k + 1 < self.b0 + cl.shape[0]:  # the halt is inside this chunk: run it again
                        self.state = saved
                        out = self._run(o, hi, lo, cl, has, tg, at)
                        equity = out[0] + (out[1] * np.nan_to_num(close_ff)).sum(axis=1)
        cash, qty, f, t, s = out
        self.fills.append(Fills(*f))
        self.trades.append(Trades(*t))
        self.skips.append(Skips(*s))
        self.b0 += cl.shape[0]
        return cash, qty, close_ff, equity

    def _run(self, o, hi, lo, cl, has, tg, at):
        st = self.state
        return self._kernel(self.b0, o, hi, lo, cl, has, tg, at, st["book"], st["qty"], st["flow"], st["p_open"],
                      st["p_qty"], st["p_price"], st["p_bar"], st["p_com"], st["p_stops"], st["p_sl"], st["p_tp"],
                      st["last_close"], st["s_has"], st["s_tgt"], st["s_tgt0"], st["s_atr"], *self.params,
                      self.halt_bar if self.halt_bar is not None else NEVER)

    def finish(self) -> tuple[Fills, Trades, Skips]:
        """After the last chunk: positions still open become open trades marked at their last
        close (by symbol); returns every fill, trade and skip in record order."""
        st = self.state
        js = np.flatnonzero(st["p_open"])
        q, entry, px = st["p_qty"][js], st["p_price"][js], st["last_close"][js]
        last = np.full(js.size, self.T - 1, np.int64)
        opened = Trades(js.astype(np.int64), q, st["p_bar"][js], entry, last, px, q * (px - entry) - st["p_com"][js],
                        st["p_com"][js], np.full(js.size, REASONS.index("open"), np.int8), np.ones(js.size, bool))
        return Fills.concat(self.fills), Trades.concat(self.trades + [opened]), Skips.concat(self.skips)


def ffill(m: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value of each column forward (axis 0); leading NaNs stay NaN."""
    idx = np.where(np.isnan(m), 0, np.arange(m.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(m, idx, axis=0)


_WARM = False


def compiled_cached() -> bool:
    """Whether numba's disk cache already holds the compiled kernel (else the first large run
    compiles it, about 20 s)."""
    import sys

    v = sys.version_info
    index = f"sim._chunk-{_chunk.__code__.co_firstlineno}.py{v.major}{v.minor}.nbi"
    return (Path(__file__).parent / "__pycache__" / index).exists()


def warm() -> None:
    """Load the compiled kernel (numba's disk cache, or compile it the first time) on a 1 x 1 run.

    numba's first load imports its numpy-math registry, which imports ``scipy.linalg`` only to
    find a BLAS for ``np.dot`` (0.2 to 0.4 s of start-up); this kernel uses no BLAS, so that import
    is skipped while it loads (when scipy.linalg is not loaded already) and allowed again right
    after (the optimize slice's fast path does the same)."""
    global _WARM
    if _WARM:
        return
    import sys

    from .engine import Config

    block = "scipy.linalg.cython_blas" not in sys.modules
    if block:
        sys.modules["scipy.linalg.cython_blas"] = None  # an ImportError for numba's BLAS probe
    _WARM = True
    try:
        one = np.ones((1, 1))
        Simulator(1, 1, Config(), compiled=True).step(one, one, one, one, np.zeros((1, 1), np.int8), one)
    except BaseException:
        _WARM = False
        raise
    finally:
        if block:
            del sys.modules["scipy.linalg.cython_blas"]
