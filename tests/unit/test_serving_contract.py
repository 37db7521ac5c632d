"""Contract v1 (issue 6): as_of, model alias, P(up), conformal intervals, staleness, PredictBatch,
Explain, ListModels, input limits, explanation cache, hot swap, canary/shadow, audit log.
No Ray: the service runs in-process and behind the bare grpcio server."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import lightgbm as lgb
import numpy as np
import pytest

from serving.audit import AuditLog, read_audit
from serving.auth import client_token
from serving.calibration import Calibration
from serving.client import PredictionClient, PredictionError, format_batch
from serving.errors import OVERLOAD_HINT, InvalidRequestError, StaleFeaturesError, status_of
from serving.explainer import Explainer
from serving.grpc_server import BackgroundServer
from serving.lookup import FeatureLookup
from serving.models import ModelSource, resolve_bundles
from serving.protos import stockray_pb2 as pb
from serving.service import LocalStages, PredictionService, ServicePolicy
from tests.serving_fixtures import (
    FEATURE_TS,
    FEATURES,
    FakeReader,
    make_bundles,
    served_models,
    synthetic_rows,
)
from training.export import residual_calibration

NOW = FEATURE_TS + 3600.0  # one hour after the features: fresh


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("champ"), horizons=(1, 5))


@pytest.fixture(scope="module")
def challenger_dirs(tmp_path_factory):
    # a different model (seed) for horizon 5 only, version 4
    return make_bundles(tmp_path_factory.mktemp("chall"), horizons=(5,), version="4", seed=11)


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows()


def make_service(dirs, rows, challenger=None, audit=None, **policy):
    served = served_models(dirs, challenger)
    stages = LocalStages(FeatureLookup(FakeReader(rows)), served)
    return PredictionService(
        stages, ServicePolicy(**policy), audit=audit, clock=lambda: NOW, rng=_Seq()
    )


class _Seq:
    """Deterministic 'random' numbers 0.05, 0.15, ... for the canary split."""

    def __init__(self):
        self.i = 0

    def __call__(self):
        self.i += 1
        return ((self.i - 1) % 10) / 10 + 0.05


# ---- calibration: P(up) and split-conformal intervals ----
def test_residual_calibration_is_finite_sample_split_conformal():
    r = np.arange(1, 101, dtype=float) * np.where(np.arange(100) % 2, 1, -1)  # |r| = 1..100
    cal = residual_calibration(r)
    # ceil((100 + 1) * 0.8) = 81st smallest |r|
    assert cal["val_conformal_q80"] == 81.0 and cal["val_conformal_q90"] == 91.0
    assert cal["val_resid_n"] == 100.0
    assert residual_calibration(np.ones(5)) == {}  # too few rows: no calibration, no fake


def test_interval_covers_fresh_labels_at_its_nominal_rate(dirs):
    b = resolve_bundles(ModelSource(bundle_dirs=dirs))[5]
    cal = Calibration.from_meta(b.meta)
    assert cal is not None
    booster = lgb.Booster(model_file=str(b.booster_path))
    rng = np.random.default_rng(12345)
    x = rng.standard_normal((4000, len(FEATURES)))
    y = 0.05 * (0.8 * x[:, 0] - 0.5 * np.tanh(x[:, 2])) + 0.002 * rng.standard_normal(4000)
    pred = booster.predict(x, num_threads=1)
    lo, hi, cov = np.vectorize(lambda p: cal.interval(p, 0.8))(pred)
    assert cov[0] == 0.8
    assert 0.75 <= np.mean((y >= lo) & (y <= hi)) <= 0.9
    pu = np.vectorize(cal.prob_up)(pred)
    # calibrated direction: among P(up) > 0.7 most labels are positive, and vice versa
    assert np.mean(y[pu > 0.7] > 0) > 0.7 and np.mean(y[pu < 0.3] > 0) < 0.3


def test_predict_carries_prob_up_interval_age_and_alias(dirs, rows):
    svc = make_service(dirs, rows)
    resp = run(svc.predict(pb.PredictRequest(ticker="AAPL")))
    for p in resp.predictions:
        assert p.HasField("prob_up") and 0 < p.prob_up < 1
        assert p.interval.lower < p.predicted_return < p.interval.upper
        assert p.interval.coverage == 0.8
        assert p.feature_age_s == pytest.approx(3600.0) and not p.stale
        assert p.model_alias == "champion"


def test_uncalibrated_bundle_serves_no_interval(tmp_path, rows):
    d = make_bundles(tmp_path, horizons=(1,), calibrated=False)
    resp = run(make_service(d, rows).predict(pb.PredictRequest(ticker="AAPL")))
    p = resp.predictions[0]
    assert not p.HasField("prob_up") and not p.HasField("interval")


# ---- as_of and staleness ----
def test_as_of(dirs, rows):
    svc = make_service(dirs, rows)
    ok = run(svc.predict(pb.PredictRequest(ticker="AAPL", as_of="2024-05-01T00:30:00Z")))
    assert ok.predictions[0].feature_age_s == pytest.approx(1800.0)
    for as_of, needle in [
        ("2024-04-30", "online store keeps only the latest row"),
        ("2999-01-01", "in the future"),
        ("yesterday", "not an ISO 8601 time"),
        ("NaN", "not an ISO 8601 time"),
    ]:
        with pytest.raises(InvalidRequestError, match=needle):
            run(svc.predict(pb.PredictRequest(ticker="AAPL", as_of=as_of)))


def test_staleness_flag_or_refusal(dirs, rows):
    flag = make_service(dirs, rows, max_feature_age_s=600.0)
    p = run(flag.predict(pb.PredictRequest(ticker="AAPL"))).predictions[0]
    assert p.stale and p.feature_age_s == pytest.approx(3600.0)
    refuse = make_service(dirs, rows, max_feature_age_s=600.0, reject_stale=True)
    with pytest.raises(StaleFeaturesError, match="run materialize") as ei:
        run(refuse.predict(pb.PredictRequest(ticker="AAPL")))
    assert status_of(ei.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


# ---- input limits ----
def test_oversized_input_is_invalid_argument(dirs, rows):
    svc = make_service(dirs, rows, max_horizons=2, max_batch_tickers=3)
    with pytest.raises(InvalidRequestError, match="at most 2 per request"):
        run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[1, 5, 1])))
    with pytest.raises(InvalidRequestError, match="at most 32"):
        run(svc.predict(pb.PredictRequest(ticker="A" * 33)))
    with pytest.raises(InvalidRequestError, match="limit is 3: split the request"):
        run(svc.predict_batch(pb.PredictBatchRequest(tickers=["AAPL"] * 4)))
    with pytest.raises(InvalidRequestError, match="tickers is empty"):
        run(svc.predict_batch(pb.PredictBatchRequest()))


# ---- PredictBatch ----
def test_predict_batch_reports_errors_per_ticker(dirs, rows):
    svc = make_service(dirs, rows)
    req = pb.PredictBatchRequest(
        tickers=["aapl", "ZZZZ", "MSFT", "", "A;B", "AAPL"], explain=True, top_k=2
    )
    resp = run(svc.predict_batch(req))
    kinds = [r.WhichOneof("result") for r in resp.results]
    assert kinds == ["prediction", "error", "prediction", "error", "error", "prediction"]
    assert (
        resp.results[1].error.code == "NOT_FOUND" and "materialize" in resp.results[1].error.message
    )
    assert resp.results[3].error.code == "INVALID_ARGUMENT"
    single = run(svc.predict(pb.PredictRequest(ticker="MSFT", explain=True, top_k=2)))
    got = resp.results[2].prediction
    for a, b in zip(got.predictions, single.predictions, strict=True):
        assert a.predicted_return == pytest.approx(b.predicted_return, abs=1e-7)
        assert [c.feature for c in a.contributions] == [c.feature for c in b.contributions]
        assert a.contributions[0].shap == pytest.approx(b.contributions[0].shap, abs=1e-12)
    assert "ZZZZ  NOT_FOUND" in format_batch(resp)


# ---- Explain and ListModels ----
def test_explain_returns_every_feature_and_sums_to_prediction(dirs, rows):
    svc = make_service(dirs, rows)
    resp = run(svc.explain(pb.ExplainRequest(ticker="NVDA")))
    assert [e.horizon for e in resp.explanations] == [1, 5]
    for e in resp.explanations:
        assert {c.feature for c in e.contributions} == set(FEATURES)
        total = e.base_value + sum(c.shap for c in e.contributions)
        assert total == pytest.approx(e.predicted_return, abs=1e-5)


def test_list_models(dirs, challenger_dirs, rows):
    svc = make_service(dirs, rows, challenger=challenger_dirs)
    resp = run(svc.list_models())
    assert list(resp.horizons) == [1, 5] and list(resp.aliases) == ["challenger", "champion"]
    got = {(m.alias, m.horizon): m for m in resp.models}
    assert set(got) == {("champion", 1), ("champion", 5), ("challenger", 5)}
    assert got[("challenger", 5)].model_version == "4"
    assert list(got[("champion", 1)].feature_names) == list(FEATURES)
    assert got[("champion", 1)].calibrated and got[("champion", 1)].interval_coverage == 0.8


# ---- aliases, canary, shadow, audit ----
def test_model_alias_and_canary_and_shadow(dirs, challenger_dirs, rows, tmp_path):
    svc = make_service(dirs, rows, challenger=challenger_dirs)
    p = run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[5], model_alias="challenger")))
    assert p.predictions[0].model_version == "4" and p.predictions[0].model_alias == "challenger"
    with pytest.raises(InvalidRequestError, match="served horizons are \\[5\\]"):
        run(svc.predict(pb.PredictRequest(ticker="AAPL", horizons=[1], model_alias="challenger")))
    with pytest.raises(InvalidRequestError, match="served aliases are"):
        run(svc.predict(pb.PredictRequest(ticker="AAPL", model_alias="staging")))

    canary = make_service(dirs, rows, challenger=challenger_dirs, canary_weight=0.3)
    versions = [
        run(canary.predict(pb.PredictRequest(ticker="AAPL", horizons=[5]))).predictions[0]
        for _ in range(20)
    ]
    assert sum(v.model_alias == "challenger" for v in versions) == 6  # 0.05, 0.15, 0.25 of 10
    # a request the challenger cannot answer (horizon 1) always goes to the champion
    assert all(
        run(canary.predict(pb.PredictRequest(ticker="AAPL"))).predictions[0].model_alias
        == "champion"
        for _ in range(10)
    )

    audit = AuditLog(tmp_path / "audit", fsync_every_s=0)
    shadow = make_service(dirs, rows, challenger=challenger_dirs, shadow=True, audit=audit)
    resp = run(shadow.predict(pb.PredictRequest(ticker="AAPL", horizons=[5])))
    assert resp.predictions[0].model_alias == "champion"
    with pytest.raises(InvalidRequestError):
        run(shadow.predict(pb.PredictRequest(ticker="")))
    recs, bad = read_audit(tmp_path / "audit")
    assert bad == 0 and len(recs) == 2
    ok, err = recs
    assert ok["request_id"] == resp.request_id and ok["request"]["ticker"] == "AAPL"
    row = ok["rows"][0]
    assert row["h"]["5"]["model"] == "champion:stockray-lgbm-h5:3"
    assert row["shadow"]["5"]["model"] == "challenger:stockray-lgbm-h5:4"
    assert row["h"]["5"]["pred"] == resp.predictions[0].predicted_return
    assert len(row["features_sha256"]) == 32 and ok["latency_ms"] > 0
    assert err["error"]["code"] == "INVALID_ARGUMENT"


# ---- explanation cache ----
def test_warm_cache_equals_fresh_computation(dirs, rows):
    bundles = resolve_bundles(ModelSource(bundle_dirs=dirs))
    lookup = FeatureLookup(FakeReader(rows))
    served = served_models(dirs, warm_rows=lambda: lookup.rows(list(rows)))
    ex = served.sets["champion"].explainer
    assert len(ex._cache) == len(rows) * 2  # one batch call per horizon at load
    fresh = Explainer(bundles, cache_size=0)
    before = ex.misses
    for t, values in rows.items():
        got = ex.explain(values, [1, 5], top_k=0)
        want = fresh.explain(values, [1, 5], top_k=0)
        for h in (1, 5):
            assert got[h].base_value == pytest.approx(want[h].base_value, abs=1e-12)
            g = {c.feature: c.shap for c in got[h].contributions}
            w = {c.feature: c.shap for c in want[h].contributions}
            assert g.keys() == w.keys()
            assert all(g[f] == pytest.approx(w[f], abs=1e-12) for f in g), t
    assert ex.misses == before  # every request was served from the cache
    changed = {**rows["AAPL"], "ret_1d": 0.123}
    ex.explain(changed, [1], top_k=0)
    assert ex.misses == before + 1  # changed features: computed on demand


# ---- hot swap ----
def test_hot_swap_under_concurrent_requests_fails_nothing(tmp_path, rows):
    d = make_bundles(tmp_path / "b", horizons=(1, 5), version="3")
    served = served_models(d)
    svc = PredictionService(LocalStages(FeatureLookup(FakeReader(rows)), served), clock=lambda: NOW)
    errors, versions, stop = [], set(), threading.Event()

    def load():
        while not stop.is_set():
            try:
                r = asyncio.run(svc.predict(pb.PredictRequest(ticker="AAPL", explain=True)))
                vs = {p.model_version for p in r.predictions}
                assert len(vs) == 1  # one model set per request, never a mix
                versions.add(vs.pop())
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert served.refresh() == []  # nothing changed
    make_bundles(tmp_path / "b", horizons=(1, 5), version="7", seed=5)  # promote
    assert served.refresh() == ["champion"]
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and versions == {"3", "7"}
    assert run(svc.predict(pb.PredictRequest(ticker="AAPL"))).predictions[0].model_version == "7"


# ---- audit log survives a killed writer ----
WRITER = """
import sys, time
from serving.audit import AuditLog
log = AuditLog(sys.argv[1], fsync_every_s=1.0)
i = 0
while True:
    log.append({"i": i, "pad": "x" * 2000})
    i += 1
    if i == 200:
        print("ready", flush=True)
    time.sleep(0.0002)  # keep the file small: the kill lands mid-stream either way
