"""Sentiment metrics and the baselines on the real corpus split (no encoder)."""

from __future__ import annotations

import numpy as np

from training.sentiment import label_ids, load_corpus
from training.sentiment_eval import baseline_predictions, classification_metrics, summarize


def test_metrics_on_a_known_case():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert abs(m["macro_f1"] - np.mean([2 / 3, 2 / 3, 1.0])) < 1e-12


def test_baselines_beat_nothing_trivially_and_tfidf_beats_majority():
    ds = load_corpus()
    y = label_ids(ds.rows("test")["label"])
    preds = baseline_predictions(ds, seed=0)
    scores = {k: classification_metrics(y, p) for k, p in preds.items()}
    assert scores["majority"]["macro_f1"] < 0.3  # one class only
    assert scores["tfidf_logreg"]["macro_f1"] > scores["majority"]["macro_f1"] + 0.2
    s = summarize({k: [v, v] for k, v in scores.items()})
    assert s["tfidf_logreg"]["accuracy_std"] == 0.0 and s["majority"]["n_seeds"] == 2
