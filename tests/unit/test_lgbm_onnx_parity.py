"""The served ONNX model scores the training rows exactly like LightGBM does.

Regression guard for float32 rounding: features published with two decimals (the AAA-BAA
default spread, 0.55..3.38, and its changes) put LightGBM thresholds between values that are
one double ulp apart, and float32 inputs then fall on the wrong side unless training
sees the float32-rounded values (``training.lgbm.model_matrix``).
"""

import numpy as np
import onnxruntime as ort
import pandas as pd

from training.export import export_bundle
from training.lgbm import LgbmModel, LgbmParams, model_matrix


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
    model = LgbmModel(names, 5, LgbmParams(num_boost_round=80, min_data_in_leaf=20)).fit(frame)
    out = export_bundle(model.booster, names, tmp_path / "b", model_name="m", model_version="1",
                        horizon=5)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = sess.run(None, {"features": frame[names].to_numpy(np.float32)})[0].reshape(-1)
    lgbm = model.booster.predict(model_matrix(frame, names))
    assert np.max(np.abs(onnx - lgbm)) < 1e-6
    # the raw float64 values would have crossed thresholds: the guard is doing the work
    assert not np.array_equal(frame[names].to_numpy(float), model_matrix(frame, names))
