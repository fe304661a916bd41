"""Market report: per-symbol state (regimes, RSI, MACD, 52-week range, ATR, strategy signals,
VaR) and a self-contained offline HTML page (plotly.js embedded) for the report and for risk.
"""

from __future__ import annotations

import html
import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from slices.analyze import indicators as ind
from slices.analyze.errors import AnalyzeError, warn
from slices.analyze.output import clean, fmt, frame_records
from slices.analyze.regime import RegimeParams, current_run, regimes
from slices.analyze.risk import align, correlation, var_historical
from slices.analyze.signals import current_signals, last_weights

CHART_SPECS = ["sma:50", "sma:200", "bbands:20:2", "rsi:14"]


def _last(x: np.ndarray) -> float | None:
    v = float(x[-1]) if len(x) else float("nan")
    return None if np.isnan(v) else v


def symbol_state(
    bars: pl.DataFrame,
    symbol: str,
    periods_per_year: float,
    strategies: list | None = None,
    allow_short: bool = False,
    weights: dict | None = None,
) -> dict:
    """The report line for one symbol (bars with the bar-store schema, T rows).

    Keys: ``last_close`` (price), ``last_time``, ``trend``/``trend_bars`` and
    ``vol_regime``/``vol_bars`` (current regime and how many bars it has lasted; None when too few
    bars), ``rsi_14`` (points), ``macd_state`` (``bullish`` when the MACD line is above its signal
    line, else ``bearish``) and ``macd_hist``, ``dist_52w_high`` (``close / max(high) - 1`` over the
    last 365 days, <= 0) and ``dist_52w_low`` (``close / min(low) - 1``, >= 0),
    ``atr_to_price`` (ATR(14) / close, a fraction), one key per strategy of ``strategies``
    (``[(strategy, params)]``, default the five built-ins; long/short/flat/n/a, see
    :func:`.signals.current_signals`), ``var_95`` (1-bar historical VaR at 95 %, loss fraction).
    """
    a = ind.bar_arrays(bars)
    close, high, low = a["close"], a["high"], a["low"]
    state: dict = {"symbol": symbol, "last_close": float(close[-1]), "last_time": bars["timestamp"][-1].isoformat()}
    params = RegimeParams()
    if bars.height >= params.min_bars:
        reg = regimes(bars, params, periods_per_year, symbol)
        t = current_run(reg["trend"], reg["timestamp"])
        v = current_run(reg["vol_regime"], reg["timestamp"])
        state.update(trend=t["regime"], trend_bars=t["bars"], vol_regime=v["regime"], vol_bars=v["bars"])
    else:
        warn(f"{symbol}: {bars.height} bars, regimes need {params.min_bars}; shown as n/a")
        state.update(trend=None, trend_bars=None, vol_regime=None, vol_bars=None)
    state["rsi_14"] = _last(ind.rsi(close, 14))
    line, sig, hist = ind.macd(close, 12, 26, 9)
    state["macd_state"] = None if np.isnan(hist[-1]) else ("bullish" if hist[-1] > 0 else "bearish")
    state["macd_hist"] = _last(hist)
    since = bars["timestamp"][-1] - timedelta(days=365)
    year = bars.filter(pl.col("timestamp") > since)
    state["dist_52w_high"] = float(close[-1] / year["high"].max() - 1.0)
    state["dist_52w_low"] = float(close[-1] / year["low"].min() - 1.0)
    atr = _last(ind.atr(high, low, close, 14))
    state["atr_to_price"] = None if atr is None else atr / float(close[-1])
    state.update(current_signals(bars, symbol, strategies or default_strategies(), allow_short, weights))
    r = close[1:] / close[:-1] - 1.0
    state["var_95"] = var_historical(r, 0.95)[0] if len(r) >= 20 else None
    return state


def default_strategies() -> list:
    """The five built-ins with their default parameters, as ``[(strategy, params)]``."""
    from slices.analyze.strategies import STRATEGIES, resolve_params

    return [resolve_params(name, {}) for name in STRATEGIES]


def market_report(
    bars: dict[str, pl.DataFrame], periods_per_year: float, strategies: list | None = None, allow_short: bool = False
) -> dict:
    """Report dict: ``symbols`` (list of :func:`symbol_state` dicts), ``strategies`` (their
    names), ``strategy_params`` (name -> parameters), ``allow_short`` and, for 2+ symbols with
    enough common bars, ``correlation`` (matrix, cluster order, and the period it covers)."""
    strategies = strategies or default_strategies()
    weights = last_weights(strategies, bars, allow_short)
    rows = [symbol_state(b, s, periods_per_year, strategies, allow_short, weights) for s, b in bars.items()]
    out: dict = {
        "symbols": rows,
        "strategies": [st.name for st, _ in strategies],
        "strategy_params": {st.name: p for st, p in strategies},
        "allow_short": allow_short,
    }
    if len(bars) >= 2:
        try:
            al = align(bars)
        except AnalyzeError as exc:
            warn(f"no correlation matrix: {exc}")
        else:
            rho, order = correlation(al.returns)
            out["correlation"] = {
                "symbols": al.symbols,
                "matrix": clean(rho.tolist()),
                "cluster_order": [al.symbols[i] for i in order],
                "start": al.timestamps[0].isoformat(),
                "end": al.timestamps[-1].isoformat(),
            }
    return out


