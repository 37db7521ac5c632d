"""Ingress: the public gRPC (``Predict``, ``grpc.health.v1`` ``Check``) and HTTP/JSON front.

gRPC methods are plain methods named like the RPC; Serve passes ``grpc_context``
(``RayServegRPCContext``) when the signature has it. A typed error is returned to the client by
``grpc_context.set_code(...)`` + ``set_details(...)`` and returning an empty message: Serve
copies code and details onto the real call (proxy and direct ingress alike) and does not
overwrite a code the method set. HTTP is FastAPI through ``@serve.ingress``; the same class
serves both (checked on Ray 2.60).

*fused*: ``config`` is given and this replica builds every stage in-process.
*split*: ``lookup``/``predictor``/``explainer`` are handles to the stage deployments.
"""

# No `from __future__ import annotations`: Serve rebuilds the FastAPI endpoints from the real
# annotation objects, and a string "PredictBody" made FastAPI read the body as a query param.

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from grpc_health.v1 import health_pb2
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from serving.config import StageConfig
from serving.errors import ServingError, status_of
from serving.explainer import Explanation
from serving.lookup import FeatureRow
from serving.protos import stockray_pb2 as pb
from serving.scorer import ModelInfo
from serving.service import PredictionService, Stages

log = logging.getLogger("ray.serve")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PredictionService"].full_name

api = FastAPI(title="stockray prediction API", version="1")


class PredictBody(BaseModel):
    """JSON twin of ``PredictRequest``."""

    ticker: str
    horizons: list[int] = Field(default_factory=list)
    explain: bool = False
    top_k: int = 0


class HandleStages:
    """:class:`~serving.service.Stages` backed by Serve deployment handles (split mode)."""

    def __init__(
        self, lookup: DeploymentHandle, predictor: DeploymentHandle, explainer: DeploymentHandle
    ) -> None:
        self._lookup, self._predictor, self._explainer = lookup, predictor, explainer

    async def models(self) -> dict[int, ModelInfo]:
        return await self._predictor.models.remote()

    async def lookup(self, ticker: str) -> FeatureRow:
        return _raise_if_error(await self._lookup.lookup.remote(ticker))

    async def score(self, row: FeatureRow, horizons: Sequence[int]) -> dict[int, float]:
        return _raise_if_error(await self._predictor.score.remote(row, list(horizons)))

    async def explain(
        self, row: FeatureRow, horizons: Sequence[int], top_k: int
    ) -> dict[int, Explanation]:
        return _raise_if_error(await self._explainer.explain.remote(row, list(horizons), top_k))


def _raise_if_error(result: Any) -> Any:
    """Stage deployments *return* caller errors (no replica stack trace); re-raise them here."""
    if isinstance(result, ServingError):
        raise result
    return result


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        config: StageConfig | None = None,
        lookup: DeploymentHandle | None = None,
        predictor: DeploymentHandle | None = None,
        explainer: DeploymentHandle | None = None,
    ) -> None:
        stages: Stages
        if config is not None:
            stages = config.build_local_stages()
        elif lookup is not None and predictor is not None and explainer is not None:
            stages = HandleStages(lookup, predictor, explainer)
        else:
            raise ValueError("Ingress needs a StageConfig (fused) or three handles (split)")
        self._service = PredictionService(stages)

    # ---- gRPC: stockray.v1.PredictionService ----
    async def Predict(
        self, request: pb.PredictRequest, grpc_context: RayServegRPCContext
    ) -> pb.PredictResponse:
        try:
            return await self._service.predict(request)
        except Exception as e:
            code, message, _ = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("Predict failed")
            grpc_context.set_code(code)
            grpc_context.set_details(message)
            return pb.PredictResponse()

    # ---- gRPC: grpc.health.v1.Health ----
    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE_NAME):
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}; try {SERVICE_NAME!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=await self._health_status())

    async def _health_status(self) -> int:
        try:
            await self._service.models()
        except Exception:
            log.exception("health check: models unavailable")
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    # ---- HTTP/JSON ----
    @api.post("/v1/predict")
    async def http_predict(self, body: PredictBody) -> Any:
        req = pb.PredictRequest(
            ticker=body.ticker, horizons=body.horizons, explain=body.explain, top_k=body.top_k
        )
        try:
            resp = await self._service.predict(req)
        except Exception as e:
            code, message, http_status = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("predict failed")
            return JSONResponse(
                {"error": {"code": code.name, "message": message}}, status_code=http_status
            )
        return json_format.MessageToDict(
            resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    @api.get("/healthz")
    async def healthz(self) -> Any:
        ok = await self._health_status() == health_pb2.HealthCheckResponse.SERVING
        models = await self._service.models() if ok else {}
        return JSONResponse(
            {
                "status": "SERVING" if ok else "NOT_SERVING",
                "models": {
                    str(h): {"name": m.model_name, "version": m.model_version}
                    for h, m in models.items()
                },
            },
            status_code=200 if ok else 503,
        )
