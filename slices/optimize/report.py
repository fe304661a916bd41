"""report.html pages of the optimize slice: self-contained HTML with inline SVG charts (no script,
no network), so they open offline anywhere.

* search: the best combination and its backtest command, overfitting statistics (deflated
  Sharpe, PBO with the histogram of the CSCV logits), a heatmap of the objective over the first
  two parameters that vary (best value over the others), one sensitivity chart per varying
  parameter (best and median objective per value), and the distribution of the objective.
* walk-forward: the per-fold table, the stitched out-of-sample equity curve, WFE.
* portfolio: the weights, expected return/volatility/Sharpe, and the efficient frontier.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import polars as pl

W, H, PAD = 560, 260, 40
CSS = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}h1{font-size:1.4em}"
       "h2{font-size:1.1em;margin-top:28px}table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 10px;"
       "border-bottom:1px solid #ddd;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
       "code{background:#f4f4f4;padding:2px 4px;display:block;white-space:pre-wrap;word-break:break-all}"
       "svg{background:#fafafa;border:1px solid #eee;margin:4px}.charts{display:flex;flex-wrap:wrap}")


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return _e(v)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>{body}"
            "<footer><p>Self-contained page: inline SVG, works offline.</p></footer></body></html>")


def _table(rows: list[list], head: list[str]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _scale(v: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
    return a + (v - lo) / (hi - lo if hi > lo else 1.0) * (b - a)


def svg_line(x: np.ndarray, ys: dict[str, np.ndarray], title: str, xlabels: list[str] | None = None) -> str:
    """A line chart of one or more series over ``x`` (numbers), with min/max labels."""
    x = np.asarray(x, dtype=float)
    allv = np.concatenate([np.asarray(y, float)[np.isfinite(np.asarray(y, float))] for y in ys.values()] or [np.zeros(1)])
    lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    parts = [f"<svg width='{W}' height='{H}' role='img'><text x='{PAD}' y='16' font-size='13'>{_e(title)}</text>"]
    for (name, y), c in zip(ys.items(), colours):
        y = np.asarray(y, float)
        ok = np.isfinite(y)
        px = _scale(x[ok], x.min(), x.max(), PAD, W - 10)
        py = _scale(y[ok], lo, hi, H - PAD, 26)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
        parts.append(f"<polyline fill='none' stroke='{c}' stroke-width='1.5' points='{pts}'><title>{_e(name)}</title></polyline>")
    parts.append(f"<text x='2' y='30' font-size='10'>{_fmt(hi)}</text><text x='2' y='{H - PAD}' font-size='10'>{_fmt(lo)}</text>")
    lx = xlabels or [_fmt(float(x.min())), _fmt(float(x.max()))]
    parts.append(f"<text x='{PAD}' y='{H - 22}' font-size='10'>{_e(lx[0])}</text>"
                 f"<text x='{W - 90}' y='{H - 22}' font-size='10'>{_e(lx[-1])}</text>")
    legend = " ".join(f"<tspan fill='{c}'>■ {_e(n)}</tspan>" for n, c in zip(ys, colours))
    parts.append(f"<text x='{PAD}' y='{H - 6}' font-size='11'>{legend}</text></svg>")
    return "".join(parts)


def svg_hist(values: np.ndarray, title: str, bins: int = 30, mark: float | None = None) -> str:
    """A histogram; ``mark`` draws a vertical line (e.g. the best value, or 0 for logits)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ""
    counts, edges = np.histogram(v, bins=bins)
    bw = (W - PAD - 10) / bins
    top = counts.max() or 1
    parts = [f"<svg width='{W}' height='{H}' role='img'><text x='{PAD}' y='16' font-size='13'>{_e(title)}</text>"]
    for i, c in enumerate(counts):
        h = c / top * (H - PAD - 30)
        parts.append(f"<rect x='{PAD + i * bw:.1f}' y='{H - PAD - h:.1f}' width='{bw - 1:.1f}' height='{h:.1f}' fill='#1f77b4'>"
                     f"<title>{_fmt(float(edges[i]))} .. {_fmt(float(edges[i + 1]))}: {c}</title></rect>")
    if mark is not None and edges[0] <= mark <= edges[-1]:
        mx = _scale(np.array([mark]), edges[0], edges[-1], PAD, W - 10)[0]
        parts.append(f"<line x1='{mx:.1f}' x2='{mx:.1f}' y1='24' y2='{H - PAD}' stroke='#d62728' stroke-width='2'/>")
    parts.append(f"<text x='{PAD}' y='{H - 22}' font-size='10'>{_fmt(float(edges[0]))}</text>"
                 f"<text x='{W - 70}' y='{H - 22}' font-size='10'>{_fmt(float(edges[-1]))}</text></svg>")
    return "".join(parts)


