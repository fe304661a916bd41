"""One backtest run from options to result files (SLICES.md contract 3).

:func:`backtest` loads and validates bars, computes the strategy's targets, simulates the
portfolio and computes metrics; :func:`write_outputs` writes metrics.json, trades.parquet,
equity.parquet and report.html.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from .bars import BarBatches, DataError, LoadReport, fmt_price, fmt_ts
from .engine import (Config, Panel, check_lookahead, check_lookahead_symbol, compute_weights, ffill,
                     lookahead_note, simulate_weights, symbol_targets)
from .metrics import all_metrics, equity_metrics, periods_per_year, symbol_equity
from .sim import COMPILE_CELLS, REASONS, SKIPS, Fills, Simulator, Skips, Trades, compiled_cached
from .strategies import resolve_params

UTC_US = pl.Datetime("us", "UTC")


CHUNK_CELLS = 4_000_000
"""Bars x symbols simulated per timeline chunk (:class:`.sim.Simulator`): about 32 MB per (C, N)
float64 array; the run's memory is a few such arrays plus one batch of loaded symbols."""


@dataclass
class Outcome:
    """A finished run: settings, the tables and metrics to write, and the prices for the report.

    ``equity``: equity.parquet frame; ``trades``: trades.parquet frame; ``portfolio``: metric ->
    value; ``per_symbol``: symbol -> metric -> value; ``benchmark``: buy-and-hold metrics;
    ``prices``: symbol -> ``timestamp close`` frame, read when asked (from the run's temporary
    folder for a signal strategy); ``fills`` :class:`.sim.Fills` of the run.
    """

    run: dict
    prices: Mapping[str, pl.DataFrame]
    equity: pl.DataFrame
    trades: pl.DataFrame
    portfolio: dict
    per_symbol: dict
    benchmark: dict
    report: LoadReport
    fills: Fills


@dataclass
class _Sim:
    """What a simulation hands to :func:`_outcome`: ``timestamps`` (T,) datetime64[us] (UTC,
    naive), ``symbols`` (N,), per bar ``equity cash gross bench`` (T,) currency, the records,
    ``first_close`` / ``last_close`` (N,), ``column(j)`` -> symbol j's (qty, cumulative cash flow,
    close carried forward) (T,) arrays and its fills (as symbol 0), ``prices`` for the report."""

    timestamps: np.ndarray
    symbols: list[str]
    equity: np.ndarray
    cash: np.ndarray
    gross: np.ndarray
    bench: np.ndarray
    fills: Fills
    trades: Trades
    skips: Skips
    notes: list[str]
    first_close: np.ndarray
    last_close: np.ndarray
    column: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, Fills]]
    prices: Mapping[str, pl.DataFrame]


