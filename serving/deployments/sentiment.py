"""SentimentDeployment: the sentiment bundle's scorer in its own replica.

Where it is used depends on ``AppArgs.sentiment_placement`` (serving.sentiment_api): every
call (``deployment``) or only batches (``split``); with ``ingress`` it is not deployed.

A lone sentence scored fp32 goes through ``@serve.batch``: concurrent ones are merged into
one padded run, which costs far less than one run each. int8 runs one sentence per ONNX call
anyway (its scales follow the input), so merging would only add the batch wait: skipped.
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
        self._info = SentimentInfo.of(self._scorer)
        # a short wait: one lone sentence is not held back for long (p50 target ~5 ms)
        self.score_one.set_batch_wait_timeout_s(batch_wait_s)

    def info(self) -> SentimentInfo:
        return self._info

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def score_one(self, texts: list[str]) -> list[np.ndarray]:
        """One sentence per caller; Serve hands this a list of concurrent callers' texts. The
        variant is the one-sentence one, so the answer never depends on the merge."""
        return list(self._scorer.score(texts, variant=self._info.single_variant))

    async def score_many(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1 and self._info.single_variant == "fp32":
            return (await self.score_one(texts[0]))[None, :]
        return self._scorer.score(texts)
