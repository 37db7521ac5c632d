"""Ingress: the public gRPC (``PredictionService`` RPCs, ``grpc.health.v1`` ``Check``) and
HTTP/JSON front.

gRPC methods are plain methods named like the RPC; Serve passes ``grpc_context``
(``RayServegRPCContext``) when the signature has it. A typed error is returned to the client by
``grpc_context.set_code(...)`` + ``set_details(...)`` and returning an empty message: Serve
copies code and details onto the real call (proxy and direct ingress alike) and does not
overwrite a code the method set. HTTP is FastAPI through ``@serve.ingress``; the same class
serves both (checked on Ray 2.60).

*fused*: ``config`` is given and this replica builds every stage in-process.
*split*: ``lookup``/``predictor``/``explainer`` are handles to the stage deployments.

Hot model swap: a watcher thread re-resolves the registry aliases every
``RoutingConfig.alias_poll_s`` and swaps models atomically (``serving.modelset``); changing
``user_config`` (``reconfigure``) updates canary/shadow routing in place and a new
``reload_token`` forces an immediate re-resolution.

Access (``serving.auth``): every gRPC method but ``Check`` reads ``authorization`` from
``grpc_context.invocation_metadata()`` (the proxy forwards client metadata, direct ingress has
it first-hand) and asks the replica's :class:`~serving.auth.Gate`; HTTP goes through
:class:`HTTPGuard`, an ASGI middleware that refuses an oversized body (``content-length`` or
counted while streaming) and an unauthenticated call *before* FastAPI decodes the JSON.
``/healthz`` stays open.
"""

# No `from __future__ import annotations`: Serve rebuilds the FastAPI endpoints from the real
# annotation objects, and a string "PredictBody" made FastAPI read the body as a query param.

import logging
import time
from collections.abc import Sequence
from typing import Annotated, Any

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from grpc_health.v1 import health_pb2
from pydantic import BaseModel, Field, StringConstraints
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from serving.auth import AccessConfig, Gate, replica_gate, set_replica_gate
from serving.config import RoutingConfig, StageConfig
from serving.deployments.retry import StageCaller
from serving.errors import (
    InvalidRequestError,
    RateLimitedError,
    RequestTooLargeError,
    ServingError,
    status_of,
)
from serving.explainer import Explanation
from serving.lookup import FeatureRow
from serving.modelset import Watcher
from serving.protos import stockray_pb2 as pb
from serving.scorer import ModelInfo
from serving.sentiment_api import sentiment_api
from serving.service import (
    FEATURE_STORE_HEALTH,
    PredictionService,
    Scores,
    ServicePolicy,
    Stages,
)

log = logging.getLogger("ray.serve")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODELS_TTL_S = 1.0  # split mode: how long the ingress trusts its copy of the model table

api = FastAPI(title="stockray prediction API", version="1")
# The proto's int32 fields: a JSON number outside them is a 422 from validation, never a
# ValueError (500) when the protobuf message is built.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Str = Annotated[str, StringConstraints(max_length=256)]


class PredictBody(BaseModel):
    """JSON twin of ``PredictRequest``."""

    ticker: Str
    horizons: list[Int32] = Field(default_factory=list, max_length=1024)
    explain: bool = False
    top_k: Int32 = 0
    as_of: Str = ""
    model_alias: Str = ""


class PredictBatchBody(BaseModel):
    """JSON twin of ``PredictBatchRequest``."""

    tickers: list[Str] = Field(max_length=65536)
    horizons: list[Int32] = Field(default_factory=list, max_length=1024)
    explain: bool = False
    top_k: Int32 = 0
    as_of: Str = ""
    model_alias: Str = ""


class ScoreTextBody(BaseModel):
    """JSON twin of ``ScoreTextRequest`` (length is checked by SentimentAPI, with its message)."""

    text: str


class ScoreTextsBody(BaseModel):
    """JSON twin of ``ScoreTextsRequest``."""

    texts: list[str] = Field(max_length=65536)


class ExplainBody(BaseModel):
    """JSON twin of ``ExplainRequest``."""

    ticker: Str
    horizons: list[Int32] = Field(default_factory=list, max_length=1024)
    as_of: Str = ""
    model_alias: Str = ""


