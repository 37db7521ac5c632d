"""Naive baselines: values from past closes only, no look-ahead, linear fit on train only."""

import math

import numpy as np
import pandas as pd
import pytest

from training.baselines import (
    BASELINE_NAMES,
    DEFAULT_UP_PER_DAY,
    LinearBaseline,
    baseline_predictions,
    fit_linear_baseline,
    past_log_return,
)
from training.evaluate import evaluate_predictions

DATES = pd.bdate_range("2023-01-02", periods=30, tz="UTC")


def _bars(seed=0):
    rng = np.random.default_rng(seed)
    closes = {
        k: 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(len(DATES)))) for k in ("A", "B", "C")
    }
    f = pd.DataFrame(
        [
            {"ticker": k, "ts": d, "close": c[i]}
            for k, c in closes.items()
            for i, d in enumerate(DATES)
        ]
    )
    return f.sample(frac=1.0, random_state=seed), closes


def test_past_log_return_matches_closes_in_any_row_order():
    f, closes = _bars()
    r = past_log_return(f, 5)
    for k, c in closes.items():
        got = r[f["ticker"] == k].to_numpy()[np.argsort(f.loc[f["ticker"] == k, "ts"])]
        assert np.isnan(got[:5]).all()
        np.testing.assert_allclose(got[5:], np.log(c[5:] / c[:-5]))


def test_baseline_columns_values():
    f, closes = _bars()
    b = baseline_predictions(f, horizon=5)
    assert tuple(b.columns) == BASELINE_NAMES and b.index.equals(f.index)
    row = f[(f["ticker"] == "B") & (f["ts"] == DATES[10])].index[0]
    c = closes["B"]
    assert b.loc[row, "zero"] == 0.0
    assert b.loc[row, "momentum"] == pytest.approx(math.log(c[10] / c[5]))
    assert b.loc[row, "reversal_1d"] == pytest.approx(-math.log(c[10] / c[9]))
    assert b.loc[row, "reversal_5d"] == pytest.approx(-math.log(c[10] / c[5]))
    assert b.loc[row, "always_up"] == pytest.approx(5 * DEFAULT_UP_PER_DAY)


def test_baselines_ignore_the_future():
    f, _ = _bars()
    cut = DATES[15]
    g = f.copy()
    g.loc[g["ts"] > cut, "close"] *= 3.0  # perturb everything after the cut
    a, b = baseline_predictions(f, 5), baseline_predictions(g, 5)
    m = f["ts"] <= cut
    pd.testing.assert_frame_equal(a[m], b[m])
    assert not a[~m].equals(b[~m])


def test_past_return_columns_replace_prices():
    f, _ = _bars()
    for lb in (1, 5):
        f[f"pr{lb}"] = past_log_return(f, lb)
    b = baseline_predictions(
        f.drop(columns="close"), 5, price_col=None, past_return_cols={1: "pr1", 5: "pr5"}
    )
    np.testing.assert_allclose(b["reversal_1d"], -f["pr1"])
    np.testing.assert_allclose(b["momentum"], f["pr5"])
    with pytest.raises(KeyError, match="past_return_cols"):
        baseline_predictions(
            f.drop(columns="close"), 20, price_col=None, past_return_cols={1: "pr1", 5: "pr5"}
        )


def test_always_up_and_zero_metrics_are_honest():
    f, _ = _bars()
    f["y"] = -past_log_return(f, 1)  # any label
    b = baseline_predictions(f, 1)
    up = evaluate_predictions(f.join(b), "always_up", "y", horizon=1)
    lab = f["y"].dropna()
    assert math.isnan(up["ic"]) and math.isnan(up["rank_ic"])
    assert up["hit_rate"] == pytest.approx((lab > 0).mean()) and up["mcc"] == 0.0
    zero = evaluate_predictions(f.join(b), "zero", "y", horizon=1)
    assert zero["hit_rate"] == pytest.approx((lab == 0).mean())


def test_linear_baseline_fits_on_train_only():
    rng = np.random.default_rng(1)
    tr = pd.DataFrame({"a": rng.standard_normal(500), "b": rng.standard_normal(500)})
    tr["y"] = 0.5 * tr["a"] - 2.0 * tr["b"] + 3.0
    te = pd.DataFrame({"a": [10.0, np.nan], "b": [0.0, 1.0]})
    model = LinearBaseline(["a", "b"], alpha=0.0).fit(tr, "y")
    p = model.predict(te)
    assert p.iloc[0] == pytest.approx(0.5 * 10 + 3.0) and np.isnan(p.iloc[1])
    np.testing.assert_allclose(model.mean_, tr[["a", "b"]].mean())  # train statistics
    np.testing.assert_allclose(
        fit_linear_baseline(tr, te.fillna(0), ["a", "b"], "y", 0.0), [8.0, 1.0]
    )
    with pytest.raises(RuntimeError, match="before fit"):
        LinearBaseline(["a"]).predict(te)
