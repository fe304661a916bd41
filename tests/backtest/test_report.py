"""Tests for slices/backtest/report.py: the self-contained offline HTML report."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]

from slices.backtest.report import MAX_CHART_SYMBOLS, MAX_TRADE_ROWS, write_report  # noqa: E402

UTC = timezone.utc
T0 = datetime(2020, 1, 1, tzinfo=UTC)
TRADE_SCHEMA = {
    "symbol": pl.String, "side": pl.String, "quantity": pl.Float64,
    "entry_time": pl.Datetime("us", "UTC"), "entry_price": pl.Float64,
    "exit_time": pl.Datetime("us", "UTC"), "exit_price": pl.Float64, "pnl": pl.Float64,
    "return_pct": pl.Float64, "commission": pl.Float64, "exit_reason": pl.String,
    "is_open": pl.Boolean,
}


def _plotly_js_text() -> str:
    loc = importlib.util.find_spec("plotly").submodule_search_locations[0]
    return (Path(loc) / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _times(n: int, step: timedelta = timedelta(days=1)) -> list[datetime]:
    return [T0 + i * step for i in range(n)]


def _prices(symbols: list[str], n: int = 30, step: timedelta = timedelta(days=1)) -> dict[str, pl.DataFrame]:
    out = {}
    for k, s in enumerate(symbols):
        close = [100.0 + k + i * 0.123456789 for i in range(n)]
        out[s] = pl.DataFrame({
            "timestamp": pl.Series(_times(n, step), dtype=pl.Datetime("us", "UTC")),
            "open": close, "high": [c * 1.01 for c in close], "low": [c * 0.99 for c in close],
            "close": close, "volume": [1e6] * n,
        })
    return out


def _equity(n: int = 30, step: timedelta = timedelta(days=1)) -> pl.DataFrame:
    eq = [100_000.0 * (1 + 0.01 * ((i % 7) - 3)) for i in range(n)]
    peak, dd = 0.0, []
    for v in eq:
        peak = max(peak, v)
        dd.append(v / peak - 1)
    return pl.DataFrame({
        "timestamp": pl.Series(_times(n, step), dtype=pl.Datetime("us", "UTC")),
        "equity": eq, "cash": [50_000.0] * n, "gross_exposure": [50_000.0] * n,
        "drawdown": dd, "benchmark": [100_000.0 + 10 * i for i in range(n)],
    })


def _trades(rows: list[tuple]) -> pl.DataFrame:
    """rows: (symbol, side, entry_day, exit_day, pnl, is_open)."""
    recs = []
    for sym, side, d_in, d_out, pnl, is_open in rows:
        recs.append({
            "symbol": sym, "side": side, "quantity": 10.0,
            "entry_time": T0 + timedelta(days=d_in), "entry_price": 100.0 + d_in,
            "exit_time": T0 + timedelta(days=d_out), "exit_price": 100.0 + d_out,
            "pnl": pnl, "return_pct": pnl / 10.0, "commission": 1.0,
            "exit_reason": "end" if is_open else "signal", "is_open": is_open,
        })
    return pl.DataFrame(recs, schema=TRADE_SCHEMA)


def _metrics(**over) -> dict:
    m = {
        "final_equity": 112_345.678, "total_return": 0.1234, "cagr": 0.05, "volatility": 0.2,
        "sharpe": 1.234, "sortino": 1.5, "calmar": 0.8, "max_drawdown": -0.0789,
        "max_drawdown_duration": 12, "exposure": 0.9, "n_trades": 4, "win_rate": 0.5,
        "profit_factor": 1.7, "expectancy": 25.5, "sqn": 1.1, "avg_trade": 0.01,
        "best_trade": 0.08, "worst_trade": -0.03, "kelly": None, "buy_and_hold_return": float("nan"),
    }
    m.update(over)
    return m


def _write(tmp_path: Path, *, symbols=("AAPL", "MSFT", "BRK-B"), trades=None, prices=None,
           equity=None, run=None, title="Test run", metrics=None) -> str:
    symbols = list(symbols)
    if trades is None:
        trades = _trades([
            (symbols[0], "long", 1, 5, 50.0, False),
            (symbols[0], "short", 6, 9, -20.0, False),
            (symbols[1], "long", 3, 29, 12.5, True),
            (symbols[-1], "short", 10, 12, 7.0, False),
        ])
    out = write_report(
        tmp_path / "out" / "report.html",
        title=title,
        run=run if run is not None else {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
                                         "symbols": symbols, "timeframe": "1d", "cash": 100_000},
        metrics=metrics if metrics is not None else _metrics(),
        per_symbol={s: _metrics(n_trades=1) for s in symbols},
        equity=equity if equity is not None else _equity(),
        trades=trades,
        prices=prices if prices is not None else _prices(symbols),
    )
    assert out == tmp_path / "out" / "report.html"
    assert out.is_file()
    return out.read_text(encoding="utf-8")


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start:page.index("</section>", start)]


def _js_var(page: str, name: str):
    m = re.search(rf"var {name}=(.*?);\n", page)
    assert m, f"{name} not found"
    return json.loads(m.group(1))


class _Attrs(HTMLParser):
    """Collects (tag, attr, value) for every real element; script bodies are not parsed as tags."""

    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)


# ---------------------------------------------------------------------------------------------


def test_page_is_self_contained_and_offline(tmp_path):
    page = _write(tmp_path)
    js = _plotly_js_text()
    assert "plotly.js v" in page
    assert js in page  # the whole library, inline
    assert page.count("<script") == 2  # the library and the page's own script, both inline

    parser = _Attrs()
    parser.feed(page)
    urls = [(t, k, v) for t, k, v in parser.attrs if k in ("src", "href", "srcset", "action")]
    assert not [u for u in urls if re.match(r"\s*(https?:)?//", u[2], re.I)], urls
    assert "link" not in parser.tags and "img" not in parser.tags and "iframe" not in parser.tags

    # Outside the (third-party) library text, no src=/href= attribute points to the network.
    own = page.replace(js, "")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", own, re.I)
    assert not re.search(r"https?://", own)
    assert "@import" not in own and "@font-face" not in own


def test_does_not_import_plotly():
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path\n"
        "import slices.backtest.report\n"
        "assert 'plotly' not in sys.modules, 'plotly imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_symbols_settings_and_metrics_shown(tmp_path):
    page = _write(tmp_path)
    for sym in ("AAPL", "MSFT", "BRK-B"):
        assert f'<td class="sym">{sym}</td>' in _section(page, "per-symbol")
        assert re.search(rf"<option value=\"\d+\">{re.escape(sym)} \(\d+ trades?\)</option>", page)
    settings = _section(page, "settings")
    assert "sma_cross" in settings and "fast=5, slow=20" in settings and "100,000" in settings
    metrics = _section(page, "metrics")
    assert "12.34%" in metrics          # total_return fraction -> percent
    assert "-7.89%" in metrics          # max_drawdown
    assert "1.23" in metrics            # sharpe, plain
    assert "112,345.68" in metrics      # final equity
    assert metrics.count("\u2014") == 2  # kelly None, buy_and_hold_return NaN
    assert "Max DD duration (bars)" in metrics


def test_trade_table_has_one_row_per_trade(tmp_path):
    page = _write(tmp_path)
    trades = _section(page, "trades")
    body = trades[trades.index("<tbody>"):]
    assert body.count("<tr") == 4
    assert len(re.findall(r"<th[ >]", trades)) == 12
    assert "Trades (4)" in trades
    assert ">-20.00<" in body and ">-2.00%<" in body  # pnl currency, return_pct already percent
    assert ">open<" in body
    assert "trades-truncated" not in page


def test_trade_table_capped(tmp_path):
    n = MAX_TRADE_ROWS + 37
    rows = [("AAPL", "long", i % 20, i % 20 + 1, 1.0, False) for i in range(n)]
    page = _write(tmp_path, symbols=["AAPL"], trades=_trades(rows))
    trades = _section(page, "trades")
    assert trades[trades.index("<tbody>"):].count("<tr") == MAX_TRADE_ROWS
    assert f"Showing the first {MAX_TRADE_ROWS:,} of {n:,} trades" in trades


def test_empty_trades(tmp_path):
    empty = pl.DataFrame(schema=TRADE_SCHEMA)
    page = _write(tmp_path, trades=empty)
    trades = _section(page, "trades")
    assert "No trades." in trades and "<tr" not in trades
    data = _js_var(page, "PRICE_DATA")
    assert [d["s"] for d in data["symbols"]] == ["AAPL", "BRK-B", "MSFT"]  # no trades: alphabetical
    for d in data["symbols"]:
        assert d["le"] == d["se"] == d["ex"] == [[], [], []]
        assert len(d["x"]) == 30


def test_markers_and_price_serialisation(tmp_path):
    page = _write(tmp_path)
    data = _js_var(page, "PRICE_DATA")
    by_sym = {d["s"]: d for d in data["symbols"]}
    # most trades first, then alphabetical
    assert [d["s"] for d in data["symbols"]] == ["AAPL", "BRK-B", "MSFT"]
    aapl = by_sym["AAPL"]
    assert aapl["x"][:2] == ["2020-01-01", "2020-01-02"]          # daily -> dates
    assert aapl["y"][1] == 100.123 and aapl["y"][9] == 101.111      # 6 significant digits
    assert aapl["le"][0] == ["2020-01-02"] and aapl["le"][1] == [101.0]
    assert aapl["se"][0] == ["2020-01-07"]
    assert aapl["ex"][0] == ["2020-01-06", "2020-01-10"]
    assert "pnl 50.00 (5.00%)" in aapl["ex"][2][0]
    msft = by_sym["MSFT"]
    assert len(msft["le"][0]) == 1 and msft["ex"] == [[], [], []]   # open trade: no exit marker
    assert "(open)" in msft["le"][2][0]

    eq = _js_var(page, "EQUITY_FIG")
    names = [t["name"] for t in eq["data"]]
    assert names == ["Strategy", "Buy and hold (equal weight)", "Drawdown"]
    assert eq["data"][2]["yaxis"] == "y2" and eq["data"][2]["fill"] == "tozeroy"
    assert min(eq["data"][2]["y"]) == pytest.approx((0.97 / 1.03 - 1) * 100, abs=1e-4)  # percent
    assert eq["data"][0]["x"][0] == "2020-01-01"


def test_intraday_timestamps_keep_time(tmp_path):
    step = timedelta(hours=1)
    page = _write(tmp_path, symbols=["EURUSD"], prices=_prices(["EURUSD"], step=step),
                  equity=_equity(step=step), trades=pl.DataFrame(schema=TRADE_SCHEMA))
    assert _js_var(page, "PRICE_DATA")["symbols"][0]["x"][1] == "2020-01-01T01:00"
    assert _js_var(page, "EQUITY_FIG")["data"][0]["x"][1] == "2020-01-01T01:00"


def test_hostile_names_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    page = _write(tmp_path, symbols=[evil, "OK"], title="A & <b>B</b>",
                  run={"strategy": "<img src=x onerror=alert(1)>", "symbols": [evil]})
    assert evil not in page
    assert "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # tables and <select>
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<title>A &amp; &lt;b&gt;B&lt;/b&gt;</title>" in page
    # inside the JSON the symbol stays intact for the script, with '<' escaped
    assert [d["s"] for d in _js_var(page, "PRICE_DATA")["symbols"]][0] == evil
    parser = _Attrs()
    parser.feed(page)
    assert parser.tags.count("script") == 2


def test_more_than_40_symbols_leaves_some_out(tmp_path):
    n = MAX_CHART_SYMBOLS + 5
    symbols = [f"S{i:02d}" for i in range(n)]
    # S44 has the most trades, so it is charted although it sorts last.
    rows = [("S44", "long", 1, 2, 1.0, False)] * 3 + [("S43", "short", 1, 2, 1.0, False)]
    page = _write(tmp_path, symbols=symbols, trades=_trades(rows))
    prices = _section(page, "prices")
    assert prices.count("<option") == MAX_CHART_SYMBOLS
    charted = [d["s"] for d in _js_var(page, "PRICE_DATA")["symbols"]]
    assert charted[:2] == ["S44", "S43"] and len(charted) == MAX_CHART_SYMBOLS
    left = sorted(set(symbols) - set(charted))
    assert left == ["S38", "S39", "S40", "S41", "S42"]
    assert f"included for {MAX_CHART_SYMBOLS} of {n} symbols" in prices
    assert "5 symbols were left out" in prices
    assert "S38, S39, S40, S41, S42" in prices
    # every symbol is still in the per-symbol table
    for s in symbols:
        assert f'<td class="sym">{s}</td>' in page


def test_no_left_out_note_when_all_fit(tmp_path):
    page = _write(tmp_path)
    assert "left out" not in page


def test_missing_equity_column_raises(tmp_path):
    eq = _equity().drop("benchmark")
    with pytest.raises(ValueError, match="benchmark"):
        _write(tmp_path, equity=eq)
    assert not (tmp_path / "out" / "report.html").exists()


def test_non_finite_values_become_gaps(tmp_path):
    eq = _equity().with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(float("nan")).otherwise(pl.col("benchmark")).alias("benchmark")
    )
    page = _write(tmp_path, equity=eq)
    assert _js_var(page, "EQUITY_FIG")["data"][1]["y"][3] is None
    assert not re.search(r"[\[,:](NaN|Infinity)[,\]}]", page.replace(_plotly_js_text(), ""))


def test_hostile_texts_that_reach_the_page_never_appear_raw(tmp_path):
    # strategy names, parameters, warnings and trade texts come from users' files and data
    evil = "X</script><b>&\"'<!--"
    trades = _trades([("AAPL", "long", 1, 5, 1234567.891, False)]).with_columns(exit_reason=pl.lit(evil))
    out = write_report(
        tmp_path / "report.html", title=f"{evil} backtest",
        run={"strategy": evil, "params": {evil: evil}, "symbols": ["AAPL"]}, metrics=_metrics(),
        per_symbol={"AAPL": _metrics()}, equity=_equity(), trades=trades, prices=_prices(["AAPL"]),
        warnings=[f"data.csv: AAPL 2020-01-02: {evil}; symbol excluded"],
    )
    page = out.read_text(encoding="utf-8").replace(_plotly_js_text(), "")
    assert evil not in page and "</script><b>" not in page and "<!--" not in page
    escaped = "X&lt;/script&gt;&lt;b&gt;&amp;&quot;&#x27;&lt;!--"
    assert escaped in _section(page, "warnings") and escaped in _section(page, "settings")
    assert escaped in _section(page, "trades")
    # the hover text of the exit marker carries the escaped reason and money with a thousands separator
    exits = _js_var(page, "PRICE_DATA")["symbols"][0]["ex"][2]
    assert escaped in exits[0] and "1,234,567.89" in exits[0]
    parser = _Attrs()
    parser.feed(page)
    assert parser.tags.count("script") == 2 and "b" not in parser.tags


def test_warnings_section_lists_every_warning(tmp_path):
    out = write_report(tmp_path / "r.html", title="t", run={}, metrics=_metrics(), per_symbol={}, equity=_equity(),
                       trades=_trades([]), prices={}, warnings=["one", "two & three"])
    section = _section(out.read_text(encoding="utf-8"), "warnings")
    assert "Warnings (2)" in section and "<li>one</li><li>two &amp; three</li>" in section
    out = write_report(tmp_path / "r.html", title="t", run={}, metrics=_metrics(), per_symbol={}, equity=_equity(),
                       trades=_trades([]), prices={})
    assert "No warnings." in _section(out.read_text(encoding="utf-8"), "warnings")


def test_js_json_cannot_end_the_script():
    from slices.backtest.report import _js_json

    text = _js_json({"a": "</script><!-- x"})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"a": "</script><!-- x"}


# ---------------------------------------------------------------------------------------------
# intraday scale (issue 13): min/max downsampling of the charts, thinned trade markers

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from slices.backtest import report as report_mod  # noqa: E402
from slices.backtest.report import (  # noqa: E402
    EQUITY_BUCKETS, MARKER_TRADES, MARKER_TRADES_PER_PAGE, PRICE_BUCKETS, PRICE_POINTS_PER_PAGE,
)

SIZE_CAP = 8_000_000  # bytes, plotly.js (~4.8 MB) included


def _minute_times(n: int) -> pl.Series:
    start = np.datetime64("2020-01-02T14:30", "us")
    return pl.Series("timestamp", start + np.arange(n) * np.timedelta64(60_000_000, "us")).dt.replace_time_zone("UTC")


def _big_inputs(symbols: list[str], n_bars: int, n_trades: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    ts = _minute_times(n_bars)
    prices = {}
    for s in symbols:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n_bars)))
        close[rng.integers(0, n_bars)] *= 1.5   # one isolated spike up and one down: must survive
        close[rng.integers(0, n_bars)] *= 0.5
        prices[s] = pl.DataFrame({"timestamp": ts, "open": close, "high": close, "low": close,
                                  "close": close, "volume": np.ones(n_bars)})
    eq = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.0005, n_bars)))
    eq[n_bars // 3] *= 0.6   # a one-bar crash: the worst drawdown sits on a single bar
    equity = pl.DataFrame({"timestamp": ts, "equity": eq, "cash": eq / 2, "gross_exposure": eq / 2,
                           "drawdown": eq / np.maximum.accumulate(eq) - 1, "benchmark": eq * 1.01})
    # distinct entry bars per trade (so entry times identify trades), shuffled row order
    entry = rng.choice(n_bars - 10, n_trades, replace=False)
    sym = np.array(symbols)[rng.integers(0, len(symbols), n_trades)]
    sym[: 1000] = symbols[-1]  # make sure the last symbol is over budget too
    trades = pl.DataFrame({
        "symbol": sym, "side": np.where(rng.random(n_trades) < 0.5, "long", "short"),
        "quantity": np.full(n_trades, 10.0),
        "entry_time": ts.gather(entry), "entry_price": np.full(n_trades, 100.0),
        "exit_time": ts.gather(entry + 5), "exit_price": np.full(n_trades, 101.0),
        "pnl": np.round(rng.normal(0, 50, n_trades), 2), "return_pct": rng.normal(0, 0.5, n_trades),
        "commission": np.ones(n_trades), "exit_reason": ["signal"] * n_trades,
        "is_open": np.zeros(n_trades, dtype=bool),
    })
    return prices, equity, trades


def _ts_text(ts: pl.Series) -> list[str]:
    return ts.dt.strftime("%Y-%m-%dT%H:%M").to_list()


def test_big_input_is_downsampled_thinned_and_under_the_size_cap(tmp_path):
    symbols = ["AAA", "BBB", "CCC"]
    n_bars, n_trades = 300_000, 50_000
    prices, equity, trades = _big_inputs(symbols, n_bars, n_trades)
    page = _write(tmp_path, symbols=symbols, prices=prices, equity=equity, trades=trades)
    assert len(page.encode("utf-8")) < SIZE_CAP

    buckets = min(PRICE_BUCKETS, PRICE_POINTS_PER_PAGE // (2 * len(symbols)))
    data = {d["s"]: d for d in _js_var(page, "PRICE_DATA")["symbols"]}
    assert set(data) == set(symbols)
    all_x = _ts_text(prices["AAA"]["timestamp"])
    for s in symbols:
        d = data[s]
        close = prices[s]["close"].round_sig_figs(6)
        assert len(d["x"]) == len(d["y"]) <= 2 * buckets + 2
        assert len(d["x"]) >= 2 * buckets * 0.9          # really min/max per bucket, not a few points
        assert d["x"] == sorted(d["x"]) and len(set(d["x"])) == len(d["x"])  # time order, no repeats
        assert d["x"][0] == all_x[0] and d["x"][-1] == all_x[-1]               # first and last bar
        assert close.min() in d["y"] and close.max() in d["y"]                 # spikes survive
        # every drawn point is a real bar with its real (rounded) close
        real = dict(zip(all_x, close.to_list()))
        assert all(real[x] == y for x, y in zip(d["x"], d["y"]))
        assert (f"{s}: prices shown as min/max of {buckets:,} buckets of ~{n_bars / buckets:,.0f} bars each"
                in d["note"])

        # markers: at most the budget, the largest |pnl| trades kept, plus an even sample
        budget = min(MARKER_TRADES, MARKER_TRADES_PER_PAGE // len(symbols))
        mine = trades.filter(pl.col("symbol") == s)
        shown_entries = d["le"][0] + d["se"][0]
        assert len(shown_entries) <= budget and len(d["ex"][0]) == len(shown_entries)
        assert f"{s}: {len(shown_entries):,} of {mine.height:,} trades shown as markers" in d["note"]
        assert "all are in trades.parquet" in d["note"]
        top = mine.sort(pl.col("pnl").abs(), descending=True).head(budget // 2)
        assert set(_ts_text(top["entry_time"])) <= set(shown_entries)
        ranks = {x: i for i, x in enumerate(sorted(_ts_text(mine["entry_time"])))}
        kept = sorted(ranks[x] for x in shown_entries)
        even = budget - budget // 2
        assert kept[0] == 0 and max(np.diff(kept)) <= -(-mine.height // even)  # no gap beyond one step

    # the selected symbol's note is on the page, escaped, next to the chart
    first = _js_var(page, "PRICE_DATA")["symbols"][0]
    prices_html = _section(page, "prices")
    assert f'<p class="note" id="price-note">{html.escape(first["note"])}</p>' in prices_html

    fig = _js_var(page, "EQUITY_FIG")
    x, eq, bench, dd = (fig["data"][0]["x"], fig["data"][0]["y"], fig["data"][1]["y"], fig["data"][2]["y"])
    assert len(x) <= 4 * EQUITY_BUCKETS + 2 and len(x) >= 2 * EQUITY_BUCKETS
    assert len(eq) == len(bench) == len(dd) == len(x) and x == sorted(x)
    worst = (equity["drawdown"] * 100).round(4).min()
    assert min(dd) == worst and worst < -35
    assert x[dd.index(worst)] == all_x[n_bars // 3]                              # the crash bar itself
    assert max(eq) == equity["equity"].round(2).max() and min(eq) == equity["equity"].round(2).min()
    note = _section(page, "equity")
    assert (f"shown as min/max of {EQUITY_BUCKETS:,} buckets of ~{n_bars / EQUITY_BUCKETS:,.0f} bars each"
            in note)


def test_small_input_is_drawn_in_full(tmp_path):
    page = _write(tmp_path)
    prices = _prices(["AAPL", "MSFT", "BRK-B"])
    for d in _js_var(page, "PRICE_DATA")["symbols"]:
        assert "note" not in d
        assert d["x"] == prices[d["s"]]["timestamp"].dt.strftime("%Y-%m-%d").to_list()
        assert d["y"] == prices[d["s"]]["close"].round_sig_figs(6).to_list()
    assert sum(len(d["le"][0]) + len(d["se"][0]) for d in _js_var(page, "PRICE_DATA")["symbols"]) == 4
    fig = _js_var(page, "EQUITY_FIG")
    assert fig["data"][0]["y"] == _equity()["equity"].round(2).to_list()
    assert fig["data"][2]["y"] == (_equity()["drawdown"] * 100).round(4).to_list()
    assert 'id="price-note"' not in page and 'id="equity-note"' not in page
    assert "shown as min/max" not in page and "shown as markers" not in page


def test_budget_boundaries(tmp_path, monkeypatch):
    """2 * buckets + 2 bars and MARKER_TRADES trades are drawn in full; one more is reduced."""
    monkeypatch.setattr(report_mod, "PRICE_BUCKETS", 10)
    monkeypatch.setattr(report_mod, "EQUITY_BUCKETS", 10)
    monkeypatch.setattr(report_mod, "MARKER_TRADES", 6)
    step = timedelta(minutes=1)
    for n_bars, n_trades in ((22, 6), (23, 7)):
        page = _write(tmp_path / str(n_bars), symbols=["AAPL"], prices=_prices(["AAPL"], n=n_bars, step=step),
                      equity=_equity(n=n_bars, step=step),
                      trades=_trades([("AAPL", "long", i, i + 1, float(i), False) for i in range(n_trades)]))
        d = _js_var(page, "PRICE_DATA")["symbols"][0]
        eq_x = _js_var(page, "EQUITY_FIG")["data"][0]["x"]
        if n_bars == 22:
            assert len(d["x"]) == 22 and len(eq_x) == 22 and len(d["le"][0]) == 6
            assert "note" not in d and 'id="equity-note"' not in page and 'id="price-note"' not in page
        else:
            assert len(d["x"]) < 23 and len(eq_x) < 23 and 'id="equity-note"' in page
            shown = len(d["le"][0])
            assert shown <= 6 and f"AAPL: {shown} of 7 trades shown as markers" in d["note"]
            assert "AAPL: prices shown as min/max of 10 buckets of ~2 bars each" in d["note"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.just(float("nan")), st.floats(-1e6, 1e6)), min_size=0, max_size=300),
    st.integers(1, 40),
)
def test_minmax_rows_keeps_every_bucket_extreme(values, buckets):
    n = len(values)
    df = pl.DataFrame({"k": list(range(n)), "y": pl.Series(values, dtype=pl.Float64)})
    out = report_mod._minmax_rows(df, ("y",), buckets)
    if n <= 2 * buckets + 2:
        assert out.equals(df)
        return
    k = out["k"].to_list()
    assert k == sorted(set(k)) and k[0] == 0 and k[-1] == n - 1 and len(k) <= 2 * buckets + 2
    for b in range(buckets):  # each bucket's lowest and highest value is drawn
        rows = [r for r in range(n) if r * buckets // n == b]
        vals = [values[r] for r in rows if values[r] is not None and values[r] == values[r]]
        drawn = [values[r] for r in rows if r in set(k)]
        if vals:
            assert min(vals) in drawn and max(vals) in drawn
    finite = [v for v in values if v is not None and v == v]
    if finite:
        ys = out["y"].to_list()
        assert min(finite) in ys and max(finite) in ys


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 500), st.floats(-1e4, 1e4)),
                min_size=0, max_size=120),
       st.integers(2, 30))
def test_thin_markers_keeps_the_largest_and_an_even_sample(rows, budget):
    tr = _trades([(s, "long", d, d + 1, p, False) for s, d, p in rows])
    tr = tr.with_columns(pl.int_range(pl.len()).alias("row"))
    kept, thinned = report_mod._thin_markers(tr, budget)
    assert kept["row"].to_list() == sorted(kept["row"].to_list())   # input order kept
    for s in ("A", "B"):
        mine, k = tr.filter(pl.col("symbol") == s), kept.filter(pl.col("symbol") == s)
        if mine.height <= min(budget, MARKER_TRADES):
            assert k.height == mine.height and s not in thinned
            continue
        assert thinned[s] == k.height <= budget
        # the budget // 2 largest |pnl| (by |pnl| value: ties may pick either row)
        cut = mine["pnl"].abs().sort(descending=True)[budget // 2 - 1] if budget // 2 else float("inf")
        assert k.filter(pl.col("pnl").abs() > cut).height == mine.filter(pl.col("pnl").abs() > cut).height
        first = mine.sort("entry_time", maintain_order=True)["row"][0]
        assert first in k["row"].to_list()


def test_trade_table_cut_matches_a_full_stable_sort(tmp_path):
    n = 4 * MAX_TRADE_ROWS + 500
    rng = np.random.default_rng(3)
    days = rng.integers(0, 300, n)   # many ties: the stable order must decide
    tr = _trades([]).vstack(pl.DataFrame({
        "symbol": [f"T{i:05d}" for i in range(n)], "side": ["long"] * n, "quantity": [1.0] * n,
        "entry_time": pl.Series([T0 + timedelta(days=int(d)) for d in days], dtype=pl.Datetime("us", "UTC")),
        "entry_price": [1.0] * n, "exit_time": pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
        "exit_price": [1.0] * n, "pnl": [0.0] * n, "return_pct": [0.0] * n, "commission": [0.0] * n,
        "exit_reason": [""] * n, "is_open": [True] * n,
    }, schema=TRADE_SCHEMA))
    page = _write(tmp_path, symbols=["AAPL"], trades=tr)
    body = _section(page, "trades")
    shown = re.findall(r"<tr><td>(T\d{5})</td>", body)
    expected = tr.sort("entry_time", maintain_order=True).head(MAX_TRADE_ROWS)["symbol"].to_list()
    assert shown == expected


@pytest.mark.parametrize("ts, midnight", [
    (datetime(1960, 3, 1), True),
    (datetime(2020, 3, 1, 0, 0, 0, 500), False),
    (datetime(2020, 3, 1, 0, 1), False),
])
@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_all_midnight_any_unit(ts, midnight, unit):
    s = pl.Series([datetime(2020, 1, 1), ts], dtype=pl.Datetime(unit))
    if unit == "ms" and ts.microsecond:
        midnight = True  # 500 us is below a millisecond: the ms value is midnight
    assert report_mod._all_midnight(s) is midnight
    local = pl.Series([datetime(2020, 1, 1), ts], dtype=pl.Datetime(unit)).dt.replace_time_zone("America/New_York")
    assert report_mod._all_midnight(local) is midnight   # local wall-clock midnight
    assert report_mod._all_midnight(local.dt.convert_time_zone("UTC")) is False  # 05:00 UTC
