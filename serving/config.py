"""StageConfig: how a replica builds its stage objects (crosses the process boundary), and
RoutingConfig: what Serve's ``user_config`` changes on live replicas (``reconfigure``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from serving.audit import AuditLog
from serving.auth import AccessConfig
from serving.history import OfflineHistory
from serving.lookup import FeatureLookup, GenerationWatch
from serving.models import ModelSource
from serving.modelset import CHALLENGER, CHAMPION, ServedModels
from serving.readers import DEFAULT_READER, build_reader
from serving.service import LocalStages, ServicePolicy


class RoutingConfig(BaseModel):
    """Live-reconfigurable routing (the deployment's ``user_config``)."""

    canary_weight: float = Field(
        0.0, ge=0, le=1, description="Fraction of alias-less requests the challenger answers."
    )
    shadow: bool = Field(
        False, description="Challenger also scores alias-less requests; both answers logged."
    )
    alias_poll_s: float = Field(
        10.0, ge=0, description="How often replicas re-resolve registry aliases (0 = never)."
    )
    reload_token: str = Field(
        "", description="Change it to force an immediate alias re-resolution (e.g. on promote)."
    )
    stage_call_attempts: int = Field(
        2, ge=1, le=2,
        description="Split mode: tries per ingress->stage call when the stage replica dies "
        "mid-call (2 = resend once; 1 = no retry). Stage calls are idempotent reads.",
    )


class StageConfig(BaseModel):
    """Everything needed to build FeatureLookup, Scorer and Explainer inside a replica."""

    models: ModelSource = Field(description="Where the champion model bundles come from.")
    challenger: ModelSource | None = Field(
        None, description="Where challenger bundles come from (may cover some horizons)."
    )
    reader: str = Field(DEFAULT_READER, description="Import path of the feature reader class.")
    reader_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the reader class."
    )
    feature_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="Feature cache TTL: the backstop; the generation stamp invalidates first.",
    )
    # One os.stat (~1 µs) per check: 50 ms bounds how long a replica serves pre-materialize
    # rows at no measurable cost.
    feature_generation_check_s: float = Field(
        0.05,
        ge=0,
        description="How often the online-store generation stamp is checked (0 = per request).",
    )
    feature_read_timeout_s: float = Field(
        2.0,
        gt=0,
        description="Deadline of one online-store read; past it known tickers are served "
        "from their last good row flagged stale, others get UNAVAILABLE.",
    )
    explain_cache_size: int = Field(
        4096, ge=0, description="Explanations cached by exact feature vector (0 = off)."
    )
    offline_features: str | None = Field(
        None,
        description="Offline feature table (<data_dir>/offline/features.parquet) that sequence "
        "models read each ticker's last `window` rows from; required to serve lstm/transformer.",
    )
    history_check_s: float = Field(
        1.0, ge=0, description="How often the offline table's mtime is checked (0 = per call)."
    )
    warm_tickers: list[str] = Field(
        default_factory=list,
        description="Tickers whose explanations are precomputed in one batch at (re)load.",
    )
    # A weekend plus a market holiday is 4 days between daily rows: older means materialize
    # did not run.
    max_feature_age_s: float = Field(
        4 * 86400.0, gt=0, description="Features older than this are stale."
    )
    reject_stale: bool = Field(
        False, description="Stale features: FAILED_PRECONDITION (True) or flagged (False)."
    )
    interval_coverage: float = Field(0.8, gt=0, lt=1, description="Conformal interval level.")
    max_batch_tickers: int = Field(256, ge=1, description="PredictBatch ticker limit.")
    max_horizons: int = Field(16, ge=1, description="Horizons per request limit.")
    audit_dir: str | None = Field(None, description="Audit JSONL directory (None = off).")
    audit_fsync_every_s: float = Field(1.0, ge=0, description="fsync period of the audit log.")
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    access: AccessConfig = Field(
        default_factory=AccessConfig,
        description="Token auth, scopes, rate limits, reflection, request size limit.",
    )

    def build_lookup(self) -> FeatureLookup:
        reader = build_reader(self.reader, self.reader_kwargs)
        # Readers that know their store's generation stamp (FeastOnlineReader) expose its path.
        stamp = getattr(reader, "generation_path", None)
        watch = GenerationWatch(stamp, self.feature_generation_check_s) if stamp else None
        return FeatureLookup(reader, ttl_s=self.feature_cache_ttl_s, watch=watch,
                             read_timeout_s=self.feature_read_timeout_s)

    def sources(self) -> dict[str, ModelSource]:
        out = {CHAMPION: self.models}
        if self.challenger is not None:
            out[CHALLENGER] = self.challenger
        return out

    def build_served(
        self,
        lookup: FeatureLookup | None = None,
        *,
        with_scorer: bool = True,
        with_explainer: bool = True,
    ) -> ServedModels:
        warm = None
        if lookup is not None and self.warm_tickers:
            warm = lambda: lookup.rows(self.warm_tickers)
        return ServedModels(
            self.sources(),
            with_scorer=with_scorer,
            with_explainer=with_explainer,
            explain_cache_size=self.explain_cache_size,
            warm_rows=warm,
            history=self.build_history(),
        )

    def build_history(self) -> OfflineHistory | None:
        """The per-replica offline history reader (None when no table is configured)."""
        if not self.offline_features:
            return None
        return OfflineHistory(self.offline_features, check_every_s=self.history_check_s)

    def policy(self) -> ServicePolicy:
        return ServicePolicy(
            max_feature_age_s=self.max_feature_age_s,
            reject_stale=self.reject_stale,
            interval_coverage=self.interval_coverage,
            max_batch_tickers=self.max_batch_tickers,
            max_horizons=self.max_horizons,
            canary_weight=self.routing.canary_weight,
            shadow=self.routing.shadow,
        )

    def build_audit(self) -> AuditLog | None:
        if not self.audit_dir:
            return None
        return AuditLog(self.audit_dir, fsync_every_s=self.audit_fsync_every_s)

    def build_local_stages(self) -> LocalStages:
        lookup = self.build_lookup()
        served = self.build_served(lookup)
        if self.warm_tickers and self.explain_cache_size > 0:
            lookup.add_listener(
                lambda stamp: rewarm_explanations(served, lookup, self.warm_tickers)
            )
        return LocalStages(lookup, served)


def rewarm_explanations(served: ServedModels, lookup: FeatureLookup, tickers: list[str]) -> int:
    """After a materialize: explain the new rows of ``tickers`` in one batch call per horizon.

    The explanation cache is keyed by the exact feature vector, so it never serves an
    explanation of old features for new ones; this only moves the TreeSHAP cost of the new
    vectors off the request path. Returns the number of vectors computed.
    """
    rows = lookup.rows(tickers)
    done = 0
    for ms in list(served.sets.values()):
        if ms.explainer is not None:
            done += ms.explainer.warm(rows)
    return done
