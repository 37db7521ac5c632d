"""Property-based fuzzing (hypothesis) of every field of every PredictionService RPC and of the
``authorization`` metadata, against a real grpcio server and client (FakeReader store).

Asserted: only the status codes serving/protos/stockray.proto documents come back, never
INTERNAL/UNKNOWN; an accepted request answers for what it asked; a wrong or malformed token
is UNAUTHENTICATED; and the server still answers a good request afterwards (nothing lost).
``FUZZ_EXAMPLES`` (env) sets the examples per test (default 60).
"""

from __future__ import annotations

import os

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.grpc_server import BackgroundServer
from serving.lookup import FeatureLookup
from serving.protos import stockray_pb2 as pb
from serving.protos import stockray_pb2_grpc as pb_grpc
from serving.service import LocalStages, PredictionService
from tests.serving_fixtures import (
    FakeReader,
    auth_headers,
    make_bundles,
    served_models,
    synthetic_rows,
)

DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
              grpc.StatusCode.UNAVAILABLE}
N = int(os.environ.get("FUZZ_EXAMPLES", "60"))
COUNT: dict[str, int] = {}

int32 = st.integers(-(2**31), 2**31 - 1)
known = st.sampled_from(["AAPL", "msft", "GOOG", "NVDA"])
text = st.one_of(known, st.text(max_size=40), st.text(alphabet="ABCDEFGHIJ.^-=_ ", max_size=12),
                 st.binary(max_size=20).map(lambda b: b.decode("latin-1")))
horizons = st.lists(st.one_of(st.sampled_from([1, 5]), int32), max_size=6)
as_of = st.one_of(st.just(""), st.text(max_size=30),
                  st.datetimes().map(lambda d: d.isoformat() + "Z"))
alias = st.one_of(st.sampled_from(["", "champion", "challenger", "CHAMPION"]),
                  st.text(max_size=12))


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    served = served_models(make_bundles(tmp_path_factory.mktemp("b"), horizons=(1, 5)))
    svc = PredictionService(LocalStages(FeatureLookup(FakeReader(synthetic_rows())), served))
    with BackgroundServer(svc) as server, grpc.insecure_channel(server.target) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield pb_grpc.PredictionServiceStub(ch)


def _md():
    return tuple(auth_headers().items())


def _call(rpc, req, md, name: str) -> tuple[grpc.StatusCode, object]:
    COUNT[name] = COUNT.get(name, 0) + 1
    try:
        return grpc.StatusCode.OK, rpc(req, metadata=md, timeout=30)
    except grpc.RpcError as e:
        code = e.code()
        assert code in DOCUMENTED, f"{name}({req!r}) -> {code}: {e.details()}"
        assert e.details(), f"{name}: status {code} without a message"
        assert "Traceback" not in e.details()
        return code, None


FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(ticker=text, hs=horizons, explain=st.booleans(), top_k=int32, as_of=as_of, alias=alias)
def test_fuzz_predict(stub, ticker, hs, explain, top_k, as_of, alias):
    req = pb.PredictRequest(ticker=ticker, horizons=hs, explain=explain, top_k=top_k,
                            as_of=as_of, model_alias=alias)
    code, resp = _call(stub.Predict, req, _md(), "Predict")
    if code == grpc.StatusCode.OK:
        assert resp.ticker == ticker.strip().upper()
        assert {p.horizon for p in resp.predictions} == (set(hs) or {1, 5})


@FUZZ
@given(tickers=st.lists(text, max_size=8), hs=horizons, explain=st.booleans(), top_k=int32,
       as_of=as_of, alias=alias)
def test_fuzz_predict_batch(stub, tickers, hs, explain, top_k, as_of, alias):
    req = pb.PredictBatchRequest(tickers=tickers, horizons=hs, explain=explain, top_k=top_k,
                                 as_of=as_of, model_alias=alias)
    code, resp = _call(stub.PredictBatch, req, _md(), "PredictBatch")
    if code == grpc.StatusCode.OK:
        assert len(resp.results) == len(tickers)  # one result per ticker, none dropped
        for r in resp.results:
            if r.HasField("error"):
                assert grpc.StatusCode[r.error.code] in DOCUMENTED and r.error.message


@FUZZ
@given(ticker=text, hs=horizons, as_of=as_of, alias=alias)
def test_fuzz_explain(stub, ticker, hs, as_of, alias):
    req = pb.ExplainRequest(ticker=ticker, horizons=hs, as_of=as_of, model_alias=alias)
    _call(stub.Explain, req, _md(), "Explain")


token_chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@FUZZ
@given(header=st.one_of(
    st.text(token_chars, max_size=80),
    st.text(token_chars, max_size=60).map(lambda t: "Bearer " + t),
    st.sampled_from(["Bearer", "Bearer ", "bearer x", "Basic dXNlcjpwYXNz", "Bearer  "]),
))
def test_fuzz_authorization_header(stub, header):
    good = auth_headers()["authorization"]
    req = pb.PredictRequest(ticker="AAPL", horizons=[5])
    code, _ = _call(stub.Predict, req, (("authorization", header),), "auth")
    if header.strip() == good:
        assert code == grpc.StatusCode.OK
    else:
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_server_still_answers_and_report_counts(stub):
    resp = stub.Predict(pb.PredictRequest(ticker="AAPL", horizons=[5]), metadata=_md(),
                        timeout=30)
    assert resp.predictions and resp.predictions[0].horizon == 5
    _call(stub.ListModels, pb.ListModelsRequest(), _md(), "ListModels")
    print(f"fuzz examples per RPC: {COUNT}")
