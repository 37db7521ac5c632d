"""The Serve app on a real local Ray: fused and split modes, gRPC on the public port (direct
ingress), through Serve's proxy, health, reflection, HTTP, and typed error codes; plus model
discovery through a real sqlite-backed MLflow registry.

Ray runs in its own temp dir with ``address="local"`` (never joins another engineer's cluster)
and free ports chosen at runtime.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest

from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.launch import serve_env, start_serve
from serving.models import ModelSource, resolve_bundles
from serving.scorer import Scorer
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import (
    FEATURES,
    auth_headers,
    free_port,
    make_bundles,
    synthetic_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle_dirs(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("bundles"), horizons=(1, 5))


@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray with serve_env() in its environment (set before ray.init)."""
    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    with private_ray(serve_env(ports["grpc"]), prefix="srs-it-"):
        yield ports


@pytest.fixture(scope="module", params=["fused", "split"])
def app(request, ray_cluster, bundle_dirs):
    from ray import serve

    ports = ray_cluster
    args = AppArgs(
        mode=request.param,
        models=ModelSource(bundle_dirs=bundle_dirs),
        reader="tests.serving_fixtures:FakeReader",
        reader_kwargs={"rows": {**synthetic_rows(), "GAPPY": {"ret_1d": 0.1}}},
    )
    ep = start_serve(
        args,
        ports["grpc"],
        ports["http"],
        "127.0.0.1",
        proxy_grpc_port=ports["pgrpc"],
        timeout_s=90,
    )
    yield ep
    # Delete the app (its ingress replica frees the public port) but keep Serve running: the
    # next mode's ingress re-binds the same public gRPC port.
    serve.delete(args.app_name)


def test_public_port_is_the_ingress_replica(app, ray_cluster):
    assert app.direct_ingress
    assert app.grpc_target == f"127.0.0.1:{ray_cluster['grpc']}"
    assert app.proxy_grpc_target == f"127.0.0.1:{ray_cluster['pgrpc']}"


def test_grpc_predict_with_explain_and_health(app, bundle_dirs):
    rows = synthetic_rows()
    scorer = Scorer(resolve_bundles(ModelSource(bundle_dirs=bundle_dirs)))
    for target in (app.grpc_target, app.proxy_grpc_target):
        with PredictionClient(target) as c:
            assert c.health() == "SERVING"
            # fused: the local lookup; split: through the ingress to a FeatureLookup replica
            assert c.health("stockray.v1.FeatureStore") == "SERVING"
            resp = c.predict("aapl", explain=True, top_k=3)
        assert resp.ticker == "AAPL" and [p.horizon for p in resp.predictions] == [1, 5]
        want = scorer.predict(rows["AAPL"], [1, 5])
        for p in resp.predictions:
            assert p.predicted_return == want[p.horizon]
            assert p.model_name == f"stockray-lgbm-h{p.horizon}" and p.model_version == "3"
            assert p.feature_timestamp == "2024-05-01T00:00:00Z"
            assert len(p.contributions) == 3 and p.contributions[0].feature in FEATURES


@pytest.mark.parametrize(
    ("ticker", "horizons", "code", "needle"),
    [
        ("ZZZZ", [], grpc.StatusCode.NOT_FOUND, "no features for ticker 'ZZZZ'"),
        ("", [], grpc.StatusCode.INVALID_ARGUMENT, "ticker is empty"),
        ("AAPL", [20], grpc.StatusCode.INVALID_ARGUMENT, "served horizons are [1, 5]"),
        ("GAPPY", [5], grpc.StatusCode.FAILED_PRECONDITION, "run materialize"),
    ],
)
def test_grpc_error_codes_through_serve(app, ticker, horizons, code, needle):
    for target in (app.grpc_target, app.proxy_grpc_target):
        with PredictionClient(target) as c, pytest.raises(PredictionError) as ei:
            c.predict(ticker, horizons)
        assert ei.value.code == code, target
        assert needle in ei.value.details


def test_reflection_on_public_port(app):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(app.grpc_target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=10)))
    names = {s.name for s in resp.list_services_response.service}
    assert "stockray.v1.PredictionService" in names


