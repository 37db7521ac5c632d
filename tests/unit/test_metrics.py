"""Serving metrics: one RPC records its status, latency and each served (ticker, horizon); the
cache counts hits and misses; shadow scoring records agreement. No Ray: a recording backend."""

import asyncio

import pytest

from features.telemetry import SERIES, Recorder, exported_names, record_pipeline
from serving.errors import ServingError
from serving.lookup import FeatureLookup
from serving.metrics import ServingMetrics
from serving.protos import stockray_pb2 as pb
from serving.service import LocalStages, PredictionService, ServicePolicy
from tests.serving_fixtures import FakeReader, make_bundles, served_models, synthetic_rows


class Recording(Recorder):
    def __init__(self):
        self.enabled = True
        self.calls = []

    def record(self, name, value, tags=None):
        assert name in SERIES and set(tags or {}) <= set(SERIES[name].tags), (name, tags)
        self.calls.append((name, value, dict(tags or {})))

    def of(self, name):
        return [(v, t) for n, v, t in self.calls if n == name]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("b")
    return make_bundles(root / "champ"), make_bundles(root / "chal", version="4", seed=1)


def _service(dirs, rec, **policy):
    champ, chal = dirs
    m = ServingMetrics(rec)
    lookup = FeatureLookup(FakeReader(synthetic_rows()), metrics=m)
    stages = LocalStages(lookup, served_models(champ, chal))
    return PredictionService(stages, ServicePolicy(**policy), metrics=m,
                             clock=lambda: 1_714_521_600.0 + 3600)


def test_predict_records_request_forecasts_and_cache(dirs):
    rec = Recording()
    svc = _service(dirs, rec)
    asyncio.run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[1, 5], explain=True)))
    asyncio.run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[5])))
    assert rec.of("stockray_requests") == [(1, {"rpc": "Predict", "code": "OK"})] * 2
    assert len(rec.of("stockray_request_latency_ms")) == 2
    preds = rec.of("stockray_predictions")
    assert [t["horizon"] for _, t in preds] == ["1", "5", "5"]
    assert preds[0][1] == {"model": "stockray-lgbm-h1", "horizon": "1", "alias": "champion"}
    assert [t for _, t in rec.of("stockray_feature_age_s")] == [{}, {}]  # once per request
    assert rec.of("stockray_feature_age_s")[0][0] == pytest.approx(3600.0)
    assert len(rec.of("stockray_explain_latency_ms")) == 1  # only the explained request
    assert rec.of("stockray_feature_cache") == [(1, {"result": "miss"}),
                                                (1, {"result": "hit"})]


def test_errors_are_counted_by_code(dirs):
    rec = Recording()
    svc = _service(dirs, rec)
    with pytest.raises(ServingError):
        asyncio.run(svc.predict(pb.PredictRequest(ticker="ZZZZ", horizons=[5])))
    with pytest.raises(ServingError):
        asyncio.run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[7])))
    codes = [t["code"] for _, t in rec.of("stockray_requests")]
    assert codes == ["NOT_FOUND", "INVALID_ARGUMENT"]
    assert rec.of("stockray_predictions") == []


def test_shadow_agreement(dirs):
    rec = Recording()
    svc = _service(dirs, rec, shadow=True)
    asyncio.run(svc.predict_batch(pb.PredictBatchRequest(tickers=["AAPL", "MSFT"],
                                                         horizons=[5])))
    comp = rec.of("stockray_shadow_comparisons")
    assert len(comp) == 2 and {t["agree"] for _, t in comp} <= {"yes", "no"}
    assert all(v >= 0 for v, _ in rec.of("stockray_shadow_abs_diff"))


def test_disabled_without_ray_and_names():
    assert not Recorder().enabled  # Ray is not connected in unit tests: nothing is recorded
    assert not record_pipeline("stockray_training_s", 1.0, family="lgbm")
    assert exported_names("stockray_requests") == ("ray_stockray_requests_total",)
    assert exported_names("stockray_request_latency_ms")[0] == \
        "ray_stockray_request_latency_ms_bucket"
    assert exported_names("stockray_training_s") == ("ray_stockray_training_s",)
    with pytest.raises(ValueError, match="gauge"):
        record_pipeline("stockray_requests", 1.0)
