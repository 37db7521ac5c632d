"""ExplainerDeployment: a thin Serve wrapper around :class:`serving.explainer.Explainer`."""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve

from serving.config import StageConfig
from serving.errors import ServingError
from serving.explainer import Explanation
from serving.lookup import FeatureRow


@serve.deployment(name="Explainer")
class ExplainerDeployment:
    def __init__(self, config: StageConfig) -> None:
        self._explainer = config.build_explainer()

    def explain(
        self, row: FeatureRow, horizons: Sequence[int], top_k: int
    ) -> dict[int, Explanation] | ServingError:
        try:
            return self._explainer.explain(row.values, horizons, top_k=top_k, ticker=row.ticker)
        except ServingError as e:
            return e  # returned, not raised: the caller's error, no replica stack trace
