"""The encoder recipe's pieces on a tiny real BERT (random weights, the MiniLM tokenizer):
masked mean pooling, class weights from the train labels, early stopping on valid macro-F1
with the best epoch's weights kept. In-process fits of a few sentences, seconds in all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from training.model import Dataset
from training.sentiment import (
    SentimentConfig,
    SentimentModel,
    default_checkpoint,
    label_ids,
    load_encoder,
)
from training.sentiment_eval import classification_metrics
from training.sentiment_net import HEAD_FILE, MeanPoolClassifier, class_weights, mean_pool


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 1-layer, 32-wide BERT saved like any HF checkpoint directory."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    d = tmp_path_factory.mktemp("tinybert")
    tok = AutoTokenizer.from_pretrained(default_checkpoint())
    tok.save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(d)
    return str(d)


def _dataset(n_train=(12, 4, 8)) -> Dataset:
    words = {"negative": "fell sharply", "neutral": "was scheduled", "positive": "rose strongly"}
    rows = []
    for split, counts in (("train", n_train), ("valid", (4, 4, 4)), ("test", (2, 2, 2))):
        for label, n in zip(words, counts, strict=True):
            rows += [(f"Item {i} {words[label]} in {split}", label, split) for i in range(n)]
    frame = pd.DataFrame(rows, columns=["text", "label", "split"])
    segs = {s: (frame["split"] == s).to_numpy() for s in ("train", "valid", "test")}
    return Dataset(frame=frame, features=("text",), target="label", segments=segs)


def test_mean_pool_ignores_padded_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e6, -1e6]],
                           [[5.0, 6.0], [1e6, 1e6], [-1e6, 7.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


def test_sentence_scores_the_same_alone_or_padded(tiny_checkpoint):
    tok, model = load_encoder(tiny_checkpoint, seed=0)
    assert isinstance(model, MeanPoolClassifier)
    model.eval()
    texts = ["Revenue rose.", "Losses were narrower than feared, though sales still fell."]
    batch = tok(texts, padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # padded
    with torch.no_grad():
        together = model(**batch).logits[0]
        alone = model(**tok(texts[:1], return_tensors="pt")).logits[0]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_class_weights_are_balanced_from_labels():
    w = class_weights(np.array([0] * 6 + [1] * 2 + [2] * 4), 3)
    torch.testing.assert_close(w, torch.tensor([12 / 18, 12 / 6, 12 / 12]))
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0  # an absent class


def test_fit_weighs_classes_by_train_labels_only(tiny_checkpoint):
    ds = _dataset(n_train=(12, 4, 8))  # valid and test are balanced; train is not
    sm = SentimentModel(SentimentConfig(checkpoint=tiny_checkpoint, epochs=1, max_len=16,
                                        cpus=1), use_ray=False).fit(ds)
    want = class_weights(label_ids(ds.rows("train")["label"]), 3).tolist()
    assert sm.loss_weights == pytest.approx(want)
    assert sm.loss_weights[1] > sm.loss_weights[2] > sm.loss_weights[0]
    off = SentimentModel(SentimentConfig(checkpoint=tiny_checkpoint, epochs=1, max_len=16,
                                         cpus=1, class_weighting=False), use_ray=False).fit(ds)
    assert off.loss_weights is None


def test_early_stopping_and_the_best_epoch_is_kept(tiny_checkpoint, tmp_path):
    ds = _dataset()
    # lr 0: nothing changes, valid macro-F1 never improves after epoch 0 -> stop after 1 + 2
    frozen = SentimentModel(SentimentConfig(checkpoint=tiny_checkpoint, epochs=6, max_len=16,
                                            lr=0.0, patience=2, cpus=1), use_ray=False).fit(ds)
    assert len(frozen.history) == 3

    cfg = SentimentConfig(checkpoint=tiny_checkpoint, epochs=4, max_len=16, lr=3e-3,
                          patience=0, batch_size=8, cpus=1)
    sm = SentimentModel(cfg, use_ray=False).fit(ds)
    assert len(sm.history) == 4
    vt, vy = sm._segment(ds, "valid")
    got = classification_metrics(vy, sm.predict_proba(vt).argmax(1))["macro_f1"]
    assert got == pytest.approx(max(h["val_macro_f1"] for h in sm.history))

    # the saved form (encoder + head file) reloads to the same scores
    sm.model.save_pretrained(tmp_path)
    assert (tmp_path / HEAD_FILE).is_file()
    sm.tok.save_pretrained(tmp_path)
    tok2, model2 = load_encoder(str(tmp_path), seed=99)
    again = SentimentModel(cfg, use_ray=False)
    again.tok, again.model = tok2, model2.eval()
    np.testing.assert_allclose(again.predict_proba(vt), sm.predict_proba(vt), atol=1e-6)
