"""ScoreText / ScoreTexts through the real Serve app (gRPC on the public port and through
Serve's proxy, HTTP), token-protected, agreeing with the bundle's ONNX scorer.

Two apps, one after the other: ``ingress`` (everything in the ingress replica, int8 one
sentence per call) and ``split``, the default placement, with the ``auto`` variant (one sentence
int8 inside the ingress, a batch fp32 in the Sentiment deployment), so the code of every
placement runs for real. The bundle is a tiny in-process fine-tune (1 epoch, 64 sentences):
the test checks the serving path, not accuracy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from serving.sentiment_models import SentimentScorer
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import auth_headers, free_port, make_bundles, synthetic_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TEXTS = ["Revenue rose 12% and beat estimates.", "The company cut its guidance.",
         "The board will meet on Tuesday."]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from training.sentiment import SentimentConfig, SentimentModel, load_corpus

    root = tmp_path_factory.mktemp("sb")
    sm = SentimentModel(SentimentConfig(epochs=1, max_len=32, train_limit=64), use_ray=False)
    ds = load_corpus()
    sm.fit(ds)
    return sm.export(root / "sentiment", calibration_texts=ds.rows("train")["text"].tolist()[:64])


PLACEMENTS = [("ingress", "int8"), ("split", "auto")]


@pytest.fixture(scope="module", params=PLACEMENTS, ids=[p for p, _ in PLACEMENTS])
def app(request, tmp_path_factory, bundle):
    from ray import serve

    placement, variant = request.param
    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    with private_ray(serve_env(ports["grpc"]), prefix="srsents-"):
        args = AppArgs(models=ModelSource(bundle_dirs=make_bundles(tmp_path_factory.mktemp("b"))),
                       reader="tests.serving_fixtures:FakeReader",
                       reader_kwargs={"rows": synthetic_rows()}, sentiment_bundle=str(bundle),
                       sentiment_variant=variant, sentiment_placement=placement)
        ep = start_serve(args, ports["grpc"], ports["http"], "127.0.0.1",
                         proxy_grpc_port=ports["pgrpc"], timeout_s=120)
        deployments = set(serve.status().applications[args.app_name].deployments)
        assert ("Sentiment" in deployments) == (placement != "ingress"), deployments
        # the endpoints plus the variant the tests expect to answer
        yield SimpleNamespace(**vars(ep), sentiment_variant=variant)


def _probs(s) -> list[float]:
    return [s.negative, s.neutral, s.positive]


def test_grpc_agrees_with_the_onnx_scorer(app, bundle):
    scorer = SentimentScorer.from_bundle(bundle, variant=app.sentiment_variant)
    want = scorer.score(TEXTS)  # auto: fp32 batched; int8: one sentence per call
    want_one = [scorer.score([t])[0] for t in TEXTS]  # int8, one sentence per call
    # int8 alone = int8 in a batch; auto's two graphs differ (so the test sees which answered)
    gap = np.abs(np.asarray(want_one) - want).max()
    assert gap == 0.0 if app.sentiment_variant == "int8" else gap > 1e-4
    for target in (app.grpc_target, app.proxy_grpc_target):
        with PredictionClient(target) as c:
            ones = [c.score_text(t) for t in TEXTS]
            many = c.score_texts(TEXTS)
            lone_batch = c.score_texts(TEXTS[:1])  # a ScoreTexts of one is a lone sentence
            with ThreadPoolExecutor(4) as ex:  # lone sentences scored side by side, same answers
                side = list(ex.map(c.score_text, TEXTS * 2))
        assert ones[0].model_name == "stockray-sentiment" and ones[0].request_id
        assert {o.model_variant for o in ones} == {"int8"}
        assert many.model_variant == scorer.variant_for(len(TEXTS))
        np.testing.assert_allclose([_probs(o.score) for o in ones], want_one, atol=1e-5)
        np.testing.assert_allclose([_probs(o.score) for o in side], want_one * 2, atol=1e-5)
        np.testing.assert_allclose([_probs(s) for s in many.scores], want, atol=1e-5)
        assert lone_batch.model_variant == "int8"
        np.testing.assert_allclose(_probs(lone_batch.scores[0]), want_one[0], atol=1e-5)
        assert [s.label for s in many.scores] == [
            ("negative", "neutral", "positive")[i] for i in want.argmax(1)]


def test_grpc_errors_and_token(app):
    with PredictionClient(app.grpc_target) as c, pytest.raises(PredictionError) as ei:
        c.score_text("   ")
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in ei.value.details
    with PredictionClient(app.grpc_target) as c, pytest.raises(PredictionError) as ei:
        c.score_texts(["a"] * 300)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "limit is 256" in ei.value.details
    with PredictionClient(app.grpc_target, token="") as c, pytest.raises(PredictionError) as ei:
        c.score_text(TEXTS[0])
    assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_agrees_and_is_token_protected(app, bundle):
    scorer = SentimentScorer.from_bundle(bundle, variant=app.sentiment_variant)
    want = scorer.score(TEXTS)
    status, body = _post(f"{app.http_url}/v1/score_texts", {"texts": TEXTS}, auth_headers())
    assert status == 200, body
    got = [[s["negative"], s["neutral"], s["positive"]] for s in body["scores"]]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert body["model_variant"] == scorer.variant_for(len(TEXTS))
    one = scorer.score([TEXTS[1]])[0]
    status, body = _post(f"{app.http_url}/v1/score_text", {"text": TEXTS[1]}, auth_headers())
    assert status == 200 and body["model_variant"] == "int8"
    s = body["score"]
    np.testing.assert_allclose([s["negative"], s["neutral"], s["positive"]], one, atol=1e-5)
    assert s["label"] == ("negative", "neutral", "positive")[int(one.argmax())]
    status, body = _post(f"{app.http_url}/v1/score_text", {"text": TEXTS[1]}, {})
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED"
    status, body = _post(f"{app.http_url}/v1/score_text", {"text": ""}, auth_headers())
    assert status == 400 and body["error"]["code"] == "INVALID_ARGUMENT"