def svg_heatmap(frame: pl.DataFrame, x: str, y: str, value: str = "objective") -> str:
    """The best ``value`` for each (x, y) pair as coloured cells (blue low, red high)."""
    g = frame.group_by(x, y).agg(pl.col(value).max()).drop_nulls(value)
    if g.height == 0:
        return ""
    xs, ys = sorted(g[x].unique().to_list()), sorted(g[y].unique().to_list())
    lo, hi = float(g[value].min()), float(g[value].max())
    cw, ch = (W - 80) / len(xs), (H + 60 - 60) / len(ys)
    parts = [f"<svg width='{W}' height='{H + 60}' role='img'><text x='60' y='16' font-size='13'>"
             f"{_e(value)} by {_e(x)} (across) and {_e(y)} (down)</text>"]
    for a, b, v in g.iter_rows():
        t = (v - lo) / (hi - lo) if hi > lo else 0.5
        col = f"rgb({int(255 * t)},{int(80 + 80 * (1 - abs(2 * t - 1)))},{int(255 * (1 - t))})"
        i, j = xs.index(a), ys.index(b)
        parts.append(f"<rect x='{60 + i * cw:.1f}' y='{24 + j * ch:.1f}' width='{cw:.1f}' height='{ch:.1f}' fill='{col}'>"
                     f"<title>{_e(x)}={_e(a)}, {_e(y)}={_e(b)}: {_fmt(v)}</title></rect>")
    for j, b in enumerate(ys):
        parts.append(f"<text x='2' y='{24 + (j + 0.7) * ch:.1f}' font-size='9'>{_e(b)}</text>")
    for i, a in enumerate(xs):
        if len(xs) <= 20 or i % max(1, len(xs) // 10) == 0:
            parts.append(f"<text x='{60 + i * cw:.1f}' y='{H + 56}' font-size='9'>{_e(a)}</text>")
    return "".join(parts) + "</svg>"


def search_report(path: Path, doc: dict, frame: pl.DataFrame, dims, logits: list[float] | None = None) -> Path:
    """report.html of a search (see the module docstring); ``logits``: the CSCV logits."""
    s = doc["search"]
    body = [f"<p>{_e(doc['strategy'])}, {_e(s['method'])} search, {s['combinations']:,} combinations "
            f"({s['eligible']:,} eligible), objective {_e(doc['objective'])}; {len(s['symbols'])} symbol(s), "
            f"{_e(s['timeframe'])}, {_e(s['start'][:10])} .. {_e(s['end'][:10])}.</p>"]
    if not doc["complete"]:
        body.append("<p><b>Interrupted:</b> the search did not finish; continue it with --resume.</p>")
    if doc["params"] is not None:
        body.append("<h2>Best combination</h2>" + _table([[k, v] for k, v in doc["params"].items()], ["parameter", "value"]))
        body.append("<p>Reproduce with the backtest slice:</p><code>" + _e(doc["command"]) + "</code>")
        body.append(_table([[k, v] for k, v in doc["metrics"].items()], ["metric", "value"]))
        o = doc["overfitting"]
        d, p = o["deflated_sharpe"], o["pbo"]
        body.append("<h2>Overfitting</h2>" + _table([
            ["deflated Sharpe ratio (probability the true Sharpe > 0)", d["dsr"]],
            ["per-bar Sharpe of the best / expected max of the trials (SR0)", f"{_fmt(d['sharpe'])} / {_fmt(d['sr0'])}"],
            ["trials, variance of their per-bar Sharpe", f"{d['n_trials']:,}, {_fmt(d['sharpe_variance'])}"],
            ["probability of backtest overfitting (CSCV)", p["pbo"]],
            ["CSCV blocks, splits", f"{p['splits']}, {p['combinations']:,}" + (f" ({p['error']})" if p.get("error") else "")],
        ], ["statistic", "value"]))
        if logits:
            body.append(svg_hist(np.array(logits), "CSCV logits of the in-sample winner's out-of-sample rank "
                                 "(<= 0: overfit)", mark=0.0))
    varying = [d.name for d in dims if len(d.values) > 1]
    charts = []
    if len(varying) >= 2:
        charts.append(svg_heatmap(frame, varying[0], varying[1]))
    for name in varying:
        g = frame.group_by(name).agg(pl.col("objective").max().alias("best"),
                                     pl.col("objective").median().alias("median")).sort(name)
        if g[name].dtype in (pl.Int64, pl.Float64) and g.height > 1:
            charts.append(svg_line(g[name].to_numpy(), {"best": g["best"].to_numpy(), "median": g["median"].to_numpy()},
                                   f"sensitivity: objective by {name}"))
    charts.append(svg_hist(frame["objective"].drop_nulls().to_numpy(), f"distribution of {doc['objective']}",
                           mark=doc["score"]))
    body.append("<h2>Parameters</h2><div class='charts'>" + "".join(charts) + "</div>")
    top = frame.filter(pl.col("eligible")).sort("objective", descending=True).head(20)
    cols = [c for c in top.columns if c not in ("eligible",)][: 8 + len(dims)]
    body.append("<h2>Top 20</h2>" + _table([list(r) for r in top.select(cols).iter_rows()], cols))
    if doc.get("warnings"):
        body.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_e(w)}</li>" for w in doc["warnings"]) + "</ul>")
    path.write_text(_page(f"{doc['strategy']} parameter search", "".join(body)))
    return path


