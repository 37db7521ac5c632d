"""Access control on the bare grpcio server (same Gate as the Serve ingress): tokens, scopes,
rate limits, key files and their modes, the production profile, size limits, TLS and mTLS,
and the audit trail of refusals (key names, never tokens)."""

from __future__ import annotations

import time

import grpc
import pytest

from serving.audit import AuditLog, read_audit, verify_audit
from serving.auth import (
    AccessConfig,
    Authenticator,
    AuthSetupError,
    add_key,
    bearer,
    client_token,
    ensure_auth_dir,
    rotate_token,
)
from serving.client import PredictionClient, PredictionError
from serving.errors import RateLimitedError, UnauthenticatedError
from serving.grpc_server import BackgroundServer
from serving.lookup import FeatureLookup
from serving.service import LocalStages, PredictionService, check_ticker
from tests.serving_fixtures import FakeReader, make_bundles, served_models, synthetic_rows


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("b"), horizons=(1, 5))


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "auth"
    ensure_auth_dir(d)
    return d


def service(dirs, audit=None):
    served = served_models(dirs)
    return PredictionService(LocalStages(FeatureLookup(FakeReader(synthetic_rows())), served),
                             audit=audit)


def _code(fn):
    with pytest.raises(PredictionError) as ei:
        fn()
    return ei.value


def test_token_required_on_rpcs_health_open(dirs, keys, tmp_path):
    audit = AuditLog(tmp_path / "audit", fsync_every_s=0)
    access = AccessConfig(auth_dir=str(keys))
    with BackgroundServer(service(dirs, audit), access=access) as s:
        with PredictionClient(s.target, token="") as c:
            assert c.health() == "SERVING"  # health stays open
            e = _code(lambda: c.predict("AAPL"))
            assert e.code == grpc.StatusCode.UNAUTHENTICATED and "missing token" in e.details
            e = _code(lambda: c.list_models())
            assert e.code == grpc.StatusCode.UNAUTHENTICATED
        with PredictionClient(s.target, token="sr_wrong") as c:
            e = _code(lambda: c.predict("AAPL"))
            assert e.code == grpc.StatusCode.UNAUTHENTICATED and "invalid token" in e.details
        owner = client_token(keys)
        with PredictionClient(s.target, token=owner) as c:
            assert c.predict("AAPL").predictions
            assert c.explain("AAPL").explanations
    audit.close()
    recs, _ = read_audit(tmp_path / "audit")
    assert [r.get("error", {}).get("code") for r in recs[:3]] == ["UNAUTHENTICATED"] * 3
    assert recs[-1]["key"] == "owner" and recs[-1]["rpc"] == "Explain"
    raw = b"".join(p.read_bytes() for p in (tmp_path / "audit").glob("*.jsonl"))
    assert owner.encode() not in raw and b"sr_wrong" not in raw  # tokens never logged
    assert verify_audit(tmp_path / "audit").ok


def test_scopes_rate_limit_and_reload(dirs, keys):
    reader = add_key(keys, "reader", ["predict"])
    slow = add_key(keys, "slow", ["predict"], rate_per_s=2, burst=2)
    access = AccessConfig(auth_dir=str(keys), reload_s=0)
    with BackgroundServer(service(dirs), access=access) as s:
        with PredictionClient(s.target, token=reader) as c:
            assert c.predict("AAPL", explain=True, top_k=2).predictions  # top-k: predict scope
            e = _code(lambda: c.explain("AAPL"))
            assert e.code == grpc.StatusCode.PERMISSION_DENIED and "lacks scope 'explain'" in e.details
            # no back door to the full attribution through Predict's top_k
            e = _code(lambda: c.predict("AAPL", explain=True, top_k=11))
            assert e.code == grpc.StatusCode.PERMISSION_DENIED and "Explain scope" in e.details
            e = _code(lambda: c.predict_batch(["AAPL"], explain=True, top_k=100))
            assert e.code == grpc.StatusCode.PERMISSION_DENIED
        with PredictionClient(s.target, token=client_token(keys)) as c:  # owner: every scope
            assert c.predict("AAPL", explain=True, top_k=100).predictions
        with PredictionClient(s.target, token=slow) as c:
            c.predict("AAPL")
            c.predict("AAPL")
            e = _code(lambda: c.predict("AAPL"))
            assert e.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry after" in e.details
            time.sleep(0.6)  # 2/s refills one token in 0.5 s
            assert c.predict("AAPL").predictions
        old = client_token(keys)
        rotate_token(keys)
        with PredictionClient(s.target, token=old) as c:
            assert _code(lambda: c.predict("AAPL")).code == grpc.StatusCode.UNAUTHENTICATED
        with PredictionClient(s.target, token=client_token(keys)) as c:
            assert c.predict("AAPL").predictions


