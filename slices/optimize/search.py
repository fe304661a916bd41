"""Parameter search: candidates (grid, random, Bayesian), execution (in process, local cores, a
Dask cluster), checkpoints for ``--resume``, and the output files.

Outputs in ``--out DIR``:

* ``results.parquet``: one row per combination evaluated: ``trial`` (Int64, the evaluation
  order), one column per parameter (its type), every metric of :data:`.metrics.METRICS`,
  ``objective`` (Float64, the score maximised; null when undefined) and ``eligible`` (Boolean:
  defined objective and at least ``--min-trades`` trades).
* ``best.json``: ``{"strategy", "params", "metrics", "objective", "score", "command",
  "overfitting": {"deflated_sharpe": {...}, "pbo": {...}}, "search": {...}, "complete"}``;
  ``command`` is the ``python -m slices.backtest run ...`` line that reproduces the metrics.
* ``report.html`` (:mod:`.report`).
* ``.partial/`` while a search runs: ``settings.json`` and one ``batch-<n>.npz`` per finished
  batch (trials, equity curves, metrics); ``--resume`` continues from them; removed when done.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .engine import Config
from .evaluate import NUMBA, DataSpec, Prepared, evaluate_many, prepare
from .metrics import METRICS
from .overfit import OBJECTIVES, bar_returns, bar_sharpe, deflated_sharpe, pbo_cscv, score
from .space import Constraint, Dimension, grid, grid_size, param_text, parse_space, shell_quote
from .strategies import Strategy, StrategyError

METHODS = ("grid", "random", "bayes")
BAYES_BATCH = 8  # trials asked of the TPE sampler at once, whatever --jobs is, so --seed reproduces


@dataclass
class SearchSettings:
    """A search as the user asked for it. ``space``: the ``--param`` texts; ``constraints``:
    the ``--constraint`` texts; ``trials``: random/bayes budget; ``jobs``: local processes
    (None = all cores); ``scheduler``: a Dask scheduler address or None."""

    strategy: str = "simple_ma"
    space: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    method: str = "grid"
    trials: int = 100
    seed: int | None = None
    objective: str = "sharpe"
    min_trades: int = 1
    cscv: int = 16
    jobs: int | None = None
    scheduler: str | None = None
    config: Config = field(default_factory=Config)
    data: DataSpec = field(default_factory=DataSpec)

    def signature(self) -> dict:
        """What must match for ``--resume`` to continue a search (everything but jobs/scheduler)."""
        d = asdict(self)
        d.pop("jobs"), d.pop("scheduler")
        return json.loads(json.dumps(d, default=str))


@dataclass
class SearchResult:
    """The evaluated combinations: ``params`` list of dicts, ``metrics`` list of dicts, ``equity``
    (n, T) curves, ``trials`` evaluation order; plus ``rejected`` (combination -> message) for
    combinations the strategy's validate refused, and ``complete`` (False after Ctrl-C)."""

    params: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    equity: list[np.ndarray] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)
    rejected: list[tuple[dict, str]] = field(default_factory=list)
    complete: bool = True

    def add(self, trial: int, params: dict, out: tuple) -> None:
        m, eq, err = out
        if m is None:
            self.rejected.append((params, err))
            return
        self.trials.append(trial)
        self.params.append(params)
        self.metrics.append(m)
        self.equity.append(eq)


# ----------------------------------------------------------------------------- candidates
def check_settings(s: SearchSettings, strat: Strategy) -> tuple[list[Dimension], list[Constraint]]:
    """Parse the space and constraints; check method, objective, trials, cscv. Raises ValueError."""
    if s.method not in METHODS:
        raise ValueError(f"--method: unknown method {s.method!r} (one of {', '.join(METHODS)})")
    if s.objective not in OBJECTIVES:
        raise ValueError(f"--objective: unknown objective {s.objective!r} (one of {', '.join(OBJECTIVES)})")
    if s.method != "grid" and not s.trials >= 1:
        raise ValueError(f"--trials must be >= 1 (got {s.trials})")
    if s.cscv < 2 or s.cscv % 2:
        raise ValueError(f"--cscv must be an even number >= 2 (got {s.cscv})")
    if s.min_trades < 0:
        raise ValueError(f"--min-trades must be >= 0 (got {s.min_trades})")
    if s.jobs is not None and s.jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (got {s.jobs})")
    dims = parse_space(strat, s.space)
    names = [d.name for d in dims]
    return dims, [Constraint(c, names) for c in s.constraints]