def backtest(
    strategy: str = "simple_ma",
    symbols: list[str] | None = None,
    *,
    params: dict[str, str] | None = None,
    data: list[str] | None = None,
    store: str | None = None,
    timeframe: str | None = None,
    start: str | None = None,
    end: str | None = None,
    adjust: bool = True,
    keep_suspicious: bool = False,
    config: Config | None = None,
    lookahead_check: bool = False,
    chunk_cells: int = CHUNK_CELLS,
    progress: Callable[[str, int, int], None] | None = None,
) -> Outcome:
    """Run one backtest. ``strategy``: a built-in name, a ``.py`` file, ``package.module`` or
    ``package.module:attribute`` (SLICES.md contract 5); ``lookahead_check``: first run
    :func:`.engine.check_lookahead` (its note goes into the report's notes).

    ``progress(stage, done, total)`` is called as symbols are loaded (stage ``symbols``) and as
    the timeline is simulated (``bars``, or ``bars (compiling the kernel, once)`` the first time).

    A signal (``targets``) strategy streams: the bars are loaded a batch of symbols at a time
    (:class:`.bars.BarBatches`), each symbol's targets computed on its own bars and its arrays
    kept in a temporary folder, then the timeline is simulated ``chunk_cells`` bars x symbols at
    a time (:class:`.sim.Simulator`), so memory does not grow with bars x symbols. A weights
    strategy sees the whole panel (contract 5) and is simulated on it at once.

    Raises DataError for bad data and ValueError for bad settings (unknown strategy or parameter,
    a bad strategy file or output, invalid config, an option of the other strategy form);
    messages are one line, ready to print."""
    cfg = config or Config()
    cfg.check()
    strat, p = resolve_params(strategy, params or {})
    cfg.check_form(strat.form, strat.label)
    batches = BarBatches(symbols, timeframe, store=store, data=data, start=start, end=end, adjust=adjust,
                         keep_suspicious=keep_suspicious)
    report = batches.report
    need = strat.needed_bars(p)
    atr_window = cfg.atr_window if (cfg.stop_loss_atr or cfg.take_profit_atr or cfg.sizing == "atr-risk") else None
    if atr_window is not None:
        need = max(need, cfg.atr_window + 1)
    named = symbols is not None
    if strat.form == "weights":
        sim = _weights_run(pl.concat(list(batches)), strat, p, cfg, need, named, report, lookahead_check)
    else:
        sim = _signal_run(batches, strat, p, cfg, need, atr_window, named, report, lookahead_check, chunk_cells,
                          progress or (lambda stage, done, total: None))
    return _outcome(sim, strat, strategy, p, cfg, data, store, adjust, report)


def _short(sym: str, n: int, first, need: int, strat) -> str:
    return f"{sym}: {n:,} bars from {first:%Y-%m-%d}, fewer than the {need:,} that {strat.label} needs"


def _short_error(msg: str) -> DataError:
    return DataError(msg + " (use a longer --start/--end span or smaller --param windows)")


def _weights_run(bars: pl.DataFrame, strat, p: dict, cfg: Config, need: int, named: bool, report: LoadReport,
                 lookahead_check: bool) -> _Sim:
    """The weights form on the whole panel (contract 5 gives the strategy every symbol's bars)."""
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:
        msgs = [_short(s, n, t, need, strat) for s, n, t in short.iter_rows()]
        if named or short.height == counts.height:
            raise _short_error(msgs[0])
        for (s, _, _), m in zip(short.iter_rows(), msgs):
            report.warn("excluded", s, m + "; symbol excluded")
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    panel = Panel.from_bars(bars)
    if lookahead_check:
        report.notes.append(check_lookahead(panel, strat, p))
    weights, weight_warnings = compute_weights(panel, strat, p, cfg.allow_short, cfg.leverage)
    report.warnings.extend(weight_warnings)
    res = simulate_weights(panel, weights, cfg)
    N = len(panel.symbols)
    first_row = np.argmax(~np.isnan(panel.close), axis=0)  # every symbol has at least one bar
    first_close = panel.close[first_row, np.arange(N)]
    rel = np.where(np.isnan(res.close_ff), 1.0, res.close_ff / first_close)
    bench = cfg.cash / N * rel.sum(axis=1)
    prices = {k[0]: v.select("timestamp", "close") for k, v in bars.partition_by("symbol", as_dict=True).items()}
    return _Sim(panel.timestamps, panel.symbols, res.equity, res.cash, res.gross, bench, res.fills, res.trades,
                res.skipped, res.notes, first_close, res.close_ff[-1].copy(),
                lambda j: (res.qty[:, j], res.sym_cash[:, j], res.close_ff[:, j], symbol_fills(res.fills, j)), prices)


