"""Indicators: golden values from plain loops written here (TA-Lib's algorithms step by step),
TA-Lib itself when installed, property tests, spec parsing and naming."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from analyze_helpers import make_bars, random_walk
from hypothesis import given, settings
from hypothesis import strategies as st

from slices.analyze import indicators as I
from slices.analyze.errors import AnalyzeError

# ----------------------------------------------------------------------------------------------
# golden loops (independent of the vectorised code: one bar at a time, as TA-Lib's C code)

NAN = float("nan")


def g_sma(x, n):
    return [NAN] * (n - 1) + [sum(x[t - n + 1 : t + 1]) / n for t in range(n - 1, len(x))]


def g_ema(x, n, k=None, first=0):
    k = 2 / (n + 1) if k is None else k
    out = [NAN] * len(x)
    prev = sum(x[first : first + n]) / n
    out[first + n - 1] = prev
    for t in range(first + n, len(x)):
        prev = prev + k * (x[t] - prev)
        out[t] = prev
    return out


def g_wma(x, n):
    out = [NAN] * len(x)
    for t in range(n - 1, len(x)):
        out[t] = sum((i + 1) * x[t - n + 1 + i] for i in range(n)) / (n * (n + 1) / 2)
    return out


def g_rsi(c, n):
    out = [NAN] * len(c)
    gains = [max(c[i] - c[i - 1], 0) for i in range(1, n + 1)]
    losses = [max(c[i - 1] - c[i], 0) for i in range(1, n + 1)]
    ag, al = sum(gains) / n, sum(losses) / n
    out[n] = 100 * ag / (ag + al) if ag + al else 0.0
    for t in range(n + 1, len(c)):
        d = c[t] - c[t - 1]
        ag = (ag * (n - 1) + max(d, 0)) / n
        al = (al * (n - 1) + max(-d, 0)) / n
        out[t] = 100 * ag / (ag + al) if ag + al else 0.0
    return out


def g_tr(h, l, c):
    return [NAN] + [max(h[t] - l[t], abs(h[t] - c[t - 1]), abs(l[t] - c[t - 1])) for t in range(1, len(c))]


def g_atr(h, l, c, n):
    tr = g_tr(h, l, c)
    out = [NAN] * len(c)
    a = sum(tr[1 : n + 1]) / n
    out[n] = a
    for t in range(n + 1, len(c)):
        a = (a * (n - 1) + tr[t]) / n
        out[t] = a
    return out


def g_adx(h, l, c, n):
    tr = g_tr(h, l, c)
    pdm = [0.0] * len(c)
    mdm = [0.0] * len(c)
    for t in range(1, len(c)):
        up, dn = h[t] - h[t - 1], l[t - 1] - l[t]
        if dn > 0 and up < dn:
            mdm[t] = dn
        elif up > 0 and up > dn:
            pdm[t] = up
    sp, sm, st_ = sum(pdm[1:n]), sum(mdm[1:n]), sum(tr[1:n])
    pdi, mdi, dx, adx = ([NAN] * len(c) for _ in range(4))
    for t in range(n, len(c)):
        sp = sp - sp / n + pdm[t]
        sm = sm - sm / n + mdm[t]
        st_ = st_ - st_ / n + tr[t]
        pdi[t], mdi[t] = 100 * sp / st_, 100 * sm / st_
        dx[t] = 100 * abs(pdi[t] - mdi[t]) / (pdi[t] + mdi[t])
    a = sum(dx[n : 2 * n]) / n
    adx[2 * n - 1] = a
    for t in range(2 * n, len(c)):
        a = (a * (n - 1) + dx[t]) / n
        adx[t] = a
    return adx, pdi, mdi


def g_stoch(h, l, c, fk, sk, sd):
    raw = [NAN] * len(c)
    for t in range(fk - 1, len(c)):
        hh, ll = max(h[t - fk + 1 : t + 1]), min(l[t - fk + 1 : t + 1])
        raw[t] = 100 * (c[t] - ll) / (hh - ll) if hh > ll else 0.0
    k = [NAN] * len(c)
    for t in range(fk + sk - 2, len(c)):
        k[t] = sum(raw[t - sk + 1 : t + 1]) / sk
    d = [NAN] * len(c)
    for t in range(fk + sk + sd - 3, len(c)):
        d[t] = sum(k[t - sd + 1 : t + 1]) / sd
    k = [NAN if t < fk + sk + sd - 3 else k[t] for t in range(len(c))]
    return k, d


def g_willr(h, l, c, n):
    out = [NAN] * len(c)
    for t in range(n - 1, len(c)):
        hh, ll = max(h[t - n + 1 : t + 1]), min(l[t - n + 1 : t + 1])
        out[t] = -100 * (hh - c[t]) / (hh - ll) if hh > ll else 0.0
    return out


def g_cci(h, l, c, n):
    tp = [(h[t] + l[t] + c[t]) / 3 for t in range(len(c))]
    out = [NAN] * len(c)
    for t in range(n - 1, len(c)):
        w = tp[t - n + 1 : t + 1]
        m = sum(w) / n
        md = sum(abs(v - m) for v in w) / n
        out[t] = (tp[t] - m) / (0.015 * md) if md else 0.0
    return out


def g_mfi(h, l, c, v, n):
    tp = [(h[t] + l[t] + c[t]) / 3 for t in range(len(c))]
    pos = [0.0] * len(c)
    neg = [0.0] * len(c)
    for t in range(1, len(c)):
        if tp[t] > tp[t - 1]:
            pos[t] = tp[t] * v[t]
        elif tp[t] < tp[t - 1]:
            neg[t] = tp[t] * v[t]
    out = [NAN] * len(c)
    for t in range(n, len(c)):
        p, m = sum(pos[t - n + 1 : t + 1]), sum(neg[t - n + 1 : t + 1])
        out[t] = 100 * p / (p + m) if p + m >= 1 else 0.0
    return out


def g_obv(c, v):
    out = [v[0]]
    for t in range(1, len(c)):
        out.append(out[-1] + (v[t] if c[t] > c[t - 1] else -v[t] if c[t] < c[t - 1] else 0.0))
    return out


def g_std(x, n):
    out = [NAN] * len(x)
    for t in range(n - 1, len(x)):
        w = x[t - n + 1 : t + 1]
        m = sum(w) / n
        out[t] = math.sqrt(sum((v - m) ** 2 for v in w) / n)
    return out


def assert_close(mine, ref, rtol=1e-8, atol=1e-9):
    mine, ref = np.asarray(mine, float), np.asarray(ref, float)
    assert mine.shape == ref.shape
    assert np.array_equal(np.isnan(mine), np.isnan(ref)), np.flatnonzero(np.isnan(mine) != np.isnan(ref))[:5]
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=atol, equal_nan=True)


@pytest.fixture(scope="module")
def ohlcv():
    b = make_bars(random_walk(300, seed=3), seed=3)
    return [b[c].to_numpy() for c in ("high", "low", "close", "volume")]


def test_moving_averages_match_golden(ohlcv):
    h, l, c, v = ohlcv
    cl = c.tolist()
    for n in (1, 5, 20):
        assert_close(I.sma(c, n), g_sma(cl, n))
        assert_close(I.ema(c, n), g_ema(cl, n))
        assert_close(I.wma(c, n), g_wma(cl, n))


def test_oscillators_match_golden(ohlcv):
    h, l, c, v = (a.tolist() for a in ohlcv)
    H, L, C, V = ohlcv
    assert_close(I.rsi(C, 14), g_rsi(c, 14))
    assert_close(I.atr(H, L, C, 14), g_atr(h, l, c, 14))
    for mine, ref in zip(I.adx(H, L, C, 14), g_adx(h, l, c, 14)):
        assert_close(mine, ref)
    for mine, ref in zip(I.stoch(H, L, C, 14, 3, 3), g_stoch(h, l, c, 14, 3, 3)):
        assert_close(mine, ref)
    assert_close(I.willr(H, L, C, 14), g_willr(h, l, c, 14))
    assert_close(I.cci(H, L, C, 20), g_cci(h, l, c, 20))
    assert_close(I.mfi(H, L, C, V, 14), g_mfi(h, l, c, v, 14))
    assert_close(I.obv(C, V), g_obv(c, v))
    assert_close(I.roc(C, 10), [NAN] * 10 + [c[t] / c[t - 10] - 1 for t in range(10, len(c))])


def test_macd_is_seeded_like_talib(ohlcv):
    c = ohlcv[2].tolist()
    fast = g_ema(c, 12, first=26 - 12)  # TA-Lib seeds the fast EMA on close[14..25]
    slow = g_ema(c, 26)
    line = [f - s for f, s in zip(fast, slow)]
    sig = g_ema(line, 9, first=25)
    line = [NAN] * 33 + line[33:]
    line_m, sig_m, hist_m = I.macd(ohlcv[2], 12, 26, 9)
    assert_close(line_m, line)
    assert_close(sig_m, sig)
    assert_close(hist_m, [a - b for a, b in zip(line, sig)])


def test_bands_and_channels_match_golden(ohlcv):
    H, L, C, V = ohlcv
    c = C.tolist()
    up, mid, lo = I.bbands(C, 20, 2.0)
    sd = g_std(c, 20)
    assert_close(mid, g_sma(c, 20))
    assert_close(up, [m + 2 * s for m, s in zip(g_sma(c, 20), sd)])
    assert_close(lo, [m - 2 * s for m, s in zip(g_sma(c, 20), sd)])
    du, dm, dl = I.donchian(H, L, 20)
    ref_u = [NAN] * 19 + [max(H[t - 19 : t + 1]) for t in range(19, len(C))]
    ref_l = [NAN] * 19 + [min(L[t - 19 : t + 1]) for t in range(19, len(C))]
    assert_close(du, ref_u)
    assert_close(dl, ref_l)
    assert_close(dm, [(a + b) / 2 for a, b in zip(ref_u, ref_l)])
    ku, km, kl = I.keltner(H, L, C, 20, 2.0, 10)
    atr10 = g_atr(H.tolist(), L.tolist(), c, 10)
    assert_close(km, g_ema(c, 20))
    assert_close(ku, [m + 2 * a for m, a in zip(g_ema(c, 20), atr10)])
    assert_close(kl, [m - 2 * a for m, a in zip(g_ema(c, 20), atr10)])


def test_vwap_resets_each_session():
    # 3 sessions of 4 hourly bars
    rng = np.random.default_rng(1)
    h = 100 + rng.random(12)
    l = h - 1
    c = h - 0.5
    v = rng.integers(1, 100, 12).astype(float)
    session = np.repeat([1, 2, 3], 4)
    got = I.vwap(h, l, c, v, session, None)
    tp = (h + l + c) / 3
    ref = []
    for t in range(12):
        s = t - t % 4
        ref.append(sum(tp[s : t + 1] * v[s : t + 1]) / sum(v[s : t + 1]))
    assert_close(got, ref)
    assert got[4] == pytest.approx(tp[4])  # first bar of a session is its own TP
    rolling = I.vwap(h, l, c, v, session, 3)
    assert_close(rolling[2:], [sum(tp[t - 2 : t + 1] * v[t - 2 : t + 1]) / sum(v[t - 2 : t + 1]) for t in range(2, 12)])


def test_all_indicators_match_talib(sample_aapl):
    talib = pytest.importorskip("talib")
    b = sample_aapl
    H, L, C, V = (b[c].to_numpy() for c in ("high", "low", "close", "volume"))
    pairs = [
        (I.sma(C, 20), talib.SMA(C, 20)),
        (I.ema(C, 20), talib.EMA(C, 20)),
        (I.wma(C, 20), talib.WMA(C, 20)),
        (I.rsi(C, 14), talib.RSI(C, 14)),
        (I.atr(H, L, C, 14), talib.ATR(H, L, C, 14)),
        (I.willr(H, L, C, 14), talib.WILLR(H, L, C, 14)),
        (I.cci(H, L, C, 20), talib.CCI(H, L, C, 20)),
        (I.roc(C, 10), talib.ROCP(C, 10)),
        (I.obv(C, V), talib.OBV(C, V)),
        (I.mfi(H, L, C, V, 14), talib.MFI(H, L, C, V, 14)),
        *zip(I.macd(C, 12, 26, 9), talib.MACD(C, 12, 26, 9)),
        *zip(I.bbands(C, 20, 2.0), talib.BBANDS(C, 20, 2.0, 2.0, 0)),
        *zip(I.adx(H, L, C, 14), (talib.ADX(H, L, C, 14), talib.PLUS_DI(H, L, C, 14), talib.MINUS_DI(H, L, C, 14))),
        *zip(I.stoch(H, L, C, 14, 3, 3), talib.STOCH(H, L, C, 14, 3, 0, 3, 0)),
        (I.donchian(H, L, 20)[0], talib.MAX(H, 20)),
        (I.donchian(H, L, 20)[2], talib.MIN(L, 20)),
        (I.keltner(H, L, C, 20, 2.0, 10)[1], talib.EMA(C, 20)),
    ]
    for mine, ref in pairs:
        assert_close(mine, ref, rtol=1e-8, atol=1e-10)


def test_talib_on_intraday_sample():
    talib = pytest.importorskip("talib")
    from slices.analyze.bars import SAMPLE_ROOT, BarRequest, load_bars

    b = load_bars(["EURUSD"], BarRequest(store=str(SAMPLE_ROOT), timeframe="1h"))["EURUSD"]
    H, L, C, V = (b[c].to_numpy() for c in ("high", "low", "close", "volume"))
    assert_close(I.mfi(H, L, C, V, 14), talib.MFI(H, L, C, V, 14), atol=1e-9)
    assert_close(I.adx(H, L, C, 14)[0], talib.ADX(H, L, C, 14))
    assert_close(I.bbands(C, 20, 2.0)[0], talib.BBANDS(C, 20, 2.0, 2.0, 0)[0])


# ----------------------------------------------------------------------------------------------
# properties

prices = st.lists(st.floats(1.0, 1000.0, allow_nan=False), min_size=60, max_size=200)


def _bars_from(closes, seed=0):
    return make_bars(np.array(closes), seed=seed)


@settings(max_examples=25, deadline=None)
@given(prices, st.integers(2, 30))
def test_bounded_oscillators(closes, n):
    b = _bars_from(closes)
    H, L, C, V = (b[c].to_numpy() for c in ("high", "low", "close", "volume"))
    for x, lo, hi in [
        (I.rsi(C, n), 0, 100),
        (I.mfi(H, L, C, V, n), 0, 100),
        (I.willr(H, L, C, n), -100, 0),
        (I.stoch(H, L, C, n, 3, 3)[0], 0, 100),
        (I.stoch(H, L, C, n, 3, 3)[1], 0, 100),
    ]:
        ok = x[~np.isnan(x)]
        assert ok.size and (ok >= lo - 1e-9).all() and (ok <= hi + 1e-9).all()
    a, p, m = I.adx(H, L, C, min(n, 25))
    for x in (a, p, m):
        ok = x[~np.isnan(x)]
        assert (ok >= -1e-9).all() and (ok <= 100 + 1e-9).all()
    atr = I.atr(H, L, C, n)
    assert (atr[~np.isnan(atr)] >= 0).all()
    up, mid, lo = I.bbands(C, n, 2.0)
    ok = ~np.isnan(mid)
    assert (up[ok] >= mid[ok] - 1e-9).all() and (mid[ok] >= lo[ok] - 1e-9).all()


SCALE_FREE = ["rsi:14", "stoch:14:3:3", "willr:14", "cci:20", "roc:10", "adx:14", "mfi:14"]
SCALE_LINEAR = [
    "sma:20",
    "ema:20",
    "wma:20",
    "macd:12:26:9",
    "bbands:20:2",
    "atr:14",
    "donchian:20",
    "keltner:20:2:10",
    "vwap:20",
]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.01, 0.5, 3.0, 250.0]))
def test_price_scale_invariance(seed, k):
    b = make_bars(random_walk(150, seed=seed), seed=seed)
    scaled = b.with_columns([(b[c] * k).alias(c) for c in ("open", "high", "low", "close")])
    specs = [I.parse_spec(s) for s in SCALE_FREE + SCALE_LINEAR]
    base, other = I.compute(b, specs), I.compute(scaled, specs)
    for s in specs:
        factor = 1.0 if s.text in SCALE_FREE else k
        for col in s.columns:
            x, y = base[col].to_numpy(), other[col].to_numpy()
            np.testing.assert_allclose(
                y, x * factor, rtol=1e-7, atol=1e-7 * max(1.0, factor), equal_nan=True, err_msg=col
            )


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(80, 149))
def test_no_lookahead(seed, cut):
    """Values up to bar t never change when later bars are appended."""
    b = make_bars(random_walk(150, seed=seed), seed=seed)
    specs = I.standard_specs(intraday=False)
    full, part = I.compute(b, specs), I.compute(b.head(cut), specs)
    for col in part.columns[1:]:
        np.testing.assert_allclose(
            part[col].to_numpy(), full[col].to_numpy()[:cut], rtol=1e-10, atol=1e-10, equal_nan=True, err_msg=col
        )


def test_warmup_length_equals_lookback(sample_aapl):
    frame = I.compute(sample_aapl, I.standard_specs(False))
    for spec in I.standard_specs(False):
        for col in spec.columns:
            x = frame[col].to_numpy()
            first = int(np.flatnonzero(~np.isnan(x))[0])
            expected = spec.params[0] if col.startswith(("plus_di", "minus_di")) else spec.lookback  # TA-Lib PLUS_DI: n
            assert first == expected, (col, first, expected)
            assert not np.isnan(x[first:]).any(), col


# ----------------------------------------------------------------------------------------------
# specs, naming and errors


def test_column_names():
    assert I.parse_spec("sma:20").columns == ["sma_20"]
    assert I.parse_spec("macd").columns == ["macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"]
    assert I.parse_spec("bbands:20:2").columns == ["bbands_upper_20_2", "bbands_middle_20_2", "bbands_lower_20_2"]
    assert I.parse_spec("bbands:20:2.5").columns[0] == "bbands_upper_20_2.5"
    assert I.parse_spec("ADX").columns == ["adx_14", "plus_di_14", "minus_di_14"]
    assert I.parse_spec("vwap").columns == ["vwap"]
    assert I.parse_spec("vwap:20").columns == ["vwap_20"]
    assert I.parse_spec("stoch:5").columns == ["stoch_k_5_3_3", "stoch_d_5_3_3"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("foo", "unknown indicator"),
        ("sma:0", "must be >="),
        ("sma:2.5", "integer"),
        ("sma:x", "number"),
        ("rsi:14:3", "at most 1"),
        ("macd:26:12", "shorter"),
        ("bbands:20:-1", "must be >="),
        ("obv:3", "at most 0"),
    ],
)
def test_bad_specs(text, fragment):
    with pytest.raises(AnalyzeError, match=fragment):
        I.parse_spec(text)


def test_too_few_bars():
    b = make_bars(random_walk(30))
    with pytest.raises(AnalyzeError, match="30 bars, indicator sma:50 needs at least 50"):
        I.compute(b, [I.parse_spec("sma:50")], "XYZ")
    skipped = []
    out = I.compute(b, [I.parse_spec("sma:50"), I.parse_spec("sma:5")], "XYZ", strict=False, skipped=skipped)
    # the column stays (all NaN) so that every symbol of a long-format output has the same columns
    assert out["sma_50"].is_nan().all() and out["sma_5"].is_nan().sum() == 4
    assert skipped == [("XYZ", "sma:50")]


# ----------------------------------------------------------------------------------------------
# TA-Lib on every sample series, every indicator it has, several parameter sets


def _talib_reference(talib, spec, H, L, C, V):
    """TA-Lib's outputs for ``spec`` in the order of ``spec.columns`` (None: not in TA-Lib)."""
    n, p = spec.name, spec.params
    if n in ("sma", "ema", "wma", "rsi"):
        return [getattr(talib, n.upper())(C, p[0])]
    if n == "macd":
        return list(talib.MACD(C, *p))
    if n == "bbands":
        return list(talib.BBANDS(C, p[0], p[1], p[1], 0))
    if n == "atr":
        return [talib.ATR(H, L, C, p[0])]
    if n == "adx":
        return [talib.ADX(H, L, C, p[0]), talib.PLUS_DI(H, L, C, p[0]), talib.MINUS_DI(H, L, C, p[0])]
    if n == "stoch":
        return list(talib.STOCH(H, L, C, p[0], p[1], 0, p[2], 0))
    if n in ("willr", "cci"):
        return [getattr(talib, n.upper())(H, L, C, p[0])]
    if n == "roc":
        return [talib.ROCP(C, p[0])]
    if n == "obv":
        return [talib.OBV(C, V)]
    if n == "mfi":
        return [talib.MFI(H, L, C, V, p[0])]
    if n == "donchian":
        up, lo = talib.MAX(H, p[0]), talib.MIN(L, p[0])
        return [up, (up + lo) / 2, lo]
    if n == "keltner":
        mid, atr = talib.EMA(C, p[0]), talib.ATR(H, L, C, p[2])
        return [mid + p[1] * atr, mid, mid - p[1] * atr]
    return None  # vwap: not in TA-Lib (golden loop in test_vwap_resets_each_session)