def candidates(s: SearchSettings, dims: list[Dimension], constraints: list[Constraint]) -> list[dict]:
    """The combinations of a grid or random search, in evaluation order: every grid point that
    meets the constraints (grid), or ``trials`` of them drawn without replacement with ``seed``
    (random; the whole grid when it is smaller). Raises ValueError when none meets them."""
    allowed = [p for p in grid(dims) if all(c(p) for c in constraints)]
    if not allowed:
        raise ValueError(f"no combination of the {grid_size(dims):,} meets the constraint(s) "
                         + "; ".join(repr(c.text) for c in constraints))
    if s.method == "random" and s.trials < len(allowed):
        rng = np.random.default_rng(s.seed)
        pick = rng.choice(len(allowed), size=s.trials, replace=False)
        return [allowed[i] for i in pick]
    return allowed


# ----------------------------------------------------------------------------- execution
SMALL_SWEEP_S = 1.0  # below this estimate, forking workers and shipping results costs more than it saves
FAST_AFTER_S = 0.8  # engine estimate above which loading numba and its cached kernels (~0.7 s) pays


def engine_seconds(prep: Prepared, combos: int) -> float:
    """A rough CPU-time estimate of ``combos`` combinations on the event engine: 1.1 us per bar
    and symbol each (1.4 ms a combination on 1,259 bars of one symbol, measured on the benchmark
    machine; benchmarks/optimize_bench.py, README "Speed")."""
    T, N = prep.panel.close.shape
    return combos * 1.1e-6 * T * N


def choose_path(prep: Prepared, combos: int) -> None:
    """Set ``prep.use_fast``: the compiled path for targets strategies when the sweep on the event
    engine would take longer than :data:`FAST_AFTER_S` (both paths give the same results; numba
    is not even imported for a small sweep, which then ends sooner)."""
    prep.use_fast = prep.strat.form == "targets" and NUMBA and engine_seconds(prep, combos) > FAST_AFTER_S


def estimate_seconds(prep: Prepared, combos: int) -> float:
    """CPU-time estimate of ``combos`` combinations on the path ``prep`` takes: the event engine
    (:func:`engine_seconds`) or the fast path, 0.1 ms per combination plus 0.15 ms per symbol
    (its targets) plus 5 ns per bar and symbol (the kernel), measured as there."""
    if not prep.use_fast:
        return engine_seconds(prep, combos)
    T, N = prep.panel.close.shape
    return combos * (1e-4 + 1.5e-4 * N + 5e-9 * T * N)


_WORKER_PREP: Prepared | None = None


def _init_worker(prep: Prepared) -> None:
    global _WORKER_PREP
    _WORKER_PREP = prep


def _worker_batch(combos: list[dict]) -> list:
    return evaluate_many(_WORKER_PREP, combos)


def dask_batch(prep: Prepared, combos: list[dict]) -> list:
    """A batch on a Dask worker (``prep`` is scattered to every worker once)."""
    return evaluate_many(prep, combos)


