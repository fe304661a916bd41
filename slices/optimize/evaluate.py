"""One combination of parameters through this slice's own engine, built for sweeps.

:func:`prepare` loads and checks the bars once (exactly as ``python -m slices.backtest run``
would: same loader, same exclusions, same lookback rule) and keeps everything that does not
depend on the parameters: the panel, each symbol's read-only bars, the ATR for stops, the
buy-and-hold return, the periods per year. :func:`evaluate` then runs one combination: targets
(or weights), the simulation (:mod:`.engine`, the backtest slice's execution rules) and the
portfolio metrics of :data:`.metrics.METRICS`, computed from arrays without building frames.
Inside :func:`evaluate_many` the indicators are memoised per distinct window
(:func:`.strategies.indicator_cache`), so a grid over 75 (fast, slow) pairs computes 20 SMAs.

Parity with the backtest slice (the portfolio metrics of ``metrics.json`` to 1e-9) is pinned by
``tests/contracts/test_optimize_backtest_parity.py``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .bars import DataError, LoadReport, load_bars
from .engine import Config, Panel, compute_weights, ffill, simulate, simulate_weights
from .metrics import all_metrics, periods_per_year
from .strategies import Strategy, atr, call_targets, indicator_cache


@dataclass
class DataSpec:
    """The data options of a run, as the user gave them (so the reproducing backtest command can
    repeat them): ``symbols`` (None = all in the data), ``data`` files, ``store``, ``timeframe``,
    ``start``/``end`` (inclusive, UTC), ``adjust``, ``keep_suspicious``."""

    symbols: list[str] | None = None
    data: list[str] | None = None
    store: str | None = None
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    adjust: bool = True
    keep_suspicious: bool = False


@dataclass
class Prepared:
    """Everything of a sweep that does not depend on the parameters.

    ``panel``: the bars on the union of timestamps; ``bars``: per symbol the read-only arrays a
    targets strategy receives; ``atrs`` (T, N) ATR(``cfg.atr_window``) for stops and atr-risk
    sizing; ``ann``: periods per year; ``bh``: buy-and-hold return of the portfolio (fraction);
    ``timeframe``; ``report``: the loader's notes and warnings."""

    strat: Strategy
    cfg: Config
    panel: Panel
    bars: list[dict]
    atrs: np.ndarray
    ann: float
    bh: float
    timeframe: str
    report: LoadReport = field(default_factory=LoadReport)
    frozen: object = field(default=None, repr=False)  # fast.Frozen of the panel, built at the first fast run
    use_fast: bool = True  # targets strategies on the compiled path (the search turns it off for small sweeps)
    cache: dict = field(default_factory=dict, repr=False)  # indicators of this sweep (evaluate_many)

    def slice(self, lo: int, hi: int) -> "Prepared":
        """The same sweep on bars ``lo:hi`` of the timeline only (walk-forward folds): a symbol
        without a bar in the window is left out. Indicators restart at the window's first bar, as
        a backtest run with ``--start``/``--end`` on that window would."""
        p = self.panel
        keep = ~np.isnan(p.close[lo:hi]).all(axis=0)
        cols = np.flatnonzero(keep)
        sub = Panel([p.symbols[j] for j in cols], p.timestamps[lo:hi], *(getattr(p, k)[lo:hi][:, cols] for k in
                    ("open", "high", "low", "close")), None if p.volume is None else p.volume[lo:hi][:, cols])
        return _finish(self.strat, self.cfg, sub, self.timeframe, self.report)