TALIB_SPECS = {
    "sma": ["sma:2", "sma:5", "sma:20", "sma:200"],
    "ema": ["ema:2", "ema:9", "ema:20", "ema:50"],
    "wma": ["wma:2", "wma:9", "wma:30"],
    "rsi": ["rsi:2", "rsi:5", "rsi:14", "rsi:30"],
    "macd": ["macd:12:26:9", "macd:5:35:5", "macd:2:3:1", "macd:3:10:16"],
    "bbands": ["bbands:5:1", "bbands:20:2", "bbands:20:2.5", "bbands:50:3"],
    "atr": ["atr:1", "atr:5", "atr:14", "atr:30"],
    "adx": ["adx:2", "adx:5", "adx:14", "adx:28"],
    "stoch": ["stoch:14:3:3", "stoch:5:3:3", "stoch:5:1:1", "stoch:21:5:7"],
    "willr": ["willr:2", "willr:14", "willr:30"],
    "cci": ["cci:2", "cci:14", "cci:20", "cci:40"],
    "roc": ["roc:1", "roc:10", "roc:30"],
    "obv": ["obv"],
    "mfi": ["mfi:2", "mfi:14", "mfi:30"],
    "donchian": ["donchian:2", "donchian:20", "donchian:55"],
    "keltner": ["keltner:20:2:10", "keltner:5:1.5:30", "keltner:2:2:1"],
}


