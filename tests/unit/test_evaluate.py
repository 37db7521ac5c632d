"""Metrics with hand-computed values: IC, ICIR, hit rate, MCC, backtest Sharpe/drawdown."""

import math

import numpy as np
import pandas as pd
import pytest

from training.evaluate import (
    backtest,
    calibration_table,
    daily_ic,
    direction_mcc,
    evaluate_predictions,
    hit_rate,
    ic,
    icir,
    interval_coverage,
    mae,
    performance,
    pooled_ic,
    rank_ic,
    rmse,
)

D = pd.bdate_range("2022-01-03", periods=4, tz="UTC")


def _cross_section(n_dates=30, n=20, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2022-01-03", periods=n_dates, tz="UTC")
    f = pd.DataFrame(
        {"ticker": np.tile([f"T{i}" for i in range(n)], n_dates), "ts": np.repeat(dates, n)}
    )
    f["y"] = 0.02 * rng.standard_normal(len(f))
    return f


def test_ic_of_perfect_and_inverted_predictor():
    f = _cross_section()
    assert ic(f["y"], f["y"], f["ts"]) == pytest.approx(1.0)
    assert ic(-3 * f["y"] + 1, f["y"], f["ts"]) == pytest.approx(-1.0)
    assert rank_ic(np.exp(f["y"] * 50), f["y"], f["ts"]) == pytest.approx(1.0)  # monotone
    assert pooled_ic(f["y"], f["y"]) == pytest.approx(1.0)


def test_constant_predictor_has_undefined_correlations():
    f = _cross_section()
    c = np.full(len(f), 0.001)
    assert math.isnan(ic(c, f["y"], f["ts"]))
    assert math.isnan(icir(c, f["y"], f["ts"]))
    assert math.isnan(pooled_ic(c, f["y"]))


def test_daily_ic_and_icir_hand_computed():
    dates = np.repeat(D[:3], 3)
    y = np.array([1.0, 2.0, 3.0] * 3)
    p = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 3.0, 2.0, 1.0])  # IC per date: 1, 1, -1
    s = daily_ic(p, y, dates)
    np.testing.assert_allclose(s.to_numpy(), [1.0, 1.0, -1.0])
    assert list(s.index) == list(D[:3])
    # mean 1/3, std(ddof=1) = sqrt(((2/3)^2 * 2 + (4/3)^2) / 2)
    assert icir(p, y, dates) == pytest.approx((1 / 3) / math.sqrt((8 / 9 + 16 / 9) / 2))


def test_hit_rate_counts_zero_as_its_own_sign_and_keeps_small_moves():
    pred = np.array([1.0, -1.0, 0.0, 0.0, 2.0, 1e-12, np.nan])
    targ = np.array([1.0, 1.0, 0.0, 1.0, -0.0, 1e-12, 1.0])
    # hits: row0, row2 (0 vs 0), row5 (tiny move same sign); misses: 1, 3 (0 vs +), 4 (+ vs 0)
    assert hit_rate(pred, targ) == pytest.approx(3 / 6)


def test_direction_mcc():
    # binary: TP=1 FP=1 TN=2 FN=0 -> (1*2 - 0) / sqrt(2*1*3*2)
    assert direction_mcc([1, 1, -1, -1], [1, -1, -1, -1]) == pytest.approx(2 / math.sqrt(12))
    assert direction_mcc([1, -1, 0, 2], [3, -2, 0, 1]) == pytest.approx(1.0)
    assert direction_mcc([1, -1, 1], [-1, 1, -1]) == pytest.approx(-1.0)
    assert direction_mcc([0.01] * 5, [1, -1, 1, 1, -1]) == 0.0  # always-up: no skill


def test_error_metrics_and_coverage():
    assert rmse([1, 2, np.nan], [1, 4, 0]) == pytest.approx(math.sqrt(2.0))
    assert mae([1, 2, np.nan], [1, 4, 0]) == pytest.approx(1.0)
    assert interval_coverage([0, 0, 0, 0], [1, 1, 1, 1], [0.5, 1.0, 2.0, -1.0]) == 0.5


def test_calibration_table_bins():
    p = np.arange(100, dtype=float)
    t = calibration_table(p, 2 * p, n_bins=4)
    assert t["n"].tolist() == [25] * 4
    np.testing.assert_allclose(t["pred_mean"], [12.0, 37.0, 62.0, 87.0])
    np.testing.assert_allclose(t["target_mean"], 2 * t["pred_mean"])
    assert len(calibration_table(np.ones(10), p[:10])) == 1


