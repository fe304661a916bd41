"""User strategy files and modules (SLICES.md contract 5) through the backtest command line:
loading, parameters, every one-line error (exit 2), read-only bars, --check-lookahead, the
`strategies` command, the weights form end to end, and the examples in examples/strategies/
(skipped when that folder is absent, as in tests/contracts/test_slice_alone.py's copy)."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from slices.backtest.cli import cli
from slices.backtest.strategies import STRATEGIES, resolve_params

ROOT = Path(__file__).resolve().parents[2]
AAPL = ROOT / "slices" / "sample" / "bars" / "1d" / "AAPL.parquet"
EXAMPLES = ROOT / "examples" / "strategies"
needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/strategies not present")

MOMENTUM_FILE = """
import numpy as np
PARAMS = {"lookback": 20, "threshold": 0.0}
def lookback(params):
    return params["lookback"] + 1
def targets(bars, params):
    c = bars["close"]
    k = params["lookback"]
    roc = np.full(c.size, np.nan)
    roc[k:] = c[k:] / c[:-k] - 1.0
    thr = params["threshold"]
    return np.where(roc > thr, 1, np.where(roc < -thr, -1, 0))
"""


def write(tmp_path: Path, body: str, name: str = "strat.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run(tmp_path: Path, strategy, *args, data=(AAPL,)):
    extra = [x for d in data for x in ("--data", d)]
    return invoke("run", "--strategy", strategy, *extra, "--no-report", "--out", tmp_path / "out", *args)


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


# ----------------------------------------------------------------------------- loading
def test_a_file_strategy_trades_exactly_like_the_built_in_it_copies(tmp_path):
    path = write(tmp_path, MOMENTUM_FILE)
    ok(run(tmp_path, path, "--param", "lookback=10", "--param", "threshold=0.01"))
    mine = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["run"]["strategy"] == "strat" and metrics["run"]["strategy_spec"] == str(path)
    assert metrics["run"]["strategy_form"] == "targets" and metrics["run"]["params"] == {"lookback": 10, "threshold": 0.01}
    ok(run(tmp_path, "momentum", "--param", "lookback=10", "--param", "threshold=0.01"))
    builtin = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    assert mine.height > 10 and mine.equals(builtin)


def test_a_file_may_import_helpers_beside_it_and_a_module_or_attribute_loads_too(tmp_path, monkeypatch):
    write(tmp_path, "def always(n):\n    return [1] * n\n", "helper_h1.py")
    path = write(tmp_path, "from helper_h1 import always\nPARAMS = {}\ndef targets(bars, params):\n"
                           "    return always(len(bars['close']))\n", "long.py")
    ok(run(tmp_path, path))
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    bars = pl.read_parquet(AAPL)
    assert trades.height == 1 and trades["entry_time"][0] == bars["timestamp"][1]  # target 1 on bar 0, filled at bar 1
    pkg = tmp_path / "mypkg_h1"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text(textwrap.dedent("""
        class Always:
            NAME = "always_long"
            PARAMS = {"side": 1}
            def targets(self, bars, params):
                return [params["side"]] * len(bars["close"])
        ALWAYS = Always()
        PARAMS = {}
        def weights(panel, params):
            import numpy as np
            return np.full(panel["close"].shape, 1.0 / panel["close"].shape[1])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    strat, params = resolve_params("mypkg_h1.rules:ALWAYS", {"side": "1"})
    assert strat.name == "always_long" and strat.form == "targets" and params == {"side": 1}
    strat, _ = resolve_params("mypkg_h1.rules", {})
    assert strat.name == "rules" and strat.form == "weights"
    one_line_error(run(tmp_path, "mypkg_h1.rules:Nope"), "has no attribute 'Nope'")


def test_params_are_parsed_to_the_default_type(tmp_path):
    path = write(tmp_path, """
        PARAMS = {"n": 3, "x": 1.5, "flag": True, "mode": "a"}
        def targets(bars, params):
            assert isinstance(params["n"], int) and isinstance(params["x"], float)
            assert isinstance(params["flag"], bool) and isinstance(params["mode"], str)
            return [0] * len(bars["close"])
    """)
    ok(run(tmp_path, path, "--param", "n=7", "--param", "x=2", "--param", "flag=No", "--param", "mode=b c"))
    params = json.loads((tmp_path / "out" / "metrics.json").read_text())["run"]["params"]
    assert params == {"n": 7, "x": 2.0, "flag": False, "mode": "b c"}
    one_line_error(run(tmp_path, path, "--param", "n=5.5"), str(path), "n=5.5", "integer")
    one_line_error(run(tmp_path, path, "--param", "x=nan"), "x=nan", "finite")
    one_line_error(run(tmp_path, path, "--param", "flag=maybe"), "flag=maybe", "true/false")
    one_line_error(run(tmp_path, path, "--param", "zz=1"), str(path), "no parameter 'zz'")


