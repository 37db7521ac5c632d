"""FeatureLookupDeployment: a thin Serve wrapper around :class:`serving.lookup.FeatureLookup`."""

from __future__ import annotations

from ray import serve

from serving.config import StageConfig
from serving.errors import ServingError
from serving.lookup import FeatureRow


@serve.deployment(name="FeatureLookup")
class FeatureLookupDeployment:
    def __init__(self, config: StageConfig) -> None:
        # The reader (Feast store, DB connection) is built here, inside the replica.
        self._lookup = config.build_lookup()

    def lookup_many(
        self, tickers: list[str], services: tuple[str, ...] = ()
    ) -> dict[str, FeatureRow | ServingError]:
        # services: what the request's models need beyond the price features (text, ...)
        return self._lookup.get_many(tickers, services)

    def store_health(self) -> dict:
        return self._lookup.store_health()