def _post(url, body, headers=None):
    headers = auth_headers() if headers is None else headers
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json",
                                                      **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_predict_healthz_and_errors(app):
    status, body = _post(f"{app.http_url}/v1/predict", {"ticker": "MSFT", "explain": True})
    assert status == 200 and body["ticker"] == "MSFT"
    assert [p["horizon"] for p in body["predictions"]] == [1, 5]
    assert len(body["predictions"][0]["contributions"]) == 5
    status, body = _post(f"{app.http_url}/v1/predict", {"ticker": "ZZZZ"})
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = _post(f"{app.http_url}/v1/predict", {"ticker": "MSFT", "horizons": [3]})
    assert status == 400 and "served horizons are [1, 5]" in body["error"]["message"]
    with urllib.request.urlopen(f"{app.http_url}/healthz", timeout=10) as r:
        health = json.loads(r.read())
    assert health["status"] == "SERVING" and health["models"]["5"]["version"] == "3"
    assert health["feature_store"]["ok"] is True  # fused: local lookup; split: its replica


def test_mlflow_champion_alias_resolves_and_overrides_version(bundle_dirs, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    (tmp_path / "mlflow").mkdir()
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("serving-test", artifact_location=(tmp_path / "art").as_uri())
    for h in (1, 5):
        run = client.create_run(exp)
        client.log_artifacts(run.info.run_id, bundle_dirs[h], artifact_path="bundle")
        client.set_terminated(run.info.run_id)
        name = f"stockray-lgbm-h{h}"
        client.create_registered_model(name)
        for _ in range(2):  # champion is version 2, not the bundle's "3"
            mv = client.create_model_version(
                name, source=f"runs:/{run.info.run_id}/bundle", run_id=run.info.run_id
            )
        client.set_registered_model_alias(name, "champion", mv.version)

    src = ModelSource(tracking_uri=uri, horizons=[5, 1], download_dir=str(tmp_path / "dl"))
    got = resolve_bundles(src)
    assert list(got) == [1, 5]
    assert got[5].model_name == "stockray-lgbm-h5" and got[5].model_version == "2"
    assert got[5].feature_names == FEATURES
    assert str(got[5].path).startswith(str(tmp_path / "dl"))

    with pytest.raises(LookupError, match="stockray-lgbm-h20@champion"):
        resolve_bundles(ModelSource(tracking_uri=uri, horizons=[20]))


def test_contract_v1_rpcs_through_serve(app):
    """PredictBatch, Explain, ListModels, as_of and intervals via the public port and HTTP."""
    with PredictionClient(app.grpc_target) as c:
        b = c.predict_batch(["AAPL", "ZZZZ", "msft"], [5], explain=True, top_k=2)
        assert [r.WhichOneof("result") for r in b.results] == ["prediction", "error", "prediction"]
        assert b.results[1].error.code == "NOT_FOUND"
        p = b.results[0].prediction.predictions[0]
        assert p.HasField("interval") and p.interval.lower < p.predicted_return < p.interval.upper
        assert 0 < p.prob_up < 1 and p.stale and p.feature_age_s > 0  # 2024 fixture rows
        e = c.explain("NVDA", [1])
        assert len(e.explanations[0].contributions) == len(FEATURES)
        total = e.explanations[0].base_value + sum(x.shap for x in e.explanations[0].contributions)
        assert total == pytest.approx(e.explanations[0].predicted_return, abs=1e-5)
        m = c.list_models()
        assert list(m.horizons) == [1, 5] and list(m.aliases) == ["champion"]
        assert list(m.models[0].feature_names) == list(FEATURES)
        with pytest.raises(PredictionError) as ei:
            c.predict("AAPL", as_of="2024-04-01")
        assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "offline" in ei.value.details
        with pytest.raises(PredictionError) as ei:
            c.predict("AAPL", model_alias="challenger")
        assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
    models = urllib.request.Request(f"{app.http_url}/v1/models", headers=auth_headers())
    with urllib.request.urlopen(models, timeout=10) as r:
        assert json.loads(r.read())["aliases"] == ["champion"]
    status, body = _post(f"{app.http_url}/v1/predict_batch", {"tickers": ["AAPL", "ZZZZ"]})
    assert status == 200 and body["results"][1]["error"]["code"] == "NOT_FOUND"