HTTP_RPCS = {
    "/v1/predict": "Predict",
    "/v1/predict_batch": "PredictBatch",
    "/v1/explain": "Explain",
    "/v1/models": "ListModels",
    "/v1/score_text": "ScoreText",
    "/v1/score_texts": "ScoreTexts",
}


def _error_response(exc: BaseException) -> JSONResponse:
    code, message, http_status = status_of(exc)
    headers = {}
    if isinstance(exc, RateLimitedError):
        headers["retry-after"] = str(max(1, round(exc.retry_after_s + 0.5)))
    return JSONResponse(
        {"error": {"code": code.name, "message": message}}, status_code=http_status,
        headers=headers,
    )


class HTTPGuard:
    """ASGI middleware: body size limit and token check before any decoding."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        rpc = HTTP_RPCS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if rpc is None:  # /healthz, the OpenAPI page, lifespan
            return await self.app(scope, receive, send)
        gate = replica_gate()  # set by Ingress.__init__ (one Ingress per replica process)
        if gate is None:
            resp = JSONResponse({"error": {"code": "UNAVAILABLE",
                                           "message": "replica starting; retry"}}, 503)
            return await resp(scope, receive, send)
        limit = gate.access.max_request_bytes
        headers = dict(scope.get("headers") or ())
        try:
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise RequestTooLargeError(
                    f"request body of {length.decode(errors='replace')[:20]} bytes is over the "
                    f"{limit}-byte limit: send fewer tickers per call"
                )
            auth = headers.get(b"authorization")
            gate.admit(rpc, auth.decode("latin-1") if auth is not None else None)
        except ServingError as e:
            if isinstance(e, RequestTooLargeError):
                gate.record_refusal(rpc, e)  # auth refusals are recorded by the gate itself
            return await _error_response(e)(scope, receive, send)
        seen = 0

        async def limited_receive():  # chunked bodies have no content-length
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise RequestTooLargeError(f"request body over the {limit}-byte limit")
            return msg

        try:
            return await self.app(scope, limited_receive, send)
        except RequestTooLargeError as e:
            gate.record_refusal(rpc, e)
            return await _error_response(e)(scope, receive, send)


api.add_middleware(HTTPGuard)


@api.exception_handler(RequestValidationError)
async def _invalid_body(request, exc: RequestValidationError) -> JSONResponse:
    """A body that does not fit the schema (wrong type, int32 overflow, too long): 400
    ``INVALID_ARGUMENT`` like gRPC, audited, instead of FastAPI's bare 422."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    err = InvalidRequestError(f"invalid field {where or 'body'}: {first.get('msg', 'invalid')}"[:300])
    gate = replica_gate()
    if gate is not None:
        gate.record_refusal(HTTP_RPCS.get(request.url.path, request.url.path), err)
    return _error_response(err)


class HandleStages:
    """:class:`~serving.service.Stages` backed by Serve deployment handles (split mode). Every
    stage call goes through ``call`` (:class:`~serving.deployments.retry.StageCaller`: one
    resend when the stage replica holding the call died; all these calls are reads)."""

    def __init__(
        self, lookup: DeploymentHandle, predictor: DeploymentHandle, explainer: DeploymentHandle,
        call: StageCaller | None = None,
    ) -> None:
        self._lookup, self._predictor, self._explainer = lookup, predictor, explainer
        self.call = call or StageCaller()
        self._models: tuple[float, dict[str, dict[int, ModelInfo]]] | None = None

    async def models(self) -> dict[str, dict[int, ModelInfo]]:
        now = time.monotonic()
        if self._models is None or now - self._models[0] > MODELS_TTL_S:
            self._models = (now, await self.call(self._predictor, "models"))
        return self._models[1]

    async def lookup_many(
        self, tickers: list[str], services: tuple[str, ...] = ()
    ) -> dict[str, FeatureRow | ServingError]:
        return _raise_if_error(
            await self.call(self._lookup, "lookup_many", tickers, tuple(services))
        )

    async def feature_store_health(self) -> dict:
        return await self.call(self._lookup, "store_health")

    async def score(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str
    ) -> list[Scores | ServingError]:
        return _raise_if_error(
            await self.call(self._predictor, "score", rows, list(horizons), alias))

    async def explain(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str, top_k: int = 0
    ) -> list[dict[int, Explanation] | ServingError]:
        return _raise_if_error(
            await self.call(self._explainer, "explain", rows, list(horizons), alias, top_k)
        )


