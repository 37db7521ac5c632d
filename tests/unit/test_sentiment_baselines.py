"""Sentiment metrics and the baselines on the real corpus split (no encoder)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_report_lists_every_model_with_its_note_and_the_encoder_per_seed(tmp_path):
    import json

    from training.sentiment_eval import MODEL_NOTES, write_report

    cm = [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    per_seed = {"encoder": [{"seed": s, "accuracy": 0.5 + s / 10, "macro_f1": 0.4, "confusion": cm,
                             "train_s": 100.0 + s, "epochs_run": 5, "best_epoch": 2,
                             "load_avg_1m": 12.5} for s in (0, 1)],
                "lexicon_leaky": [{"seed": s, "accuracy": 0.7, "macro_f1": 0.6, "confusion": cm}
                                  for s in (0, 1)]}
    report = {"summary": summarize(per_seed), "per_seed": per_seed, "meta": {"seeds": [0, 1]}}
    assert report["summary"]["encoder"]["train_s_mean"] == 100.5
    assert "train_s_mean" not in report["summary"]["lexicon_leaky"]
    paths = write_report(report, tmp_path)
    page = paths["html"].read_text()
    assert MODEL_NOTES["lexicon_leaky"].split(";")[0] in page and "LEAKY" in page
    assert "<td>0.6000</td><td>0.4000</td><td>5</td><td>2</td><td>101.0</td><td>12.5</td>" in page
    assert json.loads(paths["json"].read_text())["summary"]["encoder"]["accuracy_mean"] == pytest.approx(0.55)