def walk_forward_report(path: Path, doc: dict, oos: pl.DataFrame) -> Path:
    """report.html of a walk-forward: folds, the stitched OOS equity, WFE."""
    rows = []
    for r in doc["folds"]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) if r["params"] else "(none eligible)"
        rows.append([r["fold"], f"{r['train_start']} .. {r['train_end']}", f"{r['test_start']} .. {r['test_end']}", params,
                     r["is"]["cagr"] if r["is"] else None, r["oos"]["cagr"] if r["oos"] else None,
                     r["oos"]["sharpe"] if r["oos"] else None])
    eq = oos["equity"].to_numpy()
    ts = oos["timestamp"].cast(pl.String).to_list()
    body = [_table(rows, ["fold", "train", "test", "params", "IS CAGR", "OOS CAGR", "OOS Sharpe"]),
            "<h2>Stitched out-of-sample equity</h2>",
            svg_line(np.arange(eq.size), {"equity": eq}, "out-of-sample equity", [ts[0][:10], ts[-1][:10]]),
            _table([[k, v] for k, v in doc["oos_metrics"].items()], ["metric", "value"]),
            f"<p>Walk-forward efficiency (OOS CAGR / mean IS CAGR): {_fmt(doc['wfe'])}</p>"]
    path.write_text(_page(f"{doc['strategy']} walk-forward", "".join(body)))
    return path


def portfolio_report(path: Path, doc: dict, frontier: list[tuple[float, float]]) -> Path:
    """report.html of a portfolio optimisation: weights, performance, efficient frontier."""
    rows = [[s, w] for s, w in sorted(doc["weights"].items(), key=lambda kv: -abs(kv[1]))]
    body = [f"<p>{_e(doc['method'])} on {len(rows)} symbol(s), {_e(doc['start'])} .. {_e(doc['end'])}; covariance "
            f"{_e(doc['covariance'])}, expected returns {_e(doc['returns'])}.</p>",
            _table(rows, ["symbol", "weight"]),
            _table([["expected return", doc["expected_return"]], ["volatility", doc["volatility"]], ["sharpe", doc["sharpe"]]],
                   ["", "annualised"])]
    if frontier:
        v, r = np.array(frontier).T
        body.append("<h2>Efficient frontier</h2>" + svg_line(v, {"return by volatility": r}, "efficient frontier "
                                                              "(x: volatility, y: return)"))
    path.write_text(_page(f"portfolio: {doc['method']}", "".join(body)))
    return path
