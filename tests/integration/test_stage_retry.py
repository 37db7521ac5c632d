"""A stage replica killed under load costs no request (serving/deployments/retry.py).

A real split-mode Serve app (2 FeatureLookup + 2 Predictor replicas, real gRPC through the
direct-ingress port) answers Predict from client threads. Lookups take 50 ms (``SlowReader``),
so calls are nearly always in flight on both lookup replicas. FeatureLookup replicas are killed
(``ray.kill`` of the replica actor) until the ingress reports a resend (``kill_until_resent``),
then one Predictor replica: the calls they held fail with ``ActorDiedError`` /
``ActorUnavailableError`` in the ingress, which resends each once; the clients see 0 failed
requests and the ingress reports the resends. The ``stockray.v1.FeatureStore`` health service
answers SERVING throughout (the store itself never failed).
"""

from __future__ import annotations

import time

import pytest

from serving.app import AppArgs
from serving.client import PredictionClient
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from tests.integration.test_load import Load
from tests.ray_fixtures import kill_replica, private_ray, stage_retries
from tests.serving_fixtures import free_port, make_bundles, synthetic_rows

pytestmark = pytest.mark.integration
TICKERS = list(synthetic_rows(8))


def split_args(tmp, **kw) -> AppArgs:
    dirs = make_bundles(tmp / "b", horizons=(1, 5))
    return AppArgs(
        models=ModelSource(bundle_dirs={h: str(d) for h, d in dirs.items()}),
        reader="tests.serving_fixtures:SlowReader",
        reader_kwargs={"rows": synthetic_rows(8), "delay_s": 0.05},
        feature_cache_ttl_s=0,  # every request reaches a lookup replica
        mode="split", lookup_replicas=2, predictor_replicas=2,
        ingress_num_cpus=0.2, lookup_num_cpus=0.1, predictor_num_cpus=0.1,
        explainer_num_cpus=0.1, audit_dir=str(tmp / "audit"), **kw)


def kill_until_resent(app_name: str, deployment: str, method: str, tries: int = 4) -> list[str]:
    """Kill ``deployment`` replicas one at a time until the ingress reports a resend of
    ``method``: under load a replica usually dies holding calls, but with two replicas it can
    die between calls (one run in a few here), which proves nothing; every kill still must
    cost no request."""
    killed = []
    for _ in range(tries):
        killed.append(kill_replica(deployment))
        time.sleep(2)
        if stage_retries(app_name).get(f"{deployment}.{method}", 0) >= 1:
            break
    return killed


def test_killed_stage_replicas_cost_no_request(tmp_path):
    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    with private_ray(serve_env(ports["grpc"]), prefix="srr-it-"):
        args = split_args(tmp_path)
        ep = start_serve(args, ports["grpc"], ports["http"], "127.0.0.1",
                         proxy_grpc_port=ports["pgrpc"], timeout_s=150)
        with PredictionClient(ep.grpc_target) as probe:
            assert probe.health("stockray.v1.FeatureStore") == "SERVING"
        with Load(ep.grpc_target, 6, explain=False) as load:
            time.sleep(1.5)
            ok_before = load.codes["OK"]
            killed = kill_until_resent(args.app_name, "FeatureLookup", "lookup_many")
            killed.append(kill_replica("Predictor"))
            time.sleep(3)
        retries = stage_retries(args.app_name)
        with PredictionClient(ep.grpc_target) as probe:
            assert probe.health("stockray.v1.FeatureStore") == "SERVING"
            assert probe.health("") == "SERVING"
    print(f"\nstage replica kill ({killed}): {dict(load.codes)}, OK before the first kill "
          f"{ok_before}; resends {retries}; failed {load.failed()}")
    assert ok_before > 3 and load.codes["OK"] > ok_before + 10  # load ran across both kills
    assert load.failed() == 0, load.errors
    # A lookup replica died holding calls (each lookup takes 50 ms): they were resent.
    assert retries.get("FeatureLookup.lookup_many", 0) >= 1, retries
