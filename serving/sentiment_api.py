"""ScoreText / ScoreTexts: request checks, response building and where the model runs.

``SentimentAPI(score_many)`` takes an async ``score_many(texts) -> (n, 3) probabilities``, so
the same code answers gRPC and HTTP. :func:`sentiment_api` wires it for a placement:

- ``ingress``: the scorer runs in the ingress replica (:class:`LocalSentiment`), no hop;
- ``deployment``: every call goes to the Sentiment deployment through its handle
  (:class:`SentimentHandle`; the hop and the ``@serve.batch`` wait slow a lone sentence);
- ``split``: one sentence in the ingress, batches in the Sentiment deployment.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import InvalidRequestError, ModelUnavailableError
from serving.protos import stockray_pb2 as pb
from serving.sentiment_models import MAX_TEXT_CHARS

LABELS = ("negative", "neutral", "positive")  # proto field names of TextScore
NOT_DEPLOYED = ("sentiment model not deployed: train one with `stockray sentiment train` and "
                "restart the server (it serves <data_dir>/models/sentiment)")


@dataclass(frozen=True)
class SentimentInfo:
    """What the served bundle says about itself."""

    model_name: str
    model_version: str
    labels: tuple[str, ...]
    single_variant: str = ""  # ONNX variant scoring a call of one sentence ("int8" | "fp32")
    batch_variant: str = ""  # ... and of two or more

    def variant_for(self, n: int) -> str:
        return self.single_variant if n == 1 else self.batch_variant

    @classmethod
    def of(cls, scorer: Any) -> SentimentInfo:
        """The info of a :class:`serving.sentiment_models.SentimentScorer`."""
        return cls(model_name=scorer.model_name, model_version=scorer.model_version,
                   labels=scorer.labels, single_variant=scorer.variant_for(1),
                   batch_variant=scorer.variant_for(2))


def check_texts(texts: Sequence[str], max_texts: int) -> list[str]:
    """The texts, or INVALID_ARGUMENT naming the first bad one and what to do."""
    if not texts:
        raise InvalidRequestError("no texts: send at least one sentence")
    if len(texts) > max_texts:
        raise InvalidRequestError(f"{len(texts)} texts; the limit is {max_texts} per call: "
                                  "split the request")
    for i, t in enumerate(texts):
        if not t.strip():
            raise InvalidRequestError(f"text {i} is empty: send a sentence")
        if len(t) > MAX_TEXT_CHARS:
            raise InvalidRequestError(f"text {i} has {len(t)} characters; the limit is "
                                      f"{MAX_TEXT_CHARS} (send sentences, not documents)")
    return list(texts)


def text_score(row: np.ndarray, labels: Sequence[str]) -> pb.TextScore:
    probs = dict(zip(labels, (float(v) for v in row), strict=True))
    return pb.TextScore(label=labels[int(np.argmax(row))],
                        **{k: probs[k] for k in LABELS if k in probs})


class SentimentAPI:
    """Answers ScoreText / ScoreTexts with ``score_many`` (None: the model is not deployed)."""

    def __init__(self, score_many: Callable[[list[str]], Awaitable[np.ndarray]] | None,
                 info: Callable[[], Awaitable[SentimentInfo]] | None, max_texts: int = 256) -> None:
        self._score, self._info, self.max_texts = score_many, info, max_texts

    async def _run(self, texts: list[str]) -> tuple[np.ndarray, SentimentInfo]:
        if self._score is None or self._info is None:
            raise ModelUnavailableError(NOT_DEPLOYED)
        info = await self._info()
        return await self._score(texts), info

    async def score_text(self, request: pb.ScoreTextRequest) -> pb.ScoreTextResponse:
        texts = check_texts([request.text], 1)
        p, info = await self._run(texts)
        return pb.ScoreTextResponse(score=text_score(p[0], info.labels),
                                    model_name=info.model_name, model_version=info.model_version,
                                    request_id=uuid.uuid4().hex,
                                    model_variant=info.variant_for(1))

    async def score_texts(self, request: pb.ScoreTextsRequest) -> pb.ScoreTextsResponse:
        texts = check_texts(list(request.texts), self.max_texts)
        p, info = await self._run(texts)
        return pb.ScoreTextsResponse(scores=[text_score(r, info.labels) for r in p],
                                     model_name=info.model_name,
                                     model_version=info.model_version,
                                     request_id=uuid.uuid4().hex,
                                     model_variant=info.variant_for(len(texts)))


class LocalSentiment:
    """The bundle's scorer in this process, off the event loop. Concurrent requests run side by
    side on one thread per scorer worker (a core): a lone int8 sentence is one single-threaded
    ONNX call, so two concurrent ones use both cores instead of queueing for one."""

    def __init__(self, bundle_dir: str, variant: str | None = None) -> None:
        from serving.sentiment_models import SentimentScorer

        self.scorer = SentimentScorer.from_bundle(bundle_dir, variant=variant)
        self._info = SentimentInfo.of(self.scorer)
        self._pool = ThreadPoolExecutor(self.scorer.workers, thread_name_prefix="sentiment")

    async def info(self) -> SentimentInfo:
        return self._info

    async def score_many(self, texts: list[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.scorer.score,
                                                                texts)


class SentimentHandle:
    """The Sentiment deployment through its handle; the model info is cached briefly."""

    def __init__(self, handle: Any, ttl_s: float = 1.0) -> None:
        self._h, self._ttl = handle, ttl_s
        self._info: tuple[float, SentimentInfo] | None = None

    async def info(self) -> SentimentInfo:
        now = time.monotonic()
        if self._info is None or now - self._info[0] > self._ttl:
            self._info = (now, await self._h.info.remote())
        return self._info[1]

    async def score_many(self, texts: list[str]) -> np.ndarray:
        return await self._h.score_many.remote(texts)


def sentiment_api(handle: Any = None, local: dict[str, Any] | None = None,
                  max_texts: int = 256) -> SentimentAPI:
    """The API for a placement: ``local`` (``LocalSentiment`` kwargs) only = ingress,
    ``handle`` only = deployment, both = split (one sentence local, batches remote)."""
    remote = SentimentHandle(handle) if handle is not None else None
    here = LocalSentiment(**local) if local is not None else None
    if here is None and remote is None:
        return SentimentAPI(None, None, max_texts)
    if here is None or remote is None:
        one = here or remote
        return SentimentAPI(one.score_many, one.info, max_texts)

    async def score_many(texts: list[str]) -> np.ndarray:
        return await (here.score_many(texts) if len(texts) == 1 else remote.score_many(texts))

    return SentimentAPI(score_many, here.info, max_texts)
