"""The shipped sentiment corpus: reproducible, big enough, balanced, split by family."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from training.sentiment_corpus import CORPUS, LABELS, SECOND_PASS, build, second_pass
from training.sentiment_templates import FAMILIES


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_csv(CORPUS)


def test_shipped_corpus_is_a_fresh_build(corpus):
    fresh = build()
    pd.testing.assert_frame_equal(corpus, fresh.astype(corpus.dtypes.to_dict()))
    shipped_sp = pd.read_csv(SECOND_PASS)
    assert list(shipped_sp["id"]) == list(second_pass(fresh)["id"])


def test_size_classes_and_topics(corpus):
    assert corpus["text"].is_unique and len(corpus) >= 1000
    assert set(corpus["label"]) == set(LABELS)
    assert corpus["label"].value_counts().min() >= 200  # no class is a token minority
    assert set(corpus["topic"]) == {"company", "earnings", "guidance", "analyst", "macro",
                                    "risk", "mdna"}


def test_families_never_straddle_splits(corpus):
    assert (corpus.groupby("family")["split"].nunique() == 1).all()
    for split, rows in corpus.groupby("split"):
        assert set(rows["label"]) == set(LABELS), split
        assert rows["hard"].any(), split


def test_test_split_holds_every_kind_of_hard_case(corpus):
    test_fams = set(corpus.loc[corpus["split"] == "test", "family"])
    for kind in ("negated", "less_bad", "below_consensus", "mixed", "exp_"):
        assert any(kind in f for f in test_fams), kind
    # ...and each kind also has a sibling family in train
    train_fams = set(corpus.loc[corpus["split"] == "train", "family"])
    for kind in ("negated", "less_bad", "not_enough", "offset", "exp_"):
        assert any(kind in f for f in train_fams), kind


def test_expectation_labels_follow_the_numbers(corpus):
    rows = corpus[corpus["family"] == "exp_eps"]
    assert len(rows) >= 30
    for text, label in zip(rows["text"], rows["label"], strict=True):
        a, e = (float(x) for x in re.findall(r"\$(\d+\.\d\d)", text))
        assert label == ("positive" if a > e else "negative" if a < e else "neutral"), text


def test_family_labels_are_the_templates(corpus):
    fam_label = {f: lab for f, _, lab, _, _ in FAMILIES}
    fixed = corpus[corpus["family"].isin(fam_label)]
    assert (fixed["label"] == fixed["family"].map(fam_label)).all()


def test_second_pass_records_disagreements(corpus):
    sp = pd.read_csv(SECOND_PASS)
    assert len(sp) > 0 and (sp["label"] != sp["second_label"]).all()
    assert sp["resolution"].str.startswith("kept").all()
    assert set(sp["id"]) <= set(corpus["id"])