def _sample(symbol, timeframe):
    from slices.analyze.bars import SAMPLE_ROOT, BarRequest, load_bars

    return load_bars([symbol], BarRequest(store=str(SAMPLE_ROOT), timeframe=timeframe))[symbol]


def test_talib_spec_list_covers_every_talib_indicator():
    assert set(TALIB_SPECS) == set(I.REGISTRY) - {"vwap"}


@pytest.mark.parametrize("symbol, timeframe", [("AAPL", "1d"), ("EURUSD", "1h"), ("IDXFUT", "1m")])
def test_every_indicator_matches_talib_on_samples(symbol, timeframe):
    """Same first valid index (TA-Lib's lookback) and the same values to 1e-8 relative after it.

    The absolute floor 5e-11 only matters where the reference is ~0 (TA-Lib itself leaves ~1e-11
    of rounding in its running sums there; a stochastic at the low
    of its window, which a running cumulative sum used to turn into -1e-10 on the 1-minute series)."""
    talib = pytest.importorskip("talib")
    b = _sample(symbol, timeframe)
    H, L, C, V = (b[c].to_numpy() for c in ("high", "low", "close", "volume"))
    arrays = I.bar_arrays(b)
    for texts in TALIB_SPECS.values():
        for text in texts:
            spec = I.parse_spec(text)
            mine = spec.indicator.compute(arrays, *spec.params)
            refs = _talib_reference(talib, spec, H, L, C, V)
            assert len(refs) == len(spec.columns)
            for col, m, r in zip(spec.columns, mine, refs):
                first_m = int(np.flatnonzero(~np.isnan(m))[0])
                first_r = int(np.flatnonzero(~np.isnan(r))[0])
                assert first_m == first_r, (symbol, col, first_m, first_r)
                assert not np.isnan(m[first_m:]).any(), (symbol, col)
                np.testing.assert_allclose(m, r, rtol=1e-8, atol=5e-11, equal_nan=True, err_msg=f"{symbol} {col}")