def test_built_ins_have_the_strategy_file_interface():
    s = STRATEGIES["simple_ma"]
    assert s.PARAMS == {"fast": 10, "slow": 30} and s.form == "targets" and s.needed_bars(s.PARAMS) == 31
    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 200)))
    bars = {"open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": np.ones(200),
            "timestamp": np.arange(200).astype("datetime64[D]").astype("datetime64[us]"), "symbol": "X"}
    np.testing.assert_array_equal(s.targets(bars, s.PARAMS), s.fn(c, c * 1.01, c * 0.99, c, s.PARAMS))
    with pytest.raises(ValueError, match="simple_ma: needs fast < slow"):
        s.check({"fast": 30, "slow": 10})


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("body", "needles"), [
    ("PARAMS = {}\ndef targets(bars, params:\n    return 0\n", [":2: syntax error"]),
    ("import numpy\nimport not_a_module_h1\nPARAMS = {}\ndef targets(b, p):\n    return 0\n",
     [":2: import error: ModuleNotFoundError", "not_a_module_h1"]),
    ("import numpy\n\nfrom slices.backtest import strategies\nPARAMS = {}\ndef targets(b, p):\n    return 0\n",
     [":3:", "must not import from slices"]),
    ("def f():\n    import slices.data\nPARAMS = {}\ndef targets(b, p):\n    return 0\n", [":2:", "slices"]),
    ("PARAMS = {}\n", ["neither targets"]),
    ("PARAMS = {}\ndef targets(b, p):\n    return 0\ndef weights(p, q):\n    return 0\n", ["both targets and weights"]),
    ("PARAMS = [1]\ndef targets(b, p):\n    return 0\n", ["PARAMS must be a dict"]),
    ("def targets(b, p):\n    return 0\n", ["PARAMS missing"]),
    ("PARAMS = {'w': [1, 2]}\ndef targets(b, p):\n    return 0\n", ["PARAMS['w']", "list"]),
    ("x = 1 / 0\nPARAMS = {}\n", [":1: error while loading: ZeroDivisionError"]),
    ("PARAMS = {'n': 3}\ndef validate(p):\n    raise ValueError('n must be even\\nsecond line')\ndef targets(b, p):\n    return 0\n",
     [": n must be even"]),
    ("PARAMS = {}\ndef lookback(p):\n    return 100000\ndef targets(b, p):\n    return 0\n", ["fewer than the 100,000"]),
    ("PARAMS = {}\ndef lookback(p):\n    return 'ten'\ndef targets(b, p):\n    return 0\n", ["lookback", "integer"]),
])
def test_bad_strategy_files_are_one_line_errors_naming_the_file(tmp_path, body, needles):
    path = write(tmp_path, body)
    line = one_line_error(run(tmp_path, path), *needles)
    assert str(path) in line
    assert "second line" not in line
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_file_folder_and_unknown_module(tmp_path):
    one_line_error(run(tmp_path, tmp_path / "nope.py"), str(tmp_path / "nope.py"), "no such strategy file")
    one_line_error(run(tmp_path, tmp_path), "is a folder")
    one_line_error(run(tmp_path, "no_such_module_h1.sub"), "unknown strategy 'no_such_module_h1.sub'")
    one_line_error(run(tmp_path, "slices.backtest.strategies"), "must not come from the slices package")


BAD_RETURNS = [
    ("return np.zeros(len(c) - 1)", ["AAPL", "shape (1258,)", "(1259,)"]),
    ("return np.zeros((len(c), 2))", ["AAPL", "shape (1259, 2)"]),
    ("return np.array(['1'] * len(c))", ["AAPL", "dtype <U1"]),
    ("return np.array([None] * len(c))", ["AAPL", "dtype object"]),
    ("return None", ["AAPL", "returned None"]),
    ("t = np.zeros(len(c)); t[5] = 2; return t", ["AAPL", "value 2.0 at bar 5 (2015-01-20)"]),
    ("t = np.zeros(len(c)); t[3] = np.nan; return t", ["AAPL", "NaN at bar 3 (2015-01-15)"]),
    ("return [0] * 10 + [1 / 0]", ["AAPL: ZeroDivisionError: division by zero"]),
    ("c[0] = 1.0; return np.zeros(len(c))", ["AAPL: ValueError", "read-only"]),
]


