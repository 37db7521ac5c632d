"""PredictionService: validate a request, run lookup -> score -> explain, build the response.

The orchestration is written once against :class:`Stages`. ``LocalStages`` calls stage objects
in-process (the bare grpcio server and Serve's *fused* mode); ``serving.deployments.ingress``
supplies handle-backed stages for *split* mode. Every error a caller can cause is a
:class:`~serving.errors.ServingError`. Stages work on *lists* of rows, so ``PredictBatch`` costs
one ONNX run and at most one ``pred_contrib`` call per horizon.

Per horizon a prediction carries P(up) and a conformal interval when the bundle has validation
residual statistics (``serving.calibration``), the features' age and a staleness flag.

Sequence models (LSTM / Transformer bundles) answer the same requests: the online row is
looked up, checked (as_of, staleness, missing features) and reported exactly as for LightGBM;
the model input is that ticker's offline window ending at the online row's time
(``serving.scorer.model_input``), and explanations are integrated gradients.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from serving.audit import AuditLog
from serving.auth import CURRENT_KEY, FULL_EXPLAIN
from serving.errors import (
    FeatureStoreUnavailableError,
    InvalidRequestError,
    PermissionDeniedError,
    ServingError,
    StaleFeaturesError,
    status_of,
)
from serving.explainer import Explanation
from serving.lookup import FeatureLookup, FeatureRow
from serving.metrics import ServingMetrics
from serving.modelset import CHALLENGER, CHAMPION, ServedModels
from serving.protos import stockray_pb2 as pb
from serving.scorer import ModelInfo, input_groups, model_input
from training.bundle import KIND_SEQUENCE

log = logging.getLogger(__name__)
# grpc.health.v1 name of the online feature store's read path (not an RPC service of ours).
FEATURE_STORE_HEALTH = "stockray.v1.FeatureStore"
DEFAULT_TOP_K = 5
MAX_TOP_K = 1024  # >= any feature count (the catalogue grows; Explain returns all anyway)
# Contributions a key without the Explain scope may ask for (the full vector is Explain's).
TOP_K_WITHOUT_EXPLAIN_SCOPE = 10
MAX_TICKER_LEN = 32
TICKER_RE = re.compile(r"[A-Z0-9.\-]+")  # ASCII only (re's [A-Z] never matches other scripts)
FUTURE_SLACK_S = 60.0

# horizon -> (predicted return, the model that produced it)
Scores = dict[int, tuple[float, ModelInfo]]


@dataclass
class ServicePolicy:
    """Limits and routing of :class:`PredictionService` (see ``StageConfig`` for meanings)."""

    max_feature_age_s: float = 4 * 86400.0
    reject_stale: bool = False
    interval_coverage: float = 0.8
    max_batch_tickers: int = 256
    max_horizons: int = 16
    canary_weight: float = 0.0
    shadow: bool = False


class Stages(Protocol):
    async def models(self) -> dict[str, dict[int, ModelInfo]]: ...

    async def lookup_many(
        self, tickers: list[str], services: tuple[str, ...] = ()
    ) -> dict[str, FeatureRow | ServingError]: ...

    async def score(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str
    ) -> list[Scores | ServingError]: ...

    async def explain(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str, top_k: int = 0
    ) -> list[dict[int, Explanation] | ServingError]: ...


def _alias_set(served: ServedModels, alias: str):
    ms = served.sets.get(alias)
    if ms is None:
        raise InvalidRequestError(
            f"model alias {alias!r} is not served; served aliases are {sorted(served.sets)}"
        )
    return ms


def score_rows(
    served: ServedModels, rows: list[FeatureRow], horizons: Sequence[int], alias: str
) -> list[Scores | ServingError]:
    """One ONNX run per model graph (`input_groups`: the horizons of one multi-horizon
    sequence net share it) over every row with complete features."""
    ms = _alias_set(served, alias)
    assert ms.scorer is not None
    out: list[Scores | ServingError] = [{} for _ in rows]
    for group in input_groups(ms.info, horizons):
        info = ms.info[group[0]]
        xs, idx = [], []
        for i, row in enumerate(rows):
            if isinstance(out[i], ServingError):
                continue
            try:
                xs.append(
                    model_input(
                        row.values,
                        info,
                        ticker=row.ticker,
                        feature_ts=row.feature_ts,
                        history=ms.history,
                    )
                )
                idx.append(i)
            except ServingError as e:
                out[i] = e
        if xs:
            y = ms.scorer.predict_group(np.concatenate(xs), group)
            for j, i in enumerate(idx):
                for c, h in enumerate(group):
                    out[i][h] = (float(y[j, c]), ms.info[h])  # type: ignore[index]
    return out


def explain_rows(
    served: ServedModels,
    rows: list[FeatureRow],
    horizons: Sequence[int],
    alias: str,
    top_k: int = 0,
) -> list[dict[int, Explanation] | ServingError]:
    """Top-``top_k`` attributions (0 = every feature); uncached vectors in one batch call.
    A sequence window is cut once per model graph and shared by its horizons."""
    ms = _alias_set(served, alias)
    assert ms.explainer is not None
    if len(rows) > 1:
        ms.explainer.warm([r.values for r in rows], horizons)
    seq = [g for g in input_groups(ms.info, horizons) if ms.info[g[0]].kind == KIND_SEQUENCE]
    out: list[dict[int, Explanation] | ServingError] = []
    for row in rows:
        try:
            inputs = {}
            for group in seq:
                x = model_input(
                    row.values,
                    ms.info[group[0]],
                    ticker=row.ticker,
                    feature_ts=row.feature_ts,
                    history=ms.history,
                )
                inputs.update(dict.fromkeys(group, x))
            out.append(
                ms.explainer.explain(
                    row.values, horizons, top_k=top_k, ticker=row.ticker, inputs=inputs
                )
            )
        except ServingError as e:
            out.append(e)
    return out


class LocalStages:
    """Stage objects in this process (sync calls; each is ~µs–1 ms of CPU)."""

    def __init__(self, lookup: FeatureLookup, served: ServedModels) -> None:
        self.lookup_stage, self.served = lookup, served

    async def models(self) -> dict[str, dict[int, ModelInfo]]:
        return self.served.info()

    async def lookup_many(
        self, tickers: list[str], services: tuple[str, ...] = ()
    ) -> dict[str, FeatureRow | ServingError]:
        return self.lookup_stage.get_many(tickers, services)

    async def feature_store_health(self) -> dict:
        return self.lookup_stage.store_health()

    async def score(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str
    ) -> list[Scores | ServingError]:
        return score_rows(self.served, rows, horizons, alias)

    async def explain(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str, top_k: int = 0
    ) -> list[dict[int, Explanation] | ServingError]:
        return explain_rows(self.served, rows, horizons, alias, top_k)


def iso_utc(epoch_s: float) -> str:
    """``2024-05-01T00:00:00Z`` for an epoch; empty string when unknown (NaN)."""
    if math.isnan(epoch_s):
        return ""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def parse_as_of(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 time or date (naive = UTC); None for empty."""
    t = text.strip()
    if not t:
        return None
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise InvalidRequestError(
            f"as_of {text[:40]!r} is not an ISO 8601 time: use e.g. '2013-03-01' or "
            "'2013-03-01T21:00:00Z', or leave it empty for the latest features"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def check_ticker(raw: str) -> str:
    """Upper-cased ASCII symbol (letters, digits, '.', '-'), else InvalidRequestError.

    ``str.isalnum`` alone would admit any Unicode letter or digit (``'ÄPL'``, ``'١٢'``); the
    length is checked before ``upper()`` so an oversized value costs nothing."""
    if len(raw) > 4 * MAX_TICKER_LEN:
        raise InvalidRequestError(
            f"ticker of {len(raw)} characters is not a symbol: at most {MAX_TICKER_LEN}"
        )
    ticker = raw.strip().upper()
    if not ticker:
        raise InvalidRequestError("ticker is empty: pass a symbol such as 'AAPL'")
    if len(ticker) > MAX_TICKER_LEN or not raw.isascii() or not TICKER_RE.fullmatch(ticker):
        raise InvalidRequestError(
            f"ticker {raw[:40]!r} is not a symbol: use at most {MAX_TICKER_LEN} ASCII "
            "letters, digits, '.' or '-'"
        )
    return ticker


def check_horizons(raw: Sequence[int], served: Sequence[int], max_n: int, alias: str) -> list[int]:
    if len(raw) > max_n:
        raise InvalidRequestError(
            f"{len(raw)} horizons requested; at most {max_n} per request (leave empty for all)"
        )
    horizons = sorted(set(raw)) or sorted(served)
    bad = [h for h in horizons if h not in served]
    if bad:
        who = "" if alias == CHAMPION else f" by the {alias} model"
        raise InvalidRequestError(
            f"horizon(s) {bad} not served{who}; served horizons are {sorted(served)} "
            "(leave horizons empty for all)"
        )
    return horizons


def validate_request(req: pb.PredictRequest, served: Sequence[int]) -> tuple[str, list[int], int]:
    """Return ``(ticker, horizons, top_k)`` normalised, or raise InvalidRequestError."""
    ticker = check_ticker(req.ticker)
    horizons = check_horizons(req.horizons, served, 10**6, CHAMPION)
    return ticker, horizons, check_top_k(req.top_k)


def check_top_k(top_k: int) -> int:
    if top_k < 0 or top_k > MAX_TOP_K:
        raise InvalidRequestError(f"top_k must be in 0..{MAX_TOP_K} (0 means {DEFAULT_TOP_K})")
    return top_k or DEFAULT_TOP_K


def features_hash(row: FeatureRow) -> str:
    return hashlib.sha256(json.dumps(row.values, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class _Plan:
    tickers: list[str]
    horizons: list[int]
    alias: str
    routed: bool  # alias chosen by the server (canary), not the caller
    as_of: float | None
    explain: bool
    top_k: int
    services: tuple[str, ...] = ()  # opt-in feature services the plan's models read


class PredictionService:
    """The request/response logic shared by every transport.

    Args:
        stages: where lookup/score/explain run.
        policy: limits, staleness, interval coverage, canary/shadow routing.
        audit: append-only audit log (None = off).
        metrics: Prometheus series through Ray (default: on when Ray is connected).
        clock: wall clock (epoch seconds), injectable for tests.
        rng: uniform [0, 1) source for the canary split.
    """

    def __init__(
        self,
        stages: Stages,
        policy: ServicePolicy | None = None,
        *,
        audit: AuditLog | None = None,
        metrics: ServingMetrics | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._stages = stages
        self.policy = policy or ServicePolicy()
        self.audit = audit
        self.metrics = metrics if metrics is not None else ServingMetrics()
        self._clock, self._rng = clock, rng

    async def models(self) -> dict[str, dict[int, ModelInfo]]:
        return await self._stages.models()

    async def feature_store_health(self) -> dict | None:
        """The lookup stage's view of the online store (None for stages that do not say)."""
        fn = getattr(self._stages, "feature_store_health", None)
        return await fn() if fn is not None else None

    async def feature_store_serving(self) -> bool:
        """False while the online store's read path fails or misses its deadline (what the
        ``stockray.v1.FeatureStore`` gRPC health service reports). Requests are still answered
        meanwhile (last good rows, flagged stale), so the overall health stays SERVING."""
        try:
            health = await self.feature_store_health()
        except Exception:  # the lookup stage itself is unreachable: so is the store
            log.warning("feature store health unavailable", exc_info=True)
            return False
        return health is None or bool(health.get("ok", True))

    # ---- request planning ----
    def _plan(self, models, tickers_raw, horizons_raw, alias_raw, as_of_raw, explain, top_k):
        pol = self.policy
        alias = alias_raw.strip().lower()
        routed = False
        if alias and alias not in models:
            raise InvalidRequestError(
                f"model alias {alias_raw[:40]!r} is not served; served aliases are "
                f"{sorted(models)} (leave it empty for the champion)"
            )
        if not alias:
            alias = CHAMPION
            if CHALLENGER in models and pol.canary_weight > 0 and self._rng() < pol.canary_weight:
                routed = True
        horizons = check_horizons(horizons_raw, list(models[alias]), pol.max_horizons, alias)
        if routed and set(horizons) <= set(models[CHALLENGER]):
            alias = CHALLENGER  # canary: only requests the challenger can answer in full
        else:
            routed = False
        as_of = parse_as_of(as_of_raw)
        if as_of is not None and as_of > self._clock() + FUTURE_SLACK_S:
            raise InvalidRequestError(
                f"as_of {as_of_raw!r} is in the future: pass a past time or leave it empty"
            )
        tickers = [check_ticker(t) for t in tickers_raw]
        if explain and top_k > TOP_K_WITHOUT_EXPLAIN_SCOPE and not FULL_EXPLAIN.get():
            raise PermissionDeniedError(
                f"top_k {top_k} needs a key with the Explain scope (at most "
                f"{TOP_K_WITHOUT_EXPLAIN_SCOPE} contributions otherwise): lower top_k"
            )
        services = {s for h in horizons for s in models[alias][h].services}
        if pol.shadow and alias == CHAMPION and not routed and CHALLENGER in models:
            # the shadow challenger scores the same rows: read what it needs too
            services |= {s for h in horizons if h in models[CHALLENGER]
                         for s in models[CHALLENGER][h].services}
        return _Plan(tickers, horizons, alias, routed, as_of, explain, check_top_k(top_k),
                     tuple(sorted(services)))

    async def _lookup(self, plan: _Plan) -> dict[str, FeatureRow | ServingError]:
        if plan.services:  # only then: stages without opt-in services keep their signature
            return await self._stages.lookup_many(plan.tickers, plan.services)
        return await self._stages.lookup_many(plan.tickers)

    def _check_row(self, row: FeatureRow, as_of: float | None) -> tuple[float, bool]:
        """``(feature age s, stale)`` of a row, or raise for as-of / staleness violations."""
        ref = self._clock() if as_of is None else as_of
        if as_of is not None and not math.isnan(row.feature_ts) and as_of < row.feature_ts:
            raise InvalidRequestError(
                f"as_of {iso_utc(as_of)} is before the online store's latest features for "
                f"{row.ticker} ({iso_utc(row.feature_ts)}): the online store keeps only the "
                "latest row; leave as_of empty, or use the offline store (point-in-time join, "
                "`stockray evaluate`) for history"
            )
        age = ref - row.feature_ts if not math.isnan(row.feature_ts) else math.inf
        stale = age > self.policy.max_feature_age_s or row.degraded
        if row.degraded and self.policy.reject_stale:
            raise FeatureStoreUnavailableError(
                f"the online feature store is unavailable and this server refuses stale "
                f"features ({row.ticker}): retry in a few seconds; operators: check /healthz"
            )
        if stale and self.policy.reject_stale:
            raise StaleFeaturesError(
                f"features of {row.ticker} are as of {iso_utc(row.feature_ts) or 'unknown'} "
                f"({age / 86400:.1f} days old, limit {self.policy.max_feature_age_s / 86400:.1f}):"
                " run materialize (`stockray features`) or raise max_feature_age_s"
            )
        return age, stale

    async def _run(self, plan: _Plan) -> tuple[list[pb.PredictResponse | ServingError], dict]:
        got = await self._lookup(plan)
        results: list[Any] = []
        rows: list[FeatureRow] = []
        ages: list[tuple[float, bool]] = []
        for t in plan.tickers:
            r = got[t]
            if isinstance(r, FeatureRow):
                try:
                    ages.append(self._check_row(r, plan.as_of))
                    rows.append(r)
                    results.append(len(rows) - 1)
                    continue
                except ServingError as e:
                    r = e
            results.append(r)
        scores: list[Any] = []
        expl: list[Any] = []
        shadow: list[Any] = []
        if rows:
            jobs = [self._stages.score(rows, plan.horizons, plan.alias)]
            if plan.explain:
                jobs.append(self._timed_explain(rows, plan.horizons, plan.alias, plan.top_k))
            if self.policy.shadow and plan.alias == CHAMPION and not plan.routed:
                models = await self._stages.models()
                if CHALLENGER in models and set(plan.horizons) <= set(models[CHALLENGER]):
                    jobs.append(self._stages.score(rows, plan.horizons, CHALLENGER))
            done = await asyncio.gather(*jobs)
            scores = done[0]
            expl = done[1] if plan.explain else [None] * len(rows)
            shadow = done[-1] if len(done) > 1 + plan.explain else []
        out: list[pb.PredictResponse | ServingError] = []
        audit_rows = []
        cov = self.policy.interval_coverage
        for slot in results:
            if not isinstance(slot, int):
                out.append(slot)
                continue
            row, (age, stale), sc, ex = rows[slot], ages[slot], scores[slot], expl[slot]
            if isinstance(sc, ServingError) or isinstance(ex, ServingError):
                out.append(sc if isinstance(sc, ServingError) else ex)
                continue
            ts = iso_utc(row.feature_ts)
            resp = pb.PredictResponse(ticker=row.ticker)
            summary = {}
            for h in plan.horizons:
                value, info = sc[h]
                hp = resp.predictions.add(
                    horizon=h,
                    predicted_return=value,
                    model_name=info.model_name,
                    model_version=info.model_version,
                    feature_timestamp=ts,
                    stale=stale,
                    feature_age_s=age if math.isfinite(age) else 0.0,
                    model_alias=info.alias,
                )
                cal = info.calibration
                iv = None
                if cal is not None:
                    hp.prob_up = cal.prob_up(value)
                    iv = cal.interval(value, cov)
                    if iv is not None:
                        hp.interval.lower, hp.interval.upper, hp.interval.coverage = iv
                if ex is not None:
                    e = ex[h]
                    hp.base_value = e.base_value
                    for c in e.contributions[: plan.top_k]:
                        hp.contributions.add(feature=c.feature, value=c.value, shap=c.shap)
                summary[h] = {
                    "pred": value,
                    "model": f"{info.alias}:{info.model_name}:{info.model_version}",
                    "stale": stale,
                    "age": age if math.isfinite(age) else None,
                    # the served interval, so realised coverage can be measured later
                    **({"lo": iv[0], "hi": iv[1]} if iv is not None else {}),
                }
            if self.audit is None and not self.metrics.enabled and not shadow:
                out.append(resp)
                continue
            a = {"ticker": row.ticker, "h": summary}
            if self.audit is not None:  # the hash is for the audit trail only
                a["features_sha256"] = features_hash(row)
            if shadow and not isinstance(shadow[slot], ServingError):
                a["shadow"] = {
                    h: {"pred": v, "model": f"{i.alias}:{i.model_name}:{i.model_version}"}
                    for h, (v, i) in shadow[slot].items()
                }
            audit_rows.append(a)
            out.append(resp)
        return out, {"rows": audit_rows}

    def _audit(self, rpc: str, request_id: str, request: dict, t0: float, extra: dict) -> None:
        if self.audit is None:
            return
        rec = {
            "ts": time.time(),
            "request_id": request_id,
            "rpc": rpc,
            "key": CURRENT_KEY.get(),  # the key's name, never its token
            "request": request,
            **extra,
            "latency_ms": (time.perf_counter() - t0) * 1e3,
        }
        try:
            self.audit.append(rec)
        except OSError:
            log.exception("audit log write failed")  # never fail the request for the log
        if any("shadow" in r for r in extra.get("rows", [])):
            log.info("shadow %s %s", request_id, extra["rows"])  # both answers, side by side

    async def _timed_explain(self, rows, horizons, alias, top_k=0):
        t0 = time.perf_counter()
        try:
            return await self._stages.explain(rows, horizons, alias, top_k)
        finally:
            self.metrics.explain("Predict", (time.perf_counter() - t0) * 1e3)

    async def _guard(self, rpc: str, request: dict, fn) -> Any:
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex
        extra: dict = {}
        code_name = "OK"
        try:
            resp, extra = await fn(rid)
            return resp
        except Exception as e:
            code, message, _ = status_of(e)
            code_name = code.name
            extra = {**extra, "error": {"code": code.name, "message": message}}
            raise
        finally:
            self._audit(rpc, rid, request, t0, extra)
            self.metrics.rpc(rpc, code_name, (time.perf_counter() - t0) * 1e3,
                             extra.get("rows", ()))

    # ---- RPCs ----
    async def predict(self, req: pb.PredictRequest) -> pb.PredictResponse:
        async def go(rid):
            models = await self._stages.models()
            plan = self._plan(
                models,
                [req.ticker],
                req.horizons,
                req.model_alias,
                req.as_of,
                req.explain,
                req.top_k,
            )
            (res,), extra = await self._run(plan)
            if isinstance(res, ServingError):
                raise res
            res.request_id = rid
            return res, extra

        return await self._guard("Predict", _req_dict(req), go)

    async def predict_batch(self, req: pb.PredictBatchRequest) -> pb.PredictBatchResponse:
        async def go(rid):
            pol = self.policy
            if not req.tickers:
                raise InvalidRequestError("tickers is empty: pass one or more symbols")
            if len(req.tickers) > pol.max_batch_tickers:
                raise InvalidRequestError(
                    f"{len(req.tickers)} tickers in one batch; the limit is "
                    f"{pol.max_batch_tickers}: split the request"
                )
            models = await self._stages.models()
            plan = self._plan(
                models, [], req.horizons, req.model_alias, req.as_of, req.explain, req.top_k
            )
            resp = pb.PredictBatchResponse(request_id=rid)
            valid, slots = [], []
            for raw in req.tickers:
                try:
                    valid.append(check_ticker(raw))
                    slots.append(len(valid) - 1)
                except ServingError as e:
                    slots.append(e)
            plan.tickers = list(dict.fromkeys(valid))
            results, extra = await self._run(plan) if plan.tickers else ([], {"rows": []})
            by_ticker = dict(zip(plan.tickers, results, strict=True))
            for raw, slot in zip(req.tickers, slots, strict=True):
                r = slot if isinstance(slot, ServingError) else by_ticker[valid[slot]]
                tr = resp.results.add(ticker=raw.strip().upper()[:MAX_TICKER_LEN])
                if isinstance(r, ServingError):
                    tr.error.code, tr.error.message = r.grpc_code.name, r.message
                else:
                    tr.prediction.CopyFrom(r)
                    tr.prediction.request_id = rid
            return resp, extra

        return await self._guard("PredictBatch", _req_dict(req), go)

    async def explain(self, req: pb.ExplainRequest) -> pb.ExplainResponse:
        async def go(rid):
            models = await self._stages.models()
            plan = self._plan(
                models, [req.ticker], req.horizons, req.model_alias, req.as_of, True, 0
            )
            got = (await self._lookup(plan))[plan.tickers[0]]
            if isinstance(got, ServingError):
                raise got
            self._check_row(got, plan.as_of)
            sc, ex = await asyncio.gather(
                self._stages.score([got], plan.horizons, plan.alias),
                self._stages.explain([got], plan.horizons, plan.alias),
            )
            for r in (sc[0], ex[0]):
                if isinstance(r, ServingError):
                    raise r
            resp = pb.ExplainResponse(ticker=got.ticker, request_id=rid)
            for h in plan.horizons:
                value, info = sc[0][h]
                e = ex[0][h]
                he = resp.explanations.add(
                    horizon=h,
                    base_value=e.base_value,
                    predicted_return=value,
                    model_name=info.model_name,
                    model_version=info.model_version,
                    feature_timestamp=iso_utc(got.feature_ts),
                )
                for c in e.contributions:
                    he.contributions.add(feature=c.feature, value=c.value, shap=c.shap)
            return resp, {
                "rows": [
                    {
                        "ticker": got.ticker,
                        "features_sha256": features_hash(got),
                        "h": {h: sc[0][h][0] for h in plan.horizons},
                    }
                ]
            }

        return await self._guard("Explain", _req_dict(req), go)

    async def list_models(self, req: pb.ListModelsRequest | None = None) -> pb.ListModelsResponse:
        models = await self._stages.models()
        pol = self.policy
        resp = pb.ListModelsResponse(
            horizons=sorted(models.get(CHAMPION, {})),
            aliases=sorted(models),
            canary_weight=pol.canary_weight,
            shadow=pol.shadow,
            max_feature_age_s=pol.max_feature_age_s,
            reject_stale=pol.reject_stale,
        )
        for alias in sorted(models):
            for h, info in sorted(models[alias].items()):
                cal = info.calibration
                iv = cal.interval(0.0, pol.interval_coverage) if cal else None
                resp.models.add(
                    horizon=h,
                    model_name=info.model_name,
                    model_version=info.model_version,
                    alias=alias,
                    feature_names=list(info.feature_names),
                    provider=info.provider,
                    calibrated=cal is not None,
                    interval_coverage=iv[2] if iv else 0.0,
                    kind=info.kind,
                    family=info.family,
                    window=info.window,
                )
        return resp


def _req_dict(req: Any) -> dict:
    """The request fields that are set (cheap, no json_format)."""
    return {f.name: (list(v) if f.is_repeated else v) for f, v in req.ListFields()}
