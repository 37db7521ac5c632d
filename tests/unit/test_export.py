"""training.export: bundle layout, ONNX parity, metadata updates, provider choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.serving_fixtures import FEATURES, train_booster
from training.export import (
    BOOSTER_FILE,
    META_FILE,
    ONNX_FILE,
    export_bundle,
    onnx_providers,
    onnx_session,
    read_bundle_meta,
    write_bundle_meta,
)


@pytest.fixture(scope="module")
def booster():
    return train_booster(5)


def test_export_writes_bundle_with_parity(booster, tmp_path):
    out = export_bundle(
        booster,
        FEATURES,
        tmp_path / "b",
        model_name="m",
        model_version="0",
        horizon=5,
        extra={"run_id": "r1"},
    )
    assert {p.name for p in out.iterdir()} == {ONNX_FILE, BOOSTER_FILE, META_FILE}
    meta = read_bundle_meta(out)
    assert meta["feature_names"] == list(FEATURES)
    assert meta["horizon"] == 5 and meta["model_version"] == "0"
    assert meta["extra"] == {"run_id": "r1"}
    assert 0 <= meta["onnx_parity_max_abs"] < 1e-5
    assert meta["created_at"].endswith("+00:00")
    assert meta["onnx_provider_at_export"] == "CPUExecutionProvider"
    # Dynamic batch: a 3-row input works and matches LightGBM.
    x = np.random.default_rng(1).standard_normal((3, len(FEATURES))).astype(np.float32)
    sess = onnx_session(out / ONNX_FILE)
    assert sess.get_inputs()[0].name == "features"
    y = sess.run(None, {"features": x})[0].reshape(-1)
    np.testing.assert_allclose(y, booster.predict(x.astype(np.float64)), atol=1e-5)
    # No temp directories left beside the bundle.
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_reexport_replaces_atomically_and_meta_is_updatable(booster, tmp_path):
    d = tmp_path / "b"
    export_bundle(booster, FEATURES, d, model_name="m", model_version="0", horizon=5)
    (d / "stale.txt").write_text("old bundle file")
    export_bundle(booster, FEATURES, d, model_name="m", model_version="0", horizon=5)
    assert not (d / "stale.txt").exists()
    meta = write_bundle_meta(d, model_version="7")
    assert meta["model_version"] == "7"
    assert json.loads((d / META_FILE).read_text())["model_version"] == "7"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_export_rejects_wrong_feature_names(booster, tmp_path):
    with pytest.raises(ValueError, match="feature names"):
        export_bundle(
            booster, FEATURES[:2], tmp_path / "b", model_name="m", model_version="0", horizon=5
        )
    assert not (tmp_path / "b").exists()


def test_read_meta_of_non_bundle_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_bundle"):
        read_bundle_meta(tmp_path)


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (["AzureExecutionProvider"], ["CPUExecutionProvider"]),
    ],
)
def test_onnx_providers_prefers_tensorrt_then_cuda(available, expected):
    assert onnx_providers(available) == expected


def test_onnx_providers_here_is_cpu():
    assert onnx_providers()[-1] == "CPUExecutionProvider"
