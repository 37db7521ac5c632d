"""A small gRPC client for the prediction API and a human-readable formatter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
    """

    def __init__(self, target: str, *, application: str | None = None) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.PredictionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = (("application", application),) if application else None

    def predict(
        self,
        ticker: str,
        horizons: Sequence[int] = (),
        explain: bool = False,
        top_k: int = 0,
        timeout: float | None = 10.0,
    ) -> pb.PredictResponse:
        """Forecast ``ticker``; raises :class:`PredictionError` with the gRPC status."""
        req = pb.PredictRequest(
            ticker=ticker, horizons=list(horizons), explain=explain, top_k=top_k
        )
        try:
            return self._stub.Predict(req, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise PredictionError(e.code(), e.details() or "", self.target) from None

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


def format_response(resp: pb.PredictResponse) -> str:
    """A table: one line per horizon, then its top contributions when present."""
    lines = [f"{resp.ticker}  (request {resp.request_id})"]
    lines.append(f"{'horizon':>7}  {'pred. log return':>16}  {'model':<24} {'features as of'}")
    for p in resp.predictions:
        model = f"{p.model_name} v{p.model_version}"
        lines.append(
            f"{p.horizon:>6}d  {p.predicted_return:>+16.6f}  {model:<24} {p.feature_timestamp}"
        )
        if p.contributions:
            lines.append(f"{'':>9}base value {p.base_value:+.6f}; top contributions:")
            for c in p.contributions:
                lines.append(f"{'':>11}{c.feature:<28} value {c.value:>12.6g}  shap {c.shap:+.6f}")
    return "\n".join(lines)
