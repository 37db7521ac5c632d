"""A fair word-count lexicon baseline: polarity words learned from the train split only.

The corpus' second reader (``training.sentiment_corpus.second_reader``) was written by hand by
someone who had seen the whole corpus: 9 of its words occur in the test split and nowhere in
train, so as a *baseline* it is leaky. ``LearnedLexicon`` is the same kind of reader (count
positive words minus negative words; neutral on a tie) whose word lists come from train labels:
a word is positive (negative) when, over the train sentences containing it, the smoothed share
of positive (negative) sentences reaches ``purity``. Words never seen in train carry no
polarity. ``fit_lexicon`` picks ``purity`` and ``min_df`` on the valid split, never on test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from training.sentiment_corpus import LABELS, NEG, NEU, POS

_WORD = re.compile(r"[a-z]+")
PURITY_GRID = (0.6, 0.7, 0.8, 0.9)
MIN_DF_GRID = (2, 3, 5, 8)


def words(text: str) -> set[str]:
    """The distinct lower-case alphabetic words of a sentence (numbers carry no polarity)."""
    return set(_WORD.findall(text.lower()))


@dataclass
class LearnedLexicon:
    """Polarity word lists learned from labelled sentences.

    Attributes:
        purity: minimum smoothed share of one polar class among the sentences holding a word.
        min_df: minimum number of train sentences holding a word.
        smoothing: add-``smoothing`` per class (a word seen twice is never 100% pure).
    """

    purity: float = 0.7
    min_df: int = 3
    smoothing: float = 1.0
    positive: frozenset[str] = field(default_factory=frozenset)
    negative: frozenset[str] = field(default_factory=frozenset)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> LearnedLexicon:
        if len(texts) != len(labels):
            raise ValueError(f"lexicon fit: {len(texts)} texts but {len(labels)} labels")
        counts: dict[str, Counter] = {}
        for t, lab in zip(texts, labels, strict=True):
            for w in words(t):
                counts.setdefault(w, Counter())[lab] += 1
        pos, neg = set(), set()
        k = self.smoothing
        for w, c in counts.items():
            n = sum(c.values())
            if n < self.min_df:
                continue
            if (c[POS] + k) / (n + 3 * k) >= self.purity:
                pos.add(w)
            elif (c[NEG] + k) / (n + 3 * k) >= self.purity:
                neg.add(w)
        self.positive, self.negative = frozenset(pos), frozenset(neg)
        return self

    def label(self, text: str) -> str:
        ws = words(text)
        score = len(ws & self.positive) - len(ws & self.negative)
        return POS if score > 0 else NEG if score < 0 else NEU

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.label(t) for t in texts]


def _macro_f1(y: Sequence[str], pred: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(y), list(pred), labels=list(LABELS), average="macro",
                          zero_division=0))


def fit_lexicon(train_texts: Sequence[str], train_labels: Sequence[str],
                valid_texts: Sequence[str], valid_labels: Sequence[str]) -> LearnedLexicon:
    """The lexicon learned on train whose (purity, min_df) scores best on valid macro-F1.

    Ties go to the first grid point (the loosest lists), so the choice is deterministic.
    """
    best, best_f1 = None, -np.inf
    for purity in PURITY_GRID:
        for min_df in MIN_DF_GRID:
            lex = LearnedLexicon(purity=purity, min_df=min_df).fit(train_texts, train_labels)
            f1 = _macro_f1(valid_labels, lex.predict(valid_texts)) if len(valid_texts) else 0.0
            if f1 > best_f1:
                best, best_f1 = lex, f1
    assert best is not None
    return best
