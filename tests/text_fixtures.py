"""A small real sentiment scorer for the text tests: bag of words + softmax regression.

Fitted by gradient descent on the labelled sentences below (written for these tests), so its
outputs are whatever the fit gives, never a hard-coded table. It satisfies
``features.text.scoring.TextScorer``; the project's fine-tuned model plugs into the same slot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

TRAIN = {
    0: ["misses revenue estimates and cuts its outlook", "shares slide as launch is delayed",
        "analysts downgrade the stock on weakening demand", "faces a regulatory probe",
        "warns of lower margins amid rising costs", "profit falls sharply",
        "shares fall after weak software revenue", "net sales decreased",
        "cloud growth slows as spending cools", "recalls faulty devices",
        "reports a wider loss than expected", "cuts jobs as sales drop",
        "sued over patent infringement", "guidance disappoints investors"],
    1: ["to hold its annual shareholder meeting", "names a new head of investor relations",
        "schedules its quarterly earnings call", "opens a new office as planned",
        "files routine paperwork with regulators", "to report earnings next week",
        "issued a press release regarding its results", "oil prices steady",
        "was little changed", "announces board meeting date", "publishes annual report",
        "moves headquarters within the city", "updates its website", "form filed"],
    2: ["beats quarterly earnings estimates and raises guidance", "shares rally after strong demand",
        "analysts upgrade the stock to buy", "wins a large multi-year contract",
        "announces a bigger buyback and a higher dividend", "revenue above expectations",
        "lead a tech rebound", "shares rose in early trading", "record profit",
        "expands partnership boosting outlook", "unveils new chips to strong reviews",
        "margins improve", "raises full-year forecast", "demand holds up strongly"],
}
_TOKEN = re.compile(r"[a-z]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BowScorer:
    """``score(texts) -> (n, 3)`` softmax probabilities (negative, neutral, positive)."""

    def __init__(self, vocab: dict[str, int], w: np.ndarray, b: np.ndarray):
        self.vocab, self.w, self.b = vocab, w, b

    def _x(self, texts: list[str]) -> np.ndarray:
        x = np.zeros((len(texts), len(self.vocab)))
        for i, t in enumerate(texts):
            for tok in _tokens(t):
                j = self.vocab.get(tok)
                if j is not None:
                    x[i, j] = 1.0
        return x

    def score(self, texts: list[str]) -> np.ndarray:
        z = self._x(list(texts)) @ self.w + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def fit(cls, data: dict[int, list[str]] = TRAIN, steps: int = 300, lr: float = 0.5,
            l2: float = 1e-3) -> BowScorer:
        texts = [t for k in sorted(data) for t in data[k]]
        y = np.array([k for k in sorted(data) for _ in data[k]])
        vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in _tokens(t)}))}
        m = cls(vocab, np.zeros((len(vocab), 3)), np.zeros(3))
        x, onehot = m._x(texts), np.eye(3)[y]
        for _ in range(steps):
            grad = m.score(texts) - onehot  # softmax cross-entropy gradient
            m.w -= lr * (x.T @ grad / len(y) + l2 * m.w)
            m.b -= lr * grad.mean(axis=0)
        return m

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps({"vocab": self.vocab, "w": self.w.tolist(),
                                    "b": self.b.tolist()}))
        return path

    @classmethod
    def from_bundle(cls, path: Path) -> BowScorer:
        d = json.loads(Path(path).read_text())
        return cls(d["vocab"], np.array(d["w"]), np.array(d["b"]))