def prepare(strat: Strategy, cfg: Config, spec: DataSpec, need: int) -> Prepared:
    """Load the bars of ``spec`` (:func:`.bars.load_bars`) and apply the lookback rule of a
    backtest run: a symbol with fewer than ``need`` bars (the most any combination needs, plus
    the ATR window when stops or atr-risk sizing are on) is an error when symbols were named or
    none is left, else excluded with a warning. Raises DataError."""
    cfg.check()
    cfg.check_form(strat.form, strat.label)
    bars, report = load_bars(spec.symbols, spec.timeframe, store=spec.store, data=spec.data, start=spec.start,
                             end=spec.end, adjust=spec.adjust, keep_suspicious=spec.keep_suspicious)
    if cfg.stop_loss_atr or cfg.take_profit_atr or cfg.sizing == "atr-risk":
        need = max(need, cfg.atr_window + 1)
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:
        msgs = [f"{s}: {n:,} bars from {t:%Y-%m-%d}, fewer than the {need:,} that {strat.label} needs" for s, n, t in short.iter_rows()]
        if spec.symbols is not None or short.height == counts.height:
            raise DataError(msgs[0] + " (use a longer --start/--end span or smaller --param windows)")
        for (s, _, _), m in zip(short.iter_rows(), msgs):
            report.warn("excluded", s, m + "; symbol excluded")
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    return _finish(strat, cfg, Panel.from_bars(bars), report.timeframe, report)


def _finish(strat: Strategy, cfg: Config, panel: Panel, timeframe: str, report: LoadReport) -> Prepared:
    T, N = panel.close.shape
    per_symbol, atrs = [], np.full((T, N), np.nan)
    for j in range(N):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        b = panel.symbol_bars(j, rows)
        per_symbol.append(b | {"_rows": rows})
        atrs[rows, j] = atr(b["high"], b["low"], b["close"], cfg.atr_window)
    first_row = np.argmax(~np.isnan(panel.close), axis=0)
    first_close = panel.close[first_row, np.arange(N)]
    close_ff = ffill(panel.close)
    rel = np.where(np.isnan(close_ff), 1.0, close_ff / first_close)
    bench_last = cfg.cash / N * rel[-1].sum()
    ann = periods_per_year(timeframe, panel.timestamps)
    return Prepared(strat, cfg, panel, per_symbol, atrs, ann, float(bench_last / cfg.cash - 1), timeframe, report)


def targets_of(prep: Prepared, params: dict) -> np.ndarray:
    """Targets (T, N) int8 of a targets strategy, as the backtest slice computes them: each
    symbol on its own bars, repeated over rows where it has no bar, shorts flat when long-only."""
    panel, cfg = prep.panel, prep.cfg
    T, N = panel.close.shape
    out = np.zeros((T, N), dtype=np.int8)
    for j, b in enumerate(prep.bars):
        rows = b["_rows"]
        bars = {k: v for k, v in b.items() if k != "_rows"}
        tgt = call_targets(prep.strat, bars, params)
        if not cfg.allow_short:
            tgt = np.maximum(tgt, 0).astype(np.int8)
        if rows.size == T:
            out[:, j] = tgt
        else:
            full = np.full(T, np.nan)
            full[rows] = tgt
            out[:, j] = np.nan_to_num(ffill(full[:, None])[:, 0], nan=0.0).astype(np.int8)
    return out


def signals_of(prep: Prepared, params: dict) -> np.ndarray:
    """Targets (T, N) int8 of a targets strategy or weights (T, N) float64 of a weights strategy."""
    if prep.strat.form == "weights":
        return compute_weights(prep.panel, prep.strat, params, prep.cfg.allow_short, prep.cfg.leverage)[0]
    return targets_of(prep, params)


_ENGINE_ONLY = False  # tests set it to run the event engine where the fast path would apply
NUMBA = importlib.util.find_spec("numba") is not None  # without importing it (0.35 s)