@pytest.mark.parametrize(("body", "needles"), BAD_RETURNS)
def test_bad_targets_name_the_strategy_the_symbol_and_the_bar(tmp_path, body, needles):
    path = write(tmp_path, f"import numpy as np\nPARAMS = {{}}\ndef targets(bars, params):\n    c = bars['close']\n    {body}\n")
    assert str(path) in one_line_error(run(tmp_path, path), *needles)


def test_debug_shows_the_strategys_traceback(tmp_path):
    path = write(tmp_path, "PARAMS = {}\ndef targets(bars, params):\n    return helper()\ndef helper():\n    return 1 / 0\n")
    r = run(tmp_path, path, "--debug")
    assert r.exit_code == 2
    assert "Traceback" in r.stderr and f'"{path}", line 5, in helper' in r.stderr
    assert r.stderr.rstrip().splitlines()[-1] == f"error: {path}: AAPL: ZeroDivisionError: division by zero"


def test_options_of_the_other_form_are_refused(tmp_path):
    weights = write(tmp_path, "import numpy as np\nPARAMS = {}\ndef weights(panel, params):\n"
                              "    return np.full(panel['close'].shape, 0.5)\n", "w.py")
    one_line_error(run(tmp_path, weights, "--stop-loss-atr", "2"), "--stop-loss-atr", "weights strategy")
    one_line_error(run(tmp_path, "simple_ma", "--leverage", "2"), "--leverage", "targets strategy")
    over = write(tmp_path, "import numpy as np\nPARAMS = {}\ndef weights(panel, params):\n"
                           "    return np.full(panel['close'].shape, 0.6)\n", "over.py")
    sample = AAPL.parent
    one_line_error(run(tmp_path, over, data=(AAPL, sample / "MSFT.parquet")), "weights row 0 (2015-01-12)", "1.2 exceeds 1")
    ok(run(tmp_path, over, "--leverage", "1.2", data=(AAPL, sample / "MSFT.parquet")))


# ----------------------------------------------------------------------------- --check-lookahead
PEEKING = """
import numpy as np
PARAMS = {}
def targets(bars, params):
    c = bars["close"]
    nxt = np.append(c[1:], np.nan)
    return (nxt > c).astype(int)  # tomorrow's close: lookahead
"""


def test_check_lookahead_catches_a_peeking_strategy_and_passes_a_causal_one(tmp_path):
    peek = write(tmp_path, PEEKING, "peek.py")
    plain = ok(run(tmp_path, peek))  # without the check the peeking strategy runs (and looks great)
    assert "looks ahead" not in plain.stderr
    line = one_line_error(run(tmp_path, peek, "--check-lookahead"), f"{peek} looks ahead: AAPL ")
    assert line.endswith("target 0 with bars up to then, 1 with all bars")  # the last bar cannot see tomorrow
    good = write(tmp_path, MOMENTUM_FILE, "good.py")
    r = ok(run(tmp_path, good, "--check-lookahead"))
    assert f"note: --check-lookahead: {good}: no lookahead found" in r.stderr


def test_check_lookahead_on_weights(tmp_path):
    peek = write(tmp_path, """
        import numpy as np
        PARAMS = {}
        def weights(panel, params):
            c = panel["close"]
            w = np.zeros(c.shape)
            w[:-1] = (c[1:] > c[:-1]) * 0.5  # tomorrow's close
            return w
    """, "wpeek.py")
    sample = AAPL.parent
    line = one_line_error(run(tmp_path, peek, "--check-lookahead", data=(AAPL, sample / "MSFT.parquet")), "looks ahead")
    assert "with bars up to then" in line and "weight" in line


# ----------------------------------------------------------------------------- strategies command
def test_strategies_shows_one_file(tmp_path):
    path = write(tmp_path, 'NAME = "mine"\nDESCRIPTION = "My rule"\nPARAMS = {"n": 3, "x": 0.5, "on": True, "s": "a"}\n'
                           "def targets(b, p):\n    return 0\n")
    r = ok(invoke("strategies", "--strategy", path))
    assert "mine" in r.stdout and "My rule" in r.stdout and "targets" in r.stdout
    assert any(line.split() == ["x", "float", "0.5"] for line in r.stdout.splitlines())
    doc = json.loads(ok(invoke("strategies", "--strategy", path, "-f", "json")).stdout)
    assert doc["name"] == "mine" and doc["description"] == "My rule" and doc["form"] == "targets"
    assert doc["spec"] == str(path)
    assert doc["params"] == {"n": {"default": 3, "type": "int", "help": ""}, "x": {"default": 0.5, "type": "float", "help": ""},
                             "on": {"default": True, "type": "bool", "help": ""}, "s": {"default": "a", "type": "str", "help": ""}}
    one_line_error(invoke("strategies", "--strategy", tmp_path / "missing.py"), "no such strategy file")


