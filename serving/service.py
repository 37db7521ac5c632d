"""PredictionService: validate a request, run lookup -> score -> explain, build the response.

The orchestration is written once against :class:`Stages`. ``LocalStages`` calls stage objects
in-process (the bare grpcio server and Serve's *fused* mode); ``serving.deployments.ingress``
supplies handle-backed stages for *split* mode. Every error a caller can cause is a
:class:`~serving.errors.ServingError`.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from serving.errors import InvalidRequestError
from serving.explainer import Explainer, Explanation
from serving.lookup import FeatureLookup, FeatureRow
from serving.protos import stockray_pb2 as pb
from serving.scorer import ModelInfo, Scorer

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_TICKER_LEN = 32


class Stages(Protocol):
    async def models(self) -> dict[int, ModelInfo]: ...

    async def lookup(self, ticker: str) -> FeatureRow: ...

    async def score(self, row: FeatureRow, horizons: Sequence[int]) -> dict[int, float]: ...

    async def explain(
        self, row: FeatureRow, horizons: Sequence[int], top_k: int
    ) -> dict[int, Explanation]: ...


class LocalStages:
    """Stage objects in this process (sync calls; each is ~µs–1 ms of CPU)."""

    def __init__(self, lookup: FeatureLookup, scorer: Scorer, explainer: Explainer) -> None:
        self._lookup, self._scorer, self._explainer = lookup, scorer, explainer

    async def models(self) -> dict[int, ModelInfo]:
        return self._scorer.models

    async def lookup(self, ticker: str) -> FeatureRow:
        return self._lookup.get(ticker)

    async def score(self, row: FeatureRow, horizons: Sequence[int]) -> dict[int, float]:
        return self._scorer.predict(row.values, horizons, ticker=row.ticker)

    async def explain(
        self, row: FeatureRow, horizons: Sequence[int], top_k: int
    ) -> dict[int, Explanation]:
        return self._explainer.explain(row.values, horizons, top_k=top_k, ticker=row.ticker)


def iso_utc(epoch_s: float) -> str:
    """``2024-05-01T00:00:00Z`` for an epoch; empty string when unknown (NaN)."""
    if math.isnan(epoch_s):
        return ""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def validate_request(req: pb.PredictRequest, served: Sequence[int]) -> tuple[str, list[int], int]:
    """Return ``(ticker, horizons, top_k)`` normalised, or raise InvalidRequestError."""
    ticker = req.ticker.strip().upper()
    if not ticker:
        raise InvalidRequestError("ticker is empty: pass a symbol such as 'AAPL'")
    if len(ticker) > MAX_TICKER_LEN or not ticker.replace(".", "").replace("-", "").isalnum():
        raise InvalidRequestError(
            f"ticker {req.ticker[:40]!r} is not a symbol: use letters, digits, '.' or '-'"
        )
    horizons = sorted(set(req.horizons)) or sorted(served)
    bad = [h for h in horizons if h not in served]
    if bad:
        raise InvalidRequestError(
            f"horizon(s) {bad} not served; served horizons are {sorted(served)} "
            "(leave horizons empty for all)"
        )
    if req.top_k < 0 or req.top_k > MAX_TOP_K:
        raise InvalidRequestError(f"top_k must be in 0..{MAX_TOP_K} (0 means {DEFAULT_TOP_K})")
    return ticker, horizons, req.top_k or DEFAULT_TOP_K


class PredictionService:
    """The request/response logic shared by every transport."""

    def __init__(self, stages: Stages) -> None:
        self._stages = stages
        self._models: dict[int, ModelInfo] | None = None

    async def models(self) -> dict[int, ModelInfo]:
        if self._models is None:
            self._models = await self._stages.models()
        return self._models

    async def predict(self, req: pb.PredictRequest) -> pb.PredictResponse:
        models = await self.models()
        ticker, horizons, top_k = validate_request(req, list(models))
        row = await self._stages.lookup(ticker)
        if req.explain:
            # Both need only the row: in split mode the two replicas work concurrently.
            preds, expl = await asyncio.gather(
                self._stages.score(row, horizons), self._stages.explain(row, horizons, top_k)
            )
        else:
            preds, expl = await self._stages.score(row, horizons), {}
        ts = iso_utc(row.feature_ts)
        resp = pb.PredictResponse(ticker=row.ticker, request_id=uuid.uuid4().hex)
        for h in horizons:
            info = models[h]
            hp = resp.predictions.add(
                horizon=h,
                predicted_return=preds[h],
                model_name=info.model_name,
                model_version=info.model_version,
                feature_timestamp=ts,
            )
            if h in expl:
                hp.base_value = expl[h].base_value
                for c in expl[h].contributions:
                    hp.contributions.add(feature=c.feature, value=c.value, shap=c.shap)
        return resp
