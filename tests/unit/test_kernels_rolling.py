"""Rolling max/min/argmax/argmin/quantile/rank/corr: pandas and TA-Lib on AAPL, the numpy spec
on gappy tick-rounded markets, and Alpha158's families equal to them bit for bit.

Tolerance: max, min, argmax, argmin and rank are exact; quantile 1e-9 relative; correlation
1e-9 absolute against TA-Lib and 1e-11 against a two-pass numpy oracle (it lies in [-1, 1]);
pandas' online co-moments are only good to ~3e-9 there, so against pandas the bound is 1e-8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from bokeh_sampledata.stocks import AAPL

import kernels as K
from kernels import rolling
from kernels.alpha158 import alpha158

# name -> (batch, ref, pandas oracle on a Series), each called with (x, n)
CASES = {
    "rolling_max": (K.rolling_max, rolling.rolling_max_ref, lambda s, n: s.rolling(n).max()),
    "rolling_min": (K.rolling_min, rolling.rolling_min_ref, lambda s, n: s.rolling(n).min()),
    "rolling_argmax": (
        K.rolling_argmax,
        rolling.rolling_argmax_ref,
        lambda s, n: s.rolling(n).apply(np.argmax, raw=True),
    ),
    "rolling_argmin": (
        K.rolling_argmin,
        rolling.rolling_argmin_ref,
        lambda s, n: s.rolling(n).apply(np.argmin, raw=True),
    ),
    "rolling_rank": (
        K.rolling_rank,
        rolling.rolling_rank_ref,
        lambda s, n: s.rolling(n).rank(pct=True),
    ),
    "rolling_quantile": (
        lambda x, n: K.rolling_quantile(x, n, 0.8),
        lambda x, n: rolling.rolling_quantile_ref(x, n, 0.8),
        lambda s, n: s.rolling(n).quantile(0.8),
    ),
}


@pytest.fixture(scope="module")
def bars() -> dict[str, np.ndarray]:
    return {k: np.asarray(AAPL[k], dtype=np.float64) for k in ("high", "low", "close", "volume")}


def assert_same_mask(a, b):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg="NaN masks differ")
    assert (~np.isnan(b)).any(), "vacuous comparison"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("n", [1, 2, 5, 20, 60])
def test_matches_pandas_on_aapl(bars, name, n):
    fn, _, oracle = CASES[name]
    for key in ("high", "close"):
        x = bars[key]
        ours, want = fn(x, n), oracle(pd.Series(x), n).to_numpy()
        assert_same_mask(ours, want)
        m = ~np.isnan(want)
        if name == "rolling_quantile":
            np.testing.assert_allclose(ours[m], want[m], rtol=1e-9, atol=0)
        else:
            np.testing.assert_array_equal(ours[m], want[m])


def test_max_min_corr_match_talib(bars):
    c, v = bars["close"], bars["volume"]
    for n in (2, 14, 30):
        np.testing.assert_array_equal(K.rolling_max(c, n), talib.MAX(c, n))
        np.testing.assert_array_equal(K.rolling_min(c, n), talib.MIN(c, n))
        ours, theirs = K.rolling_corr(c, v, n), talib.CORREL(c, v, n)
        assert_same_mask(ours, theirs)
        m = ~np.isnan(theirs)
        np.testing.assert_allclose(ours[m], theirs[m], rtol=0, atol=1e-9)


def test_corr_of_two_bars_is_the_sign_of_the_moves(bars):
    # pandas' online moments are off by up to 2e-5 here (catastrophic cancellation on two
    # points), so n = 2 is checked against its exact value instead
    c, lv = bars["close"], np.log(bars["volume"] + 1)
    want = np.sign(np.diff(c) * np.diff(lv))
    np.testing.assert_allclose(K.rolling_corr(c, lv, 2)[1:], want, rtol=0, atol=1e-11)


@pytest.mark.parametrize("n", [5, 20, 60])
def test_corr_matches_pandas_on_aapl(bars, n):
    c, lv = bars["close"], np.log(bars["volume"] + 1)
    want = pd.Series(c).rolling(n).corr(pd.Series(lv)).to_numpy()
    ours = K.rolling_corr(c, lv, n)
    warm = np.arange(c.shape[0]) < n - 1
    assert np.isnan(ours[warm]).all() and not np.isnan(ours[~warm]).any()
    # a flat window (two equal closes when n = 2): pandas gives inf or NaN, ours 0
    flat = ~warm & ~np.isfinite(want)
    assert (ours[flat] == 0.0).all()
    m = ~warm & ~flat
    assert m.sum() > c.shape[0] - n - 100
    # pandas' online co-moments drift by up to 2.6e-9 (AAPL bar 762, n = 5): against pandas
    # the bound is 1e-8; against numpy's two-pass corrcoef per window it is 1e-11 (the
    # running co-moments' bound is ~2e-11, see kernels.rolling)
    np.testing.assert_allclose(ours[m], want[m], rtol=0, atol=1e-8)
    two_pass = rolling.rolling_corr_ref(c, lv, n)
    np.testing.assert_allclose(ours[~warm], two_pass[~warm], rtol=0, atol=1e-11)


def market(seed: int, n: int, nan_rate: float, tick: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    if tick:
        x = np.round(x / tick) * tick  # ties and flat windows
    x[rng.random(n) < nan_rate] = np.nan
    x[:3] = np.nan  # leading NaNs
    return x


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    "n,nan_rate,tick", [(1, 0.0, 0.0), (4, 0.05, 0.0), (7, 0.02, 1.0), (30, 0.0, 5.0)]
)
def test_matches_spec_with_gaps_and_ties(name, n, nan_rate, tick):
    fn, ref, _ = CASES[name]
    for size in (0, 5, 300):
        x = market(3, size, nan_rate, tick)
        ours, want = fn(x, n), ref(x, n)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(want))
        m = ~np.isnan(want)
        np.testing.assert_allclose(ours[m], want[m], rtol=1e-12, atol=0)


def test_corr_matches_spec_with_gaps_and_flat_windows():
    x = market(4, 300, 0.03, 2.0)
    y = market(5, 300, 0.03, 0.0)
    for n in (2, 6, 20):
        ours, want = K.rolling_corr(x, y, n), rolling.rolling_corr_ref(x, y, n)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(want))
        m = ~np.isnan(want)
        np.testing.assert_allclose(ours[m], want[m], rtol=0, atol=1e-11)
    assert np.any(K.rolling_corr(np.full(10, 3.0), np.arange(10.0), 4)[3:] == 0.0)


def test_alpha158_families_are_these_functions():
    rng = np.random.default_rng(9)
    c = np.round(20 * np.exp(np.cumsum(rng.normal(0, 0.02, 400))), 1)
    h, lo = c + np.round(rng.random(400), 1), c - np.round(rng.random(400), 1)
    v = rng.integers(0, 50, 400).astype(np.float64)
    for d in (5, 20):
        a = alpha158(c, h, lo, c, v, windows=(d,))
        same = np.testing.assert_array_equal
        same(a[f"MAX{d}"], K.rolling_max(h, d) / c)
        same(a[f"MIN{d}"], K.rolling_min(lo, d) / c)
        same(a[f"IMAX{d}"], (K.rolling_argmax(h, d) + 1.0) / d)
        same(a[f"IMIN{d}"], (K.rolling_argmin(lo, d) + 1.0) / d)
        same(a[f"QTLU{d}"], K.rolling_quantile(c, d, 0.8) / c)
        same(a[f"QTLD{d}"], K.rolling_quantile(c, d, 0.2) / c)
        same(a[f"RANK{d}"], K.rolling_rank(c, d))
        # CORR: two-pass per window there, running co-moments in rolling_corr
        corr = K.rolling_corr(c, np.log(v + 1), d)
        np.testing.assert_array_equal(np.isnan(a[f"CORR{d}"]), np.isnan(corr))
        np.testing.assert_allclose(a[f"CORR{d}"], corr, rtol=0, atol=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        K.rolling_max(np.ones(5), 0)
    with pytest.raises(ValueError):
        K.rolling_quantile(np.ones(5), 3, 1.5)
    with pytest.raises(ValueError):
        K.rolling_corr(np.ones(5), np.ones(4), 3)
    with pytest.raises(ValueError):
        K.rolling_corr(np.ones(5), np.ones(5), 1)
