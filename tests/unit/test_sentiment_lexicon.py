"""The fair lexicon baseline learns its words from train rows only; the leaky one is named so."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from training.model import Dataset
from training.sentiment import label_ids, load_corpus
from training.sentiment_corpus import _NEG_WORDS, _POS_WORDS
from training.sentiment_eval import MODEL_NOTES, baseline_predictions
from training.sentiment_lexicon import LearnedLexicon, fit_lexicon, words


def _dataset(rows: list[tuple[str, str, str]]) -> Dataset:
    frame = pd.DataFrame(rows, columns=["text", "label", "split"])
    segs = {s: (frame["split"] == s).to_numpy() for s in ("train", "valid", "test")}
    return Dataset(frame=frame, features=("text",), target="label", segments=segs)


def test_word_lists_follow_train_labels():
    texts = ["sales soared today", "profit soared again", "margins soared",
             "sales sank today", "profit sank again", "margins sank",
             "the board met today", "the board met again", "the board met"]
    labels = ["positive"] * 3 + ["negative"] * 3 + ["neutral"] * 3
    lex = LearnedLexicon(purity=0.6, min_df=3).fit(texts, labels)
    assert "soared" in lex.positive and "sank" in lex.negative
    # words spread over classes carry no polarity
    assert not {"today", "again", "sales", "the"} & (lex.positive | lex.negative)
    assert lex.predict(["revenue soared", "revenue sank", "revenue flat"]) == [
        "positive", "negative", "neutral"]


def test_fair_lexicon_ignores_test_rows():
    """A polar word seen only in test (the leak the hand-built lists had) gets no weight, and
    test labels never change what the baseline predicts."""
    train = [("orders soared", "positive", "train"), ("revenue soared", "positive", "train"),
             ("cash soared", "positive", "train"), ("orders sank", "negative", "train"),
             ("revenue sank", "negative", "train"), ("cash sank", "negative", "train"),
             ("a meeting is set", "neutral", "train"), ("a date is set", "neutral", "train"),
             ("a call is set", "neutral", "train")]
    valid = [("sales soared", "positive", "valid"), ("sales sank", "negative", "valid"),
             ("a vote is set", "neutral", "valid")]
    test = [("profits plunged", "negative", "test"), ("profits plunged badly", "negative",
            "test"), ("margins plunged", "negative", "test"), ("units soared", "positive",
            "test")]
    ds = _dataset(train + valid + test)
    pred = baseline_predictions(ds, seed=0)["lexicon_fair"]
    # "plunged" occurs only in test: those rows fall back to neutral (id 1)
    assert pred.tolist() == [1, 1, 1, 2]
    flipped = _dataset(train + valid + [(t, "positive", s) for t, _, s in test])
    assert baseline_predictions(flipped, seed=0)["lexicon_fair"].tolist() == pred.tolist()


def test_fair_lexicon_on_the_corpus_uses_train_vocabulary_only():
    ds = load_corpus()
    tr, va, te = (ds.rows(s) for s in ("train", "valid", "test"))
    lex = fit_lexicon(tr["text"].tolist(), tr["label"].tolist(), va["text"].tolist(),
                      va["label"].tolist())
    train_vocab = set().union(*(words(t) for t in tr["text"]))
    assert lex.positive | lex.negative
    assert (lex.positive | lex.negative) <= train_vocab
    # the hand-built lists are the leaky ones: some of their words appear only in test
    test_vocab = set().union(*(words(t) for t in te["text"]))
    hand = {w for w in _POS_WORDS | _NEG_WORDS if re.fullmatch(r"[a-z]+", w)}
    assert (hand & test_vocab) - train_vocab - set().union(*(words(t) for t in va["text"]))
    preds = baseline_predictions(ds, seed=0)
    assert {"lexicon_fair", "lexicon_leaky"} <= set(preds)
    assert "LEAKY" in MODEL_NOTES["lexicon_leaky"]
    y = label_ids(te["label"])
    assert len(preds["lexicon_fair"]) == len(y)
    assert np.isin(preds["lexicon_fair"], [0, 1, 2]).all()
