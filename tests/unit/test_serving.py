"""serving stages, PredictionService and the gRPC error mapping (bare grpcio, no Ray)."""

from __future__ import annotations

import asyncio
import math

import grpc
import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pytest

from serving.client import PredictionClient, PredictionError, format_response
from serving.errors import (
    FeaturesUnavailableError,
    InvalidRequestError,
    UnknownTickerError,
    status_of,
    unwrap_serving_error,
)
from serving.explainer import Explainer
from serving.grpc_server import BackgroundServer
from serving.lookup import FeatureLookup
from serving.models import ModelSource, resolve_bundles
from serving.protos import stockray_pb2 as pb
from serving.readers import build_reader
from serving.scorer import Scorer, feature_vector
from serving.service import LocalStages, PredictionService, iso_utc, validate_request
from tests.serving_fixtures import (
    FEATURE_TS,
    FEATURES,
    BrokenReader,
    FakeReader,
    make_bundles,
    served_models,
    synthetic_rows,
)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("bundles"), horizons=(1, 5))


@pytest.fixture(scope="module")
def bundles(dirs):
    return resolve_bundles(ModelSource(bundle_dirs=dirs))


@pytest.fixture(scope="module")
def served(dirs):
    return served_models(dirs)


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows()


@pytest.fixture(scope="module")
def service(served, rows):
    stages = LocalStages(FeatureLookup(FakeReader(rows)), served)
    return PredictionService(stages)


def run(coro):
    return asyncio.run(coro)


# ---- FeatureLookup ----
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_lookup_caches_for_ttl_and_upper_cases(rows):
    reader, clock = FakeReader(rows), Clock()
    lookup = FeatureLookup(reader, ttl_s=5.0, clock=clock)
    row = lookup.get(" aapl ")
    assert row.ticker == "AAPL" and row.feature_ts == FEATURE_TS
    assert "feature_ts" not in row.values and set(row.values) == set(FEATURES)
    clock.t = 4.9
    assert lookup.get("AAPL") is row and reader.calls == 1
    clock.t = 5.1
    lookup.get("AAPL")
    assert reader.calls == 2


def test_lookup_unknown_and_empty_are_typed(rows):
    lookup = FeatureLookup(FakeReader(rows))
    with pytest.raises(UnknownTickerError, match="materialize"):
        lookup.get("ZZZZ")
    with pytest.raises(InvalidRequestError):
        lookup.get("  ")


def test_build_reader_by_import_path(rows):
    r = build_reader("tests.serving_fixtures:FakeReader", {"rows": rows})
    assert r.read(["AAPL"])["AAPL"]["feature_ts"] == FEATURE_TS
    with pytest.raises(TypeError, match="read"):
        build_reader("tests.serving_fixtures:free_port")


# ---- Scorer ----
def test_scorer_equals_onnx_and_lightgbm(bundles, rows):
    scorer = Scorer(bundles)
    assert {m.provider for m in scorer.models.values()} == {"CPUExecutionProvider"}
    assert scorer.models[5].model_name == "stockray-lgbm-h5"
    for values in rows.values():
        preds = scorer.predict(values, [1, 5])
        for h, b in bundles.items():
            x = np.array([[values[f] for f in FEATURES]], dtype=np.float32)
            sess = ort.InferenceSession(str(b.onnx_path), providers=["CPUExecutionProvider"])
            assert preds[h] == float(sess.run(None, {"features": x})[0].reshape(-1)[0])
            ref = lgb.Booster(model_file=str(b.booster_path)).predict(x.astype(np.float64))
            assert preds[h] == pytest.approx(ref[0], abs=1e-6)


def test_missing_or_nan_feature_is_failed_precondition(rows):
    values = dict(rows["AAPL"])
    values["rsi_14"] = math.nan
    del values["gap"]
    with pytest.raises(FeaturesUnavailableError, match=r"missing \['gap'\].*NaN \['rsi_14'\]"):
        feature_vector(values, FEATURES, horizon=1, ticker="AAPL")


