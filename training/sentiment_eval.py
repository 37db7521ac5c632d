"""Sentiment evaluation: metrics, baselines in the same run, seeds, JSON + HTML report.

Baselines (each on the same family-held-out test split):
- ``majority``: the train segment's most frequent label (the naive floor).
- ``lexicon_fair``: a polarity word count whose word lists are learned from the train labels
  only (``training.sentiment_lexicon``; its two knobs chosen on valid).
- ``lexicon_leaky``: the corpus' hand-built second reader (same counting rule). Its author had
  seen every split: 9 of its words occur only in test, so it is reported for reference,
  labelled leaky, and is not a fair bar for the encoder.
- ``tfidf_logreg``: scikit-learn TF-IDF (word 1-2 grams) + logistic regression.
The Loughran-McDonald dictionary is not a baseline here: its licence allows research use only
and needs a licence for commercial use, so it cannot ship as a default (LABELING.md).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.model import TEST, TRAIN, VALID, Dataset
from training.sentiment_corpus import LABELS, second_reader
from training.sentiment_lexicon import fit_lexicon

# One line per model in the report (what each row is, and whether it is a fair comparison).
MODEL_NOTES = {
    "encoder": "fine-tuned encoder (mean over seeds)",
    "lexicon_fair": "word-count lexicon, word lists learned from train labels only",
    "lexicon_leaky": "hand-built word-count lexicon (second reader); LEAKY: its author saw "
                     "the test split, 9 of its words occur only there",
    "tfidf_logreg": "TF-IDF (word 1-2 grams) + logistic regression, fitted on train",
    "majority": "train's most frequent label",
}


def classification_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix (rows true, columns predicted, LABELS order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y, pred = np.asarray(y), np.asarray(pred)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=range(len(LABELS)), average="macro",
                                   zero_division=0)),
        "confusion": confusion_matrix(y, pred, labels=range(len(LABELS))).tolist(),
    }


def _ids(labels: Sequence[str]) -> np.ndarray:
    index = {k: i for i, k in enumerate(LABELS)}
    return np.asarray([index[v] for v in labels], np.int64)


def baseline_predictions(dataset: Dataset, seed: int) -> dict[str, np.ndarray]:
    """Test-segment label ids of every baseline, fitted on the train segment only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, test = dataset.rows(TRAIN), dataset.rows(TEST)
    valid = dataset.rows(VALID) if dataset.has(VALID) else train.iloc[:0]
    ytr = _ids(train["label"])
    lex = fit_lexicon(train["text"].tolist(), train["label"].tolist(), valid["text"].tolist(),
                      valid["label"].tolist())
    majority = np.full(len(test), np.bincount(ytr, minlength=len(LABELS)).argmax())
    tfidf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=10.0, random_state=seed),
    ).fit(train["text"], ytr)
    return {
        "majority": majority,
        "lexicon_fair": _ids(lex.predict(test["text"].tolist())),
        "lexicon_leaky": _ids([second_reader(t) for t in test["text"]]),
        "tfidf_logreg": tfidf.predict(test["text"]),
    }


def summarize(per_seed: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per model: mean and std over seeds of accuracy and macro-F1, summed confusion."""
    out = {}
    for name, runs in per_seed.items():
        row: dict[str, Any] = {"n_seeds": len(runs)}
        for m in ("accuracy", "macro_f1"):
            v = np.asarray([r[m] for r in runs], float)
            row[f"{m}_mean"] = float(v.mean())
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        if all("train_s" in r for r in runs):
            row["train_s_mean"] = float(np.mean([r["train_s"] for r in runs]))
        row["confusion_sum"] = np.sum([r["confusion"] for r in runs], axis=0).tolist()
        out[name] = row
    return out


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _confusion_html(name: str, cm: list[list[int]]) -> str:
    head = "".join(f"<th>pred {html.escape(lab)}</th>" for lab in LABELS)
    rows = "".join(
        f"<tr><th>true {html.escape(lab)}</th>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>"
        for lab, r in zip(LABELS, cm, strict=True))
    return (f"<h3>{html.escape(name)} (summed over seeds)</h3><table class='cmp'><tr><th></th>"
            f"{head}</tr>{rows}</table>")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4f}" if abs(v) <= 1 else f"{v:.1f}"
    return html.escape("" if v is None else str(v))


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``report.json`` + a self-contained ``report.html`` (models vs baselines, confusions)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "html": out / "report.html"}
    clean = _nan_to_none(report)
    paths["json"].write_text(json.dumps(clean, indent=2, allow_nan=False))

    def fmt(row: dict, m: str) -> str:
        mean, std = row[f"{m}_mean"], row[f"{m}_std"]
        return f"{mean:.4f}" if not math.isfinite(std) else f"{mean:.4f} ± {std:.4f}"

    summary = report["summary"]
    body = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{r['n_seeds']}</td><td>{fmt(r, 'accuracy')}</td>"
        f"<td>{fmt(r, 'macro_f1')}</td><td style='text-align:left'>"
        f"{html.escape(MODEL_NOTES.get(n, ''))}</td></tr>" for n, r in summary.items())
    meta = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(json.dumps(v))}</li>"
                   for k, v in clean["meta"].items())
    cms = "".join(_confusion_html(n, r["confusion_sum"]) for n, r in summary.items())
    cols = ("seed", "accuracy", "macro_f1", "epochs_run", "best_epoch", "train_s", "load_avg_1m")
    seeds = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>"
        for r in report.get("per_seed", {}).get("encoder", []))
    paths["html"].write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>stockray sentiment evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}} table.cmp{{border-collapse:collapse}}
table.cmp td,table.cmp th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>stockray sentiment evaluation</h1><ul>{meta}</ul>
<h2>Model vs baselines on the held-out families (mean ± std over seeds)</h2>
<table class="cmp"><thead><tr><th>model</th><th>seeds</th><th>accuracy</th><th>macro-F1</th>
<th>what it is</th></tr></thead><tbody>{body}</tbody></table>
<h2>Encoder per seed (best epoch counts from 0; train s is wall time on a shared box)</h2>
<table class="cmp"><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{seeds}</table>
{cms}</body></html>""", encoding="utf-8")
    return paths
