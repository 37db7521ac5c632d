"""Sentence sentiment scoring from an exported bundle (ONNX + tokenizer.json + bundle.json).

The stable API other code calls (the text features, the Serve deployment, the CLI)::

    scorer = SentimentScorer.from_bundle(path)       # or from_bundle(path, variant="fp32")
    probs = scorer.score(["Revenue beat estimates."]) # (n, 3) float32, columns scorer.labels
    scorer.classify(texts)                            # [(label, probs), ...]

It reads only the bundle (``onnxruntime`` + ``tokenizers``); no training code, no torch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_TEXT_CHARS = 4000  # a sentence, not a document: longer input is a caller error
_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class InvalidTextError(ValueError):
    """A text the scorer refuses (not a string, empty after stripping, or too long)."""


def _providers() -> list[str]:
    """TensorRT > CUDA > CPU among what onnxruntime offers (GPU builds list GPU providers even
    without a GPU and fall back; ``SentimentScorer.provider`` says which one runs)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in _PROVIDERS if p in have] or ["CPUExecutionProvider"]


class SentimentScorer:
    """Tokenizer + ONNX Runtime session of one sentiment bundle.

    Attributes:
        labels: class names, the column order of :meth:`score`.
        meta: the bundle's ``bundle.json`` (model name/version, parity, int8 delta, ...).
        variant: ``"int8"`` or ``"fp32"``.
        provider: the execution provider the session runs on.
    """

    def __init__(self, session: Any, tokenizer: Any, meta: dict[str, Any], variant: str) -> None:
        self._sess, self._tok, self.meta, self.variant = session, tokenizer, meta, variant
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.max_len = int(meta["max_len"])
        self._inputs = {i.name for i in session.get_inputs()}
        self.provider = session.get_providers()[0]
        self._lock = threading.Lock()  # tokenizers' padding state is per-object

    @classmethod
    def from_bundle(cls, path: str | Path, *, variant: str | None = None,
                    intra_op_threads: int = 1) -> SentimentScorer:
        """Load ``path`` (a bundle directory). ``variant`` None = the bundle's served variant.

        Raises:
            FileNotFoundError: ``path`` is not a sentiment bundle.
            ValueError: unknown ``variant``.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        root = Path(path)
        meta_path = root / "bundle.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{root} is not a sentiment bundle (no bundle.json): train "
                                    "one with `stockray sentiment train`")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != "sentiment":
            raise FileNotFoundError(f"{root} holds a {meta.get('kind')!r} bundle, not sentiment")
        variant = variant or meta["serve_variant"]
        if variant not in meta["variants"]:
            raise ValueError(f"unknown variant {variant!r}; bundle has {sorted(meta['variants'])}")
        opts = ort.SessionOptions()
        # one thread per session: requests are small and the replicas share 2 cores
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(root / meta["variants"][variant]), sess_options=opts,
                                    providers=_providers())
        tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        tok.enable_truncation(int(meta["max_len"]))
        pad = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
        return cls(sess, tok, meta, variant)

    @staticmethod
    def check(texts: Sequence[Any]) -> list[str]:
        """The texts as a list of non-empty strings of at most MAX_TEXT_CHARS characters."""
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidTextError(f"text {i} is {type(t).__name__}, not a string")
            if not t.strip():
                raise InvalidTextError(f"text {i} is empty: send a sentence")
            if len(t) > MAX_TEXT_CHARS:
                raise InvalidTextError(f"text {i} has {len(t)} characters; the limit is "
                                       f"{MAX_TEXT_CHARS} (send sentences, not documents)")
            out.append(t)
        return out

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(labels))`` float32 probabilities (rows sum to 1)."""
        texts = self.check(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        with self._lock:
            enc = self._tok.encode_batch(texts)
        feeds = {
            "input_ids": np.asarray([e.ids for e in enc], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in enc], np.int64),
        }
        z = self._sess.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)

    def classify(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        """``[(label, {label: probability})]`` per text."""
        p = self.score(texts)
        return [(self.labels[int(row.argmax())],
                 {k: float(v) for k, v in zip(self.labels, row, strict=True)}) for row in p]

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model_name", "stockray-sentiment"))

    @property
    def model_version(self) -> str:
        return str(self.meta.get("model_version", "unregistered"))