def test_strategies_table_lists_the_built_ins_with_their_form():
    out = ok(invoke("strategies")).stdout.splitlines()
    assert out[0].split() == ["name", "form", "params", "description"]
    assert out[1].split()[:4] == ["simple_ma", "targets", "fast=10", "slow=30"]
    starts = {line.index(line.split()[1]) for line in out}  # the form column is aligned
    assert len(starts) == 1


# ----------------------------------------------------------------------------- examples
def naive_rsi(close: np.ndarray, n: int) -> list[float]:
    """Wilder's RSI bar by bar, from the definition (TA-Lib RSI)."""
    out = [math.nan] * len(close)
    ch = np.diff(close)
    if len(ch) < n:
        return out
    g = sum(max(x, 0) for x in ch[:n]) / n
    lo = sum(max(-x, 0) for x in ch[:n]) / n
    for t in range(n, len(close)):
        if t > n:
            x = ch[t - 1]
            g = (g * (n - 1) + max(x, 0)) / n
            lo = (lo * (n - 1) + max(-x, 0)) / n
        out[t] = 50.0 if g == lo == 0 else 100.0 if lo == 0 else 100 - 100 / (1 + g / lo)
    return out


@needs_examples
def test_rsi_example_trades_at_the_next_open_after_the_rsi_crosses(tmp_path):
    ok(run(tmp_path, EXAMPLES / "rsi_reversion.py", "--param", "n=10", "--param", "lower=35",
           "--commission", "0", "--slippage-bps", "0"))
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    bars = pl.read_parquet(AAPL)
    rsi = naive_rsi(bars["close"].to_numpy(), 10)
    expected, state = [], 0
    for t, r in enumerate(rsi):
        if state == 0 and r < 35:
            state, entry = 1, t
        elif state == 1 and r > 70:
            state = 0
            expected.append((entry + 1, t + 1))
    assert len(expected) >= 3
    got = [(bars["timestamp"].search_sorted(a), bars["timestamp"].search_sorted(b))
           for a, b in zip(trades["entry_time"], trades["exit_time"])]
    assert got[: len(expected)] == expected
    opens = bars["open"].to_numpy()
    np.testing.assert_allclose(trades["entry_price"].to_numpy()[: len(expected)], [opens[a] for a, _ in expected])


@needs_examples
def test_momentum_rotation_holds_the_top_symbols_equally_weighted(tmp_path):
    syms = ["AAPL", "MSFT", "XOM", "JPM", "KO"]
    files = [AAPL.parent / f"{s}.parquet" for s in syms]
    ok(run(tmp_path, EXAMPLES / "momentum_rotation.py", "--param", "top=2", "--param", "lookback=20", "--param", "every=5",
           "--fractional", "--commission", "0", "--slippage-bps", "0", data=files))
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    closes = np.column_stack([pl.read_parquet(f)["close"].to_numpy() for f in files])
    opens = np.column_stack([pl.read_parquet(f)["open"].to_numpy() for f in files])
    stamps = pl.read_parquet(AAPL)["timestamp"]
    T = closes.shape[0]

    def top2(row):
        ret = closes[row] / closes[row - 20] - 1
        return {syms[i] for i in np.argsort(-ret, kind="stable")[:2]}

    first = trades.filter(pl.col("entry_time") == stamps[21])  # row 20's weights, filled at bar 21's open
    assert set(first["symbol"]) == top2(20)
    # each symbol's lot from that fill (closed piece by piece later, FIFO) is half the starting cash
    value = first.group_by("symbol").agg((pl.col("quantity") * pl.col("entry_price")).sum())["quantity"]
    np.testing.assert_allclose(value.to_numpy(), 50_000.0)
    last_row = 20 + 5 * ((T - 2 - 20) // 5)
    held = trades.filter(pl.col("is_open"))
    assert set(held["symbol"]) == top2(last_row)
    # after the last rebalance (at bar last_row + 1's open) each held symbol was worth half the equity
    bar = last_row + 1
    qty = held.group_by("symbol").agg(pl.col("quantity").sum()).sort("symbol")
    idx = [syms.index(s) for s in qty["symbol"]]
    equity_open = (qty["quantity"].to_numpy() * opens[bar, idx]).sum()
    np.testing.assert_allclose(qty["quantity"].to_numpy() * opens[bar, idx], equity_open / 2)
