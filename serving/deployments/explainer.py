"""ExplainerDeployment: a thin Serve wrapper around the explainers of every served alias."""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve

from serving.config import RoutingConfig, StageConfig
from serving.errors import ServingError
from serving.explainer import Explanation
from serving.lookup import FeatureRow
from serving.modelset import Watcher
from serving.service import explain_rows


@serve.deployment(name="Explainer")
class ExplainerDeployment:
    def __init__(self, config: StageConfig) -> None:
        # Warm-up reads the rows through its own lookup (the reader is built in-replica).
        lookup = config.build_lookup() if config.warm_tickers else None
        self._served = config.build_served(lookup, with_scorer=False)
        self._watcher = Watcher(self._served, config.routing.alias_poll_s)

    async def reconfigure(self, user_config: dict) -> None:
        routing = RoutingConfig.model_validate(user_config or {})
        await self._watcher.apply(routing.alias_poll_s, routing.reload_token)

    def explain(
        self, rows: list[FeatureRow], horizons: Sequence[int], alias: str, top_k: int = 0
    ) -> list[dict[int, Explanation] | ServingError] | ServingError:
        try:
            return explain_rows(self._served, rows, horizons, alias, top_k)
        except ServingError as e:
            return e  # returned, not raised: the caller's error, no replica stack trace
