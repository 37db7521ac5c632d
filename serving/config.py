"""StageConfig: how a replica builds its stage objects (crosses the process boundary)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from serving.explainer import Explainer
from serving.lookup import FeatureLookup
from serving.models import ModelSource, resolve_bundles
from serving.readers import DEFAULT_READER, build_reader
from serving.scorer import Scorer
from serving.service import LocalStages


class StageConfig(BaseModel):
    """Everything needed to build FeatureLookup, Scorer and Explainer inside a replica."""

    models: ModelSource = Field(description="Where the model bundles come from.")
    reader: str = Field(DEFAULT_READER, description="Import path of the feature reader class.")
    reader_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the reader class."
    )
    feature_cache_ttl_s: float = Field(
        5.0, ge=0, description="Feature cache TTL; daily features, so seconds cost nothing."
    )
    explain_cache_size: int = Field(
        1024, ge=0, description="Explanations cached by exact feature vector (0 = off)."
    )

    def build_lookup(self) -> FeatureLookup:
        return FeatureLookup(
            build_reader(self.reader, self.reader_kwargs), ttl_s=self.feature_cache_ttl_s
        )

    def build_scorer(self) -> Scorer:
        return Scorer(resolve_bundles(self.models))

    def build_explainer(self) -> Explainer:
        return Explainer(resolve_bundles(self.models), cache_size=self.explain_cache_size)

    def build_local_stages(self) -> LocalStages:
        bundles = resolve_bundles(self.models)
        return LocalStages(
            self.build_lookup(),
            Scorer(bundles),
            Explainer(bundles, cache_size=self.explain_cache_size),
        )
