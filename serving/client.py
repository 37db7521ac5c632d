"""A small gRPC client for the prediction API and a human-readable formatter.

Credentials by default: the token from ``$STOCKRAY_API_TOKEN`` or the server's token file
(``$STOCKRAY_AUTH_DIR`` or ``<data_dir>/auth/api_token``, :func:`serving.auth.client_token`);
TLS when ``tls_ca`` is given or ``$STOCKRAY_TLS_CA`` is set (plus a client pair for mTLS).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.auth import client_token
from serving.errors import OVERLOAD_HINT
from serving.protos import stockray_pb2 as pb
from serving.protos import stockray_pb2_grpc as pb_grpc


class PredictionError(RuntimeError):
    """A failed call; ``code`` is the gRPC status, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str) -> None:
        super().__init__(f"{code.name} from {target}: {details}")
        self.code, self.details, self.target = code, details, target


class PredictionClient:
    """``PredictionClient("127.0.0.1:9000").predict("AAPL", [1, 5], explain=True)``.

    Args:
        target: ``host:port`` of the gRPC endpoint.
        application: Serve application name, sent as metadata (needed only when the Serve
            proxy hosts several applications).
        token: API token; None reads ``$STOCKRAY_API_TOKEN`` or the token file, ``""`` sends
            none.
        tls_ca: CA (or self-signed server certificate) to trust: TLS on. None reads
            ``$STOCKRAY_TLS_CA``; ``""`` forces plaintext.
        client_cert / client_key: client pair for mTLS (default ``$STOCKRAY_TLS_CLIENT_CERT``
            / ``_KEY``).
        tls_server_name: the name to check in the server certificate when ``target`` is an
            address the certificate does not list.
    """

    def __init__(
        self,
        target: str,
        *,
        application: str | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        from serving.tls import channel_credentials

        self.target = target
        ca = os.environ.get("STOCKRAY_TLS_CA", "") if tls_ca is None else tls_ca
        if ca:
            cc = client_cert or os.environ.get("STOCKRAY_TLS_CLIENT_CERT") or None
            ck = client_key or os.environ.get("STOCKRAY_TLS_CLIENT_KEY") or None
            opts = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
            self._channel = grpc.secure_channel(target, channel_credentials(ca, cc, ck), opts)
        else:
            self._channel = grpc.insecure_channel(target)
        self.tls = bool(ca)
        self._stub = pb_grpc.PredictionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        tok = client_token() if token is None else token
        md = []
        if application:
            md.append(("application", application))
        if tok:
            md.append(("authorization", f"Bearer {tok}"))
        self._metadata = tuple(md) or None

    def _call(self, rpc, req, timeout):
        try:
            return rpc(req, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            details = e.details() or ""
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "backoff" not in details:
                # Serve's own direct-ingress rejection says only "dropped due to backpressure".
                details += f" ({OVERLOAD_HINT})"
            raise PredictionError(e.code(), details, self.target) from None

    def predict(
        self,
        ticker: str,
        horizons: Sequence[int] = (),
        explain: bool = False,
        top_k: int = 0,
        timeout: float | None = 10.0,
        *,
        as_of: str = "",
        model_alias: str = "",
    ) -> pb.PredictResponse:
        """Forecast ``ticker``; raises :class:`PredictionError` with the gRPC status."""
        req = pb.PredictRequest(
            ticker=ticker,
            horizons=list(horizons),
            explain=explain,
            top_k=top_k,
            as_of=as_of,
            model_alias=model_alias,
        )
        return self._call(self._stub.Predict, req, timeout)

    def predict_batch(
        self,
        tickers: Sequence[str],
        horizons: Sequence[int] = (),
        explain: bool = False,
        top_k: int = 0,
        timeout: float | None = 30.0,
        *,
        as_of: str = "",
        model_alias: str = "",
    ) -> pb.PredictBatchResponse:
        """Forecast many tickers; per-ticker errors are in ``results[i].error``."""
        req = pb.PredictBatchRequest(
            tickers=list(tickers),
            horizons=list(horizons),
            explain=explain,
            top_k=top_k,
            as_of=as_of,
            model_alias=model_alias,
        )
        return self._call(self._stub.PredictBatch, req, timeout)

    def explain(
        self,
        ticker: str,
        horizons: Sequence[int] = (),
        timeout: float | None = 10.0,
        *,
        as_of: str = "",
        model_alias: str = "",
    ) -> pb.ExplainResponse:
        """Full SHAP attribution (every feature) per horizon."""
        req = pb.ExplainRequest(
            ticker=ticker, horizons=list(horizons), as_of=as_of, model_alias=model_alias
        )
        return self._call(self._stub.Explain, req, timeout)

    def list_models(self, timeout: float | None = 10.0) -> pb.ListModelsResponse:
        return self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)

    def score_text(self, text: str, timeout: float | None = 10.0) -> pb.ScoreTextResponse:
        """Sentiment label and class probabilities of one sentence."""
        return self._call(self._stub.ScoreText, pb.ScoreTextRequest(text=text), timeout)

    def score_texts(
        self, texts: Sequence[str], timeout: float | None = 30.0
    ) -> pb.ScoreTextsResponse:
        """Sentiment of many sentences in one call (request order)."""
        return self._call(self._stub.ScoreTexts, pb.ScoreTextsRequest(texts=list(texts)), timeout)

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The ``grpc.health.v1`` status name, e.g. ``"SERVING"``."""
        try:
            r = self._health.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            raise PredictionError(e.code(), e.details() or "", self.target) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _horizon_line(p: pb.HorizonPrediction) -> str:
    model = f"{p.model_name} v{p.model_version}"
    pu = f"{p.prob_up:>6.1%}" if p.HasField("prob_up") else f"{'-':>6}"
    iv = (
        f"[{p.interval.lower:+.4f}, {p.interval.upper:+.4f}] {p.interval.coverage:.0%}"
        if p.HasField("interval")
        else "-"
    )
    stale = "  STALE" if p.stale else ""
    return (
        f"{p.horizon:>6}d  {p.predicted_return:>+16.6f}  {pu}  {iv:<28} {model:<24} "
        f"{p.feature_timestamp}{stale}"
    )


def format_response(resp: pb.PredictResponse) -> str:
    """A table: one line per horizon, then its top contributions when present."""
    lines = [f"{resp.ticker}  (request {resp.request_id})"]
    lines.append(
        f"{'horizon':>7}  {'pred. log return':>16}  {'P(up)':>6}  {'interval':<28} "
        f"{'model':<24} {'features as of'}"
    )
    for p in resp.predictions:
        lines.append(_horizon_line(p))
        if p.contributions:
            lines.append(f"{'':>9}base value {p.base_value:+.6f}; top contributions:")
            for c in p.contributions:
                lines.append(f"{'':>11}{c.feature:<28} value {c.value:>12.6g}  contrib {c.shap:+.6f}")
    return "\n".join(lines)


def format_batch(resp: pb.PredictBatchResponse) -> str:
    """One block per ticker; errors as ``TICKER  CODE: message``."""
    out = [f"batch request {resp.request_id}: {len(resp.results)} tickers"]
    for r in resp.results:
        if r.HasField("error"):
            out.append(f"{r.ticker}  {r.error.code}: {r.error.message}")
        else:
            out.append(f"{r.ticker}")
            out.extend(_horizon_line(p) for p in r.prediction.predictions)
    return "\n".join(out)