def run_signals(prep: Prepared, signals: np.ndarray) -> tuple[dict, np.ndarray]:
    """Simulate ``signals`` (:func:`signals_of`) and compute the portfolio metrics from arrays,
    as the backtest slice does (trades ordered by entry time, then symbol). Returns (metrics,
    equity (T,) currency at each close).

    Targets strategies take the fast path (:func:`.fast.simulate_targets`, compiled with numba;
    every option of the signal form) unless ``prep.use_fast`` is off (small sweeps, where loading
    numba costs more than it saves); those, weights strategies and a missing numba the event
    engine (:func:`.engine.simulate`, :func:`.engine.simulate_weights`); both give the same metrics."""
    cfg = prep.cfg
    if prep.strat.form == "targets" and prep.use_fast and NUMBA and not _ENGINE_ONLY:
        from . import fast  # numba and the cached kernels load here, only when used (about 0.7 s)

        if prep.frozen is None:
            prep.frozen = fast.Frozen(prep.panel)
        equity, gross, pnl, ret = fast.simulate_targets(prep.frozen, signals, prep.atrs, cfg)
        return fast.metrics(equity, prep.ann, float(np.mean(gross > 0)), pnl, ret, prep.bh), equity
    if prep.strat.form == "weights":
        res = simulate_weights(prep.panel, signals, cfg)
    else:
        res = simulate(prep.panel, signals, prep.atrs, cfg)
    trades = res.trades
    if trades:
        order = sorted(range(len(trades)), key=lambda i: (trades[i]["entry_bar"], trades[i]["symbol"]))
        pnl = np.array([float(trades[i]["pnl"]) for i in order])
        ret = np.array([float(trades[i]["return_pct"]) for i in order]) / 100
    else:
        pnl = ret = np.zeros(0)
    m = all_metrics(res.equity, prep.ann, float(np.mean(res.gross > 0)), pnl, ret, prep.bh)
    return m, res.equity


def evaluate(prep: Prepared, params: dict) -> tuple[dict, np.ndarray]:
    """Run one combination. Returns (metrics, equity): the portfolio metrics of
    :data:`.metrics.METRICS` (the ``portfolio`` section of a backtest's metrics.json) and the
    equity curve (T,) in currency at each close. Raises StrategyError for a bad strategy output."""
    return run_signals(prep, signals_of(prep, params))


def evaluate_window(prep: Prepared, params: dict, lo: int, hi: int) -> tuple[dict, np.ndarray, "Prepared"]:
    """Trade ``params`` on rows ``lo:hi`` only (a walk-forward test window), starting flat with
    the run's cash. The signals are computed on the whole history (they are causal, so row t only
    uses bars up to t: the indicators are warm at ``lo``), then the window is simulated: a target
    already held at ``lo`` is entered at the next bar's open. Symbols without a bar in the window
    are left out. Returns (metrics, equity, the window's Prepared)."""
    sig = signals_of(prep, params)
    sub = prep.slice(lo, hi)
    sub.use_fast = prep.use_fast
    cols = [prep.panel.symbols.index(s) for s in sub.panel.symbols]
    sub.atrs = prep.atrs[lo:hi][:, cols]
    m, eq = run_signals(sub, sig[lo:hi][:, cols])
    return m, eq, sub


CACHE_BYTES = 512 * 2**20  # indicators kept across the batches of a sweep, at most about this much


def evaluate_many(prep: Prepared, combos: list[dict]) -> list[tuple[dict | None, np.ndarray | None, str | None]]:
    """:func:`evaluate` over ``combos`` with indicators memoised across them and across the
    batches of the sweep (``prep.cache``, cleared when over :data:`CACHE_BYTES`). A combination the
    strategy's validate rejects gives ``(None, None, message)``, the others ``(metrics, equity,
    None)``; a bad output or an exception inside the strategy raises StrategyError (contract 5)."""
    out = []
    if sum(v[1].nbytes for v in prep.cache.values()) > CACHE_BYTES:
        prep.cache.clear()
    with indicator_cache(prep.cache):
        for p in combos:
            try:
                prep.strat.check(p)
            except ValueError as exc:
                out.append((None, None, str(exc)))
                continue
            m, eq = evaluate(prep, p)  # a bad output raises StrategyError: the file is broken (contract 5)
            out.append((m, eq, None))
    return out
