"""SentimentDeployment: the sentiment bundle's scorer behind ``@serve.batch``.

Concurrent ScoreText calls from the ingress are merged into one ONNX run (a padded batch of
up to ``max_batch_size`` sentences), which is where batching pays: one 64-sentence run costs
far less than 64 one-sentence runs. A ScoreTexts call is one already-batched request.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from serving.sentiment_api import SentimentInfo
from serving.sentiment_models import SentimentScorer


@serve.deployment(name="Sentiment")
class SentimentDeployment:
    def __init__(self, bundle_dir: str, variant: str | None = None,
                 batch_wait_s: float = 0.002) -> None:
        self._scorer = SentimentScorer.from_bundle(bundle_dir, variant=variant)
        # a short wait: one lone sentence is not held back for long (p50 target ~5 ms)
        self.score_one.set_batch_wait_timeout_s(batch_wait_s)

    def info(self) -> SentimentInfo:
        s = self._scorer
        return SentimentInfo(model_name=s.model_name, model_version=s.model_version,
                             labels=s.labels)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def score_one(self, texts: list[str]) -> list[np.ndarray]:
        """One sentence per caller; Serve hands this a list of concurrent callers' texts."""
        return list(self._scorer.score(texts))

    async def score_many(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1:
            return (await self.score_one(texts[0]))[None, :]
        return self._scorer.score(texts)
