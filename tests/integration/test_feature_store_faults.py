"""Fault suite: the online feature store (Feast on a real ``redis-server`` child) hangs
(SIGSTOP), dies and comes back, while a real gRPC server answers Predict.

Reads have a deadline; a ticker read before is served from its last good row flagged stale,
an unseen ticker gets UNAVAILABLE with advice; ``store_health`` (what ``/healthz`` reports)
says the store is down, the gRPC health service ``stockray.v1.FeatureStore`` answers
NOT_SERVING (checked with a real grpc.health.v1 client) while ``""`` stays SERVING, and
everything recovers when the store answers again."""

import os
import signal
import time

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from features.redis_server import RedisServer, redis_binary
from features.sources import MARKET_TICKER
from features.store import FeastOnlineReader, apply_repo, materialize, write_offline
from serving.client import PredictionClient, PredictionError
from serving.grpc_server import BackgroundServer
from serving.lookup import FeatureLookup
from serving.service import LocalStages, PredictionService, ServicePolicy
from tests.conftest import free_port
from tests.serving_fixtures import served_models
from tests.unit.test_pipeline import synthetic_bars

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(redis_binary() is None, reason="redis-server not on PATH")]

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from features.pipeline import build_features_local

    tmp = tmp_path_factory.mktemp("faults")
    bars = pd.concat([synthetic_bars("AAA", n=80, start="2010-01-01"),
                      synthetic_bars("BBB", n=80, seed=3, start="2010-01-01"),
                      synthetic_bars(MARKET_TICKER, n=80, seed=2, start="2010-01-01")])
    frame = build_features_local(bars)
    write_offline(frame, tmp / "offline", partitioned=False)
    port = free_port()
    redis = RedisServer(port, workdir=tmp / "redis").start()
    store = apply_repo(tmp, tmp / "offline", online="redis", redis_address=redis.address)
    materialize(store, frame)
    # ttl 0: every request reads the store, so each fault is seen by the next request
    lookup = FeatureLookup(FeastOnlineReader(str(tmp / "feast")), ttl_s=0,
                           read_timeout_s=TIMEOUT_S)
    svc = PredictionService(LocalStages(lookup, served_models({5: _bundle(frame, tmp)})),
                            ServicePolicy(max_feature_age_s=1e12))
    st = {"redis": redis, "lookup": lookup, "store": store, "frame": frame, "tmp": tmp,
          "port": port}
    try:
        with BackgroundServer(svc) as server, PredictionClient(server.target) as client, \
                grpc.insecure_channel(server.target) as channel:
            st["client"] = client
            st["health"] = health_pb2_grpc.HealthStub(channel)
            yield st
    finally:
        if st["redis"].proc and st["redis"].proc.poll() is None:
            os.kill(st["redis"].pid, signal.SIGCONT)
        st["redis"].stop()


def _bundle(frame, tmp) -> str:
    """A tiny bundle over real served features that every ticker's latest row has."""
    import lightgbm as lgb
    import numpy as np

    from features.pipeline import FEATURE_NAMES
    from training.export import export_bundle

    last = frame.groupby("ticker").tail(1)
    names = [c for c in FEATURE_NAMES if last[c].notna().all()][:6]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(names)))
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 7},
                        lgb.Dataset(x, x[:, 0]), num_boost_round=5)
    return str(export_bundle(booster, names, tmp / "b" / "h5", model_name="stockray-lgbm-h5",
                             model_version="1", horizon=5))


def _predict(client, ticker):
    return client.predict(ticker, horizons=[5]).predictions[0]


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(stack, service="stockray.v1.FeatureStore"):
    return stack["health"].Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_slow_store_degrades_then_recovers(stack):
    client, lookup, redis = stack["client"], stack["lookup"], stack["redis"]
    assert not _predict(client, "AAA").stale and lookup.store_health()["ok"]
    assert _health(stack) == SERVING and _health(stack, "") == SERVING
    os.kill(redis.pid, signal.SIGSTOP)  # the store hangs: connections open, no answers
    try:
        t0 = time.monotonic()
        p = _predict(client, "AAA")
        took = time.monotonic() - t0
        assert p.stale, "a last-good row served while the store hangs must be flagged stale"
        assert took < TIMEOUT_S + 5.0, f"read deadline not applied ({took:.1f}s)"
        with pytest.raises(PredictionError) as ei:
            _predict(client, "BBB")  # never read by this replica: nothing to fall back on
        assert ei.value.code == grpc.StatusCode.UNAVAILABLE
        assert "retry" in ei.value.details and "/healthz" in ei.value.details
        health = lookup.store_health()
        assert not health["ok"] and "no answer within" in health["error"]
        assert health["down_since"] is not None and health["failed_reads"] >= 2
        # Named service down, the server as a whole still SERVING (it answers stale rows).
        assert _health(stack) == NOT_SERVING
        assert _health(stack, "") == SERVING
        assert _health(stack, "stockray.v1.PredictionService") == SERVING
    finally:
        os.kill(redis.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while True:  # reads queued behind the hung ones drain; then fresh rows again
        try:
            p = _predict(client, "BBB")
            if not p.stale:
                break
        except PredictionError as e:
            assert e.code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() < deadline, "no recovery 30 s after the store came back"
        time.sleep(0.2)
    assert lookup.store_health()["ok"] and _health(stack) == SERVING


def test_store_down_then_back(stack):
    client, lookup = stack["client"], stack["lookup"]
    assert not _predict(client, "BBB").stale
    stack["redis"].stop()  # the store is gone: connection refused
    p = _predict(client, "BBB")
    assert p.stale
    health = lookup.store_health()
    assert not health["ok"] and health["error"]  # refused, or retried past the deadline
    assert _health(stack) == NOT_SERVING and _health(stack, "") == SERVING
    # it comes back empty on the same port; the next materialize fills it
    stack["redis"] = redis = RedisServer(stack["port"], workdir=stack["tmp"] / "redis").start()
    materialize(stack["store"], stack["frame"])
    deadline = time.monotonic() + 30
    while _predict(client, "BBB").stale:
        assert time.monotonic() < deadline, "no recovery after the store came back"
        time.sleep(0.2)
    assert lookup.store_health()["ok"] and redis.pid
    assert _health(stack) == SERVING
