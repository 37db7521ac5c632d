"""Kernels against independent oracles (TA-Lib, pandas) on real AAPL daily prices.

Tolerance: 1e-9 relative, plus an absolute floor of 1e-12 x the series' magnitude for values
that cross zero (MACD, returns, %b), where a relative bound is meaningless.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from bokeh_sampledata.stocks import AAPL
from numpy.lib.stride_tricks import sliding_window_view

import kernels as K
from kernels import dispersion

RTOL = 1e-9


@pytest.fixture(scope="module")
def bars() -> dict[str, np.ndarray]:
    # (3270,) float64 each, AAPL daily bars 2000-03-01 .. 2013
    return {
        k: np.asarray(AAPL[k], dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    }


def assert_close(ours, oracle, rtol: float = RTOL, atol: float | None = None) -> None:
    ours, oracle = np.asarray(ours), np.asarray(oracle)
    assert ours.shape == oracle.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(oracle), err_msg="NaN masks differ")
    m = ~np.isnan(oracle)
    assert m.any(), "oracle produced no values: the test would be vacuous"
    if atol is None:
        atol = 1e-12 * np.max(np.abs(oracle[m]))
    np.testing.assert_allclose(ours[m], oracle[m], rtol=rtol, atol=atol)


def test_sma_ema_wma_match_talib(bars):
    c = bars["close"]
    for n in (1, 2, 5, 20, 60):
        assert_close(K.sma(c, n), talib.SMA(c, n))
        assert_close(K.ema(c, n), talib.EMA(c, n))
        assert_close(K.wma(c, n), talib.WMA(c, n))


@pytest.mark.parametrize("n", [2, 6, 14, 30])
def test_rsi_matches_talib(bars, n):
    assert_close(K.rsi(bars["close"], n), talib.RSI(bars["close"], n))


@pytest.mark.parametrize("fast,slow,signal", [(12, 26, 9), (5, 35, 5), (3, 3, 1), (2, 10, 4)])
def test_macd_matches_talib(bars, fast, slow, signal):
    ours = K.macd(bars["close"], fast, slow, signal)
    theirs = talib.MACD(bars["close"], fast, slow, signal)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("n,k", [(20, 2.0), (5, 1.5), (60, 3.0)])
def test_bollinger_matches_talib(bars, n, k):
    c = bars["close"]
    up, mid, lo, pct_b, bw = K.bollinger(c, n, k)
    t_up, t_mid, t_lo = talib.BBANDS(c, n, k, k)
    # TA-Lib's std comes from sums of x and x^2: its own error is ~1e-10 on these windows.
    for a, b in ((up, t_up), (mid, t_mid), (lo, t_lo)):
        assert_close(a, b, rtol=1e-9)
    # %b and bandwidth inherit TA-Lib's band error x price / width: absolute bound 1e-9;
    # against the two-pass spec (no such error) %b holds 1e-10 absolute, bandwidth 1e-9 rel.
    assert_close(pct_b, (c - t_lo) / (t_up - t_lo), atol=1e-9)
    assert_close(bw, (t_up - t_lo) / t_mid, atol=1e-9)
    spec = dispersion.bollinger_ref(c, n, k)
    assert_close(pct_b, spec[3], atol=1e-10)
    assert_close(bw, spec[4])


@pytest.mark.parametrize("n", [1, 5, 14, 30])
def test_atr_matches_talib(bars, n):
    b = bars
    assert_close(
        K.atr(b["high"], b["low"], b["close"], n), talib.ATR(b["high"], b["low"], b["close"], n)
    )


def test_true_range_obv_roc_mom_match_talib(bars):
    b = bars
    assert_close(
        K.true_range(b["high"], b["low"], b["close"]), talib.TRANGE(b["high"], b["low"], b["close"])
    )
    assert_close(K.obv(b["close"], b["volume"]), talib.OBV(b["close"], b["volume"]))
    for n in (1, 10, 20):
        assert_close(K.roc(b["close"], n), talib.ROC(b["close"], n))
        assert_close(K.momentum(b["close"], n), talib.MOM(b["close"], n))


@pytest.mark.parametrize("fk,sk,sd", [(5, 3, 3), (14, 3, 3), (9, 1, 1), (3, 5, 2)])
def test_stoch_matches_talib(bars, fk, sk, sd):
    b = bars
    ours = K.stoch(b["high"], b["low"], b["close"], fk, sk, sd)
    theirs = talib.STOCH(b["high"], b["low"], b["close"], fk, sk, 0, sd, 0)
    for a, t in zip(ours, theirs, strict=True):
        assert_close(a, t)


@pytest.mark.parametrize("n", [2, 5, 20, 60])
def test_rolling_std_zscore_volatility_match_pandas(bars, n):
    c = bars["close"]
    s = pd.Series(c)
    # pandas' online rolling variance is accurate to ~1e-10 of the price level, not of the std:
    # on a 2-day window of 100.00/100.01 it gives 0.00707106775 where the exact value is
    # 0.00707106781. Against pandas the bound is therefore absolute (1e-9 x price); against the
    # two-pass reference (numpy std of every window) it is 1e-9 relative.
    price_atol = 1e-9 * np.nanmax(c)
    two_pass = s.rolling(n).apply(lambda w: w.std(ddof=1), raw=True)
    assert_close(K.rolling_std(c, n), s.rolling(n).std(), atol=price_atol)
    assert_close(K.rolling_std(c, n), two_pass)
    assert_close(K.rolling_std(c, n, ddof=0), s.rolling(n).apply(np.std, raw=True))
    mean = s.rolling(n).mean()
    z = ((s - mean) / two_pass).where(two_pass > 0, 0.0).where(mean.notna())
    assert_close(K.zscore(c, n), z)
    lr = np.log(s).diff()
    vol = lr.rolling(n).apply(lambda w: w.std(ddof=1), raw=True)
    assert_close(K.volatility(c, n), vol)
    assert_close(K.volatility(c, n), lr.rolling(n).std(), atol=1e-12)
    assert_close(K.volatility(c, n, 252), vol * np.sqrt(252))


def test_returns_match_pandas(bars):
    s = pd.Series(bars["close"])
    for p in (1, 5):
        assert_close(K.returns(bars["close"], p), s.pct_change(p))
        assert_close(K.log_returns(bars["close"], p), np.log(s / s.shift(p)))


def test_range_volatility_matches_pandas(bars):
    b = bars
    hl = np.log(b["high"] / b["low"]) ** 2
    co = np.log(b["close"] / b["open"]) ** 2
    park = np.sqrt(pd.Series(hl / (4 * np.log(2))).rolling(20).mean())
    gk = np.sqrt(pd.Series(0.5 * hl - (2 * np.log(2) - 1) * co).rolling(20).mean().clip(lower=0))
    assert_close(K.parkinson(b["high"], b["low"], 20), park)
    assert_close(K.garman_klass(b["open"], b["high"], b["low"], b["close"], 20), gk)


def test_leading_nans_match_talib(bars):
    # A ticker listed late: TA-Lib skips leading NaNs, and so does the NaN policy.
    c = bars["close"].copy()
    c[:37] = np.nan
    assert_close(K.sma(c, 20), talib.SMA(c, 20))
    assert_close(K.ema(c, 20), talib.EMA(c, 20))
    assert_close(K.rsi(c, 14), talib.RSI(c, 14))
    for a, b in zip(K.macd(c), talib.MACD(c), strict=True):
        assert_close(a, b)


def test_gap_restarts_like_talib_on_each_segment(bars):
    # NaN policy: a gap splits the series; each side equals TA-Lib run on that side alone.
    c = bars["close"].copy()
    h, lo = bars["high"].copy(), bars["low"].copy()
    gap = slice(1000, 1003)
    c[gap] = np.nan
    for ours, ref in (
        (K.ema(c, 10), lambda x: talib.EMA(x, 10)),
        (K.rsi(c, 14), lambda x: talib.RSI(x, 14)),
        (K.sma(c, 30), lambda x: talib.SMA(x, 30)),
        (K.atr(h, lo, c, 14), None),
    ):
        assert np.isnan(ours[gap]).all()
        if ref is None:
            left = talib.ATR(h[:1000], lo[:1000], c[:1000], 14)
            right = talib.ATR(h[1003:], lo[1003:], c[1003:], 14)
        else:
            left, right = ref(c[:1000]), ref(c[1003:])
        assert_close(ours[:1000], left)
        assert_close(ours[1003:], right)


def _hard_series(case: str) -> np.ndarray:
    """Series that break naive running-sum variances (5000 bars each)."""
    rng = np.random.default_rng(5)
    m = 5000
    if case == "offset":  # large constant offset, tiny noise: raw sums lose ~15 digits
        return 1e9 + rng.normal(0, 1e-2, m)
    if case == "collapse":  # volatility falls by 1e6 mid-series
        return 100 + np.concatenate([rng.normal(0, 10, m // 2), rng.normal(0, 1e-5, m - m // 2)])
    if case == "step":  # level jumps 1000x; afterwards tiny noise about the new level
        return np.where(np.arange(m) < m // 2, 100.0, 1e5) + rng.normal(0, 1e-4, m)
    if case == "ticks":  # prices on a 0.01 grid: ties and flat windows
        return 100 + np.round(rng.normal(0, 0.02, m).cumsum(), 2)
    if case == "trend":  # the mean drifts away from any fixed anchor
        return 100 + 0.5 * np.arange(m) + rng.normal(0, 1e-3, m)
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["offset", "collapse", "step", "ticks", "trend"])
@pytest.mark.parametrize("n", [2, 5, 20, 60])
def test_rolling_std_is_accurate_on_adversarial_series(case, n):
    # Oracle: two-pass std in extended precision (np.longdouble), so the reference is itself
    # accurate where float64 two-pass would not be (std 1e-5 on a price of 100). Measured
    # worst relative error of ours: 2.2e-12 (bound asserted: 1e-9); flat windows exactly 0.
    x = _hard_series(case)
    for ddof in (0, 1):
        ref = np.full(x.shape[0], np.nan)
        w = sliding_window_view(x.astype(np.longdouble), n)
        ref[n - 1 :] = w.std(axis=1, ddof=ddof).astype(np.float64)
        ours = K.rolling_std(x, n, ddof)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        pos = ref > 0
        np.testing.assert_allclose(ours[pos], ref[pos], rtol=1e-9, atol=0)
        assert np.all(ours[ref == 0] == 0)
    mid = K.bollinger(x, n, 2.0)[1]
    mean = np.full(x.shape[0], np.nan)
    mean[n - 1 :] = sliding_window_view(x.astype(np.longdouble), n).mean(axis=1)
    np.testing.assert_allclose(mid[n - 1 :], mean[n - 1 :], rtol=1e-12)