def test_production_profile_reflection_off_explain_admin(dirs, keys):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    both = add_key(keys, "analyst", ["predict", "explain"])
    access = AccessConfig(auth_dir=str(keys), profile="production")
    with BackgroundServer(service(dirs), access=access) as s:
        with PredictionClient(s.target, token=both) as c:
            assert _code(lambda: c.explain("AAPL")).code == grpc.StatusCode.PERMISSION_DENIED
            assert _code(lambda: c.list_models()).code == grpc.StatusCode.PERMISSION_DENIED
            assert c.predict("AAPL").predictions
        with PredictionClient(s.target, token=client_token(keys)) as c:  # owner = admin
            assert c.explain("AAPL").explanations
        with grpc.insecure_channel(s.target) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as ei:
                next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_oversized_message_refused_before_decoding(dirs, keys):
    access = AccessConfig(auth_dir=str(keys), max_request_bytes=4096)
    with BackgroundServer(service(dirs), access=access) as s, PredictionClient(
        s.target, token=client_token(keys)
    ) as c:
        e = _code(lambda: c.predict_batch(["AAPL"] * 2000))
        assert e.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert c.predict_batch(["AAPL", "MSFT"]).results


@pytest.mark.parametrize("ticker", ["ÄPL", "１２３", "AAPL\u200b", "A" * 500, "ß"])
def test_tickers_are_ascii_symbols(ticker):
    from serving.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="not a symbol"):
        check_ticker(ticker)
    assert check_ticker(" brk.b ") == "BRK.B"


def test_unsafe_modes_refuse_to_start(tmp_path):
    d = tmp_path / "auth"
    tok = ensure_auth_dir(d)
    assert oct(tok.stat().st_mode & 0o777) == "0o600" and oct(d.stat().st_mode & 0o777) == "0o700"
    tok.chmod(0o644)
    with pytest.raises(AuthSetupError, match="chmod 600"):
        ensure_auth_dir(d)
    with pytest.raises(AuthSetupError):
        Authenticator(d)
    tok.chmod(0o600)
    add_key(d, "k", ["predict"])
    (d / "keys.yaml").chmod(0o640)
    with pytest.raises(AuthSetupError, match="keys.yaml"):
        ensure_auth_dir(d)


def test_authenticator_unit(keys):
    t = [0.0]
    a = Authenticator(keys, default_rate_per_s=1, clock=lambda: t[0])
    owner = client_token(keys)
    assert bearer(f"Bearer {owner}") == owner and bearer("Basic abc") is None
    assert a.check(f"bearer {owner}", "admin") == "owner"
    a.check(f"Bearer {owner}", "predict")  # burst 2
    with pytest.raises(RateLimitedError) as ei:
        a.check(f"Bearer {owner}", "predict")
    assert 0 < ei.value.retry_after_s <= 1.0
    t[0] += 1.0
    assert a.check(f"Bearer {owner}", "predict") == "owner"
    with pytest.raises(UnauthenticatedError):
        a.check(None, "predict")
    with pytest.raises(UnauthenticatedError):
        a.check(f"Bearer {owner}x", "predict")


def test_keys_file_stores_hashes_only(keys):
    tok = add_key(keys, "ci", ["predict"], rate_per_s=5)
    text = (keys / "keys.yaml").read_text()
    assert tok not in text and "sha256" in text


def test_client_token_prefers_env(keys, monkeypatch):
    monkeypatch.setenv("STOCKRAY_API_TOKEN", "sr_from_env")
    assert client_token(keys) == "sr_from_env"
    monkeypatch.delenv("STOCKRAY_API_TOKEN")
    assert client_token(keys) == (keys / "api_token").read_text().strip()


def test_tls_and_mtls(dirs, keys, tmp_path, monkeypatch):
    from serving.tls import make_dev_certs, server_credentials

    c = make_dev_certs(tmp_path / "certs")
    assert oct(c["key"].stat().st_mode & 0o777) == "0o600"
    tok = client_token(keys)
    access = AccessConfig(auth_dir=str(keys))
    creds = server_credentials(c["cert"], c["key"])
    with BackgroundServer(service(dirs), access=access, credentials=creds) as s:
        with PredictionClient(s.target, token=tok, tls_ca=str(c["cert"])) as cl:
            assert cl.predict("AAPL").predictions
        with PredictionClient(s.target, token=tok, tls_ca="") as cl:  # plaintext to TLS port
            assert _code(lambda: cl.predict("AAPL", timeout=3)).code == grpc.StatusCode.UNAVAILABLE
    mcreds = server_credentials(c["cert"], c["key"], client_ca=c["client_cert"])
    with BackgroundServer(service(dirs), access=access, credentials=mcreds) as s:
        with PredictionClient(s.target, token=tok, tls_ca=str(c["cert"]),
                              client_cert=str(c["client_cert"]),
                              client_key=str(c["client_key"])) as cl:
            assert cl.predict("AAPL").predictions
        monkeypatch.delenv("STOCKRAY_TLS_CLIENT_CERT", raising=False)
        with PredictionClient(s.target, token=tok, tls_ca=str(c["cert"])) as cl:  # no cert
            assert _code(lambda: cl.predict("AAPL", timeout=3)).code == grpc.StatusCode.UNAVAILABLE