class Executor:
    """Runs batches of combinations in this process (jobs 1), on local processes (forked once,
    each receiving the prepared bars once), or on a Dask cluster (the prepared bars scattered to
    every worker once with ``broadcast=True``). :meth:`map` yields ``(batch index, outputs)`` as
    batches finish."""

    def __init__(self, prep: Prepared, jobs: int | None, scheduler: str | None, combos: int | None = None):
        self.prep, self.pool, self.client, self.prep_future = prep, None, None, None
        self.jobs = jobs or os.cpu_count() or 1
        if jobs is None and combos is not None and estimate_seconds(prep, combos) < SMALL_SWEEP_S:
            self.jobs = 1  # all cores by default, but a sweep this small ends sooner in this process
        if scheduler:
            try:
                from distributed import Client
            except ImportError:
                raise ValueError("--scheduler needs dask[distributed] (pip install 'dask[distributed]')") from None
            try:
                self.client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
            self.prep_future = self.client.scatter(prep, broadcast=True)
            self.jobs = max(1, sum(self.client.nthreads().values()))
        elif self.jobs > 1:
            import multiprocessing as mp

            if prep.strat.form == "targets" and prep.use_fast and NUMBA:
                from . import fast

                fast.warm()  # the forked workers inherit the loaded kernels
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("fork"), initializer=_init_worker,
                                            initargs=(prep,))

    def batch_size(self, n: int) -> int:
        return max(1, min(64, math.ceil(n / (self.jobs * 4))))

    def map(self, batches: list[list[dict]]):
        if self.client is not None:
            from distributed import as_completed

            futs = {self.client.submit(dask_batch, self.prep_future, b, pure=False): i for i, b in enumerate(batches)}
            for f in as_completed(list(futs)):
                yield futs[f], f.result()
        elif self.pool is not None:
            from concurrent.futures import as_completed

            futs = {self.pool.submit(_worker_batch, b): i for i, b in enumerate(batches)}
            try:
                for f in as_completed(futs):
                    yield futs[f], f.result()
            finally:
                for f in futs:
                    f.cancel()
        else:
            for i, b in enumerate(batches):
                yield i, evaluate_many(self.prep, b)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()


class Progress:
    """A one-line progress bar with ETA on stderr, shown only on a terminal and without --quiet."""

    def __init__(self, total: int, quiet: bool, label: str = "search"):
        self.total, self.done, self.label = total, 0, label
        self.on = not quiet and sys.stderr.isatty() and total > 0
        self.t0 = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if not self.on:
            return
        frac = self.done / self.total
        el = time.monotonic() - self.t0
        eta = el / frac * (1 - frac) if frac > 0 else 0.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done:,}/{self.total:,} {frac:6.1%}  ETA {eta:5.1f}s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\n")


# ----------------------------------------------------------------------------- checkpoints
class Checkpoint:
    """``<out>/.partial/``: ``settings.json`` and one ``batch-<n>.npz`` per finished batch."""

    def __init__(self, out: Path | None, settings: SearchSettings, resume: bool):
        self.dir = out / ".partial" if out is not None else None
        self.n = 0
        if self.dir is None:
            return
        sig = settings.signature()
        found = self.dir / "settings.json"
        if resume:
            if not found.is_file():
                raise ValueError(f"--resume: no interrupted search in {out} (no .partial/settings.json)")
            if json.loads(found.read_text()) != sig:
                raise ValueError(f"--resume: the options differ from the interrupted search in {out}; "
                                 "give the same options (only --jobs, --scheduler and --quiet may change)")
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        found.write_text(json.dumps(sig))
        self.n = len(list(self.dir.glob("batch-*.npz")))

    def load(self, into: SearchResult) -> None:
        """Add every saved batch to ``into`` (in trial order)."""
        if self.dir is None:
            return
        rows = []
        for f in sorted(self.dir.glob("batch-*.npz")):
            z = np.load(f, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
            for k, (trial, params, m, err) in enumerate(meta):
                rows.append((trial, params, (m, z["equity"][k] if m is not None else None, err)))
        for trial, params, out in sorted(rows, key=lambda r: r[0]):
            into.add(trial, params, out)

    def save(self, trials: list[int], combos: list[dict], outs: list) -> None:
        if self.dir is None:
            return
        eq = [o[1] for o in outs if o[1] is not None]
        T = eq[0].size if eq else 0
        mat = np.stack([o[1] if o[1] is not None else np.full(T, np.nan) for o in outs]) if eq else np.zeros((len(outs), 0))
        meta = json.dumps([[t, p, o[0], o[2]] for t, p, o in zip(trials, combos, outs)])
        tmp = self.dir / f".batch-{self.n:06d}.tmp.npz"
        np.savez(tmp, equity=mat, meta=np.array(meta))
        tmp.rename(self.dir / f"batch-{self.n:06d}.npz")
        self.n += 1

    def finish(self) -> None:
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir)


