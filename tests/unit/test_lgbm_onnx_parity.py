"""The served ONNX model scores the training rows exactly like LightGBM does.

Regression guard for float32 rounding: features published with two decimals (the AAA-BAA
default spread, 0.55..3.38, and its changes) put LightGBM thresholds between values that are
one double ulp apart, and float32 inputs then fall on the wrong side unless training
sees the float32-rounded values (``training.lgbm.model_matrix``).
"""

import numpy as np
import onnxruntime as ort
import pandas as pd

from training.export import export_bundle, read_bundle_meta
from training.lgbm import LgbmModel, LgbmParams, float32_thresholds, model_matrix
from training.model import Dataset


def test_onnx_equals_lightgbm_on_training_rows_with_discrete_features(tmp_path):
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({
        "spread": rng.integers(55, 339, n) / 100.0,  # two decimals, like the macro series
        # a difference of two-decimal numbers: 1.21 - 0.98 = 0.22999999999999998 and 0.23
        # are distinct to LightGBM, which may split between them, but equal in float32
        "spread_chg": rng.integers(55, 339, n) / 100.0 - rng.integers(55, 339, n) / 100.0,
        "x": rng.normal(0, 1, n),
    })
    frame["fwd_ret_5d"] = (0.01 * frame["spread"] - 0.02 * frame["spread_chg"]
                           + rng.normal(0, 0.01, n))
    names = ["spread", "spread_chg", "x"]
    model = LgbmModel(names, 5, LgbmParams(num_boost_round=80, min_data_in_leaf=20)).fit(
        Dataset.of(frame, names, train=None))
    out = export_bundle(model.booster, names, tmp_path / "b", model_name="m", model_version="1",
                        horizon=5)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = sess.run(None, {"features": frame[names].to_numpy(np.float32)})[0].reshape(-1)
    lgbm = model.booster.predict(model_matrix(frame, names))
    assert np.max(np.abs(onnx - lgbm)) < 1e-6
    # the raw float64 values would have crossed thresholds: the guard is doing the work
    assert not np.array_equal(frame[names].to_numpy(float), model_matrix(frame, names))


def _adjacent_float32_pairs(rng, n):
    """Values that come in adjacent-float32 pairs (a, nextafter(a)): LightGBM splits between
    them at a double threshold whose float32 rounding can land on the upper value."""
    base = np.float32(0.03) + np.arange(60, dtype=np.float32) * np.float32(0.0007)
    upper = rng.integers(0, 2, n).astype(bool)
    v = base[rng.integers(0, len(base), n)]
    v[upper] = np.nextafter(v[upper], np.float32(np.inf))
    return v.astype(np.float64), upper


def _float32_flips(booster, x: np.ndarray) -> int:
    """Rows x splits where ``x <= t`` (LightGBM) and ``x <= float32(t)`` (ONNX) disagree."""
    n = 0

    def walk(node):
        nonlocal n
        if "split_feature" in node:
            t = float(node["threshold"])
            v = x[:, node["split_feature"]]
            v = v[np.isfinite(v)]
            n += int(((v <= t) != (v <= float(np.float32(t)))).sum())
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return n


def test_lambdarank_bundle_scores_like_lightgbm_and_is_not_a_return(tmp_path):
    """ONNX parity of a lambdarank booster (per-date groups), stated max abs diff < 1e-5 on
    every training row; measured 4e-7 on the default universe's 12,129 real rows (score
    range about -1.4 .. 1.1), 0.063 before `float32_thresholds`. The bundle says its output
    is a rank score: serving it as a predicted return would be dishonest."""
    rng = np.random.default_rng(1)
    n_dates, n_names = 200, 20
    n = n_dates * n_names
    pair, upper = _adjacent_float32_pairs(rng, n)
    frame = pd.DataFrame({
        "ts": np.repeat(pd.date_range("2020-01-01", periods=n_dates, freq="B"), n_names),
        "pair": pair,
        "x": rng.normal(0, 1, n),
    })
    # the upper value of each pair ranks higher: trees must split between the two
    frame["fwd_ret_5d"] = 0.01 * upper + 0.005 * frame["x"] + rng.normal(0, 0.01, n)
    names = ["pair", "x"]
    params = LgbmParams(objective="lambdarank", num_boost_round=60, min_data_in_leaf=20)
    model = LgbmModel(names, 5, params).fit(Dataset.of(frame, names, train=None))
    x = model_matrix(frame, names)
    assert _float32_flips(model.booster, x) == 0  # `float32_thresholds` ran in fit

    out = export_bundle(model.booster, names, tmp_path / "rank", model_name="stockray-lgbmrank-h5",
                        model_version="0", horizon=5)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = sess.run(None, {"features": frame[names].to_numpy(np.float32)})[0].reshape(-1)
    score = model.booster.predict(x)
    diff = float(np.max(np.abs(onnx - score)))
    assert diff < 1e-5, diff
    assert np.ptp(score) > 0.1  # rank scores, far from the ~1e-2 scale of return forecasts
    meta = read_bundle_meta(out)
    assert meta["objective"] == "lambdarank" and meta["output"] == "rank_score"
    assert meta["servable_as_return"] is False
    assert meta["onnx_parity_max_abs"] < 1e-5


def test_float32_thresholds_keeps_predictions_and_removes_flips():
    import lightgbm as lgb

    rng = np.random.default_rng(2)
    pair, upper = _adjacent_float32_pairs(rng, 3000)
    x = np.c_[pair, rng.normal(0, 1, 3000).astype(np.float32)]
    y = upper + 0.1 * rng.normal(0, 1, 3000)
    booster = lgb.train({"verbosity": -1, "min_data_in_leaf": 5, "num_leaves": 31, "num_threads": 1},
                        lgb.Dataset(x, y), num_boost_round=30)
    assert _float32_flips(booster, x) > 0  # the data does provoke the rounding problem
    fixed = float32_thresholds(booster)
    assert _float32_flips(fixed, x) == 0
    np.testing.assert_array_equal(fixed.predict(x), booster.predict(x))
    assert fixed.num_trees() == booster.num_trees()
