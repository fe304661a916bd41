"""SLICES.md contract 5 in the analyze slice: `analyze signals` and `analyze report --strategy`
with built-ins, strategy files (both forms), modules, every bad case, and HTML escaping."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from slices.analyze.bars import SAMPLE_ROOT, BarRequest, load_bars
from slices.analyze.cli import cli

SIGNAL_FILE = '''
import numpy as np

NAME = "cross_up"
DESCRIPTION = "long while close is above its n-bar mean"
PARAMS = {"n": 10, "band": 0.0, "short": False, "label": "x"}


def lookback(params):
    return params["n"]


def validate(params):
    if params["n"] < 2:
        raise ValueError("n must be >= 2")


def targets(bars, params):
    c = bars["close"]
    n = params["n"]
    m = np.full(c.size, np.nan)
    m[n - 1:] = np.convolve(c, np.ones(n) / n, mode="valid")
    up = c > m * (1 + params["band"])
    down = c < m * (1 - params["band"])
    return np.where(up, 1, np.where(down, -1 if params["short"] else 0, 0))
'''

WEIGHTS_FILE = '''
import numpy as np

PARAMS = {"lookback": 20}


def weights(panel, params):
    c = panel["close"]
    w = np.full(c.shape, np.nan)
    k = params["lookback"]
    r = np.full(c.shape, np.nan)
    r[k:] = c[k:] / c[:-k] - 1
    w[k:] = np.where(r[k:] > 0, 1.0 / c.shape[1], -1.0 / c.shape[1])
    return w
'''


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res, *fragments):
    assert res.exit_code == 2, (res.output, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(x.startswith("error:") for x in lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[-1], lines[-1]
    return lines[-1]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def sample_close(sym="AAPL"):
    return load_bars([sym], BarRequest(store=str(SAMPLE_ROOT)))[sym]["close"].to_numpy()


def signals_json(*args):
    res = run("signals", *args, "-f", "json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


# ---------------------------------------------------------------------------------------------
# built-ins: targets equal a direct numpy computation


def test_builtin_targets_equal_direct_numpy(no_store):
    c = sample_close()
    doc = signals_json("AAPL", "--strategy", "momentum", "--param", "lookback=15", "--allow-short")
    got = np.array([r["target"] for r in doc["rows"]])
    roc = np.full(c.size, np.nan)
    roc[15:] = c[15:] / c[:-15] - 1
    assert (got == np.where(roc > 0, 1, np.where(roc < 0, -1, 0))).all()
    assert doc["form"] == "targets" and doc["params"] == {"lookback": 15, "threshold": 0.0}
    # simple_ma 5/20: position set on each SMA cross, flat before the first; long-only maps -1 to 0
    doc = signals_json("AAPL", "--strategy", "simple_ma", "--param", "fast=5", "--param", "slow=20")
    got = np.array([r["target"] for r in doc["rows"]])
    fast = np.convolve(c, np.ones(5) / 5, mode="valid")[15:]
    slow = np.convolve(c, np.ones(20) / 20, mode="valid")
    pos, expect = 0, np.zeros(c.size, dtype=int)
    for i in range(1, slow.size):
        if fast[i - 1] < slow[i - 1] and fast[i] > slow[i]:
            pos = 1
        elif fast[i - 1] > slow[i - 1] and fast[i] < slow[i]:
            pos = 0
        expect[i + 19] = pos
    assert (got == expect).all() and 0 < got.sum() < c.size


def test_builtin_param_errors(no_store):
    one_line_error(run("signals", "AAPL", "--strategy", "momentum", "--param", "lookback=5.5"), "--param lookback=5.5: expected an integer")
    one_line_error(run("signals", "AAPL", "--strategy", "momentum", "--param", "nope=1"), "momentum has no parameter 'nope'")
    one_line_error(run("signals", "AAPL", "--strategy", "simple_ma", "--param", "fast=40"), "simple_ma: needs fast < slow")
    one_line_error(run("signals", "AAPL", "--strategy", "no_such"), "unknown strategy 'no_such'")
    one_line_error(run("report", "AAPL", "--strategy", "momentum", "--strategy", "breakout", "--param", "lookback=5"), "--param applies to one strategy")


# ---------------------------------------------------------------------------------------------
# user files in each form


def test_signal_file_runs_and_matches_the_file_evaluated_directly(no_store, tmp_path):
    path = write(tmp_path, "cross_up.py", SIGNAL_FILE)
    doc = signals_json("AAPL,MSFT", "--strategy", path, "--param", "n=15", "--param", "short=yes", "--allow-short")
    assert doc["strategy"] == "cross_up" and doc["params"] == {"n": 15, "band": 0.0, "short": True, "label": "x"}
    assert doc["columns"] == ["symbol", "timestamp", "close", "target"]
    ns: dict = {}
    exec(SIGNAL_FILE, ns)
    for sym in ("AAPL", "MSFT"):
        bars = load_bars([sym], BarRequest(store=str(SAMPLE_ROOT)))[sym]
        arrays = {c: bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
        expect = ns["targets"](arrays, doc["params"])
        got = [r["target"] for r in doc["rows"] if r["symbol"] == sym]
        assert got == expect.tolist() and -1 in got
    long_only = signals_json("AAPL", "--strategy", path, "--param", "short=true")
    assert set(r["target"] for r in long_only["rows"]) == {0, 1}  # -1 means flat without --allow-short


def test_signal_file_out_and_report(no_store, tmp_path):
    path = write(tmp_path, "cross_up.py", SIGNAL_FILE)
    out = tmp_path / "sig.parquet"
    assert run("signals", "AAPL", "--strategy", path, "-o", out).exit_code == 0
    frame = pl.read_parquet(out)
    assert frame.columns == ["symbol", "timestamp", "close", "target"] and frame["target"].dtype == pl.Int8
    doc = json.loads(run("report", "AAPL", "MSFT", "--strategy", path, "--strategy", "breakout", "-f", "json").stdout)
    assert doc["strategies"] == ["cross_up", "breakout"]
    assert doc["symbols"][0]["cross_up"] in ("long", "flat") and doc["symbols"][0]["breakout"] in ("long", "flat")


def test_weights_file(no_store, tmp_path, capsys):
    path = write(tmp_path, "rot.py", WEIGHTS_FILE)
    res = run("signals", "AAPL", "MSFT", "XOM", "--strategy", path, "-f", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["form"] == "weights" and doc["columns"] == ["symbol", "timestamp", "close", "weight"]
    w = [r["weight"] for r in doc["rows"]]
    assert min(x for x in w if x is not None) == 0.0 and "negative weights set to 0" in res.stderr
    shorted = json.loads(run("signals", "AAPL", "MSFT", "XOM", "--strategy", path, "--allow-short", "-f", "json").stdout)
    assert min(r["weight"] for r in shorted["rows"] if r["weight"] is not None) == pytest.approx(-1 / 3)
    big = write(tmp_path, "big.py", WEIGHTS_FILE.replace("1.0 / c.shape[1]", "0.6"))
    one_line_error(run("signals", "AAPL", "MSFT", "--strategy", big), "big.py: weights row 30 (2015-02-25): sum of |weights| 1.2 exceeds 1")
    assert run("signals", "AAPL", "MSFT", "--strategy", big, "--leverage", "1.2", "-f", "json").exit_code == 0
    rep = json.loads(run("report", "AAPL", "MSFT", "--strategy", path, "-f", "json").stdout)
    assert rep["symbols"][0]["rot"] in ("w=0.50", "w=0.00")


def test_module_attribute_form(no_store, tmp_path, monkeypatch):
    pkg = tmp_path / "mystrats"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg, "lib.py", "import numpy as np\n\nclass Flat:\n    PARAMS = {}\n\n    @staticmethod\n    def targets(bars, params):\n        return np.zeros(bars['close'].size)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = signals_json("AAPL", "--strategy", "mystrats.lib:Flat")
    assert doc["strategy"] == "Flat" and set(r["target"] for r in doc["rows"]) == {0}


# ---------------------------------------------------------------------------------------------
# every bad case: one line, exit 2, naming the file


BAD = {
    "syntax.py": ("PARAMS = {}\ndef targets(bars, params)\n    return 0\n", "syntax.py:2: syntax error"),
    "imports_slices.py": ("import numpy\nfrom slices.backtest import strategies\nPARAMS = {}\n", "imports_slices.py:2: a strategy file must not import from slices"),
    "import_error.py": ("import no_such_module_xyz\nPARAMS = {}\n", "import_error.py:1: import error: ModuleNotFoundError"),
    "neither.py": ("PARAMS = {}\n", "neither.py: defines neither targets(bars, params) nor weights(panel, params)"),
    "both.py": ("PARAMS = {}\ndef targets(b, p):\n    return 0\ndef weights(b, p):\n    return 0\n", "both.py: defines both targets and weights"),
    "params_list.py": ("PARAMS = [1]\ndef targets(b, p):\n    return 0\n", "params_list.py: PARAMS must be a dict"),
    "short_result.py": ("PARAMS = {}\ndef targets(b, p):\n    return [0, 1]\n", "short_result.py: AAPL: targets returned shape (2,)"),
    "two_d.py": ("import numpy as np\nPARAMS = {}\ndef targets(b, p):\n    return np.zeros((b['close'].size, 2))\n", "two_d.py: AAPL: targets returned shape"),
    "strings.py": ("PARAMS = {}\ndef targets(b, p):\n    return ['a'] * b['close'].size\n", "strings.py: AAPL: targets returned"),
    "twos.py": ("import numpy as np\nPARAMS = {}\ndef targets(b, p):\n    return np.full(b['close'].size, 2)\n", "twos.py: AAPL: targets returned value 2 at bar 0 (2015-01-12)"),
    "nans.py": ("import numpy as np\nPARAMS = {}\ndef targets(b, p):\n    t = np.zeros(b['close'].size)\n    t[5] = np.nan\n    return t\n", "nans.py: AAPL: targets returned NaN at bar 5"),
    "raises.py": ("PARAMS = {}\ndef targets(b, p):\n    return 1 / 0\n", "raises.py: AAPL: ZeroDivisionError: division by zero"),
    "writes.py": ("PARAMS = {}\ndef targets(b, p):\n    b['close'][0] = 1\n    return 0\n", "writes.py: AAPL: ValueError: assignment destination is read-only"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_strategy_files_are_one_line_errors(no_store, tmp_path, name):
    text, fragment = BAD[name]
    path = write(tmp_path, name, text)
    one_line_error(run("signals", "AAPL", "--strategy", path), fragment)


def test_missing_file_undeclared_and_mistyped_params_validate(no_store, tmp_path):
    one_line_error(run("signals", "AAPL", "--strategy", tmp_path / "nope.py"), "nope.py: no such strategy file")
    path = write(tmp_path, "cross_up.py", SIGNAL_FILE)
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "m=3"), "has no parameter 'm'")
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "n=2.5"), "--param n=2.5: expected an integer")
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "short=maybe"), "--param short=maybe: expected true/false")
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "band=inf"), "--param band=inf: expected a finite number")
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "n=1"), "cross_up.py: n must be >= 2")
    one_line_error(run("signals", "AAPL", "--strategy", path, "--param", "n=2000"), "AAPL: 1,259 bars from 2015-01-12, fewer than the 2,000")


def test_debug_shows_the_strategy_traceback(no_store, tmp_path):
    path = write(tmp_path, "raises.py", BAD["raises.py"][0])
    res = run("signals", "AAPL", "--strategy", path, "--debug")
    assert res.exit_code == 2 and "Traceback" in res.stderr and "ZeroDivisionError" in res.stderr


# ---------------------------------------------------------------------------------------------
# HTML injection


HOSTILE = "</script><script>alert('x')</script><b>"


def test_report_html_escapes_strategy_names_and_params(no_store, tmp_path):
    text = SIGNAL_FILE.replace('NAME = "cross_up"', f"NAME = {HOSTILE!r}").replace('"label": "x"', f'"label": {HOSTILE!r}')
    path = write(tmp_path, "hostile.py", text)
    page = tmp_path / "r.html"
    assert run("report", "AAPL", "MSFT", "--strategy", path, "-o", page).exit_code == 0
    html = page.read_text()
    assert "<script>alert" not in html and "<b>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert" in html  # shown as text in the tables
    # every inline script holds JSON in which "<" is written "\\u003c"
    body = html[html.index("<body>") :]
    for script in body.split("<script>")[1:]:
        assert "</" not in script.split("</script>")[0]


def test_risk_html_escapes_and_hostile_symbols_are_refused(no_store, tmp_path):
    from slices.analyze.report import html_page, script_json

    page = html_page(HOSTILE, [(HOSTILE, "<p>x</p>")], [{"data": [{"name": HOSTILE}], "layout": {"title": HOSTILE}}])
    assert page.count("<script>alert") == 0
    assert json.loads(script_json({"t": HOSTILE}))["t"] == HOSTILE  # still the same text for plotly
    out = tmp_path / "risk.html"
    one_line_error(run("risk", "AAPL", "X</script>", "-o", out), "invalid symbol")
    path = tmp_path / "long.csv"
    path.write_text("symbol,date,open,high,low,close\nX</script>,2020-01-02,1,2,1,1.5\n")
    one_line_error(run("risk", "--data", path, "-o", out), "invalid symbol")
    assert not out.exists()
