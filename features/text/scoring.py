"""Sentiment scores of the lake's text: the scorer protocol and ``stockray news score``.

A scorer is anything with ``score(texts: list[str]) -> array (n, 3)`` of probabilities in the
order negative, neutral, positive (or a frame / list of dicts with those class names) (the project's sentiment bundle scorer satisfies it; tests
use a small bag-of-words model). Scores are stored apart from the raw text, in
``<lake>/news_scores/scores-<hash>.parquet`` (one atomic file per run), keyed by news ``id``
and naming the scorer, so re-scoring with a new model adds rows instead of rewriting the raw
copy; readers keep, per id, the newest score of the scorer asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table, read_table_once
from features.text.records import read_news

CLASSES = ("negative", "neutral", "positive")
SCORE_SCHEMA = pa.schema([
    ("id", pa.string()), ("p_negative", pa.float64()), ("p_neutral", pa.float64()),
    ("p_positive", pa.float64()), ("scorer", pa.string()),
    ("scored_at", pa.timestamp("ns", tz="UTC")),
])  # fmt: skip


@runtime_checkable
class TextScorer(Protocol):
    """``score(texts) -> (n, 3)`` probabilities: negative, neutral, positive."""

    def score(self, texts: list[str]) -> np.ndarray: ...


def scores_dir(lake_dir: Path) -> Path:
    return lake_dir / "news_scores"


def scoring_text(headline: str, body: str, max_chars: int = 512) -> str:
    """What the model reads: the headline, then the body's opening (a sentence model, so a
    filing's 20k characters would be truncated by its tokenizer anyway)."""
    text = headline if not body else f"{headline}. {body}"
    return text[:max_chars]


def read_scores(lake_dir: Path, scorer: str | None = None) -> pd.DataFrame:
    """Newest score per id (of ``scorer`` if given); empty frame when nothing is scored."""
    parts = sorted(scores_dir(lake_dir).glob("scores-*.parquet"))
    if not parts:
        return SCORE_SCHEMA.empty_table().to_pandas()
    f = pd.concat([read_table_once(p).to_pandas() for p in parts], ignore_index=True)
    if scorer is not None:
        f = f[f["scorer"] == scorer]
    return (f.sort_values("scored_at").drop_duplicates("id", keep="last")
            .reset_index(drop=True))


def _named(p, names: tuple[str, ...]) -> list[str] | None:
    cols = list(getattr(p, "columns", []))
    if all(c in cols for c in names):
        return list(names)
    return None


def check_probabilities(p, n: int) -> np.ndarray:
    """``(n, 3)`` probabilities in ``CLASSES`` order from an array, a DataFrame with class
    columns (``negative`` or ``p_negative``, ...) or a list of ``{class: p}`` dicts."""
    if isinstance(p, list) and p and isinstance(p[0], dict):
        p = pd.DataFrame(p)
    cols = _named(p, CLASSES) or _named(p, tuple(f"p_{c}" for c in CLASSES))
    if cols is not None:
        p = p[cols]
    p = np.asarray(p, dtype=float)
    if p.shape != (n, 3):
        raise ValueError(f"scorer returned shape {p.shape}, expected ({n}, 3) "
                         f"(probabilities of {', '.join(CLASSES)})")
    if not np.all(np.isfinite(p)) or np.any(p < -1e-6) or not np.allclose(p.sum(1), 1, atol=1e-3):
        raise ValueError("scorer returned values that are not probabilities per row")
    return p


@dataclass
class ScoreReport:
    scorer: str
    unscored: int = 0
    scored: int = 0
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score_unscored(lake_dir: Path, scorer: TextScorer, scorer_name: str,
                   batch_size: int = 256, limit: int | None = None,
                   now: pd.Timestamp | None = None) -> ScoreReport:
    """Score every stored record that ``scorer_name`` has not scored yet; one atomic write.

    Args:
        scorer: the model (see :class:`TextScorer`).
        scorer_name: stored with each score (e.g. ``stockray-sentiment@3``), so a new model
            scores everything again while the old scores stay.
        limit: score at most this many records (oldest first).
    """
    now = now or pd.Timestamp.now(tz="UTC")
    news = read_news(lake_dir, columns=["id", "ts", "headline", "body"])
    done = set(read_scores(lake_dir, scorer_name)["id"])
    todo = news[~news["id"].isin(done)]
    rep = ScoreReport(scorer=scorer_name, unscored=len(todo))
    if limit is not None:
        todo = todo.head(limit)
    if todo.empty:
        return rep
    texts = [scoring_text(h, b) for h, b in zip(todo["headline"], todo["body"], strict=True)]
    probs = [check_probabilities(scorer.score(texts[i:i + batch_size]),
                                 len(texts[i:i + batch_size]))
             for i in range(0, len(texts), batch_size)]
    p = np.vstack(probs)
    out = pd.DataFrame({"id": todo["id"].to_numpy(), "p_negative": p[:, 0],
                        "p_neutral": p[:, 1], "p_positive": p[:, 2], "scorer": scorer_name,
                        "scored_at": now})
    key = hashlib.sha1((scorer_name + "".join(out["id"])).encode()).hexdigest()[:20]
    path = scores_dir(lake_dir) / f"scores-{key}.parquet"
    atomic_write_table(pa.Table.from_pandas(out, schema=SCORE_SCHEMA, preserve_index=False),
                       path)
    rep.scored, rep.path = len(out), str(path)
    return rep