def test_stochastic_is_exact_at_the_window_low():
    """%K smoothing sums each window on its own: on 30,000 one-minute bars a close at the low of its
    window for slowk bars gives exactly 0 (a running cumsum gave about -1e-10, below the bound)."""
    b = _sample("IDXFUT", "1m")
    H, L, C = (b[c].to_numpy() for c in ("high", "low", "close"))
    k, d = I.stoch(H, L, C, 21, 5, 7)
    ok = ~np.isnan(k)
    assert (k[ok] >= 0).all() and (k[ok] <= 100).all()
    assert (d[~np.isnan(d)] >= 0).all()
    ref_k, _ = g_stoch(H.tolist(), L.tolist(), C.tolist(), 21, 5, 7)
    np.testing.assert_allclose(k, ref_k, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert (k == 0).any()


def test_cci_is_zero_when_typical_prices_tie_up_to_rounding():
    # EURUSD 1h bars 596-597 of the sample: typical prices 1.11774 and 1.1177400000000002 (1 ulp apart)
    h = np.array([1.11809, 1.11832])
    l = np.array([1.1173, 1.11715])
    c = np.array([1.11783, 1.11775])
    tp = (h + l + c) / 3
    assert tp[0] != tp[1] and abs(tp[1] - tp[0]) < 4e-16
    assert I.cci(h, l, c, 2)[1] == 0.0  # TA-Lib: 0; without the tie rule: 133.33 (pure rounding noise)
    # a real deviation is unaffected: +-66.67 for two distinct typical prices
    assert I.cci(h, l, c * np.array([1.0, 1.001]), 2)[1] == pytest.approx(100 / 1.5)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(60, 140), st.floats(0.5, 2.0))
