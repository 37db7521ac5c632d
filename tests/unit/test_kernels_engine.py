"""The vectorised engine reproduces the batch kernels exactly, ticker by ticker."""

from __future__ import annotations

import numpy as np
import pytest

import kernels as K
from kernels.engine import DEFAULT_FEATURES, Engine, FeatureSpec, parse_feature


def panel(n_days: int, n_tickers: int, seed: int = 0, nan_rate: float = 0.03):
    """(n_days, n_tickers) OHLCV with random missing bars and a late-listed ticker."""
    rng = np.random.default_rng(seed)
    c = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_days, n_tickers)), axis=0))
    o = c * np.exp(rng.normal(0, 0.01, c.shape))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.01, c.shape)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.01, c.shape)))
    v = rng.integers(1, 1000, c.shape).astype(np.float64)
    c[rng.random(c.shape) < nan_rate] = np.nan
    c[:25, 0] = np.nan  # listed late
    c[:, 1] = np.round(c[:, 1])  # ties and flat stretches
    return o, h, lo, c, v


def batch_columns(o, h, lo, c, v) -> dict[str, np.ndarray]:
    """Every default column computed by the batch API for one ticker."""
    out: dict[str, np.ndarray] = {}
    for text in DEFAULT_FEATURES:
        spec = parse_feature(text)
        p = [int(x) if x == int(x) else x for x in spec.params]
        fn = getattr(K, spec.name)
        if spec.name in ("stoch", "atr"):
            res = fn(h, lo, c, *p)
        elif spec.name == "parkinson":
            res = fn(h, lo, *p)
        elif spec.name == "garman_klass":
            res = fn(o, h, lo, c, *p)
        elif spec.name == "obv":
            res = fn(c, v)
        else:
            res = fn(c, *p)
        res = res if isinstance(res, tuple) else (res,)
        out.update(zip(spec.columns, res, strict=True))
    return out


def test_default_features_have_40_columns():
    assert len(Engine(n_tickers=1).columns) == 40


def test_engine_equals_batch_exactly():
    o, h, lo, c, v = panel(120, 4)
    eng = Engine(n_tickers=4)
    rows = np.stack([eng.update(o[t], h[t], lo[t], c[t], v[t]) for t in range(c.shape[0])])
    for i in range(4):
        expected = batch_columns(o[:, i], h[:, i], lo[:, i], c[:, i], v[:, i])
        for j, col in enumerate(eng.columns):
            np.testing.assert_array_equal(rows[:, i, j], expected[col], err_msg=f"{col} ticker {i}")
    assert np.isfinite(rows[-1]).sum() > 100  # not vacuous: most columns are warm


def test_state_snapshot_round_trip_and_reset():
    o, h, lo, c, v = panel(80, 3, seed=5, nan_rate=0.0)
    a = Engine(["ema:5", "rsi:3", "bollinger:4:2"], n_tickers=3)
    for t in range(60):
        a.update(o[t], h[t], lo[t], c[t], v[t])
    b = Engine(["ema:5", "rsi:3", "bollinger:4:2"], n_tickers=3)
    b.set_state(a.get_state())
    for t in range(60, 80):
        np.testing.assert_array_equal(a.update(close=c[t]), b.update(close=c[t]))
    b.reset([0])
    assert np.isnan(b.update(close=c[0])[0]).all()
    assert not np.isnan(b.update(close=c[1])[1]).any()


def test_feature_parsing_and_errors():
    assert parse_feature("macd") == FeatureSpec("macd", (12.0, 26.0, 9.0))
    assert parse_feature("bollinger:20:2.5").columns[0] == "bollinger_20_2.5_upper"
    for bad in ("nope:3", "sma:3:4", "sma:0", "zscore:1", "macd:26:12:9"):
        with pytest.raises(ValueError):
            Engine([bad], n_tickers=2)
    eng = Engine(["sma:3"], n_tickers=2)
    with pytest.raises(ValueError):
        eng.update(close=np.ones(3))


def test_update_of_some_rows_leaves_the_others_alone_and_equals_batch():
    o, h, lo, c, v = panel(90, 3, seed=3, nan_rate=0.0)
    eng = Engine(n_tickers=2)
    eng.add_tickers(1)
    got = {i: [] for i in range(3)}
    for t in range(90):
        rows = [i for i in range(3) if (t + i) % 4]  # each ticker misses every 4th step
        out = eng.update(o[t, rows], h[t, rows], lo[t, rows], c[t, rows], v[t, rows], rows=rows)
        for k, i in enumerate(rows):
            got[i].append((t, out[k]))
    for i in range(3):
        ts = [t for t, _ in got[i]]
        want = batch_columns(o[ts, i], h[ts, i], lo[ts, i], c[ts, i], v[ts, i])
        rows_i = np.stack([r for _, r in got[i]])
        for j, col in enumerate(eng.columns):
            np.testing.assert_array_equal(rows_i[:, j], want[col], err_msg=f"{col} {i}")
    with pytest.raises(ValueError, match="unique"):
        eng.update(close=[1.0, 2.0], rows=[0, 0])