def _raise_if_error(result: Any) -> Any:
    """Stage deployments *return* caller errors (no replica stack trace); re-raise them here."""
    if isinstance(result, ServingError):
        raise result
    return result


def apply_routing(policy: ServicePolicy, routing: RoutingConfig) -> None:
    policy.canary_weight, policy.shadow = routing.canary_weight, routing.shadow


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        config: StageConfig | None = None,
        lookup: DeploymentHandle | None = None,
        predictor: DeploymentHandle | None = None,
        explainer: DeploymentHandle | None = None,
        split_config: StageConfig | None = None,
        sentiment: DeploymentHandle | None = None,
        sentiment_local: dict[str, Any] | None = None,
    ) -> None:
        stages: Stages
        self._served = None
        self._watcher: Watcher | None = None
        self._caller: StageCaller | None = None
        cfg = config or split_config
        if config is not None:
            stages = config.build_local_stages()
            self._served = stages.served  # type: ignore[attr-defined]
            self._watcher = Watcher(self._served, config.routing.alias_poll_s)
        elif lookup is not None and predictor is not None and explainer is not None:
            self._caller = StageCaller(cfg.routing.stage_call_attempts if cfg else 2)
            stages = HandleStages(lookup, predictor, explainer, self._caller)
        else:
            raise ValueError("Ingress needs a StageConfig (fused) or three handles (split)")
        policy = cfg.policy() if cfg is not None else ServicePolicy()
        audit = cfg.build_audit() if cfg is not None else None
        self._service = PredictionService(stages, policy, audit=audit)
        if self._caller is not None:
            self._caller.metrics = self._service.metrics
        # placement (serving.sentiment_api): scorer here, in the Sentiment deployment, or both
        self._sentiment = sentiment_api(sentiment, sentiment_local,
                                        max_texts=cfg.max_batch_tickers if cfg else 256)
        self._gate = Gate(cfg.access if cfg is not None else AccessConfig(), audit)
        set_replica_gate(self._gate)

    def __del__(self) -> None:
        """Replica shutdown: seal and fsync the audit file (Serve calls ``__del__``)."""
        audit = getattr(getattr(self, "_service", None), "audit", None)
        if audit is not None:
            audit.close()

    async def reconfigure(self, user_config: dict) -> None:
        """New ``user_config``: routing in place; a new ``reload_token`` re-resolves aliases."""
        routing = RoutingConfig.model_validate(user_config or {})
        apply_routing(self._service.policy, routing)
        if self._caller is not None:
            self._caller.set_attempts(routing.stage_call_attempts)
        if self._watcher is not None:
            await self._watcher.apply(routing.alias_poll_s, routing.reload_token)

    def set_stage_call_attempts(self, attempts: int) -> None:
        """Live switch of the stage-call retry on this replica (1 = off), without a redeploy:
        ``bench.stage_retry`` compares both in one run. ``user_config`` sets it for good."""
        if self._caller is not None:
            self._caller.set_attempts(attempts)

    def stage_retries(self) -> dict[str, int]:
        """Stage calls resent since this replica started, by ``Deployment.method`` (split mode;
        read through a deployment handle by tests and ``bench.stage_retry``)."""
        return dict(self._caller.retries) if self._caller is not None else {}

    async def _grpc(self, fn, request, grpc_context: RayServegRPCContext, empty, rpc: str):
        try:
            auth = next(
                (v for k, v in grpc_context.invocation_metadata() if k == "authorization"), None
            )
            self._gate.admit(rpc, auth)
            return await fn(request)
        except Exception as e:
            code, message, _ = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", fn.__name__)
            grpc_context.set_code(code)
            grpc_context.set_details(message)
            return empty

    # ---- gRPC: stockray.v1.PredictionService ----
    async def Predict(
        self, request: pb.PredictRequest, grpc_context: RayServegRPCContext
    ) -> pb.PredictResponse:
        return await self._grpc(
            self._service.predict, request, grpc_context, pb.PredictResponse(), "Predict"
        )

    async def PredictBatch(
        self, request: pb.PredictBatchRequest, grpc_context: RayServegRPCContext
    ) -> pb.PredictBatchResponse:
        return await self._grpc(
            self._service.predict_batch,
            request,
            grpc_context,
            pb.PredictBatchResponse(),
            "PredictBatch",
        )

    async def Explain(
        self, request: pb.ExplainRequest, grpc_context: RayServegRPCContext
    ) -> pb.ExplainResponse:
        return await self._grpc(
            self._service.explain, request, grpc_context, pb.ExplainResponse(), "Explain"
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, grpc_context: RayServegRPCContext
    ) -> pb.ListModelsResponse:
        return await self._grpc(
            self._service.list_models,
            request,
            grpc_context,
            pb.ListModelsResponse(),
            "ListModels",
        )

    async def ScoreText(
        self, request: pb.ScoreTextRequest, grpc_context: RayServegRPCContext
    ) -> pb.ScoreTextResponse:
        return await self._grpc(
            self._sentiment.score_text, request, grpc_context, pb.ScoreTextResponse(), "ScoreText"
        )

    async def ScoreTexts(
        self, request: pb.ScoreTextsRequest, grpc_context: RayServegRPCContext
    ) -> pb.ScoreTextsResponse:
        return await self._grpc(
            self._sentiment.score_texts, request, grpc_context, pb.ScoreTextsResponse(),
            "ScoreTexts",
        )

    # ---- gRPC: grpc.health.v1.Health ----
    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service == FEATURE_STORE_HEALTH:
            # The store's read path alone: NOT_SERVING while reads fail or time out, though
            # "" stays SERVING (known tickers are still answered, flagged stale).
            ok = await self._service.feature_store_serving()
            return health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVING if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING)
        if request.service not in ("", SERVICE_NAME):
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}; try {SERVICE_NAME!r}"
                                     f" or {FEATURE_STORE_HEALTH!r}")
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
    async def _http(self, fn, make_req) -> Any:
        try:
            resp = await fn(make_req())
        except Exception as e:
            code, _, _ = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", fn.__name__)
            return _error_response(e)
        return json_format.MessageToDict(
            resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    @api.post("/v1/predict")
    async def http_predict(self, body: PredictBody) -> Any:
        return await self._http(
            self._service.predict, lambda: pb.PredictRequest(**body.model_dump())
        )

    @api.post("/v1/predict_batch")
    async def http_predict_batch(self, body: PredictBatchBody) -> Any:
        return await self._http(
            self._service.predict_batch, lambda: pb.PredictBatchRequest(**body.model_dump())
        )

    @api.post("/v1/explain")
    async def http_explain(self, body: ExplainBody) -> Any:
        return await self._http(
            self._service.explain, lambda: pb.ExplainRequest(**body.model_dump())
        )

    @api.post("/v1/score_text")
    async def http_score_text(self, body: ScoreTextBody) -> Any:
        return await self._http(
            self._sentiment.score_text, lambda: pb.ScoreTextRequest(text=body.text)
        )

    @api.post("/v1/score_texts")
    async def http_score_texts(self, body: ScoreTextsBody) -> Any:
        return await self._http(
            self._sentiment.score_texts, lambda: pb.ScoreTextsRequest(texts=body.texts)
        )

    @api.get("/v1/models")
    async def http_models(self) -> Any:
        return await self._http(self._service.list_models, pb.ListModelsRequest)

    @api.get("/healthz")
    async def healthz(self) -> Any:
        ok = await self._health_status() == health_pb2.HealthCheckResponse.SERVING
        models = await self._service.models() if ok else {}
        champion = models.get("champion", {})
        return JSONResponse(
            {
                "status": "SERVING" if ok else "NOT_SERVING",
                "models": {
                    str(h): {"name": m.model_name, "version": m.model_version}
                    for h, m in champion.items()
                },
                "aliases": sorted(models),
                # ok=False: reads fail or time out; known tickers are served flagged stale
                "feature_store": await self._service.feature_store_health(),
            },
            status_code=200 if ok else 503,
        )
