"""PredictorDeployment: a thin Serve wrapper around :class:`serving.scorer.Scorer`."""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve

from serving.config import StageConfig
from serving.errors import ServingError
from serving.lookup import FeatureRow
from serving.scorer import ModelInfo


@serve.deployment(name="Predictor")
class PredictorDeployment:
    def __init__(self, config: StageConfig) -> None:
        self._scorer = config.build_scorer()

    def models(self) -> dict[int, ModelInfo]:
        return self._scorer.models

    def score(self, row: FeatureRow, horizons: Sequence[int]) -> dict[int, float] | ServingError:
        try:
            return self._scorer.predict(row.values, horizons, ticker=row.ticker)
        except ServingError as e:
            return e  # returned, not raised: the caller's error, no replica stack trace