def test_changing_future_bars_changes_no_past_value(seed, cut, factor):
    """Every indicator, daily and intraday (session VWAP): rewriting the bars after ``cut`` leaves
    every value up to ``cut`` unchanged."""
    for step, intraday in ((timedelta(days=1), False), (timedelta(hours=1), True)):
        b = make_bars(random_walk(150, seed=seed), seed=seed, step=step)
        tail = pl.int_range(pl.len()) > cut
        other = b.with_columns(
            [pl.when(tail).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")]
            + [pl.when(tail).then(pl.col("volume") * 3 + 7).otherwise(pl.col("volume")).alias("volume")]
        )
        specs = I.standard_specs(intraday) + [I.parse_spec("vwap"), I.parse_spec("sma:5"), I.parse_spec("cci:7")]
        specs = list({s.text: s for s in specs}.values())
        x, y = I.compute(b, specs), I.compute(other, specs)
        for col in x.columns[6:]:
            np.testing.assert_array_equal(x[col].to_numpy()[: cut + 1], y[col].to_numpy()[: cut + 1], err_msg=col)


def test_missing_volume_spoils_only_its_own_windows():
    """A NaN volume (a warning in the loader, the run goes on) makes VWAP/MFI NaN only in the windows
    or the session holding it; a running cumulative sum spoiled every later value."""
    rng = np.random.default_rng(3)
    n = 96  # 4 sessions of 24 hourly bars
    h = 100 + rng.random(n)
    l, c = h - 1, h - 0.4
    v = rng.integers(1, 100, n).astype(float)
    v[30] = np.nan  # session 1 (bars 24..47)
    session = np.repeat(np.arange(4), 24)
    per_session = I.vwap(h, l, c, v, session, None)
    assert not np.isnan(per_session[:30]).any() and np.isnan(per_session[30:48]).all()
    assert not np.isnan(per_session[48:]).any()
    clean = v.copy()
    clean[30] = 1.0
    np.testing.assert_allclose(per_session[48:], I.vwap(h, l, c, clean, session, None)[48:], rtol=1e-12)
    rolling = I.vwap(h, l, c, v, session, 5)
    assert np.isnan(rolling[30:35]).all() and not np.isnan(rolling[35:]).any()
    m = I.mfi(h, l, c, v, 14)
    assert np.isnan(m[30:44]).all() and not np.isnan(m[44:]).any()


@pytest.mark.parametrize("n, b, a", [(1259, 0.1, 0.9), (5000, 1 / 14, 13 / 14), (7, 1.0, 0.5), (300, 1.0, 0.0), (130, 2 / 13, 11 / 13)])
def test_linear_recursion_is_the_first_order_filter(n, b, a):
    """The pure-numpy smoother equals the per-bar recursion y[t] = b x[t] + a y[t-1] (it replaced
    scipy.signal.lfilter, whose import alone cost as much as the whole standard set)."""
    x = np.random.default_rng(n).normal(0, 1, n) * 50
    y, prev, expect = I.linear_recursion(x, b, a, 0.7), 0.7, []
    for v in x:
        prev = b * v + a * prev
        expect.append(prev)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)
    x[n // 2] = np.nan  # a NaN spoils every later value, as in the recursion
    y = I.linear_recursion(x, b, a, 0.7)
    assert np.isnan(y[n // 2 :]).all() and not np.isnan(y[: n // 2]).any()


# ----------------------------------------------------------------------------------------------
# batches of symbols (the indicators command computes all symbols at once)

ALL_SPECS = [I.parse_spec(t) for texts in TALIB_SPECS.values() for t in texts] + [
    I.parse_spec(t) for t in ("vwap", "vwap:3", "vwap:20")
]


def _symbol_bars(length, seed, start_day, hourly, gap_at, nan_volume_at):
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    start = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(days=start_day)
    b = make_bars(random_walk(length, seed=seed), seed=seed, start=start, step=step)
    if gap_at is not None and 0 < gap_at < length:  # a hole in the timestamps: 10 days without bars
        shift = pl.when(pl.int_range(pl.len()) >= gap_at).then(pl.duration(days=10)).otherwise(pl.duration(days=0))
        b = b.with_columns(pl.col("timestamp") + shift)
    if nan_volume_at is not None and nan_volume_at < length:
        b = b.with_columns(pl.when(pl.int_range(pl.len()) == nan_volume_at).then(None).otherwise(pl.col("volume")).fill_null(float("nan")).alias("volume"))
    return b


symbol_st = st.tuples(
    st.integers(1, 160),  # length: from 1 bar (shorter than every lookback) to 160
    st.integers(0, 10_000),  # seed
    st.integers(0, 60),  # first day: ragged starts
    st.one_of(st.none(), st.integers(1, 150)),  # gap position
    st.one_of(st.none(), st.integers(0, 150)),  # NaN volume position
)


@settings(max_examples=25, deadline=None)
@given(st.lists(symbol_st, min_size=1, max_size=6), st.booleans())
def test_batch_equals_each_symbol_alone(symbols, hourly):
    """Every indicator of a symbol computed inside a batch (left-aligned rows of a matrix, NaN
    after each symbol's last bar) equals, bit for bit, the symbol computed alone: ragged starts and
    ends, timestamp gaps, a NaN volume and symbols shorter than the lookbacks included."""
    bars = {f"S{i}": _symbol_bars(*spec[:3], hourly, *spec[3:]) for i, spec in enumerate(symbols)}
    batch_skipped, alone_skipped = [], []
    batch = I.compute_many(bars, ALL_SPECS, strict=False, skipped=batch_skipped)
    offset = 0
    for sym, b in bars.items():
        alone = I.compute_arrays(b, ALL_SPECS, sym, strict=False, skipped=alone_skipped)
        for col, values in alone.items():
            assert values.shape == (b.height,)
            np.testing.assert_array_equal(batch[col][offset : offset + b.height], values, err_msg=f"{sym} {col}")
        offset += b.height
    assert offset == len(batch["obv"])
    assert batch_skipped == alone_skipped


def test_batch_strict_error_names_the_first_short_symbol():
    bars = {"LONG": make_bars(random_walk(80)), "SHORT": make_bars(random_walk(30)), "TINY": make_bars(random_walk(3))}
    with pytest.raises(AnalyzeError, match="^SHORT: 30 bars, indicator sma:50 needs at least 50"):
        I.compute_many(bars, [I.parse_spec("sma:5"), I.parse_spec("sma:50")])


def test_rolling_extremes_equal_the_window_max_and_min():
    """The doubling max/min equal each window's own max/min exactly, for every window length."""
    x = np.random.default_rng(5).normal(0, 1, 300)
    x[77] = np.nan
    for n in range(1, 70):
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        np.testing.assert_array_equal(I.rolling_max(x, n)[n - 1 :], windows.max(axis=1), err_msg=str(n))
        np.testing.assert_array_equal(I.rolling_min(x, n)[n - 1 :], windows.min(axis=1), err_msg=str(n))
        assert np.isnan(I.rolling_max(x, n)[: n - 1]).all()


def test_every_indicator_matches_talib_on_the_shared_file_in_one_batch(sp500):
    """The standard set and every TA-Lib parameter set, computed for all valid symbols of the shared
    S&P 500 file at once (as the indicators command does), against TA-Lib symbol by symbol: the
    same first valid bar, values to 1e-8 relative. The absolute floor is 1e-9 here: on UA, where
    the volume drops to 200, 100 then 0, TA-Lib's running MFI sums leave 2.4e-10 and 7.3e-10
    points of rounding in mfi_2 where no flow is positive (each window summed on its own gives 0)."""
    talib = pytest.importorskip("talib")
    from slices.analyze.bars import BarRequest, load_bars

    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        bars = load_bars([], BarRequest(data=(str(sp500),)))
    assert len(bars) == 477
    specs = [s for s in ALL_SPECS if s.name != "vwap"]
    batch = I.compute_many(bars, specs, strict=False, skipped=[])
    offset = 0
    for sym, b in bars.items():
        H, L, C, V = (b[c].to_numpy() for c in ("high", "low", "close", "volume"))
        rows = slice(offset, offset + b.height)
        offset += b.height
        for spec in specs:
            if b.height <= spec.lookback:
                assert all(np.isnan(batch[col][rows]).all() for col in spec.columns)
                continue
            for col, ref in zip(spec.columns, _talib_reference(talib, spec, H, L, C, V)):
                mine = batch[col][rows]
                first_m, first_r = (int(np.flatnonzero(~np.isnan(a))[0]) for a in (mine, ref))
                assert first_m == first_r, (sym, col, first_m, first_r)
                np.testing.assert_allclose(mine, ref, rtol=1e-8, atol=1e-9, equal_nan=True, err_msg=f"{sym} {col}")