class _Spill:
    """Each symbol's arrays (``ts`` int64 us, ``open high low close`` float64, ``tg`` int8
    targets, ``atr`` float64): held in memory up to ``MEMORY_BYTES`` in all, then moved to a
    temporary folder (``tempfile``, so ``$TMPDIR``; removed when this object is collected), one
    file per symbol, and read back a row range at a time."""

    KINDS = {"ts": np.int64, "open": np.float64, "high": np.float64, "low": np.float64, "close": np.float64,
             "tg": np.int8, "atr": np.float64}
    MEMORY_BYTES = 128_000_000

    def __init__(self):
        self.held: dict[int, dict[str, np.ndarray]] | None = {}  # None once on disk
        self.layout: dict[int, tuple[int, dict[str, int]]] = {}  # symbol -> (rows, kind -> byte offset)
        self.nbytes = 0
        self._dir = self.root = None

    def put(self, j: int, **arrays: np.ndarray) -> None:
        """Keep symbol ``j``'s arrays; DataError when the temporary folder cannot be made or its
        disk is full."""
        arrays = {k: np.ascontiguousarray(v, dtype=self.KINDS[k]) for k, v in arrays.items()}
        if self.held is not None:
            self.held[j] = arrays
            self.nbytes += sum(v.nbytes for v in arrays.values())
            if self.nbytes > self.MEMORY_BYTES:
                held, self.held = self.held, None
                for k, v in held.items():
                    self._write(k, v)
            return
        self._write(j, arrays)

    def _write(self, j: int, arrays: dict[str, np.ndarray]) -> None:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="gpt-trader-backtest-", dir=_temp_root())
            self.root = Path(self._dir.name)
        try:
            offsets, at = {}, 0
            with open(self.root / str(j), "wb") as f:
                for k, v in arrays.items():
                    offsets[k] = at
                    v.tofile(f)
                    at += v.nbytes
        except OSError as exc:
            import shutil

            why = exc.strerror or ("no space left on device" if shutil.disk_usage(self.root).free < 1 << 26 else str(exc))
            raise DataError(f"temporary folder {self.root}: {why} (a run keeps 25 to 49 bytes a bar there; set TMPDIR "
                            f"to a folder on a larger disk)") from None
        self.layout[j] = (next(iter(arrays.values())).size, offsets)

    def get(self, j: int, kind: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Rows ``r0 .. r1 - 1`` of symbol ``j``'s array ``kind`` (all rows by default)."""
        if self.held is not None:
            return self.held[j][kind][r0:r1]
        rows, offsets = self.layout[j]
        dt = np.dtype(self.KINDS[kind])
        end = rows if r1 is None else r1
        return np.fromfile(self.root / str(j), dtype=dt, count=end - r0, offset=offsets[kind] + r0 * dt.itemsize)


def _temp_root() -> str:
    """The folder for a run's temporary files: ``$TMPDIR`` when set (DataError when it is not a
    writable folder: Python would quietly use /tmp instead), else the system's."""
    env = os.environ.get("TMPDIR")
    if not env:
        return tempfile.gettempdir()
    if not (os.path.isdir(env) and os.access(env, os.W_OK | os.X_OK)):
        raise DataError(f"TMPDIR {env}: not a writable folder (a large run keeps its bars there; unset it to use "
                        f"the system's temporary folder)")
    try:  # writable as far as permissions go; make sure (e.g. /proc)
        with tempfile.TemporaryDirectory(dir=env):
            pass
    except OSError as exc:
        raise DataError(f"TMPDIR {env}: cannot make a folder there ({exc.strerror or exc})") from None
    return env


class _SpilledPrices(Mapping):
    """symbol -> ``timestamp close`` frame read from the spill when asked (the report's prices)."""

    def __init__(self, spill: _Spill, symbols: list[str]):
        self.spill, self.index = spill, {s: j for j, s in enumerate(symbols)}

    def __getitem__(self, sym: str) -> pl.DataFrame:
        j = self.index[sym]
        ts = pl.Series("timestamp", self.spill.get(j, "ts")).cast(pl.Datetime("us", "UTC"))
        return pl.DataFrame([ts, pl.Series("close", self.spill.get(j, "close"))])

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


def _signal_run(batches: BarBatches, strat, p: dict, cfg: Config, need: int, atr_window: int | None, named: bool,
                report: LoadReport, lookahead_check: bool, chunk_cells: int, progress) -> _Sim:
    """The signal form, streamed: per symbol (batch by batch) its targets and ATR, kept on disk;
    then the timeline chunk by chunk through :class:`.sim.Simulator`."""
    spill = _Spill()
    symbols: list[str] = []
    rows: list[int] = []
    first_close, last_close = [], []
    timeline = np.empty(0, np.int64)
    short: list[str] = []
    checked = 0
    n_files = len(batches.files) if batches.files is not None else 0
    for bars in batches:
        fresh: list[np.ndarray] = []
        sym_col = bars["symbol"]
        edges = np.flatnonzero((sym_col != sym_col.shift(1)).fill_null(True).to_numpy()).tolist() + [bars.height]
        for a, b in zip(edges[:-1], edges[1:]):  # each symbol's rows (the batch is sorted by symbol)
            part = bars.slice(a, b - a)
            sym = sym_col[a]
            if part.height < need:
                msg = _short(sym, part.height, part["timestamp"][0], need, strat)
                if named:
                    raise _short_error(msg)
                short.append((sym, msg))
                continue
            ts = part["timestamp"].dt.epoch("us").to_numpy()
            arr = {k: part[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}
            for v in arr.values():
                v.flags.writeable = False
            stamps = ts.view("datetime64[us]")
            stamps.flags.writeable = False
            sbars = arr | {"timestamp": stamps, "symbol": sym}
            if lookahead_check:
                checked += check_lookahead_symbol(strat, p, sbars)
            tg, a = symbol_targets(strat, p, sbars, cfg.allow_short, atr_window)
            j = len(symbols)
            spill.put(j, ts=ts, open=arr["open"], close=arr["close"], tg=tg,
                      **({"high": arr["high"], "low": arr["low"], "atr": a} if a is not None else {}))
            symbols.append(sym)
            progress("symbols", len(symbols) + len(short), n_files)
            rows.append(ts.size)
            first_close.append(arr["close"][0])
            last_close.append(arr["close"][-1])
            if not _within(timeline, ts):
                fresh.append(ts)
        if fresh:  # sort and drop repeats (np.unique's hash path is ~10x slower on int64 here)
            timeline = np.sort(np.concatenate([timeline, *fresh]))
            timeline = timeline[np.r_[True, timeline[1:] != timeline[:-1]]]
    if not symbols:
        raise _short_error(short[0][1])
    for sym, msg in short:
        report.warn("excluded", sym, msg + "; symbol excluded")
    if lookahead_check:
        report.notes.append(lookahead_note(strat, checked, len(symbols)))

    T, N = timeline.size, len(symbols)
    step = max(1, chunk_cells // N)
    starts = timeline[::step]
    offsets = np.empty((N, starts.size + 1), np.int64)
    for j in range(N):
        offsets[j, :-1] = np.arange(0, T, step) if rows[j] == T else np.searchsorted(spill.get(j, "ts"), starts)
        offsets[j, -1] = rows[j]
    first = np.array(first_close)
    alloc = cfg.cash / N
    stage = "bars"
    if T * N > COMPILE_CELLS and not compiled_cached():
        stage = "bars (compiling the kernel, once)"
        progress(stage, 0, T)
    sim = Simulator(T, N, cfg)
    kinds = ("open", "high", "low", "close")  # high and low only for stops (with the ATR)
    out = {k: np.empty(T) for k in ("equity", "cash", "gross", "bench")}
    for k in range(starts.size):
        a, b = k * step, min(T, (k + 1) * step)
        part = timeline[a:b]
        m = {kind: np.full((b - a, N), np.nan) for kind in (kinds if atr_window is not None else kinds[::3])}
        tg = np.zeros((b - a, N), np.int8)
        at = np.full((b - a, N), np.nan)  # without stops, also the (unread) high and low
        for j in range(N):
            r0, r1 = offsets[j, k], offsets[j, k + 1]
            if r1 == r0:
                continue
            at_rows = slice(None) if r1 - r0 == part.size else np.searchsorted(part, spill.get(j, "ts", r0, r1))
            for kind in m:
                m[kind][at_rows, j] = spill.get(j, kind, r0, r1)
            tg[at_rows, j] = spill.get(j, "tg", r0, r1)
            if atr_window is not None:
                at[at_rows, j] = spill.get(j, "atr", r0, r1)
        cash, qty, close_ff, equity = sim.step(m["open"], m.get("high", at), m.get("low", at), m["close"], tg, at)
        out["equity"][a:b], out["cash"][a:b] = equity, cash
        out["gross"][a:b] = np.abs(qty * np.nan_to_num(close_ff)).sum(axis=1)
        rel = np.where(np.isnan(close_ff), 1.0, close_ff / first)
        out["bench"][a:b] = alloc * rel.sum(axis=1)
        progress(stage, b, T)
    fills, trades, skips = sim.finish()
    notes = []
    if sim.breach is not None:
        notes.append(f"max-drawdown halt: drawdown reached -{cfg.max_drawdown:.2%} on bar {sim.breach}; no trading after")
    def column(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Fills]:
        f = symbol_fills(fills, j)
        close = spill.get(j, "close")
        if close.size < T:  # bars on only part of the timeline: carried forward to it
            full = np.full(T, np.nan)
            full[np.searchsorted(timeline, spill.get(j, "ts"))] = close
            close = ffill(full[:, None])[:, 0]
        if not len(f):
            return np.zeros(T), np.zeros(T), close, f
        last = np.r_[f.bar[1:] != f.bar[:-1], True]  # the symbol's last fill of each bar it traded on
        lengths = np.diff(np.r_[0, f.bar[last], T])  # before its first fill, then from each such bar on
        return (np.repeat(np.r_[0.0, f.qty_after[last]], lengths), np.repeat(np.r_[0.0, f.flow_after[last]], lengths),
                close, f)

    return _Sim(timeline.view("datetime64[us]"), symbols, out["equity"], out["cash"], out["gross"], out["bench"],
                fills, trades, skips, notes, first, np.array(last_close), column, _SpilledPrices(spill, symbols))


def symbol_fills(fills: Fills, j: int) -> Fills:
    """Symbol ``j``'s fills in execution order, renumbered as symbol 0 (one symbol's columns).
    The fills' order by symbol is computed once per record set."""
    order = getattr(fills, "_by_symbol", None)
    if order is None:
        order = np.argsort(fills.symbol, kind="stable")
        fills._by_symbol = order
        fills._bounds = np.searchsorted(fills.symbol[order], np.arange(int(fills.symbol.max(initial=-1)) + 2))
    b = fills._bounds
    f = fills[order[b[j]:b[j + 1]]] if j + 1 < b.size else Fills.empty()
    f.symbol = np.zeros(len(f), np.int64)
    return f


def _within(timeline: np.ndarray, ts: np.ndarray) -> bool:
    """Whether every time of ``ts`` (sorted) is already on ``timeline`` (sorted, unique)."""
    if ts.size == timeline.size and np.array_equal(ts, timeline):
        return True
    if ts.size > timeline.size:
        return False
    k = np.searchsorted(timeline, ts)
    return bool(np.all(k < timeline.size) and np.array_equal(timeline[np.minimum(k, timeline.size - 1)], ts))


def _outcome(sim: _Sim, strat, strategy: str, p: dict, cfg: Config, data, store, adjust: bool, report: LoadReport) -> Outcome:
    """Metrics, tables and warnings of a finished simulation (either form)."""
    ann = periods_per_year(report.timeframe, sim.timestamps)
    ts = pl.Series("timestamp", sim.timestamps).dt.replace_time_zone("UTC")
    N = len(sim.symbols)
    alloc = cfg.cash / N
    trades, tr = _trades_frame(sim.trades, sim.symbols, sim.timestamps)
    sim.trades = None  # the frame holds them now
    equity = pl.DataFrame({
        "timestamp": ts, "equity": sim.equity, "cash": sim.cash, "gross_exposure": sim.gross,
        "drawdown": sim.equity / np.maximum.accumulate(sim.equity) - 1.0, "benchmark": sim.bench,
    })
    portfolio = all_metrics(
        sim.equity, ann, float(np.mean(sim.gross > 0)), trades["pnl"].to_numpy(), trades["return_pct"].to_numpy() / 100,
        float(sim.bench[-1] / cfg.cash - 1),
    )
    per_symbol = {}
    by_sym = np.argsort(tr.symbol, kind="stable")  # each symbol's trades in the frame's order
    cut = np.searchsorted(tr.symbol[by_sym], np.arange(N + 1))
    pnl, ret = tr.pnl, tr.return_pct()
    for j, sym in enumerate(sim.symbols):
        qty, flow, close_ff, mine = sim.column(j)
        sym_eq = symbol_equity(alloc, qty[:, None], flow[:, None], close_ff[:, None], mine)[:, 0]  # README "Per-symbol returns"
        mine_t = by_sym[cut[j]:cut[j + 1]]
        per_symbol[sym] = all_metrics(
            sym_eq, ann, float(np.mean(qty != 0)), pnl[mine_t], ret[mine_t] / 100,
            float(sim.last_close[j] / sim.first_close[j] - 1),
        )
    _engine_warnings(sim, alloc, report)
    run = {
        "strategy": strat.name, "strategy_spec": strategy, "strategy_form": strat.form, "params": p, "symbols": sim.symbols,
        "timeframe": report.timeframe, "start": str(ts[0]), "end": str(ts[-1]), "bars": len(ts), "periods_per_year": ann,
        "data": [str(d) for d in data] if data else None, "store": store, "adjust": adjust,
        **{k: v for k, v in asdict(cfg).items()},
    }
    return Outcome(run, sim.prices, equity, trades, portfolio, per_symbol, equity_metrics(sim.bench, ann), report, sim.fills)


SKIP_REASONS = {"no cash": "no cash left", "below one share": "size below one share", "no ATR": "ATR not available yet"}


def _engine_warnings(res: _Sim, alloc: float, report: LoadReport) -> None:
    """Warnings from the simulation: the engine's notes (a bar index shown as its date), entry
    signals not taken by reason (kind ``untaken``), and the symbols that never traded because one
    share costs more than their allocation (kind ``never_traded``)."""
    stamps = pl.Series(res.timestamps).dt.replace_time_zone("UTC")
    symbols = res.symbols
    for note in res.notes:
        report.warn("halt" if "halt" in note else "engine", "",
                    re.sub(r"on bar (\d+)", lambda m: "on " + fmt_ts(stamps[int(m.group(1))]), note))
    sk = res.skips
    if not len(sk):
        return
    parts = []
    for code in sorted(np.unique(sk.reason), key=lambda c: (-int(np.sum(sk.reason == c)), int(np.argmax(sk.reason == c)))):
        at = np.flatnonzero(sk.reason == code)
        why = SKIPS[code]
        parts.append(f"{at.size:,} {SKIP_REASONS.get(why, why)} (first {symbols[sk.symbol[at[0]]]} "
                     f"{fmt_ts(stamps[int(sk.bar[at[0]])])})")
    report.warn("untaken", "", f"{len(sk):,} entry signal(s) not taken: {'; '.join(parts)}")
    small_at = np.flatnonzero(sk.reason == SKIPS.index("below one share"))
    js, first = np.unique(sk.symbol[small_at], return_index=True)  # each symbol's first such skip
    traded = np.unique(res.fills.symbol)
    keep = ~np.isin(js, traded)
    small = [(int(j), float(sk.open[small_at[i]])) for j, i in zip(js[keep], first[keep])]
    if small:
        names = ", ".join(f"{symbols[j]} ({fmt_price(px)})" for j, px in small[:12])
        more = f" and {len(small) - 12:,} more" if len(small) > 12 else ""
        report.warn("never_traded", "", f"{len(small):,} symbol(s) never traded: one share cost more than the position "
                    f"size allowed ({alloc:,.2f} per symbol at the start): {names}{more}")


def _trades_frame(t: Trades, symbols: list[str], stamps: np.ndarray) -> tuple[pl.DataFrame, Trades]:
    """trades.parquet (SLICES.md contract 3) from the typed trade records, sorted by entry time
    then symbol (stable: the engine's order among equal keys); and the records in that order."""
    schema = {
        "symbol": pl.String, "side": pl.String, "quantity": pl.Float64, "entry_time": UTC_US, "entry_price": pl.Float64,
        "exit_time": UTC_US, "exit_price": pl.Float64, "pnl": pl.Float64, "return_pct": pl.Float64,
        "commission": pl.Float64, "exit_reason": pl.String, "is_open": pl.Boolean,
    }
    if not len(t):
        return pl.DataFrame(schema=schema), t
    t = t[np.lexsort((t.symbol, t.entry_bar))]  # bar order is time order; symbols are sorted by name
    df = pl.DataFrame({
        "symbol": pl.Series(symbols, dtype=pl.String).gather(t.symbol),
        "side": pl.Series(["short", "long"], dtype=pl.String).gather((t.quantity > 0).astype(np.int64)),
        "quantity": np.abs(t.quantity),
        "entry_time": stamps[t.entry_bar],
        "entry_price": t.entry_price,
        "exit_time": stamps[t.exit_bar],
        "exit_price": t.exit_price,
        "pnl": t.pnl,
        "return_pct": t.return_pct(),
        "commission": t.commission,
        "exit_reason": pl.Series(REASONS, dtype=pl.String).gather(t.reason.astype(np.int64)),
        "is_open": t.is_open,
    })
    return df.with_columns(pl.col("entry_time", "exit_time").dt.replace_time_zone("UTC")).cast(schema), t


def default_out_dir(strategy: str) -> Path:
    """A new folder ``./runs/backtest-<UTC yyyymmdd-HHMMSS>-<strategy>`` (suffixed if it exists);
    characters other than letters, digits, ``_ . -`` in the strategy name become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", strategy) or "strategy"
    base = Path("runs") / f"backtest-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{safe}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def metrics_document(o: Outcome) -> dict:
    """The metrics.json document: run settings, portfolio and per-symbol metrics, warnings."""
    return {"run": o.run, "portfolio": o.portfolio, "benchmark": o.benchmark, "per_symbol": o.per_symbol, "warnings": o.report.warnings}


RUN_FILES = ("metrics.json", "trades.parquet", "equity.parquet", "report.html")
"""The contract-3 files of a run folder; a run removes those of a previous run it does not write."""


def write_outputs(o: Outcome, out: Path, report: bool = True) -> Path:
    """Write metrics.json, trades.parquet, equity.parquet and (if ``report``) report.html into
    ``out`` (created). The folder holds one run: each file is written under a temporary name
    and they are renamed into place together at the end (metrics.json last), so an interrupted
    run leaves the previous run's files whole; a contract-3 file left by a previous run that
    this run does not write (report.html with ``report=False``) is then removed; no other file is
    touched. Returns the report path (or the folder without a report)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = {name: out / f".{name}.partial" for name in RUN_FILES}
    try:
        o.trades.write_parquet(tmp["trades.parquet"])
        o.equity.write_parquet(tmp["equity.parquet"])
        if report:
            from .report import write_report  # only runs that write a report pay for building it

            write_report(tmp["report.html"], title=f"{o.run['strategy']} backtest", run=o.run, metrics=o.portfolio,
                         per_symbol=o.per_symbol, equity=o.equity, trades=o.trades, prices=o.prices,
                         warnings=o.report.warnings)
        tmp["metrics.json"].write_text(json.dumps(metrics_document(o), indent=2, default=str))
        for name in ("trades.parquet", "equity.parquet", "report.html", "metrics.json"):
            if tmp[name].exists():
                tmp[name].replace(out / name)
            elif (out / name).is_file():
                (out / name).unlink()  # a previous run's report.html, not this run's
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return out / "report.html" if report else out


__all__ = ["Outcome", "backtest", "write_outputs", "default_out_dir", "metrics_document", "DataError"]