# ---- Explainer ----
def test_shap_plus_base_sums_to_lightgbm_prediction(bundles, rows):
    explainer = Explainer(bundles, cache_size=0)
    for values in rows.values():
        full = explainer.explain(values, [1, 5], top_k=0)
        for h, e in full.items():
            assert len(e.contributions) == len(FEATURES)
            x = np.array([[values[f] for f in FEATURES]], dtype=np.float32).astype(np.float64)
            ref = lgb.Booster(model_file=str(bundles[h].booster_path)).predict(x)[0]
            total = e.base_value + sum(c.shap for c in e.contributions)
            assert total == pytest.approx(ref, rel=1e-5, abs=1e-12)
            shaps = [abs(c.shap) for c in e.contributions]
            assert shaps == sorted(shaps, reverse=True)
            assert {c.feature: c.value for c in e.contributions} == {f: values[f] for f in FEATURES}


def test_explainer_top_k_and_cache(bundles, rows):
    explainer = Explainer(bundles, cache_size=8)
    a = explainer.explain(rows["AAPL"], [5], top_k=2)[5]
    b = explainer.explain(rows["AAPL"], [5], top_k=2)[5]
    assert len(a.contributions) == 2 and a == b
    assert a.contributions[0].feature in ("ret_1d", "rsi_14")  # the planted signal


# ---- PredictionService ----
def test_validate_request():
    served = [1, 5]
    assert validate_request(pb.PredictRequest(ticker="aapl"), served) == ("AAPL", [1, 5], 5)
    assert validate_request(
        pb.PredictRequest(ticker="BRK.B", horizons=[5, 5], top_k=3), served
    ) == ("BRK.B", [5], 3)
    with pytest.raises(InvalidRequestError, match="empty"):
        validate_request(pb.PredictRequest(ticker=" "), served)
    with pytest.raises(
        InvalidRequestError, match=r"\[7\] not served; served horizons are \[1, 5\]"
    ):
        validate_request(pb.PredictRequest(ticker="AAPL", horizons=[7, 1]), served)
    with pytest.raises(InvalidRequestError, match="top_k"):
        validate_request(pb.PredictRequest(ticker="AAPL", top_k=-1), served)
    with pytest.raises(InvalidRequestError, match="not a symbol"):
        validate_request(pb.PredictRequest(ticker="A;DROP"), served)


def test_predict_builds_full_response(service, bundles, rows):
    resp = run(service.predict(pb.PredictRequest(ticker="msft", explain=True, top_k=3)))
    assert resp.ticker == "MSFT" and len(resp.request_id) == 32
    assert [p.horizon for p in resp.predictions] == [1, 5]
    scorer = Scorer(bundles)
    for p in resp.predictions:
        assert p.model_name == f"stockray-lgbm-h{p.horizon}" and p.model_version == "3"
        assert p.feature_timestamp == "2024-05-01T00:00:00Z"
        assert p.predicted_return == scorer.predict(rows["MSFT"], [p.horizon])[p.horizon]
        assert len(p.contributions) == 3
    plain = run(service.predict(pb.PredictRequest(ticker="MSFT", horizons=[5])))
    assert [p.horizon for p in plain.predictions] == [5]
    assert not plain.predictions[0].contributions and plain.request_id != resp.request_id


def test_iso_utc():
    assert iso_utc(FEATURE_TS) == "2024-05-01T00:00:00Z"
    assert iso_utc(math.nan) == ""