"""


def test_audit_log_killed_writer_leaves_readable_lines(tmp_path):
    d = tmp_path / "audit"
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(d)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(0.1)
        os.kill(p.pid, signal.SIGKILL)  # mid-stream, no flush, no close
    finally:
        p.wait(10)
    recs, bad = read_audit(d)
    assert len(recs) >= 200 and bad == 0
    assert [r["i"] for r in recs] == list(range(len(recs)))
    # a torn tail (power loss mid-write) is skipped, never a crash
    path = next(d.glob("*.jsonl"))
    with open(path, "ab") as f:
        f.write(b'{"i": 999999, "pad": "xx')
    recs2, bad2 = read_audit(d)
    assert recs2 == recs and bad2 == 1
    # and a writer restarted after the crash (new pid, new file) loses nothing
    AuditLog(d).append({"i": -1})
    recs3, bad3 = read_audit(d)
    assert bad3 == 1 and sorted(r["i"] for r in recs3) == [-1, *range(len(recs))]


# ---- overload mapping ----
def test_backpressure_maps_to_resource_exhausted_with_retry_advice():
    class BackPressureError(Exception):  # same name as ray.serve.exceptions.BackPressureError
        pass

    code, msg, http = status_of(RuntimeError("wrapped") if False else BackPressureError("q"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and http == 503
    assert msg == OVERLOAD_HINT and "backoff" in msg


# ---- the new RPCs over real gRPC ----
def test_new_rpcs_over_grpc(dirs, challenger_dirs, rows):
    svc = make_service(dirs, rows, challenger=challenger_dirs)
    with BackgroundServer(svc) as s, PredictionClient(s.target) as c:
        b = c.predict_batch(["AAPL", "ZZZZ"], [5])
        assert b.results[0].prediction.predictions[0].HasField("interval")
        assert b.results[1].error.code == "NOT_FOUND"
        e = c.explain("MSFT", [1])
        assert len(e.explanations[0].contributions) == len(FEATURES)
        m = c.list_models()
        assert "challenger" in m.aliases
        p = c.predict("AAPL", [5], model_alias="challenger", as_of="2024-05-01T00:10:00")
        assert p.predictions[0].model_version == "4"
        with pytest.raises(PredictionError) as ei:
            c.predict("AAPL", as_of="2020-01-01")
        assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(PredictionError) as ei:
            c.predict_batch(["X"] * 300)
        assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert not math.isnan(p.predictions[0].prob_up)


def test_fuzzed_requests_never_break_the_server(dirs, rows):
    """Random bytes and random field values: every call gets a status, the server lives."""
    svc = make_service(dirs, rows)
    rng = np.random.default_rng(0)
    codes: dict[str, set[str]] = {"bytes": set(), "fields": set()}
    with BackgroundServer(svc) as s, grpc.insecure_channel(s.target) as ch:
        methods = {
            n: ch.unary_unary(
                f"/stockray.v1.PredictionService/{n}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            for n in ("Predict", "PredictBatch", "Explain", "ListModels")
        }
        md = (("authorization", f"Bearer {client_token()}"),)
        for i in range(300):
            name = list(methods)[i % 4]
            kind = "bytes" if i % 2 else "fields"
            if kind == "bytes":
                body = rng.bytes(int(rng.integers(0, 64)))
            else:
                body = _random_request(name, rng).SerializeToString()
            try:
                methods[name](body, timeout=5, metadata=md)
                codes[kind].add("OK")
            except grpc.RpcError as e:
                codes[kind].add(e.code().name)
        # well-formed messages with random values: only typed caller errors, never INTERNAL
        assert codes["fields"] <= {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}
        # undecodable bytes: grpcio's deserializer answers before our code runs
        assert codes["bytes"] <= {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNKNOWN"}
        with PredictionClient(s.target) as c:
            assert c.predict("AAPL").predictions  # still serving


def _random_request(name, rng):
    def s():
        n = int(rng.integers(0, 40))
        return "".join(chr(int(c)) for c in rng.integers(1, 0x2FF, n))

    hs = [int(h) for h in rng.integers(-(2**31), 2**31 - 1, int(rng.integers(0, 5)))]
    if rng.random() < 0.5:
        hs = [int(h) for h in rng.choice([1, 5, 20, 0, -1], int(rng.integers(0, 4)))]
    if name == "Predict":
        return pb.PredictRequest(
            ticker=s(),
            horizons=hs,
            explain=bool(rng.random() < 0.5),
            top_k=int(rng.integers(-5, 200)),
            as_of=s(),
            model_alias=s(),
        )
    if name == "PredictBatch":
        return pb.PredictBatchRequest(
            tickers=[s() for _ in range(int(rng.integers(0, 5)))],
            horizons=hs,
            explain=True,
            as_of=s(),
        )
    if name == "Explain":
        return pb.ExplainRequest(ticker=s(), horizons=hs, model_alias=s())
    return pb.ListModelsRequest()


def test_cli_predict_batch(dirs, rows):
    from typer.testing import CliRunner

    from ray_apps.cli import app

    svc = make_service(dirs, rows)
    with BackgroundServer(svc) as s:
        ok = CliRunner().invoke(
            app, ["predict-batch", "AAPL,MSFT", "--horizon", "5", "--target", s.target]
        )
        bad = CliRunner().invoke(
            app, ["predict-batch", "AAPL,ZZZZ", "--target", s.target, "--json"]
        )
    assert ok.exit_code == 0, ok.output
    assert "AAPL" in ok.output and "MSFT" in ok.output and "stockray-lgbm-h5 v3" in ok.output
    assert (
        bad.exit_code == 1 and json.loads(bad.output)["results"][1]["error"]["code"] == "NOT_FOUND"
    )