def _two_name_panel(h=1):
    # simple returns of A and B on each formation date; predictions pick A, A, B, B
    ra = [0.02, -0.01, 0.03, 0.00]
    rb = [-0.01, 0.01, 0.01, 0.02]
    return pd.DataFrame(
        {
            "ticker": ["A", "B"] * 4,
            "ts": np.repeat(D, 2),
            "pred": [2.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0],
            "y": np.log1p(np.ravel(np.column_stack([ra, rb]))),
        }
    )


def test_backtest_hand_computed_sharpe_drawdown_costs():
    bt = backtest(_two_name_panel(), "pred", "y", horizon=1, top_k=1, cost_bps=10.0)
    # gross: .02+.01, -.01-.01, .01-.03, .02-0 ; turnover 2, 0, 4, 0 ; cost = turnover * 10bp
    np.testing.assert_allclose(bt.periods["gross"], [0.03, -0.02, -0.02, 0.02])
    np.testing.assert_allclose(bt.periods["turnover"], [2.0, 0.0, 4.0, 0.0])
    np.testing.assert_allclose(bt.returns, [0.028, -0.02, -0.024, 0.02])
    sd = math.sqrt((0.027**2 + 0.021**2 + 0.025**2 + 0.019**2) / 3)
    assert bt.sharpe == pytest.approx(0.001 / sd * math.sqrt(252))
    assert bt.sharpe == pytest.approx(0.59215, abs=1e-4)
    np.testing.assert_allclose(bt.equity, [1.028, 1.00744, 0.98326144, 1.0029266688])
    assert bt.max_drawdown == pytest.approx(0.98326144 / 1.028 - 1)
    assert bt.ann_return == pytest.approx(1.0029266688 ** (252 / 4) - 1)
    assert bt.total_cost == pytest.approx(0.006)
    assert bt.avg_turnover == pytest.approx(1.5)


def test_backtest_rebalances_every_h_days_and_long_only():
    f = _two_name_panel()
    bt = backtest(f, "pred", "y", horizon=2, top_k=1, cost_bps=0.0)
    assert list(bt.periods.index) == [D[0], D[2]]  # non-overlapping 2-day holds
    np.testing.assert_allclose(bt.returns, [0.03, -0.02])
    assert bt.periods_per_year == 126
    lo = backtest(f, "pred", "y", horizon=1, top_k=1, cost_bps=0.0, long_short=False)
    np.testing.assert_allclose(lo.returns, [0.02, -0.01, 0.01, 0.02])
    shifted = backtest(f, "pred", "y", horizon=2, top_k=1, cost_bps=0.0, offset=1)
    assert list(shifted.periods.index) == [D[1], D[3]]


def test_backtest_constant_prediction_holds_cash():
    f = _two_name_panel().assign(pred=1.0)
    bt = backtest(f, "pred", "y", horizon=1, top_k=1)
    assert (bt.returns == 0).all() and (bt.periods["turnover"] == 0).all()
    assert math.isnan(bt.sharpe) and bt.max_drawdown == 0.0


def test_performance_drawdown_from_start():
    p = performance([-0.1, 0.05], 252)
    assert p["max_drawdown"] == pytest.approx(-0.1)


def test_evaluate_predictions_perfect_and_always_up():
    f = _cross_section(n_dates=40)
    f.loc[f.index[-20:], "y"] = np.nan  # unlabelled tail is not evaluated
    perfect = evaluate_predictions(f.assign(p=f["y"]), "p", "y", horizon=1)
    assert perfect["n_rows"] == len(f) - 20 and perfect["coverage"] == 1.0
    assert perfect["ic"] == pytest.approx(1.0) and perfect["rank_ic"] == pytest.approx(1.0)
    assert perfect["hit_rate"] == 1.0 and perfect["mcc"] == pytest.approx(1.0)
    assert perfect["rmse"] == 0.0 and perfect["bt_sharpe"] > 5
    up = evaluate_predictions(f.assign(p=0.001), "p", "y", horizon=1)
    labelled = f["y"].dropna()
    assert math.isnan(up["ic"]) and math.isnan(up["pooled_ic"]) and math.isnan(up["icir"])
    assert up["hit_rate"] == pytest.approx((labelled > 0).mean())
    assert up["mcc"] == 0.0 and up["bt_ann_return"] == 0.0
    with pytest.raises(KeyError, match="lacks columns"):
        evaluate_predictions(f, "nope", "y", horizon=1)