# ----------------------------------------------------------------------------- the search
def run_search(s: SearchSettings, *, out: Path | None = None, resume: bool = False, quiet: bool = True,
               prep: Prepared | None = None, strat: Strategy | None = None) -> tuple[SearchResult, Prepared]:
    """Run the search of ``s`` and return (result, prepared bars). With ``out``, batches are
    checkpointed in ``out/.partial`` (and ``resume`` continues them). Ctrl-C stops it: the result
    has ``complete`` False and holds what finished. ``prep``/``strat`` reuse bars already loaded
    (walk-forward folds). Raises ValueError/DataError for bad options or data."""
    if strat is None:
        from .strategies import resolve_params

        strat, _ = resolve_params(s.strategy, {})
    dims, constraints = check_settings(s, strat)
    if prep is None:
        need = max_need(strat, dims)
        prep = prepare(strat, s.config, s.data, need)
    ckpt = Checkpoint(out, s, resume)
    result = SearchResult()
    ckpt.load(result)
    done = {json.dumps(p, sort_keys=True) for p in result.params} | {json.dumps(p, sort_keys=True) for p, _ in result.rejected}
    todo = [] if s.method == "bayes" else \
        [(i, p) for i, p in enumerate(candidates(s, dims, constraints)) if json.dumps(p, sort_keys=True) not in done]
    combos = s.trials if s.method == "bayes" else len(todo)
    choose_path(prep, combos)
    ex = Executor(prep, s.jobs, s.scheduler, combos)
    try:
        if s.method == "bayes":
            _bayes(s, dims, constraints, ex, result, ckpt, quiet)
        else:
            bar = Progress(len(todo) + len(done), quiet)
            bar.update(len(done))
            size = ex.batch_size(len(todo))
            batches = [todo[k:k + size] for k in range(0, len(todo), size)]
            try:
                for i, outs in ex.map([[p for _, p in b] for b in batches]):
                    trials = [t for t, _ in batches[i]]
                    ckpt.save(trials, [p for _, p in batches[i]], outs)
                    for t, (_, p), o in zip(trials, batches[i], outs):
                        result.add(t, p, o)
                    bar.update(len(outs))
            except KeyboardInterrupt:
                result.complete = False
            finally:
                bar.close()
    finally:
        ex.close()
    order = np.argsort(result.trials, kind="stable")
    for name in ("params", "metrics", "equity", "trials"):
        vals = getattr(result, name)
        setattr(result, name, [vals[i] for i in order])
    if result.complete:
        ckpt.finish()
    return result, prep


def max_need(strat: Strategy, dims: list[Dimension]) -> int:
    """The most bars any combination needs (lookback over each dimension's extremes)."""
    need = 1
    for p in grid(dims) if grid_size(dims) <= 10_000 else [dict(zip([d.name for d in dims], v)) for v in
                                                            zip(*([min(d.values), max(d.values)] for d in dims))]:
        try:
            need = max(need, strat.needed_bars(p))
        except StrategyError:
            continue
    return need