STATE_COLUMNS = [
    "symbol",
    "last_close",
    "trend",
    "trend_bars",
    "vol_regime",
    "vol_bars",
    "rsi_14",
    "macd_state",
    "dist_52w_high",
    "dist_52w_low",
    "atr_to_price",
]


def report_columns(report: dict) -> list[str]:
    """The summary table's columns: the state columns, one per strategy, ``var_95``."""
    return [*STATE_COLUMNS, *report["strategies"], "var_95"]


def script_json(obj) -> str:
    """JSON for an inline ``<script>``: :func:`clean` values with every ``<`` written ``\\u003c``
    (so ``</script>``, ``<!--`` and ``<script`` in a name cannot end or re-open the script element:
    HTML injection; stronger than ``</`` -> ``<\\/``); still valid JSON with the same strings."""
    return json.dumps(clean(obj)).replace("<", "\\u003c")


# --------------------------------------------------------------------------------------------
# HTML


def plotly_js() -> str:
    """The installed plotly package's ``plotly.min.js`` (read from package data, plotly not imported)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise AnalyzeError("HTML output needs the plotly package (pip install plotly)")
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    if not path.exists():
        raise AnalyzeError(f"HTML output: {path} not found in the plotly package")
    return path.read_text(encoding="utf-8")


def _series(x) -> list:
    return [None if (v is None or v != v) else float(v) for v in x]


def price_figure(bars: pl.DataFrame, symbol: str) -> dict:
    """Plotly figure (dict) of close with SMA 50/200 and Bollinger bands, and RSI(14) below."""
    specs = [ind.parse_spec(s) for s in CHART_SPECS]
    frame = ind.compute(bars, [s for s in specs if bars.height > s.lookback], symbol, strict=False)
    x = frame_records(frame.select("timestamp"))
    xs = [r["timestamp"] for r in x]
    traces = [
        {
            "x": xs,
            "y": _series(frame["close"]),
            "name": "close",
            "type": "scatter",
            "mode": "lines",
            "line": {"color": "#1f77b4", "width": 1.5},
        }
    ]
    styles = {"sma_50": "#ff7f0e", "sma_200": "#2ca02c", "bbands_upper_20_2": "#aaaaaa", "bbands_lower_20_2": "#aaaaaa"}
    for col, color in styles.items():
        if col in frame.columns:
            traces.append(
                {
                    "x": xs,
                    "y": _series(frame[col]),
                    "name": col,
                    "type": "scatter",
                    "mode": "lines",
                    "line": {"color": color, "width": 1, "dash": "dot" if col.startswith("bb") else "solid"},
                }
            )
    if "rsi_14" in frame.columns:
        traces.append(
            {
                "x": xs,
                "y": _series(frame["rsi_14"]),
                "name": "rsi_14",
                "type": "scatter",
                "mode": "lines",
                "yaxis": "y2",
                "line": {"color": "#9467bd", "width": 1},
            }
        )
    layout = {
        "title": {"text": f"{symbol}: close, SMA 50/200, Bollinger 20/2; RSI 14"},
        "height": 520,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "legend": {"orientation": "h"},
        "yaxis": {"domain": [0.3, 1.0], "title": {"text": "price"}},
        "yaxis2": {"domain": [0.0, 0.22], "range": [0, 100], "title": {"text": "RSI"}},
        "shapes": [  # RSI 30 / 70 guides
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y2", "y0": v, "y1": v,
             "line": {"color": "#bbbbbb", "width": 1, "dash": "dash"}}
            for v in (30, 70)
        ],
    }
    return {"data": traces, "layout": layout}


def heatmap_figure(corr: dict) -> dict:
    """Plotly heatmap (dict) of a correlation block ``{"symbols", "matrix", "cluster_order"}``, rows in cluster order."""
    syms = corr["symbols"]
    idx = [syms.index(s) for s in corr["cluster_order"]]
    z = [[corr["matrix"][i][j] for j in idx] for i in idx]
    labels = [syms[i] for i in idx]
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z,
                "x": labels,
                "y": labels,
                "zmin": -1,
                "zmax": 1,
                "colorscale": "RdBu",
                "reversescale": True,
                "texttemplate": "%{z:.2f}",
            }
        ],
        "layout": {
            "title": {
                "text": "Correlation of returns (cluster order)"
                + (f", {corr['start'][:10]} .. {corr['end'][:10]}" if "start" in corr else "")
            },
            "height": 250 + 18 * len(labels),
            "yaxis": {"autorange": "reversed"},
            "margin": {"l": 80, "r": 20, "t": 50, "b": 80},
        },
    }


def _html_table(rows: list[dict], columns: list[str]) -> str:
    # headers may break after an underscore, so that wide tables (the report's 17 columns) fit the page
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c), c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def html_page(title: str, sections: list[tuple[str, str]], figures: list[dict]) -> str:
    """A self-contained HTML page: ``sections`` of (heading, HTML body) and plotly ``figures``, plotly.js inline."""
    parts = [f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections]
    divs = "".join(f'<div id="fig{i}" class="fig"></div>' for i in range(len(figures)))
    calls = "".join(
        f"Plotly.newPlot('fig{i}', {script_json(f['data'])}, {script_json(f['layout'])}, {{responsive: true, displaylogo: false}});"
        for i, f in enumerate(figures)
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;} table{border-collapse:collapse;font-size:13px;}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;} td:first-child,th:first-child{text-align:left;}"
        "th{background:#f3f3f3;vertical-align:bottom;} td{white-space:nowrap;}"
        ".fig{margin:1em 0;} .scroll{overflow-x:auto;}</style>"
        f"<script>{plotly_js()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(parts)}{divs}<script>{calls}</script></body></html>"
    )


def report_html(report: dict, bars: dict[str, pl.DataFrame]) -> str:
    """HTML page of the market report: summary table, a price chart per symbol, correlation heatmap."""
    figures = [price_figure(b, s) for s, b in bars.items()]
    if "correlation" in report:
        figures.append(heatmap_figure(report["correlation"]))
    note = (
        "Fractions: dist_52w_*, atr_to_price (ATR/close) and var_95 (1-bar historical VaR, loss) are fractions; "
        "rsi_14 in points. Signals: each strategy's target on the last bar (long-only unless --allow-short)."
    )
    return html_page(
        "GPT-Trader market report",
        [
            ("Summary", _html_table(report["symbols"], report_columns(report)) + f"<p>{html.escape(note)}</p>"),
            ("Strategies", _html_table(
                [{"strategy": k, "params": ", ".join(f"{a}={b}" for a, b in v.items())} for k, v in report.get("strategy_params", {}).items()],
                ["strategy", "params"],
            )),
        ],
        figures,
    )


def risk_tables(result: dict) -> list[tuple[str, list[dict], list[str]]]:
    """The tables of a risk result as ``(title, rows, columns)``, shared by the text output and the HTML page."""
    per = [{"symbol": s, **v} for s, v in result["per_symbol"].items()]
    return [
        (
            "VaR / CVaR (loss fractions of value; *_value in currency)",
            result["var"],
            ["method", "confidence", "horizon", "var", "cvar", "var_value", "cvar_value", "observations"],
        ),
        (
            "Worst historical windows (bars)",
            result["stress"]["historical"],
            ["window", "return", "value_change", "start", "end"],
        ),
        (
            "Hypothetical shocks (fractions of value; *_value in currency)",
            result["stress"]["hypothetical"],
            ["scenario", "worst", "final", "worst_value", "final_value"],
        ),
        (
            "Per symbol (volatility annualised; beta vs the equal-weighted basket)",
            per,
            ["symbol", "weight", "volatility", "beta", "max_drawdown", "duration_bars", "peak", "trough", "recovery"],
        ),
    ]


def risk_html(result: dict) -> str:
    """HTML page of the risk result: portfolio summary, the :func:`risk_tables`, correlation heatmap."""
    summary = {
        "symbols": " ".join(result["symbols"]),
        "start": result["start"],
        "end": result["end"],
        "value": result["value"],
        "simulations": result["monte_carlo"]["simulations"],
        "seed": result["monte_carlo"]["seed"],
        **result["portfolio"],
    }
    columns = ["symbols", "start", "end", "value", "volatility", "max_drawdown", "duration_bars", "simulations", "seed"]
    sections = [("Portfolio", _html_table([summary], columns))]
    sections += [(title, _html_table(rows, cols)) for title, rows, cols in risk_tables(result)]
    figures = [heatmap_figure(result["correlation"])] if len(result["symbols"]) >= 2 else []
    return html_page("GPT-Trader portfolio risk", sections, figures)
