"""PredictorDeployment: a thin Serve wrapper around the scorers of every served alias."""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve

from serving.config import RoutingConfig, StageConfig
from serving.errors import ServingError
from serving.lookup import FeatureRow
from serving.modelset import Watcher
from serving.scorer import ModelInfo
from serving.service import Scores, score_rows


@serve.deployment(name="Predictor")
class PredictorDeployment:
    def __init__(self, config: StageConfig) -> None:
        self._served = config.build_served(with_explainer=False)
        self._watcher = Watcher(self._served, config.routing.alias_poll_s)

    async def reconfigure(self, user_config: dict) -> None:
        routing = RoutingConfig.model_validate(user_config or {})
        await self._watcher.apply(routing.alias_poll_s, routing.reload_token)

    def models(self) -> dict[str, dict[int, ModelInfo]]:
        return self._served.info()

    def score(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str
    ) -> list[Scores | ServingError] | ServingError:
        try:
            return score_rows(self._served, rows, horizons, alias)
        except ServingError as e:
            return e  # returned, not raised: the caller's error, no replica stack trace