# ---- errors ----
def test_status_of_maps_typed_errors_and_hides_others():
    assert status_of(UnknownTickerError("x"))[:2] == (grpc.StatusCode.NOT_FOUND, "x")
    assert status_of(InvalidRequestError("y"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(FeaturesUnavailableError("z"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    code, msg, http = status_of(KeyError("secret internals"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in msg and http == 500


def test_unwrap_through_ray_style_wrapper():
    class RayTaskErrorLike(UnknownTickerError):  # what as_instanceof_cause() builds
        __module__ = "ray.exceptions"

        def __init__(self, cause):
            Exception.__init__(self, "Traceback ... long")
            self.message = "Traceback ... long"
            self.cause = cause

    inner = UnknownTickerError("no features for 'ZZ'")
    assert unwrap_serving_error(RayTaskErrorLike(inner)) is inner
    assert unwrap_serving_error(ValueError("x")) is None


# ---- bare grpcio server + real client ----
@pytest.fixture(scope="module")
def server(service):
    with BackgroundServer(service) as s:
        yield s


def test_grpc_predict_and_health(server):
    with PredictionClient(server.target) as c:
        assert c.health() == "SERVING"
        assert c.health("stockray.v1.PredictionService") == "SERVING"
        resp = c.predict("NVDA", [1], explain=True, top_k=2)
    assert resp.predictions[0].horizon == 1 and len(resp.predictions[0].contributions) == 2
    text = format_response(resp)
    assert "NVDA" in text and "stockray-lgbm-h1 v3" in text and "base value" in text


@pytest.mark.parametrize(
    ("ticker", "horizons", "code", "needle"),
    [
        ("ZZZZ", [], grpc.StatusCode.NOT_FOUND, "materialize"),
        ("", [], grpc.StatusCode.INVALID_ARGUMENT, "ticker is empty"),
        ("AAPL", [20], grpc.StatusCode.INVALID_ARGUMENT, "served horizons are [1, 5]"),
    ],
)
def test_grpc_error_codes_reach_client(server, ticker, horizons, code, needle):
    with PredictionClient(server.target) as c, pytest.raises(PredictionError) as ei:
        c.predict(ticker, horizons)
    assert ei.value.code == code and needle in ei.value.details
    assert code.name in str(ei.value)


def test_grpc_failed_precondition_for_nan_features(served, rows):
    bad = {"GAPPY": {**rows["AAPL"], "vol_20d": math.nan}}
    svc = PredictionService(
        LocalStages(FeatureLookup(FakeReader(bad)), served)
    )
    with (
        BackgroundServer(svc) as s,
        PredictionClient(s.target) as c,
        pytest.raises(PredictionError) as ei,
    ):
        c.predict("GAPPY")
    assert ei.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "vol_20d" in ei.value.details and "materialize" in ei.value.details


def test_grpc_store_failure_is_unavailable_and_hides_details(served):
    svc = PredictionService(
        LocalStages(FeatureLookup(BrokenReader()), served)
    )
    with BackgroundServer(svc) as s, PredictionClient(s.target) as c:
        assert c.health("stockray.v1.FeatureStore") == "SERVING"  # no read has failed yet
        with pytest.raises(PredictionError) as ei:
            c.predict("AAPL")
        # the store's health service follows the failed read; the server as a whole does not
        assert c.health("stockray.v1.FeatureStore") == "NOT_SERVING"
        assert c.health("") == "SERVING"
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    assert "RuntimeError" in ei.value.details and "secret" not in ei.value.details
    assert "retry" in ei.value.details


def test_grpc_reflection_lists_services(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
    names = {s.name for s in resp.list_services_response.service}
    assert {"stockray.v1.PredictionService", "grpc.health.v1.Health"} <= names


def test_grpc_server_command_line():
    from serving.grpc_server import parse_args

    cfg, host, port = parse_args(
        [
            "--bundle",
            "1=/b1",
            "--bundle",
            "5=/b5",
            "--reader-kwarg",
            "repo_path=/r",
            "--port",
            "9100",
        ]
    )
    assert cfg.models.bundle_dirs == {1: "/b1", 5: "/b5"} and (host, port) == ("127.0.0.1", 9100)
    assert cfg.reader == "features.store:FeastOnlineReader"
    assert cfg.reader_kwargs == {"repo_path": "/r"}
    cfg, _, _ = parse_args(["--tracking-uri", "sqlite:///m.db", "--horizons", "5,20"])
    assert cfg.models.horizons == [5, 20]
    with pytest.raises(SystemExit):
        parse_args([])


def test_serving_imports_no_training_code_or_ray():
    import subprocess
    import sys

    code = (
        "import sys, serving.service, serving.grpc_server, serving.client, serving.models\n"
        "bad = [m for m in ('onnxmltools', 'ray', 'mlflow', 'training.lgbm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
