"""Walk-forward analysis: search on each training window, trade the winner on the next test window.

Windows are calendar spans on the run's timeline (``--train 2y --test 6m [--step 6m]``; units
``d w m y``, months and years as calendar months): fold k trains on [s_k, s_k + train) and tests
on [s_k + train, s_k + train + test), with s_k = first bar + k x step (rolling) or the training
window always starting at the first bar (``--anchored``, growing). ``--purge N`` drops the last N
bars of each training window, so no training bar is within N bars of the test window. Folds stop
when a test window would start after the last bar; the last test window may be shorter.

Each fold runs the search (any method) on its training bars alone; the best eligible combination
trades the test window starting flat with the run's cash, its signals warmed up on the history
before the window (:func:`.evaluate.evaluate_window`). The out-of-sample curve stitches the test
windows' returns into one equity curve starting at the run's cash.

Walk-forward efficiency (Pardo, *The Evaluation and Optimization of Trading Strategies*, 2008):
WFE = annualised out-of-sample return (the stitched curve's CAGR) / the mean annualised in-sample
return (CAGR) of the chosen combinations on their training windows.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from .evaluate import evaluate_window, prepare
from .metrics import equity_metrics
from .search import SearchSettings, best_index, check_settings, max_need, results_frame, run_search
from .strategies import fmt_bar_time as _iso, resolve_params

_PERIOD = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$")
KEY_METRICS = ("total_return", "cagr", "sharpe", "max_drawdown", "n_trades")


def parse_period(text: str, what: str) -> tuple[int, str]:
    """``6m`` -> (6, "m"); units d (days), w (weeks), m (months), y (years). Raises ValueError."""
    m = _PERIOD.match(text or "")
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{what} {text!r}: expected a positive span like 30d, 12w, 6m or 2y")
    return int(m.group(1)), m.group(2)


def add_period(t: np.datetime64, period: tuple[int, str], times: int = 1) -> np.datetime64:
    """``t`` plus ``times`` x ``period`` (calendar months for m/y, the day clamped to the month's end)."""
    n, unit = period
    n *= times
    if unit in "dw":
        return t + np.timedelta64(n * (7 if unit == "w" else 1), "D")
    months = n * (12 if unit == "y" else 1)
    dt = datetime.fromisoformat(str(np.datetime64(t, "us")))
    y, mo = divmod(dt.month - 1 + months, 12)
    y += dt.year
    day = min(dt.day, [31, 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo])
    return np.datetime64(dt.replace(year=y, month=mo + 1, day=day), "us")


def folds(timestamps: np.ndarray, train: tuple, test: tuple, step: tuple, anchored: bool, purge: int) -> list[tuple[int, int, int, int]]:
    """Row ranges ``(train_lo, train_hi, test_lo, test_hi)`` (half-open) of every fold; training
    ranges already purged. Raises ValueError when no fold has >= 2 training and test bars."""
    ts = timestamps
    t0 = ts[0]
    out = []
    k = 0
    while True:
        start = t0 if anchored else add_period(t0, step, k)
        split = add_period(add_period(t0, step, k), train) if anchored else add_period(start, train)
        end = add_period(split, test)
        a, b, c = (int(np.searchsorted(ts, x)) for x in (start, split, end))
        if b >= ts.size:
            break
        if b - purge - a >= 2 and c - b >= 2:
            out.append((a, b - purge, b, c))
        k += 1
    if not out:
        raise ValueError(f"no walk-forward fold fits {ts.size:,} bars from {str(ts[0])[:10]} to {str(ts[-1])[:10]}; "
                         "use a shorter --train/--test or a longer --start/--end span")
    return out


def walk_forward(s: SearchSettings, train: str, test: str, step: str | None = None, anchored: bool = False,
                 purge: int = 0, quiet: bool = True) -> dict:
    """Run the walk-forward of ``s`` (see the module docstring). Returns ``{"folds": [...],
    "oos_equity": DataFrame(timestamp, equity, fold), "oos_metrics", "is_cagr_mean", "wfe",
    "prep"}``; each fold: fold, train_start, train_end, test_start, test_end (ISO dates),
    params (or None when no combination was eligible), ``is`` and ``oos`` metric dicts."""
    if purge < 0:
        raise ValueError(f"--purge must be >= 0 (got {purge})")
    tr, te = parse_period(train, "--train"), parse_period(test, "--test")
    st = parse_period(step, "--step") if step else te
    strat, _ = resolve_params(s.strategy, {})
    dims, _ = check_settings(s, strat)
    prep = prepare(strat, s.config, s.data, max_need(strat, dims))
    ts = prep.panel.timestamps
    rows = []
    curves = []
    level = s.config.cash
    for k, (a, b, c, d) in enumerate(folds(ts, tr, te, st, anchored, purge)):
        fold_s = replace(s, jobs=s.jobs, scheduler=s.scheduler)
        result, train_prep = run_search(fold_s, prep=prep.slice(a, b), strat=strat, quiet=quiet)
        frame = results_frame(result, dims, s.objective, s.min_trades)
        best = best_index(frame)
        row = {"fold": k, "train_start": _iso(ts[a]), "train_end": _iso(ts[b - 1]), "test_start": _iso(ts[c]),
               "test_end": _iso(ts[d - 1]), "train_bars": b - a, "test_bars": d - c, "combinations": len(result.params),
               "params": None, "is": None, "oos": None}
        if best is None:
            eq = np.full(d - c, s.config.cash)
        else:
            params = result.params[best]
            m, eq, _ = evaluate_window(prep, params, c, d)
            row |= {"params": params, "is": result.metrics[best], "oos": m}
        curves.append(pl.DataFrame({"timestamp": ts[c:d], "equity": level * eq / eq[0], "fold": [k] * (d - c)}))
        level = float(level * eq[-1] / eq[0])
        rows.append(row)
    oos = pl.concat(curves)
    if oos["timestamp"].n_unique() != oos.height:  # overlapping test windows (--step < --test): keep the first
        oos = oos.unique("timestamp", keep="first", maintain_order=True)
    oos = oos.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    om = equity_metrics(oos["equity"].to_numpy(), prep.ann)
    om["n_trades"] = sum(r["oos"]["n_trades"] for r in rows if r["oos"])
    is_cagr = [r["is"]["cagr"] for r in rows if r["is"] and r["is"]["cagr"] is not None]
    is_mean = float(np.mean(is_cagr)) if is_cagr else None
    wfe = om["cagr"] / is_mean if is_mean not in (None, 0.0) and om["cagr"] is not None else None
    return {"folds": rows, "oos_equity": oos, "oos_metrics": om, "is_cagr_mean": is_mean, "wfe": wfe, "prep": prep,
            "dims": dims}


def folds_frame(wf: dict) -> pl.DataFrame:
    """folds.parquet: fold, train/test start and end (ISO text), bars, the chosen parameters
    (one column each) and ``is_<metric>`` / ``oos_<metric>`` for total_return, cagr, sharpe,
    max_drawdown, n_trades."""
    recs = []
    for r in wf["folds"]:
        rec = {k: r[k] for k in ("fold", "train_start", "train_end", "test_start", "test_end", "train_bars", "test_bars")}
        for d in wf["dims"]:
            rec[d.name] = r["params"][d.name] if r["params"] else None
        for side in ("is", "oos"):
            for m in KEY_METRICS:
                rec[f"{side}_{m}"] = r[side][m] if r[side] else None
        recs.append(rec)
    return pl.DataFrame(recs, infer_schema_length=None)


def write_walk_forward(out: Path, s: SearchSettings, wf: dict, report: bool = True) -> dict:
    """Write folds.parquet, oos_equity.parquet, walk_forward.json and (if ``report``) report.html."""
    out.mkdir(parents=True, exist_ok=True)
    folds_frame(wf).write_parquet(out / "folds.parquet")
    wf["oos_equity"].write_parquet(out / "oos_equity.parquet")
    doc = {"strategy": s.strategy, "objective": s.objective, "method": s.method, "folds": wf["folds"],
           "oos_metrics": wf["oos_metrics"], "is_cagr_mean": wf["is_cagr_mean"], "wfe": wf["wfe"],
           "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "warnings": wf["prep"].report.warnings}
    (out / "walk_forward.json").write_text(json.dumps(doc, indent=2, default=str))
    if report:
        from .report import walk_forward_report

        walk_forward_report(out / "report.html", doc, wf["oos_equity"])
    return doc
