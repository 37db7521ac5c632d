"""The whole main job (``stockray up --once``) on a small slice: real Ray, Ray Data, Feast,
Ray Tune, MLflow, Ray Serve gRPC + HTTP, called with the real client while it serves."""

import json
import urllib.request

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from features.pipeline import FEATURE_NAMES
from features.store import FeastOnlineReader
from ray_apps.cli import app
from ray_apps.train import TrainConfig
from ray_apps.up import UpConfig, main
from serving.client import PredictionClient, PredictionError
from serving.models import load_bundle
from tests.serving_fixtures import auth_headers
from training.lgbm import LgbmParams

pytestmark = pytest.mark.integration


def test_main_job_serves_true_predictions_with_explanations(settings):
    checks = {}

    def on_ready(ep):
        reader = FeastOnlineReader(str(settings.feast_dir))
        row = reader.read(["AAPL"])["AAPL"]
        x = np.array([[row[n] for n in FEATURE_NAMES]], dtype=np.float32)
        with PredictionClient(ep.grpc_target) as client:
            assert client.health() == "SERVING"
            resp = client.predict("aapl", [1, 5, 20], explain=True, top_k=len(FEATURE_NAMES))
            checks["predict"] = resp
            for p in resp.predictions:
                bundle = load_bundle(settings.models_dir / f"h{p.horizon}")
                sess = ort.InferenceSession(str(bundle.onnx_path),
                                            providers=["CPUExecutionProvider"])
                want = float(sess.run(None, {"features": x})[0].reshape(-1)[0])
                assert p.predicted_return == pytest.approx(want, abs=1e-6)
                assert p.model_name == f"stockray-lgbm-h{p.horizon}"
                assert p.model_version == "1"
                assert p.feature_timestamp.startswith("2013-03-01")
                # SHAP completeness: contributions + base value = the model's output
                total = p.base_value + sum(c.shap for c in p.contributions)
                assert total == pytest.approx(p.predicted_return, abs=1e-5)
                assert len(p.contributions) == len(FEATURE_NAMES)
                shaps = [abs(c.shap) for c in p.contributions]
                assert shaps == sorted(shaps, reverse=True)
            with pytest.raises(PredictionError) as e:
                client.predict("ZZZZ", [5])
            assert e.value.code == grpc.StatusCode.NOT_FOUND and "ZZZZ" in e.value.details
            with pytest.raises(PredictionError) as e:
                client.predict("AAPL", [3])
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "1, 5, 20" in e.value.details or "[1, 5, 20]" in e.value.details
        body = json.dumps({"ticker": "AAPL", "horizons": [5], "explain": False}).encode()
        req = urllib.request.Request(f"{ep.http_url}/v1/predict", data=body,
                                     headers={"content-type": "application/json",
                                              **auth_headers()})
        with urllib.request.urlopen(req, timeout=10) as r:
            checks["http"] = json.loads(r.read())
        out = CliRunner().invoke(app, ["predict", "AAPL", "--horizon", "5",
                                       "--target", ep.grpc_target])
        checks["cli"] = out

    cfg = UpConfig(once=True, tickers=("AAPL", "IBM", "MSFT"), start="2010-01-01",
                   train=TrainConfig(params=LgbmParams(num_boost_round=40)))
    res = main(cfg, settings, on_ready=on_ready)

    assert res.ingest["rows_quarantined"] == 0 and res.ingest["rows_ok"] > 2000
    assert res.features.tickers == ["AAPL", "IBM", "MSFT"]
    for h in (1, 5, 20):
        m = res.train.metrics[h]
        assert np.isfinite(m["val_ic"]) and np.isfinite(m["baseline_momentum_ic"])
        assert m["baseline_zero_rmse"] > 0
    h5 = next(p for p in checks["predict"].predictions if p.horizon == 5)
    http_h5 = checks["http"]["predictions"][0]
    assert http_h5["predicted_return"] == pytest.approx(h5.predicted_return, abs=1e-9)
    assert checks["cli"].exit_code == 0, checks["cli"].output
    assert "stockray-lgbm-h5" in checks["cli"].output

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    mv = client.get_model_version_by_alias("stockray-lgbm-h5", "champion")
    assert str(mv.version) == "1"
    assert list(settings.data_dir.iterdir())  # everything under the private data dir