def _bayes(s: SearchSettings, dims: list[Dimension], constraints: list[Constraint], ex: Executor,
           result: SearchResult, ckpt: Checkpoint, quiet: bool) -> None:
    """Optuna's TPE sampler (seeded), asked :data:`BAYES_BATCH` trials at a time. Combinations
    that break a constraint or that the strategy rejects count as failed trials; trials already
    done (``--resume``) are told to the study first, so it continues where it stopped."""
    try:
        import optuna
    except ImportError:
        raise ValueError("--method bayes needs optuna (pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=s.seed))
    dist = {}
    for d in dims:
        if len(d.values) == 1:
            continue
        if d.is_range and d.kind is int:
            dist[d.name] = optuna.distributions.IntDistribution(int(d.low), int(d.high), step=int(d.step))
        elif d.is_range:
            dist[d.name] = optuna.distributions.FloatDistribution(d.low, d.high, step=d.step)
        else:
            dist[d.name] = optuna.distributions.CategoricalDistribution(list(d.values))
    fixed = {d.name: d.values[0] for d in dims if len(d.values) == 1}
    names = [d.name for d in dims]

    def value(m: dict | None) -> float | None:
        v = score(m, s.objective) if m is not None else None
        return v if v is not None and m["n_trades"] >= s.min_trades else None

    state = optuna.trial.TrialState
    for p, m in zip(result.params, result.metrics):
        v = value(m)
        study.add_trial(optuna.trial.create_trial(params={k: p[k] for k in dist}, distributions=dist,
                                                  value=v, state=state.COMPLETE if v is not None else state.FAIL))
    for p, _ in result.rejected:
        study.add_trial(optuna.trial.create_trial(params={k: p[k] for k in dist}, distributions=dist, state=state.FAIL))
    n_done = len(result.params) + len(result.rejected)
    bar = Progress(s.trials, quiet, "bayes")
    bar.update(n_done)
    try:
        while n_done < s.trials:
            asked = [study.ask(dist) for _ in range(min(BAYES_BATCH, s.trials - n_done))]
            combos = [{k: (fixed[k] if k in fixed else _typed(dims, k, t.params[k])) for k in names} for t in asked]
            ok = [all(c(p) for c in constraints) for p in combos]
            run = [p for p, good in zip(combos, ok) if good]
            outs_run = [o for _, o in sorted(ex.map([run]))][0] if run else []
            it = iter(outs_run)
            outs = [next(it) if good else (None, None, "breaks the constraint(s)") for good in ok]
            trials = list(range(n_done, n_done + len(asked)))
            ckpt.save(trials, combos, outs)
            for t, trial, p, o in zip(trials, asked, combos, outs):
                result.add(t, p, o)
                v = value(o[0])
                study.tell(trial, v, state=state.COMPLETE if v is not None else state.FAIL) if v is not None \
                    else study.tell(trial, state=state.FAIL)
            n_done += len(asked)
            bar.update(len(asked))
    except KeyboardInterrupt:
        result.complete = False
    finally:
        bar.close()


def _typed(dims: list[Dimension], name: str, v):
    d = next(x for x in dims if x.name == name)
    if d.kind is int:
        return int(v)
    if d.kind is float and d.is_range:
        return float(round(v, 12))
    return v


# ----------------------------------------------------------------------------- selection and outputs
def results_frame(result: SearchResult, dims: list[Dimension], objective: str, min_trades: int) -> pl.DataFrame:
    """results.parquet: trial, parameters, every metric, objective, eligible (module docstring)."""
    cols: dict[str, pl.Series] = {"trial": pl.Series("trial", result.trials, dtype=pl.Int64)}
    types = {int: pl.Int64, float: pl.Float64, bool: pl.Boolean, str: pl.String}
    for d in dims:
        cols[d.name] = pl.Series(d.name, [p[d.name] for p in result.params], dtype=types[d.kind])
    for k in METRICS:
        cols[k] = pl.Series(k, [m[k] for m in result.metrics], dtype=pl.Int64 if k in ("n_trades", "max_drawdown_duration") else pl.Float64)
    scores = [score(m, objective) for m in result.metrics]
    cols["objective"] = pl.Series("objective", scores, dtype=pl.Float64)
    cols["eligible"] = pl.Series("eligible", [v is not None and m["n_trades"] >= min_trades for v, m in zip(scores, result.metrics)],
                                 dtype=pl.Boolean)
    return pl.DataFrame(list(cols.values()))


def best_index(frame: pl.DataFrame) -> int | None:
    """Row of the best eligible combination (highest objective; the earliest trial on ties)."""
    ok = frame.with_row_index("_row").filter(pl.col("eligible"))
    if ok.height == 0:
        return None
    return int(ok.sort(["objective", "trial"], descending=[True, False])["_row"][0])


def overfitting(result: SearchResult, best: int, cscv: int) -> dict:
    """The deflated Sharpe ratio of the best combination over every combination tried, and the
    PBO by CSCV over their per-bar returns (:mod:`.overfit`); ``pbo`` holds an ``error`` text
    when the data are too short for ``cscv`` blocks."""
    rets = [bar_returns(e) for e in result.equity]
    sharpes = np.array([bar_sharpe(r) for r in rets])
    dsr = deflated_sharpe(rets[best], sharpes)
    try:
        pbo = pbo_cscv(np.column_stack(rets), cscv) if len(rets) > 1 else {"pbo": None, "splits": cscv, "combinations": 0, "logits": []}
    except ValueError as exc:
        pbo = {"pbo": None, "splits": cscv, "combinations": 0, "logits": [], "error": str(exc)}
    return {"deflated_sharpe": dsr, "pbo": pbo}


def backtest_command(s: SearchSettings, strat: Strategy, params: dict) -> str:
    """The ``python -m slices.backtest run ...`` line that reproduces ``params`` with the
    search's data, cost, sizing and risk options (``--no-report``, output to ./runs)."""
    c, d = s.config, s.data
    a = ["python", "-m", "slices.backtest", "run", "--strategy", s.strategy]
    if d.symbols:
        a += ["--symbols", ",".join(d.symbols)]
    for f in d.data or []:
        a += ["--data", str(f)]
    for opt, v in (("--store", d.store), ("--timeframe", d.timeframe), ("--start", d.start), ("--end", d.end)):
        if v:
            a += [opt, str(v)]
    if not d.adjust:
        a.append("--no-adjust")
    if d.keep_suspicious:
        a.append("--keep-suspicious")
    for k, v in params.items():
        a += ["--param", f"{k}={param_text(v)}"]
    a += ["--cash", repr(float(c.cash)), "--commission", repr(float(c.commission)), "--slippage-bps", repr(float(c.slippage_bps))]
    a.append("--allow-short" if c.allow_short else "--long-only")
    a.append("--whole-shares" if c.whole_shares else "--fractional")
    if strat.form == "targets":
        a += ["--sizing", c.sizing]
        for opt, v in (("--fraction", c.fraction), ("--stop-loss-atr", c.stop_loss_atr),
                       ("--take-profit-atr", c.take_profit_atr)):
            if v is not None:
                a += [opt, repr(float(v))]
        if c.max_position_pct != 100.0:
            a += ["--max-position-pct", repr(float(c.max_position_pct))]
    else:
        if c.leverage != 1.0:
            a += ["--leverage", repr(float(c.leverage))]
        if c.rebalance_threshold:
            a += ["--rebalance-threshold", repr(float(c.rebalance_threshold))]
    if c.atr_window != 14:
        a += ["--atr-window", str(c.atr_window)]
    if c.max_drawdown is not None:
        a += ["--max-drawdown", repr(float(c.max_drawdown))]
    a.append("--no-report")
    return " ".join(shell_quote(x) for x in a)


def write_search(out: Path, s: SearchSettings, strat: Strategy, prep: Prepared, result: SearchResult,
                 dims: list[Dimension], report: bool = True) -> dict:
    """Write results.parquet, best.json and (if ``report``) report.html into ``out``; return the
    best.json document. With no eligible combination best.json has ``params`` null."""
    out.mkdir(parents=True, exist_ok=True)
    frame = results_frame(result, dims, s.objective, s.min_trades)
    frame.write_parquet(out / "results.parquet")
    b = best_index(frame)
    doc = {
        "strategy": s.strategy, "params": None, "metrics": None, "objective": s.objective, "score": None,
        "command": None, "overfitting": None, "complete": result.complete,
        "search": {"method": s.method, "seed": s.seed, "combinations": len(result.params),
                   "eligible": int(frame["eligible"].sum()), "rejected": len(result.rejected),
                   "min_trades": s.min_trades, "space": s.space, "constraints": s.constraints,
                   "symbols": prep.panel.symbols, "timeframe": prep.timeframe, "bars": int(prep.panel.timestamps.size),
                   "start": str(prep.panel.timestamps[0]), "end": str(prep.panel.timestamps[-1]),
                   "periods_per_year": prep.ann},
        "warnings": prep.report.warnings,
    }
    if b is not None:
        doc |= {"params": result.params[b], "metrics": result.metrics[b], "score": frame["objective"][b],
                "command": backtest_command(s, strat, result.params[b]), "overfitting": overfitting(result, b, s.cscv)}
    logits = []
    if doc["overfitting"] is not None:  # the CSCV logits go to the report only (12,870 of them with S = 16)
        logits = doc["overfitting"]["pbo"].pop("logits")
        doc["overfitting"]["pbo"]["logit_median"] = float(np.median(logits)) if logits else None
    (out / "best.json").write_text(json.dumps(doc, indent=2, default=str))
    if report:
        from .report import search_report

        search_report(out / "report.html", doc, frame, dims, logits)
    return doc
