"""The sentiment classifier network: a Hugging Face encoder, mean pooling, dropout, a linear head.

Mean pooling, not the [CLS] pooler: the default MiniLM-L6 checkpoint is a sentence-transformers
model trained with mean pooling, and its BERT pooler (dense + tanh over [CLS]) is not part of
that training, so a CLS head starts from an untrained projection. The mean covers real tokens
only (the attention mask), so a sentence scores the same alone or padded in a batch.

The module's ``forward(input_ids, attention_mask, token_type_ids)`` returns an object with
``.logits`` like a HF sequence classifier, so the ONNX export (``training.sentiment_export``)
and its inputs/outputs are unchanged. Saved as the encoder's ``save_pretrained`` files plus
``HEAD_FILE`` (the head's weights and settings).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

HEAD_FILE = "sentiment_head.pt"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [batch, seq, dim] over the positions where ``attention_mask`` is 1."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def class_weights(y: np.ndarray, num_labels: int) -> torch.Tensor:
    """Balanced class weights ``n / (k * count_c)`` from the train labels (an absent class
    gets weight 0: it has no examples to weigh)."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=num_labels).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (num_labels * np.maximum(counts, 1.0)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


class MeanPoolClassifier(torch.nn.Module):
    """Encoder -> masked mean -> dropout -> linear logits."""

    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, num_labels)
        self.num_labels = num_labels

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              **kw).last_hidden_state
        pooled = self.dropout(mean_pool(hidden, attention_mask))
        return SimpleNamespace(logits=self.classifier(pooled))

    def save_pretrained(self, out_dir: str | Path) -> None:
        self.encoder.save_pretrained(str(out_dir))
        torch.save({"classifier": self.classifier.state_dict(), "num_labels": self.num_labels,
                    "dropout": self.dropout.p, "pooling": "mean"}, Path(out_dir, HEAD_FILE))

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, num_labels: int,
                        dropout: float = 0.2) -> MeanPoolClassifier:
        """A saved classifier, or a fresh head on any HF checkpoint's encoder (a checkpoint's
        own classification head, e.g. FinBERT's, is not used: the label order may differ)."""
        from transformers import AutoModel

        head = Path(checkpoint, HEAD_FILE)
        encoder = AutoModel.from_pretrained(str(checkpoint), add_pooling_layer=False) \
            if _takes_pooling_flag(checkpoint) else AutoModel.from_pretrained(str(checkpoint))
        if not head.is_file():
            return cls(encoder, num_labels, dropout)
        blob = torch.load(head, weights_only=True)
        if int(blob["num_labels"]) != num_labels:
            raise ValueError(f"{checkpoint}: head has {blob['num_labels']} labels, "
                             f"expected {num_labels}")
        model = cls(encoder, num_labels, float(blob["dropout"]))
        model.classifier.load_state_dict(blob["classifier"])
        return model


def _takes_pooling_flag(checkpoint: str | Path) -> bool:
    # BERT-family encoders build an unused [CLS] pooler unless told not to; others (e.g.
    # DistilBERT) have none and reject the flag.
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(checkpoint)).model_type in {"bert", "roberta",
                                                                      "xlm-roberta"}
