"""Self-contained, offline, interactive HTML report for one backtest run.

`write_report` writes a single ``report.html``: tables are plain HTML, charts are drawn by
plotly.js, which is read from the installed ``plotly`` package and inlined into the page (the
Python ``plotly`` package itself is never imported; it is slow to import). The page makes no
network request: no external script, stylesheet, image or font.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "write_report", "MAX_CHART_SYMBOLS", "MAX_TRADE_ROWS", "PRICE_BUCKETS", "PRICE_POINTS_PER_PAGE",
    "EQUITY_BUCKETS", "MARKER_TRADES", "MARKER_TRADES_PER_PAGE",
]

MAX_CHART_SYMBOLS = 40
"""Price data is embedded for at most this many symbols (most trades first, then alphabetical)."""

MAX_TRADE_ROWS = 2_000
"""The trade table shows at most this many trades (the earliest by entry time)."""

PRICE_BUCKETS = 1_000
"""Most display buckets for one symbol's close series. A series longer than ``2 * buckets + 2``
bars is cut into that many equal-COUNT buckets (consecutive runs of ~n / buckets bars, not equal
time spans) and only each bucket's lowest and highest close are drawn, in time order, plus the
first and last bar: at most ``2 * buckets + 2`` points, and the global min and max always survive.
The buckets per symbol are also capped by ``PRICE_POINTS_PER_PAGE`` (see there)."""

PRICE_POINTS_PER_PAGE = 32_000
"""Close-price points budget of the whole page: each charted symbol gets
``min(PRICE_BUCKETS, PRICE_POINTS_PER_PAGE // (2 * charted symbols))`` buckets, so 40 charted
symbols get 400 buckets (800 points) each and the page stays a few MB."""

EQUITY_BUCKETS = 1_000
"""Display buckets of the equity chart. An equity frame longer than ``2 * EQUITY_BUCKETS + 2``
rows is cut into that many equal-count buckets and only the bars where equity or drawdown is at
its bucket minimum or maximum are drawn (plus the first and last bar): at most
``4 * EQUITY_BUCKETS + 2`` points; the worst-drawdown bar always survives. The benchmark is drawn
at the same bars."""

MARKER_TRADES = 500
"""Most trades drawn as markers (one entry and, unless open, one exit marker each) per symbol;
also capped by ``MARKER_TRADES_PER_PAGE``. When a symbol has more trades, the markers are the
``budget // 2`` largest by |pnl| plus an evenly spaced sample (by entry time) of the rest of the
budget, and the page says so next to the price chart. The trade files keep every trade."""

MARKER_TRADES_PER_PAGE = 4_000
"""Trade-marker budget of the whole page: each charted symbol gets
``min(MARKER_TRADES, MARKER_TRADES_PER_PAGE // charted symbols)`` trades (100 each for 40)."""

EQUITY_COLUMNS = ("timestamp", "equity", "cash", "gross_exposure", "drawdown", "benchmark")
TRADE_COLUMNS = (
    "symbol", "side", "quantity", "entry_time", "entry_price", "exit_time", "exit_price",
    "pnl", "return_pct", "commission", "exit_reason", "is_open",
)
PRICE_COLUMNS = ("timestamp", "close")

# Metrics that are fractions (0.1234 -> "12.34%"); everything else is a plain number.
FRACTION_METRICS = frozenset({
    "total_return", "cagr", "volatility", "max_drawdown", "exposure", "win_rate", "best_trade",
    "worst_trade", "avg_trade", "buy_and_hold_return", "kelly",
})
INTEGER_METRICS = frozenset({"n_trades", "max_drawdown_duration"})
METRIC_LABELS = {
    "final_equity": "Final equity",
    "total_return": "Total return",
    "buy_and_hold_return": "Buy & hold return",
    "cagr": "CAGR",
    "volatility": "Volatility (ann.)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "max_drawdown": "Max drawdown",
    "max_drawdown_duration": "Max DD duration (bars)",
    "exposure": "Exposure",
    "n_trades": "Trades",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy (per trade)",
    "sqn": "SQN",
    "avg_trade": "Avg trade",
    "best_trade": "Best trade",
    "worst_trade": "Worst trade",
    "kelly": "Kelly",
}
PER_SYMBOL_COLUMNS = (
    "total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "buy_and_hold_return",
)
DASH = "\u2014"


def write_report(
    path: Path,
    *,
    title: str,
    run: dict,
    metrics: dict,
    per_symbol: dict[str, dict],
    equity: pl.DataFrame,
    trades: pl.DataFrame,
    prices: dict[str, pl.DataFrame],
    warnings: list[str] | None = None,
) -> Path:
    """Write one self-contained interactive HTML report and return its path.

    The page works offline: plotly.js is inlined from the installed ``plotly`` package
    (``plotly/package_data/plotly.min.js``) and nothing is loaded over the network.

    Inputs
    ------
    path
        File to write (parent directories are created); usually ``<run dir>/report.html``.
    title
        Page title (plain text; it is HTML-escaped, like every other text in the page).
    run
        Run settings (strategy, params, symbols, timeframe, start, end, cash, commission,
        slippage_bps, sizing, ...), shown as a settings table. Values may be scalars, lists,
        dicts or dates; long lists are shortened.
    metrics
        Portfolio metrics, name -> float | int | None. Fractions (shown as percent with two
        decimals): total_return, cagr, volatility, max_drawdown (negative), exposure, win_rate,
        best_trade, worst_trade, avg_trade, buy_and_hold_return, kelly. Plain numbers:
        final_equity and expectancy (currency; expectancy per trade), sharpe, sortino, calmar,
        sqn, profit_factor, n_trades, max_drawdown_duration (bars). None / NaN show as "—".
        Unknown keys are shown after the known ones, as plain numbers.
    per_symbol
        symbol -> metrics dict with the same keys; one table row per symbol with total_return,
        sharpe, max_drawdown, n_trades, win_rate, buy_and_hold_return.
    equity
        One row per bar: ``timestamp`` Datetime(us, UTC), ``equity``, ``cash``,
        ``gross_exposure`` (currency), ``drawdown`` (fraction <= 0), ``benchmark``
        (equal-weight buy-and-hold equity, same currency). A missing column raises ValueError.
    trades
        One row per trade (may be empty, same schema): ``symbol`` str, ``side`` "long"/"short",
        ``quantity`` f64, ``entry_time`` / ``exit_time`` Datetime(us, UTC), ``entry_price`` /
        ``exit_price`` f64, ``pnl`` f64 (currency, net of costs), ``return_pct`` f64 (PERCENT,
        1.5 means 1.5 %), ``commission`` f64 (currency), ``exit_reason`` str, ``is_open`` bool
        (open at the end of the run; it gets no exit marker).
    prices
        symbol -> bars with ``timestamp, open, high, low, close, volume`` (only ``timestamp`` and
        ``close`` are used).
    warnings
        The run's warnings (metrics.json ``warnings``), listed in a Warnings section.

    The page shows
    --------------
    1. the title, the run settings and the run's warnings;
    2. the portfolio metrics, then a sortable per-symbol metrics table;
    3. the equity curve against the buy-and-hold benchmark, with the drawdown (filled, in
       percent) in a subplot below sharing the time axis;
    4. a close-price chart with a symbol selector: long entries (green triangle-up), short
       entries (red triangle-down) and exits (x), hovering shows the trade's pnl. Price data is
       embedded for at most ``MAX_CHART_SYMBOLS`` symbols (most trades, then alphabetical); the
       page says which symbols were left out. Prices are rounded to 6 significant digits;
    5. the trade table, sortable by clicking a header, at most ``MAX_TRADE_ROWS`` rows (the
       earliest by entry time) with a note when there are more.

    Large runs (e.g. minute bars) stay a few MB (measured: 7.3 MB with 4.8 MB of it plotly.js,
    for 500 symbols x 500,000 bars and 2,000,000 trades); small ones are drawn in full, unchanged:

    - Prices: a charted symbol with more than ``2 * b + 2`` bars, where
      ``b = min(PRICE_BUCKETS, PRICE_POINTS_PER_PAGE // (2 * charted symbols))``, is cut into
      ``b`` equal-count buckets of consecutive bars and only each bucket's lowest and highest
      close are drawn (in time order) plus the first and last bar, so spikes and the global min
      and max survive.
    - Equity chart: more than ``2 * EQUITY_BUCKETS + 2`` rows are cut the same way into
      ``EQUITY_BUCKETS`` buckets; the bars where equity or drawdown is at its bucket min or max
      are drawn (benchmark at the same bars), so the worst-drawdown bar is always shown.
    - Trade markers: at most ``min(MARKER_TRADES, MARKER_TRADES_PER_PAGE // charted symbols)``
      trades per symbol: past that, the half with the largest |pnl| plus an even sample by entry
      time.
    - Each reduction is stated in a note: above the equity chart, and above the price chart for
      the selected symbol ("AAPL: prices shown as min/max of 400 buckets of ~1,250 bars each
      ...", "AAPL: 99 of 4,199 trades shown as markers (the largest by |P&L| and an even
      sample); all are in trades.parquet."). The notes are also in PRICE_DATA as ``note``.

    Timestamps are shown as ``YYYY-MM-DD`` when every bar is at midnight (daily data), else as
    ``YYYY-MM-DD HH:MM`` (UTC).
    """
    path = Path(path)
    _check_columns(equity, trades, prices)
    daily = _all_midnight(equity["timestamp"])
    chart_syms, left_out, trade_counts = _chart_symbols(prices, trades)
    equity_fig, equity_note = _equity_figure(equity, daily)
    price_data = _price_data(chart_syms, prices, trades, trade_counts)
    equity_body = "<div id=\"equity-chart\" class=\"chart\"></div>\n"
    if equity_note:
        equity_body = f"<p class=\"note\" id=\"equity-note\">{html.escape(equity_note)}</p>\n" + equity_body
    page = "".join([
        _head_section(title),
        _section("settings", "Run settings", _settings_table(run)),
        _warnings_section(warnings or []),
        _section("metrics", "Portfolio metrics", _metrics_table(metrics)),
        _section("per-symbol", "Per-symbol metrics", _per_symbol_table(per_symbol)),
        _section("equity", "Equity and drawdown", equity_body),
        _prices_section(chart_syms, left_out, trade_counts, price_data),
        _section("trades", f"Trades ({trades.height:,})", _trades_table(trades, daily)),
        _script_section(equity_fig, price_data),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# page sections, in page order


def _check_columns(equity: pl.DataFrame, trades: pl.DataFrame, prices: Mapping[str, pl.DataFrame]) -> None:
    """Raise ValueError naming the first input frame that lacks a needed column."""
    missing = [c for c in EQUITY_COLUMNS if c not in equity.columns]
    if missing:
        raise ValueError(
            f"write_report: equity frame lacks column(s) {', '.join(missing)}; "
            f"it needs {', '.join(EQUITY_COLUMNS)} (has {', '.join(equity.columns) or 'none'})"
        )
    missing = [c for c in TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise ValueError(
            f"write_report: trades frame lacks column(s) {', '.join(missing)}; "
            f"it needs {', '.join(TRADE_COLUMNS)}"
        )
    for sym, frame in prices.items():
        missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"write_report: prices[{sym!r}] lacks column(s) {', '.join(missing)}")


def _section(anchor: str, heading: str, body: str) -> str:
    return f"<section id=\"{anchor}\"><h2>{html.escape(heading)}</h2>\n{body}</section>\n"


def _head_section(title: str) -> str:
    """Document head (styles, inlined plotly.js) and the page title."""
    esc = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc}</title>\n<style>{_CSS}</style>\n<script>\n{_plotly_js()}\n</script>\n</head>\n<body>\n"
        f"<header><h1>{esc}</h1></header>\n"
    )


def _warnings_section(warnings: list[str]) -> str:
    """Every warning of the run (data, exclusions, untaken signals, halt), escaped, in order."""
    if not warnings:
        return _section("warnings", "Warnings", "<p class=\"note\">No warnings.</p>\n")
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return _section("warnings", f"Warnings ({len(warnings):,})", f"<ul class=\"warnings\">{items}</ul>\n")


def _prices_section(
    chart_syms: list[str], left_out: list[str], trade_counts: Mapping[str, int], price_data: dict
) -> str:
    """Symbol selector, the downsampling / thinning note and the price chart's container (data
    comes from PRICE_DATA). The note (``id="price-note"``, only when some symbol has one) shows the
    selected symbol's ``note``; the page script updates it when the selection changes."""
    if not chart_syms:
        return _section("prices", "Prices, entries and exits", "<p class=\"note\">No price data was given.</p>\n")
    opts = []
    for i, sym in enumerate(chart_syms):
        n = trade_counts.get(sym, 0)
        opts.append(f"<option value=\"{i}\">{html.escape(str(sym))} ({n:,} trade{'' if n == 1 else 's'})</option>")
    body = "<label for=\"symbol-select\">Symbol </label><select id=\"symbol-select\">" + "".join(opts) + "</select>\n"
    if left_out:
        body += (
            f"<p class=\"note\" id=\"left-out\">Price data is included for {len(chart_syms):,} of "
            f"{len(chart_syms) + len(left_out):,} symbols (those with the most trades, then "
            f"alphabetical); {len(left_out):,} symbols were left out of this chart.</p>\n"
            f"<details><summary>Symbols left out ({len(left_out):,})</summary><p class=\"small\">"
            + html.escape(", ".join(left_out)) + "</p></details>\n"
        )
    if any("note" in d for d in price_data["symbols"]):
        first = price_data["symbols"][0].get("note", "")
        body += f"<p class=\"note\" id=\"price-note\">{html.escape(first)}</p>\n"
    return _section("prices", "Prices, entries and exits", body + "<div id=\"price-chart\" class=\"chart\"></div>\n")


def _script_section(equity_fig: dict, price_data: dict) -> str:
    """Footer and the page script with the chart data inlined as JSON."""
    return (
        "<footer>Charts: plotly.js, embedded (this page works offline). Click a table header to sort.</footer>\n"
        f"<script>\nvar EQUITY_FIG={_js_json(equity_fig)};\nvar PRICE_DATA={_js_json(price_data)};\n"
        f"{_PAGE_JS}</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# helpers


def _plotly_js() -> str:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("write_report: the plotly package is not installed (needed for plotly.js)")
    js_path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    js = js_path.read_text(encoding="utf-8")
    # A literal "</script" would end the inline script early (none in current plotly builds).
    return js.replace("</script", "<\\/script")


def _js_json(obj: Any) -> str:
    """JSON for embedding in an inline <script>: ``</`` written as ``<\\/`` (the same string to
    JavaScript) and ``<!--`` as ``\\u003c!--``, so no text can end the script or open a comment."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "\\u003c!--")


def _all_midnight(ts: pl.Series) -> bool:
    ts = ts.drop_nulls()
    if ts.len() == 0 or ts.dtype == pl.Date:
        return True
    if not isinstance(ts.dtype, pl.Datetime):
        return False
    # wall-clock ticks since the epoch (time-zone aware -> local wall clock), one integer modulo
    # per value: ~1 ms for 500,000 bars, where dt.hour()/minute()/... took ~80 ms
    if ts.dtype.time_zone is not None:
        ts = ts.dt.replace_time_zone(None)
    day = 86_400 * {"ns": 10**9, "us": 10**6, "ms": 10**3}[ts.dtype.time_unit]
    return bool((ts.cast(pl.Int64) % day == 0).all())


def _ts_expr(col: str, daily: bool, sep: str = "T") -> pl.Expr:
    return pl.col(col).dt.strftime("%Y-%m-%d" if daily else f"%Y-%m-%d{sep}%H:%M")


def _finite(col: str) -> pl.Expr:
    """Float column with NaN / inf replaced by null (JSON null: a gap in the chart)."""
    c = pl.col(col).cast(pl.Float64)
    return pl.when(c.is_finite()).then(c).otherwise(None)


def _minmax_rows(df: pl.DataFrame, cols: Iterable[str], buckets: int) -> pl.DataFrame:
    """Rows of ``df`` (in time order) kept for display: ``df`` itself when it has at most
    ``2 * buckets + 2`` rows, else min/max bucket downsampling. Row ``r`` of ``n`` falls in bucket
    ``r * buckets // n`` (equal-COUNT buckets of ~n / buckets consecutive rows, not equal time
    spans); per bucket and per column of ``cols`` (numeric; nulls and NaN ignored) the first row
    holding the bucket minimum and the first holding the maximum are kept, plus the first and last
    row; kept rows stay in their original order. So every column's global min and max survive, and
    at most ``2 * len(cols) * buckets + 2`` rows are returned. Vectorised numpy (reduceat), a few
    ms for 500,000 rows."""
    n = df.height
    if n <= 2 * buckets + 2:
        return df
    starts = (np.arange(buckets, dtype=np.int64) * n + buckets - 1) // buckets  # first row of each bucket
    bucket = np.repeat(np.arange(buckets), np.diff(np.append(starts, n)))
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    for c in cols:
        y = df[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        for ext in (np.fmin, np.fmax):
            hit = np.flatnonzero(y == ext.reduceat(y, starts)[bucket])  # NaN never equals
            first = np.ones(hit.size, dtype=bool)
            first[1:] = bucket[hit[1:]] != bucket[hit[:-1]]
            keep[hit[first]] = True
    return df.filter(pl.Series(keep))


def _equity_figure(equity: pl.DataFrame, daily: bool) -> tuple[dict, str]:
    """The equity chart (strategy, benchmark, drawdown in percent) as plotly figure JSON, and a
    note (plain text, "" when not needed) saying how it was downsampled (``EQUITY_BUCKETS``)."""
    df = equity.select(
        pl.col("timestamp"),
        _finite("equity").round(2).alias("equity"),
        _finite("benchmark").round(2).alias("benchmark"),
        (_finite("drawdown") * 100).round(4).alias("dd"),
    )
    note = ""
    if df.height > 2 * EQUITY_BUCKETS + 2:
        n = df.height
        df = _minmax_rows(df, ("equity", "dd"), EQUITY_BUCKETS)
        note = (
            f"Equity, benchmark and drawdown shown as min/max of {EQUITY_BUCKETS:,} buckets of "
            f"~{n / EQUITY_BUCKETS:,.0f} bars each ({df.height:,} of {n:,} bars drawn: the bars with "
            f"each bucket's lowest and highest equity and drawdown, so the worst drawdown is shown)."
        )
    x = df.select(_ts_expr("timestamp", daily))["timestamp"].to_list()
    data = [
        {"type": "scatter", "mode": "lines", "name": "Strategy", "x": x,
         "y": df["equity"].to_list(), "line": {"color": "#1f77b4", "width": 1.8},
         "hovertemplate": "%{y:,.2f}"},
        {"type": "scatter", "mode": "lines", "name": "Buy and hold (equal weight)", "x": x,
         "y": df["benchmark"].to_list(), "line": {"color": "#7f7f7f", "width": 1.4, "dash": "dot"},
         "hovertemplate": "%{y:,.2f}"},
        {"type": "scatter", "mode": "lines", "name": "Drawdown", "x": x, "y": df["dd"].to_list(),
         "yaxis": "y2", "fill": "tozeroy", "line": {"color": "#d62728", "width": 1},
         "fillcolor": "rgba(214,39,40,0.25)", "hovertemplate": "%{y:.2f}%"},
    ]
    layout = {
        "height": 560,
        "margin": {"l": 70, "r": 20, "t": 30, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "x": 0, "y": 1.06},
        "xaxis": {"type": "date", "anchor": "y2", "showspikes": True},
        "yaxis": {"domain": [0.34, 1.0], "title": {"text": "Equity"}, "tickformat": ",.0f"},
        "yaxis2": {"domain": [0.0, 0.27], "title": {"text": "Drawdown"}, "ticksuffix": "%",
                   "rangemode": "tozero"},
        "plot_bgcolor": "#ffffff",
    }
    return {"data": data, "layout": layout}, note


def _chart_symbols(
    prices: Mapping[str, pl.DataFrame], trades: pl.DataFrame
) -> tuple[list[str], list[str], dict[str, int]]:
    counts: dict[str, int] = {}
    if trades.height:
        vc = trades.group_by("symbol").len()
        counts = dict(zip(vc["symbol"].to_list(), vc["len"].to_list()))
    ordered = sorted(prices, key=lambda s: (-counts.get(s, 0), str(s)))
    return ordered[:MAX_CHART_SYMBOLS], sorted(ordered[MAX_CHART_SYMBOLS:], key=str), counts


def _price_data(
    syms: list[str], prices: Mapping[str, pl.DataFrame], trades: pl.DataFrame,
    counts: Mapping[str, int],
) -> dict:
    """PRICE_DATA for the page: per charted symbol ``s`` (symbol), ``n`` (its trade count),
    ``x`` / ``y`` (close series, min/max-downsampled past the budget, see ``PRICE_BUCKETS``),
    ``le`` / ``se`` / ``ex`` ([x, y, hover text] of long entries, short entries, exits; thinned
    past ``MARKER_TRADES``) and, only when something was downsampled or thinned, ``note`` (plain
    text for the reader)."""
    if not syms:
        return {"symbols": [], "layout": {}}
    buckets = min(PRICE_BUCKETS, PRICE_POINTS_PER_PAGE // (2 * len(syms)))
    series: list[pl.DataFrame] = []
    daily_by_sym: list[int] = []   # per-symbol time format: all-midnight bars are shown as dates
    notes: dict[int, list[str]] = {}
    for i, s in enumerate(syms):
        f = prices[s].select(
            _utc_us(pl.col("timestamp"), prices[s].schema["timestamp"]),
            _finite("close").alias("y"),
        )
        daily = _all_midnight(f["timestamp"])
        if daily:
            daily_by_sym.append(i)
        n = f.height
        # rounding is monotonic, so rounding after the min/max selection shows the same extremes
        f = _minmax_rows(f, ("y",), buckets).with_columns(pl.col("y").round_sig_figs(6))
        if f.height < n:
            notes[i] = [
                f"{s}: prices shown as min/max of {buckets:,} buckets of ~{n / buckets:,.0f} bars each "
                f"({f.height:,} of {n:,} bars drawn; every bucket's lowest and highest close is kept)."
            ]
        series.append(f.select(_ts_expr("timestamp", daily).alias("x"), "y"))

    le = se = ex = {}
    if trades.height:
        tr = trades.filter(pl.col("symbol").cast(pl.String).is_in(syms))
        if tr.height:
            tr, thinned = _thin_markers(tr, MARKER_TRADES_PER_PAGE // len(syms))
            sym_idx = {s: i for i, s in enumerate(syms)}
            for s, shown in thinned.items():
                notes.setdefault(sym_idx[s], []).append(
                    f"{s}: {shown:,} of {counts.get(s, 0):,} trades shown as markers (the largest by "
                    f"|P&L| and an even sample); all are in trades.parquet."
                )
            le, se, ex = _marker_groups(tr, syms, daily_by_sym)

    empty: list[list] = [[], [], []]
    out = []
    for i, s in enumerate(syms):
        g = series[i]
        d = {
            "s": s,
            "n": counts.get(s, 0),
            "x": g["x"].to_list(),
            "y": g["y"].to_list(),
            "le": le.get(i, empty),
            "se": se.get(i, empty),
            "ex": ex.get(i, empty),
        }
        if i in notes:
            d["note"] = " ".join(notes[i])
        out.append(d)
    layout = {
        "height": 520,
        "margin": {"l": 70, "r": 20, "t": 30, "b": 40},
        "hovermode": "closest",
        "legend": {"orientation": "h", "x": 0, "y": 1.08},
        "xaxis": {"type": "date", "rangeslider": {"visible": False}},
        "yaxis": {"title": {"text": "Close"}},
        "plot_bgcolor": "#ffffff",
    }
    return {"symbols": out, "layout": layout}


def _utc_us(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Timestamp column as Datetime(us, UTC), whatever unit / zone (naive = UTC) it came in."""
    if dtype == pl.Date:
        e = e.cast(pl.Datetime("us"))
    elif isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            e = e.dt.replace_time_zone("UTC")
        elif dtype.time_zone != "UTC":
            e = e.dt.convert_time_zone("UTC")
        if dtype.time_unit != "us":
            e = e.dt.cast_time_unit("us")
        return e.alias("timestamp")
    return e.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp")


def _with_text(tr: pl.DataFrame) -> pl.DataFrame:
    """Add the trade texts for people: ``side_e`` and ``reason_e`` HTML-escaped (html.escape),
    ``pnl_s`` and ``comm_s`` money with thousands separators, ``ret_s`` percent with two
    decimals (format specs; missing or non-finite values are a dash)."""
    def texts(col: str, fmt) -> pl.Series:
        return pl.Series([fmt(v) for v in tr[col].to_list()], dtype=pl.String)

    return tr.with_columns(
        side_e=texts("side", lambda v: html.escape(str(v)) if v is not None else ""),
        reason_e=texts("exit_reason", lambda v: html.escape(str(v)) if v is not None else ""),
        pnl_s=texts("pnl", _money), comm_s=texts("commission", _money), ret_s=texts("return_pct", _pct_text),
    )


def _thin_markers(tr: pl.DataFrame, page_share: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Trades to draw as markers, and {symbol: trades kept} for the symbols that were thinned.

    Each symbol keeps at most ``budget = min(MARKER_TRADES, page_share)`` trades (at least 2).
    A symbol over budget keeps its ``budget // 2`` largest trades by |pnl| (non-finite pnl never
    counts as large) plus ``budget - budget // 2`` trades evenly spaced by entry time (the one at
    position ``p`` of ``m`` is kept when ``p * even // m`` starts a new value, so the first trade
    is always in); both sets may overlap, so slightly fewer may be kept. Vectorised (window
    expressions over ``symbol``); the kept rows stay in their input order."""
    budget = max(2, min(MARKER_TRADES, page_share))
    big = budget // 2
    even = budget - big
    sym = pl.col("symbol").cast(pl.String)
    if (tr.group_by(sym).len()["len"].max() or 0) <= budget:
        return tr, {}
    # position by entry time (ties: row order), without reordering the rows
    pos = pl.col("entry_time").rank("ordinal").over(sym).cast(pl.Int64) - 1
    m = pl.len().over(sym).cast(pl.Int64)
    sample = ((pos == 0) | (pos * even // m != (pos - 1) * even // m)).fill_null(False)
    largest = (_finite("pnl").abs().rank("ordinal", descending=True).over(sym) <= big).fill_null(False)
    kept = tr.filter((m <= budget) | sample | largest)
    n_kept = kept.group_by(sym.alias("s")).len()
    n_all = tr.group_by(sym.alias("s")).len()
    thinned = n_kept.join(n_all, on="s", suffix="_all").filter(pl.col("len") < pl.col("len_all"))
    return kept, dict(zip(thinned["s"].to_list(), thinned["len"].to_list()))


def _marker_groups(
    tr: pl.DataFrame, syms: list[str], daily_idx: list[int]
) -> tuple[dict[int, list[list]], dict[int, list[list]], dict[int, list[list]]]:
    """Entry / exit markers per charted symbol index: [x, y, hover text] lists each."""
    sym_idx = {s: i for i, s in enumerate(syms)}
    tr = _with_text(tr).with_columns(
        pl.col("symbol").cast(pl.String).replace_strict(sym_idx, return_dtype=pl.Int32).alias("i")
    )
    is_daily = pl.col("i").is_in(daily_idx)

    def when_daily(col: str) -> pl.Expr:
        return (
            pl.when(is_daily).then(pl.col(col).dt.strftime("%Y-%m-%d"))
            .otherwise(pl.col(col).dt.strftime("%Y-%m-%dT%H:%M"))
        )

    is_open = pl.col("is_open").fill_null(False)
    side = pl.col("side_e")
    p_in = _finite("entry_price").round_sig_figs(6)
    p_out = _finite("exit_price").round_sig_figs(6)
    p_in_s = p_in.cast(pl.String).str.replace(r"\.0$", "").fill_null(DASH)
    p_out_s = p_out.cast(pl.String).str.replace(r"\.0$", "").fill_null(DASH)
    body = pl.concat_str(
        pl.lit("<br>qty "), _qty_expr("quantity"), pl.lit(" @ "), p_in_s, pl.lit(" \u2192 "), p_out_s,
        pl.lit("<br>pnl "), pl.col("pnl_s"), pl.lit(" ("), pl.col("ret_s"), pl.lit(")"),
    )
    open_s = pl.when(is_open).then(pl.lit(" (open)")).otherwise(pl.lit(""))
    reason = pl.col("reason_e")
    tr = tr.select(
        "i",
        (pl.col("side") == "long").fill_null(False).alias("long"),
        is_open.alias("open"),
        when_daily("entry_time").alias("x_in"),
        when_daily("exit_time").alias("x_out"),
        p_in.alias("y_in"),
        p_out.alias("y_out"),
        pl.concat_str(side, pl.lit(" entry"), open_s, body).alias("t_in"),
        pl.concat_str(
            side, pl.lit(" exit"), body,
            pl.when(reason != "").then(pl.concat_str(pl.lit("<br>"), reason)).otherwise(pl.lit("")),
        ).alias("t_out"),
    )

    def groups(df: pl.DataFrame, x: str, y: str, t: str) -> dict[int, list[list]]:
        df = df.filter(pl.col(x).is_not_null())
        return {
            k[0]: [g[x].to_list(), g[y].to_list(), g[t].to_list()]
            for k, g in df.partition_by("i", as_dict=True).items()
        }

    return (
        groups(tr.filter(pl.col("long")), "x_in", "y_in", "t_in"),
        groups(tr.filter(~pl.col("long")), "x_in", "y_in", "t_in"),
        groups(tr.filter(~pl.col("open")), "x_out", "y_out", "t_out"),
    )


# number formatting (format specs)

def _money(v: Any) -> str:
    """Currency with thousands separators and two decimals: -1234.5 -> '-1,234.50' (missing -> '—')."""
    return DASH if _is_missing(v) or not math.isfinite(v) else f"{v:,.2f}"


def _pct_text(v: Any) -> str:
    """A value already in percent: 1.234 -> '1.23%' (missing -> '—')."""
    return DASH if _is_missing(v) or not math.isfinite(v) else f"{v:,.2f}%"


def _qty_expr(col: str) -> pl.Expr:
    c = _finite(col).round_sig_figs(6)
    s = c.cast(pl.String).str.replace(r"\.0$", "")
    return s.fill_null(DASH)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt_metric(name: str, v: Any) -> str:
    if _is_missing(v):
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if not isinstance(v, (int, float)):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return html.escape(str(v))
        if math.isnan(v):
            return DASH
    if isinstance(v, float) and math.isinf(v):
        return "\u221e" if v > 0 else "\u2212\u221e"
    if name in FRACTION_METRICS:
        return f"{v * 100:,.2f}%"
    if name in INTEGER_METRICS or isinstance(v, int):
        return f"{int(round(v)):,}"
    if name in ("final_equity", "expectancy"):
        return f"{v:,.2f}"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:,.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.4g}"


def _metric_class(name: str, v: Any) -> str:
    if _is_missing(v) or isinstance(v, bool) or not isinstance(v, (int, float)):
        return ""
    if name in ("total_return", "cagr", "buy_and_hold_return", "avg_trade", "expectancy", "sharpe"):
        return " class=\"pos\"" if v > 0 else (" class=\"neg\"" if v < 0 else "")
    if name == "max_drawdown" and v < 0:
        return " class=\"neg\""
    return ""


def _fmt_setting(v: Any) -> str:
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_fmt_setting(x)}" for k, x in v.items()) or DASH
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [_fmt_setting(x) for x in (sorted(v, key=str) if isinstance(v, (set, frozenset)) else v)]
        if len(items) > 30:
            return ", ".join(items[:30]) + f", \u2026 ({len(items)} in all)"
        return ", ".join(items) or DASH
    if isinstance(v, datetime):
        if v.hour == v.minute == v.second == v.microsecond == 0:
            return v.date().isoformat()
        return v.isoformat(sep=" ", timespec="minutes")
    if isinstance(v, date):
        return v.isoformat()
    if _is_missing(v):
        return DASH
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _settings_table(run: Mapping[str, Any]) -> str:
    if not run:
        return "<p class=\"note\">No settings recorded.</p>\n"
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt_setting(v))}</td></tr>"
        for k, v in run.items()
    )
    return f"<table class=\"kv settings\"><tbody>{rows}</tbody></table>\n"


def _ordered_metric_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    known = [k for k in METRIC_LABELS if k in names]
    return known + [k for k in names if k not in METRIC_LABELS]


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    if not metrics:
        return "<p class=\"note\">No metrics.</p>\n"
    cells = []
    for name in _ordered_metric_names(metrics):
        v = metrics[name]
        label = METRIC_LABELS.get(name, name)
        cells.append(
            f"<div class=\"metric\"><div class=\"label\">{html.escape(str(label))}</div>"
            f"<div class=\"value\"><span{_metric_class(name, v)}>{_fmt_metric(name, v)}</span></div></div>"
        )
    return "<div class=\"metrics-grid\" id=\"metrics-table\">" + "".join(cells) + "</div>\n"


def _per_symbol_table(per_symbol: Mapping[str, Mapping[str, Any]]) -> str:
    if not per_symbol:
        return "<p class=\"note\">No per-symbol metrics.</p>\n"
    head = "<th>Symbol</th>" + "".join(
        f"<th>{html.escape(METRIC_LABELS.get(c, c))}</th>" for c in PER_SYMBOL_COLUMNS
    )
    rows = []
    for sym, m in per_symbol.items():
        m = m or {}
        tds = "".join(
            f"<td{_metric_class(c, m.get(c))}>{_fmt_metric(c, m.get(c))}</td>" for c in PER_SYMBOL_COLUMNS
        )
        rows.append(f"<tr><td class=\"sym\">{html.escape(str(sym))}</td>{tds}</tr>")
    return (
        "<div class=\"scroll\"><table class=\"data sortable\" id=\"per-symbol-table\"><thead><tr>"
        + head + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>\n"
    )


_TRADE_HEAD = (
    "Symbol", "Side", "Quantity", "Entry time", "Entry price", "Exit time", "Exit price",
    "PnL", "Return", "Commission", "Exit reason", "Open",
)


def _trades_table(trades: pl.DataFrame, daily: bool) -> str:
    n = trades.height
    if n == 0:
        return "<p class=\"note\" id=\"no-trades\">No trades.</p>\n"
    if n > 4 * MAX_TRADE_ROWS:
        # Same rows as the full stable sort below, without sorting millions of trades: only
        # trades at or before the MAX_TRADE_ROWS-th earliest entry (or with none) can be shown.
        cutoff = trades["entry_time"].drop_nulls().bottom_k(MAX_TRADE_ROWS).max()
        trades = trades.filter((pl.col("entry_time") <= cutoff) | pl.col("entry_time").is_null())
    shown = trades.sort("entry_time", nulls_last=True, maintain_order=True).head(MAX_TRADE_ROWS)
    f = _with_text(shown).select(
        pl.col("symbol").cast(pl.String).fill_null(""),
        pl.col("side").cast(pl.String).fill_null(""),
        _qty_expr("quantity").alias("qty"),
        _ts_expr("entry_time", daily, " ").fill_null(DASH).alias("t_in"),
        _finite("entry_price").round_sig_figs(6).cast(pl.String).str.replace(r"\.0$", "").fill_null(DASH).alias("p_in"),
        _ts_expr("exit_time", daily, " ").fill_null(DASH).alias("t_out"),
        _finite("exit_price").round_sig_figs(6).cast(pl.String).str.replace(r"\.0$", "").fill_null(DASH).alias("p_out"),
        pl.col("pnl_s"), pl.col("ret_s"), pl.col("comm_s"),
        pl.col("exit_reason").cast(pl.String).fill_null(""),
        pl.col("is_open").fill_null(False),
        pl.col("pnl").cast(pl.Float64).alias("pnl_v"),
    )
    esc = html.escape
    rows = []
    for sym, side, q, ti, pi, to, po, pnl, ret, comm, reason, op, pv in f.iter_rows():
        cls = " class=\"pos\"" if (pv is not None and pv > 0) else (
            " class=\"neg\"" if (pv is not None and pv < 0) else "")
        rows.append(
            f"<tr><td>{esc(sym)}</td><td class=\"t\">{esc(side)}</td><td>{q}</td><td>{ti}</td>"
            f"<td>{pi}</td><td>{to}</td><td>{po}</td><td{cls}>{pnl}</td><td{cls}>{ret}</td>"
            f"<td>{comm}</td><td class=\"t\">{esc(reason)}</td><td class=\"t\">{'open' if op else ''}</td></tr>"
        )
    note = ""
    if n > MAX_TRADE_ROWS:
        note = (
            f"<p class=\"note\" id=\"trades-truncated\">Showing the first {MAX_TRADE_ROWS:,} of {n:,} "
            f"trades (by entry time); {n - MAX_TRADE_ROWS:,} are not shown.</p>\n"
        )
    head = "".join(
        f"<th class=\"t\">{h}</th>" if h in ("Side", "Exit reason", "Open") else f"<th>{h}</th>"
        for h in _TRADE_HEAD
    )
    return (
        note + "<div class=\"scroll tall\"><table class=\"data sortable\" id=\"trades-table\"><thead><tr>"
        + head + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>\n"
    )


_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#ffffff;--alt:#f6f8fa;--pos:#1a7f37;--neg:#cf222e}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1320px;padding:16px 24px 40px;color:var(--fg);background:var(--bg);
font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
table{border-collapse:collapse}
table.kv th{text-align:left;font-weight:600;padding:3px 16px 3px 0;color:var(--muted);vertical-align:top;white-space:nowrap}
table.kv td{padding:3px 0;word-break:break-word}
.metrics-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px}
.metric{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:var(--alt)}
ul.warnings{margin:0;padding-left:20px;color:var(--muted)}ul.warnings li{margin:2px 0}
.metric .label{color:var(--muted);font-size:12px}.metric .value{font-size:18px;font-weight:600;font-variant-numeric:tabular-nums}
table.data{width:100%;font-variant-numeric:tabular-nums;font-size:13px}
table.data th,table.data td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
table.data th:first-child,table.data td:first-child,table.data .t{text-align:left}
table.data thead th{position:sticky;top:0;background:var(--alt);cursor:pointer;user-select:none}
table.data thead th:hover{background:#eaeef2}
table.data th.asc::after{content:" \\25B2";font-size:10px}table.data th.desc::after{content:" \\25BC";font-size:10px}
table.data tbody tr:nth-child(even){background:#fbfcfd}
.scroll{max-height:420px;overflow:auto;border:1px solid var(--line);border-radius:6px}.scroll.tall{max-height:640px}
.pos{color:var(--pos)}.neg{color:var(--neg)}
.note{color:var(--muted);margin:6px 0}.small{font-size:12px;color:var(--muted)}
.chart{width:100%;min-height:400px}
select{font:inherit;padding:2px 6px;margin-bottom:8px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
"""

_PAGE_JS = r"""
(function(){
var CFG={responsive:true,displaylogo:false};
if(window.Plotly){
  Plotly.newPlot('equity-chart',EQUITY_FIG.data,EQUITY_FIG.layout,CFG);
  var sel=document.getElementById('symbol-select');
  if(sel&&PRICE_DATA.symbols.length){
    var mk=function(m,name,sym,color,size){return {type:'scatter',mode:'markers',name:name,x:m[0],y:m[1],
      text:m[2],hovertemplate:'%{x}<br>%{text}<extra></extra>',
      marker:{symbol:sym,color:color,size:size,line:{width:1,color:'#333'}}};};
    var show=function(){
      var d=PRICE_DATA.symbols[+sel.value];
      var tr=[{type:'scatter',mode:'lines',name:'Close',x:d.x,y:d.y,line:{color:'#1f4e79',width:1.3},
               hovertemplate:'%{x}<br>close %{y}<extra></extra>'},
              mk(d.le,'Long entry','triangle-up','#16a34a',11),
              mk(d.se,'Short entry','triangle-down','#dc2626',11),
              mk(d.ex,'Exit','x','#111827',9)];
      Plotly.react('price-chart',tr,PRICE_DATA.layout,CFG);
      var pn=document.getElementById('price-note');if(pn)pn.textContent=d.note||'';
    };
    sel.addEventListener('change',show);show();
  }
}else{
  var msg='plotly.js failed to load; charts are unavailable.';
  ['equity-chart','price-chart'].forEach(function(id){var e=document.getElementById(id);if(e)e.textContent=msg;});
}
function key(t){var s=t.replace(/[,%\s]/g,'').replace('\u2212','-');
  if(s===''||s==='\u2014')return null;var v=Number(s);return isNaN(v)?undefined:v;}
document.querySelectorAll('table.sortable').forEach(function(table){
  var ths=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(ths,function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      Array.prototype.forEach.call(ths,function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      var vals=rows.map(function(r){return r.cells[col].textContent;});
      var keys=vals.map(key),numeric=keys.every(function(k){return k!==undefined;});
      var idx=rows.map(function(_,i){return i;});
      idx.sort(function(a,b){
        var x=numeric?keys[a]:vals[a],y=numeric?keys[b]:vals[b];
        if(x===null||x==='')return (y===null||y==='')?a-b:1;
        if(y===null||y==='')return -1;
        var c=numeric?x-y:(x<y?-1:x>y?1:0);
        return (asc?c:-c)||a-b;});
      var frag=document.createDocumentFragment();
      idx.forEach(function(i){frag.appendChild(rows[i]);});
      body.appendChild(frag);
    });
  });
});
})();
"""
