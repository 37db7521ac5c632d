"""ScoreText / ScoreTexts: request checks and response building, apart from Serve.

``SentimentAPI(score_many)`` takes an async ``score_many(texts) -> (n, 3) probabilities``
(the Serve deployment's batched method through a handle, or a local scorer in tests), so the
same code answers gRPC and HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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
                                    request_id=uuid.uuid4().hex)

    async def score_texts(self, request: pb.ScoreTextsRequest) -> pb.ScoreTextsResponse:
        texts = check_texts(list(request.texts), self.max_texts)
        p, info = await self._run(texts)
        return pb.ScoreTextsResponse(scores=[text_score(r, info.labels) for r in p],
                                     model_name=info.model_name,
                                     model_version=info.model_version,
                                     request_id=uuid.uuid4().hex)
