"""Alpha158 rolling families: pandas oracle on AAPL, numpy spec with gaps, batch == state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bokeh_sampledata.stocks import AAPL
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.alpha158 import ALPHA158_FAMILIES, Alpha158State, alpha158, alpha158_ref

N = 600  # AAPL rows used: every window warms up many times over, and the test stays fast


@pytest.fixture(scope="module")
def bars():
    return {
        k: np.asarray(AAPL[k], dtype=np.float64)[:N]
        for k in ("open", "high", "low", "close", "volume")
    }


def pandas_oracle(b, d: int) -> dict[str, pd.Series]:
    """Qlib's definitions written with pandas rolling ops (full windows)."""
    c, h, lo, v = (pd.Series(b[k]) for k in ("close", "high", "low", "volume"))
    t = pd.Series(np.arange(len(c), dtype=np.float64))
    dc, r = c - c.shift(), c / c.shift()
    slope = c.rolling(d).cov(t) / t.rolling(d).var()
    hh, ll = h.rolling(d).max(), lo.rolling(d).min()
    wv = (r - 1).abs() * v
    has_prev = pd.Series(np.arange(len(c)) >= d)
    out = {
        "MA": c.rolling(d).mean() / c,
        "STD": c.rolling(d).std() / c,
        "BETA": slope / c,
        "RSQR": c.rolling(d).corr(t) ** 2,
        "RESI": (c - c.rolling(d).mean() - slope * (d - 1) / 2) / c,
        "MAX": hh / c,
        "MIN": ll / c,
        "QTLU": c.rolling(d).quantile(0.8) / c,
        "QTLD": c.rolling(d).quantile(0.2) / c,
        "RANK": c.rolling(d).rank(pct=True),
        "RSV": (c - ll) / (hh - ll + 1e-12),
        "IMAX": (h.rolling(d).apply(np.argmax, raw=True) + 1) / d,
        "IMIN": (lo.rolling(d).apply(np.argmin, raw=True) + 1) / d,
        "IMXD": (h.rolling(d).apply(np.argmax, raw=True) - lo.rolling(d).apply(np.argmin, raw=True))
        / d,
        "CORR": c.rolling(d).corr(np.log(v + 1)),
        "CORD": r.rolling(d).corr(np.log(v / v.shift() + 1)),
        "CNTP": (dc > 0).astype(float).rolling(d).mean().where(has_prev),
        "CNTN": (dc < 0).astype(float).rolling(d).mean().where(has_prev),
        "SUMP": dc.clip(lower=0).rolling(d).sum() / (dc.abs().rolling(d).sum() + 1e-12),
        "SUMN": (-dc).clip(lower=0).rolling(d).sum() / (dc.abs().rolling(d).sum() + 1e-12),
        "VMA": v.rolling(d).mean() / (v + 1e-12),
        "VSTD": v.rolling(d).std() / (v + 1e-12),
        "WVMA": wv.rolling(d).std() / (wv.rolling(d).mean() + 1e-12),
    }
    out["CNTD"] = out["CNTP"] - out["CNTN"]
    out["SUMD"] = out["SUMP"] - out["SUMN"]
    return out


@pytest.mark.parametrize("d", [5, 10, 20, 30, 60])
def test_alpha158_matches_pandas_on_aapl(bars, d):
    ours = alpha158(*(bars[k] for k in ("open", "high", "low", "close", "volume")), windows=(d,))
    oracle = pandas_oracle(bars, d)
    assert set(oracle) == set(ALPHA158_FAMILIES)
    for fam in ALPHA158_FAMILIES:
        a, b = ours[f"{fam}{d}"], oracle[fam].to_numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=fam)
        m = ~np.isnan(b)
        assert m.sum() >= N - d - 1
        # Features are O(1) ratios; pandas' online rolling moments are good to ~1e-10 of
        # the price level, so the bound is 1e-9 relative plus 1e-9 absolute.
        np.testing.assert_allclose(a[m], b[m], rtol=1e-9, atol=1e-9, err_msg=fam)


def market(seed: int, n: int, nan_rate: float, tick: float):
    rng = np.random.default_rng(seed)
    c = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    h = c * np.exp(np.abs(rng.normal(0, 0.01, n)))
    lo = c * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    v = rng.integers(0, 50, n).astype(np.float64)
    if tick:
        c, h, lo = (np.round(a / tick) * tick for a in (c, h, lo))
        h, lo = np.maximum(h, c), np.minimum(lo, c)
    for a in (h, lo, c, v):
        a[rng.random(n) < nan_rate] = np.nan
    return c.copy(), h, lo, c, v  # open unused by the rolling families


def test_alpha158_matches_ref_with_gaps_and_ties():
    o, h, lo, c, v = market(11, 250, 0.02, 0.5)
    ours = alpha158(o, h, lo, c, v, windows=(3, 7, 20))
    ref = alpha158_ref(o, h, lo, c, v, windows=(3, 7, 20))
    assert list(ours) == list(ref)
    for k in ours:
        np.testing.assert_array_equal(np.isnan(ours[k]), np.isnan(ref[k]), err_msg=k)
        m = ~np.isnan(ref[k])
        np.testing.assert_allclose(ours[k][m], ref[k][m], rtol=1e-9, atol=1e-12, err_msg=k)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    nan_rate=st.sampled_from([0.0, 0.1]),
    tick=st.sampled_from([0.0, 1.0]),
)
def test_alpha158_batch_equals_state(seed, n, nan_rate, tick):
    o, h, lo, c, v = market(seed, n, nan_rate, tick)
    windows = (2, 5, 9)
    batch = alpha158(o, h, lo, c, v, windows=windows)
    state = Alpha158State(windows)
    for t in range(n):
        got = state.update(o[t], h[t], lo[t], c[t], v[t])
        want = {k: a[t] for k, a in batch.items()}
        assert list(got) == list(want)
        np.testing.assert_array_equal(np.array(list(got.values())), np.array(list(want.values())))


def test_alpha158_rejects_bad_windows():
    x = np.ones(10)
    with pytest.raises(ValueError):
        alpha158(x, x, x, x, x, windows=(1,))
    with pytest.raises(ValueError):
        alpha158(x, x, x, x, x[:5])
