"""A sequence family through the real Serve app: a tiny LSTM trained in-test, exported as a
bundle, served (fused mode) on free ports with its offline history, and a Predict with explain
plus Explain and ListModels over gRPC on the public (direct-ingress) port."""

from __future__ import annotations

import grpc
import pytest

from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.history import OfflineHistory
from serving.launch import serve_env, start_serve
from serving.models import ModelSource, resolve_bundles
from serving.scorer import Scorer
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import (
    FEATURE_TS,
    FEATURES,
    free_port,
    latest_rows,
    make_sequence_bundles,
    sequence_frame,
    train_sequence,
    write_offline_features,
)

pytestmark = pytest.mark.integration


# ~40 s on a quiet 2-core box (Ray + Serve start-up, a replica importing torch, two ONNX
# exports); ~90 s under heavy load. In the default suite: it is the only served IG check.
def test_lstm_family_served_and_explained_over_grpc(tmp_path):
    from ray import serve

    frame = sequence_frame()
    dirs = make_sequence_bundles(tmp_path / "bundles", train_sequence(frame, epochs=2))
    offline = write_offline_features(frame, tmp_path / "offline" / "features.parquet")
    args = AppArgs(
        models=ModelSource(bundle_dirs=dirs),
        reader="tests.serving_fixtures:FakeReader",
        reader_kwargs={"rows": latest_rows(frame)},
        offline_features=str(offline),
        app_name="stockray-lstm",
    )
    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    # what the replica computes, computed here from the same files
    scorer = Scorer(resolve_bundles(ModelSource(bundle_dirs=dirs)))
    x = OfflineHistory(offline).window("MSFT", FEATURE_TS, FEATURES, 6)[0][None]
    want = {h: float(scorer.predict_matrix(x, h)[0]) for h in (1, 5)}
    with private_ray(serve_env(ports["grpc"]), prefix="srq-sv-"):
        ep = start_serve(args, ports["grpc"], ports["http"], "127.0.0.1",
                         proxy_grpc_port=ports["pgrpc"], timeout_s=120)
        try:
            with PredictionClient(ep.grpc_target) as c:
                resp = c.predict("msft", explain=True, top_k=3)
                assert [p.horizon for p in resp.predictions] == [1, 5]
                for p in resp.predictions:
                    assert p.predicted_return == pytest.approx(want[p.horizon], abs=1e-6)
                    assert p.model_name == f"stockray-lstm-h{p.horizon}"
                    assert p.feature_timestamp == "2024-05-01T00:00:00Z" and p.stale
                    assert len(p.contributions) == 3 and p.contributions[0].feature in FEATURES
                    assert p.HasField("prob_up") and p.HasField("interval")
                e = c.explain("MSFT", [5]).explanations[0]
                total = e.base_value + sum(k.shap for k in e.contributions)
                gap = abs(total - e.predicted_return)
                print(f"served IG completeness: |base + sum - prediction| = {gap:.2e}")
                assert gap < 1e-5 and len(e.contributions) == len(FEATURES)
                m = c.list_models()
                assert {(s.kind, s.family, s.window) for s in m.models} == {("sequence", "lstm", 6)}
                with pytest.raises(PredictionError) as ei:
                    c.predict("ZZZZ")
                assert ei.value.code == grpc.StatusCode.NOT_FOUND
                with pytest.raises(PredictionError) as ei:
                    c.predict("MSFT", [20])
                assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            serve.delete(args.app_name)
