"""Model discovery from bundle dirs, AppArgs, serve_env (the MLflow path is an integration
test: tests/integration/test_serve_app.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.app import AppArgs, build_app
from serving.launch import direct_ingress_configured, serve_env
from serving.models import ModelSource, load_bundle, resolve_bundles
from tests.serving_fixtures import FEATURES, make_bundles


@pytest.fixture(scope="module")
def bundle_dirs(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("bundles"), horizons=(1, 5))


def test_resolve_bundle_dirs(bundle_dirs):
    got = resolve_bundles(ModelSource(bundle_dirs=bundle_dirs))
    assert list(got) == [1, 5]
    assert got[5].feature_names == FEATURES and got[5].model_name == "stockray-lgbm-h5"
    assert got[1].onnx_path.is_file() and got[1].booster_path.is_file()


def test_bundle_horizon_mismatch_is_an_error(bundle_dirs):
    with pytest.raises(ValueError, match="horizon 5, configured as 1"):
        resolve_bundles(ModelSource(bundle_dirs={1: bundle_dirs[5]}))


def test_model_source_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValidationError):
        ModelSource()
    with pytest.raises(ValidationError):
        ModelSource(bundle_dirs={1: "x"}, tracking_uri="sqlite:///x.db")
    src = ModelSource.from_data_dir(tmp_path)
    assert src.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"


def test_load_bundle_overrides(bundle_dirs):
    b = load_bundle(bundle_dirs[1], model_version="11")
    assert b.model_version == "11" and b.meta["model_version"] == "11"


def test_app_args_and_build_app(bundle_dirs):
    kw = {
        "models": ModelSource(bundle_dirs=bundle_dirs),
        "reader": "tests.serving_fixtures:FakeReader",
    }
    a = AppArgs(**kw)
    assert a.mode == "fused" and a.grpc_port == 9000 and a.http_port == 8000
    assert a.stage_config().reader == "tests.serving_fixtures:FakeReader"
    with pytest.raises(ValidationError):
        AppArgs(**kw, mode="sideways")
    with pytest.raises(ValidationError):
        AppArgs(**kw, grpc_port=9000, http_port=9000)
    for mode in ("fused", "split"):
        app = build_app(AppArgs(**kw, mode=mode))
        assert type(app).__name__ == "Application"
    assert build_app(a.model_dump()) is not None  # `serve run` passes a dict


def test_serve_env_pins_direct_ingress_to_public_grpc_port(monkeypatch):
    env = serve_env(9100)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert (
        env["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"],
        env["RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"],
    ) == ("9100", "9101")
    assert env["RAY_SERVE_PORT_QUARANTINE_S"] == "0"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0"
    assert serve_env(9100, 8100) == env
    with pytest.raises(ValueError, match="collides"):
        serve_env(9100, 9101)
    for k in env:
        monkeypatch.delenv(k, raising=False)
    assert not direct_ingress_configured(9100)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert direct_ingress_configured(9100)
    assert not direct_ingress_configured(9000)
