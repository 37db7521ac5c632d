"""Regime-aware ensemble: regimes, per-date z-scores, weights fitted per regime."""

import numpy as np
import pandas as pd
import pytest

from training.ensemble import (
    REGIMES,
    RegimeEnsemble,
    cross_sectional_z,
    regime_labels,
    stack_members,
)


def test_regime_labels_split_trend_sign_and_volatility_threshold():
    f = pd.DataFrame({"mkt_trend_200": [0.1, 0.1, -0.1, -0.1, np.nan],
                      "mkt_vol_20": [0.01, 0.03, 0.01, 0.03, np.nan]})
    assert list(regime_labels(f, 0.02)) == ["up-lovol", "up-hivol", "down-lovol",
                                            "down-hivol", "up-lovol"]


def test_cross_sectional_z_is_per_date_and_zero_without_spread():
    z = cross_sectional_z([1.0, 2.0, 3.0, 5.0, 5.0], ["a", "a", "a", "b", "b"])
    assert z[:3] == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    assert list(z[3:]) == [0.0, 0.0]


def _panel(n_dates=80, n=10, seed=0):
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=n_dates), n)
    y = rng.standard_normal(n_dates * n)
    up = np.repeat(np.arange(n_dates) % 2 == 0, n)  # alternate regimes by date
    f = pd.DataFrame({"ts": dates, "y": y,
                      "mkt_trend_200": np.where(up, 0.05, -0.05),
                      "mkt_vol_20": 0.01})
    noise = rng.standard_normal(len(y))
    # member "a" knows y in up markets only, member "b" in down markets only
    a = pd.Series(np.where(up, y, noise), index=f.index)
    b = pd.Series(np.where(up, noise, y), index=f.index)
    return f, {"a": a, "b": b}


def test_weights_follow_the_member_that_works_in_each_regime():
    f, preds = _panel()
    ens = RegimeEnsemble(["a", "b"], min_dates=10).fit(stack_members(f, preds, "y", train=None))
    assert set(ens.weights_) == set(REGIMES)
    # all volatility equals the median, so every row is "hivol"
    assert ens.weights_["up-hivol"]["a"] > 0.9
    assert ens.weights_["down-hivol"]["b"] > 0.9
    # regimes without data fall back to the all-rows weights (sum to 1)
    assert sum(ens.weights_["up-lovol"].values()) == pytest.approx(1.0)
    out = ens.predict(stack_members(f, preds, test=None))
    from training.evaluate import rank_ic

    assert rank_ic(out, f["y"], f["ts"]) > max(rank_ic(p, f["y"], f["ts"])
                                               for p in preds.values())


def test_predict_before_fit_and_missing_member_fail_loudly():
    f, preds = _panel(n_dates=10)
    with pytest.raises(RuntimeError, match="before fit"):
        RegimeEnsemble(["a"]).predict(stack_members(f, preds, test=None))
    with pytest.raises(KeyError, match="c"):
        RegimeEnsemble(["a", "c"]).fit(stack_members(f, preds, "y", train=None))
