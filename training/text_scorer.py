"""A sentiment scorer that needs no trained model: the corpus' word-count reader as
probabilities, for the text path when no sentiment bundle exists yet (`stockray up --text`).

`training.sentiment_corpus.second_reader` counts polarity words (no negation, no
expectations). Its 0.658 held-out accuracy is leaky (its lists hold words seen only in the
test families; README, Text and sentiment), so treat it as a rough stand-in. Here its label becomes a one-hot probability row (negative, neutral, positive),
the `features.text.scoring.TextScorer` protocol. It reads the first sentence only (the
headline: `features.text.scoring.scoring_text` puts it first): counted over a whole body the
headline's polarity drowns, and the synthetic sample's bodies ("SYNTHETIC sample record N")
would count "record" as positive in every item. The fine-tuned bundle
(`serving.sentiment_models.SentimentScorer`) replaces it once `make sentiment` has run.
"""

from __future__ import annotations

import numpy as np

from training.sentiment_corpus import second_reader

NAME = "wordcount-lexicon"
_INDEX = {"negative": 0, "neutral": 1, "positive": 2}


class WordCountScorer:
    """``score(texts) -> (n, 3)``: 1.0 on the word-count reader's class."""

    name = NAME

    def score(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 3))
        for i, t in enumerate(texts):
            out[i, _INDEX[second_reader(t.split(". ", 1)[0])]] = 1.0
        return out
