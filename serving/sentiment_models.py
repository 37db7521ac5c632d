"""Sentence sentiment scoring from an exported bundle (ONNX + tokenizer.json + bundle.json).

The stable API other code calls (the text features, the Serve deployment, the CLI)::

    scorer = SentimentScorer.from_bundle(path)       # or variant="fp32" | "int8" | "auto"
    probs = scorer.score(["Revenue beat estimates."]) # (n, 3) float32, columns scorer.labels
    scorer.classify(texts)                            # [(label, probs), ...]

It reads only the bundle (``onnxruntime`` + ``tokenizers``); no training code, no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


VARIANTS = ("fp32", "int8", "auto")
GROUP = 32  # sentences per fp32 run: length-sorted groups waste little on padding


class SentimentScorer:
    """Tokenizer + ONNX Runtime sessions of one sentiment bundle.

    Variants: ``fp32``; ``int8`` (dynamic int8, always run one sentence per ONNX call: its
    activation scales come from the call's input, so a sentence scored alone never depends on
    batch-mates); ``auto`` = int8 for a call of one sentence (lowest latency), fp32 for a call
    of two or more (batched fp32 outruns one-by-one int8). Under ``auto`` a lone sentence and
    the same sentence in a batch can differ by the int8-vs-fp32 gap the bundle states
    (``int8_label_agreement``); :meth:`variant_for` says which variant answers a call.

    Attributes:
        labels: class names, the column order of :meth:`score`.
        meta: the bundle's ``bundle.json`` (model name/version, parity, int8 delta, ...).
        variant: ``"fp32"``, ``"int8"`` or ``"auto"``.
        provider: the execution provider the sessions run on.
    """

    def __init__(self, sessions: dict[str, Any], tokenizer: Any, meta: dict[str, Any],
                 variant: str, workers: int = 1) -> None:
        self._sess, self._tok, self.meta, self.variant = sessions, tokenizer, meta, variant
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None  # made on the first multi-call score
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.max_len = int(meta["max_len"])
        any_sess = next(iter(sessions.values()))
        self._inputs = {i.name for i in any_sess.get_inputs()}
        self.provider = any_sess.get_providers()[0]
        self._pad = int(meta.get("pad_id", 0))

    @classmethod
    def from_bundle(cls, path: str | Path, *, variant: str | None = None,
                    intra_op_threads: int = 1, workers: int = 0,
                    spin: bool = False) -> SentimentScorer:
        """Load ``path`` (a bundle directory). ``variant`` None = the bundle's served variant.

        ``intra_op_threads``: ONNX threads per call (0 = one per core). One by default: the
        graph of one sentence is too small to split across cores, so a call of many sentences
        runs its ONNX calls side by side on ``workers`` threads instead (0 = one per core;
        the session is shared, onnxruntime's ``run`` is thread-safe and releases the GIL).
        Each sentence (int8) or length-sorted group (fp32) is still one call, so results do
        not depend on the worker count. ``spin``: let idle ONNX threads busy-wait for work;
        off by default: on a shared box spinning threads steal the cores the work needs.

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
        have = set(meta["variants"])
        need = ("fp32", "int8") if variant == "auto" else (variant,)
        if variant not in VARIANTS or not set(need) <= have:
            raise ValueError(f"unknown variant {variant!r}; bundle has {sorted(have)} "
                             "(and 'auto' when it has both)")
        opts = ort.SessionOptions()
        cores = os.cpu_count() or 1
        opts.intra_op_num_threads = intra_op_threads or cores
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        sessions = {v: ort.InferenceSession(str(root / meta["variants"][v]), sess_options=opts,
                                            providers=_providers()) for v in need}
        tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        tok.enable_truncation(int(meta["max_len"]))
        tok.no_padding()  # padded per length-sorted group in _run_fp32
        pad = tok.token_to_id("[PAD]")
        meta.setdefault("pad_id", 0 if pad is None else pad)
        return cls(sessions, tok, meta, variant, workers=workers or cores)

    def variant_for(self, n: int) -> str:
        """The variant that scores a call of ``n`` sentences."""
        if self.variant == "auto":
            return "int8" if n == 1 else "fp32"
        return self.variant

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

    def score(self, texts: Sequence[str], *, variant: str | None = None) -> np.ndarray:
        """``(len(texts), len(labels))`` float32 probabilities (rows sum to 1), in order.

        ``variant`` forces one of the loaded variants (None: :meth:`variant_for`)."""
        texts = self.check(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        v = variant or self.variant_for(len(texts))
        if v not in self._sess:
            raise ValueError(f"variant {v!r} not loaded (scorer variant {self.variant!r})")
        enc = self._tok.encode_batch(texts)
        ids = [e.ids for e in enc]
        if v == "int8":  # one sentence per call (see the class docstring)
            groups = [np.array([r]) for r in range(len(ids))]
        else:
            order = np.argsort([len(i) for i in ids], kind="stable")
            groups = [order[g : g + GROUP] for g in range(0, len(order), GROUP)]
        z = np.empty((len(ids), len(self.labels)), np.float32)
        for idx, logits in zip(groups, self._map(v, [[ids[j] for j in g] for g in groups]),
                               strict=True):
            z[idx] = logits
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)

    def _map(self, variant: str, calls: list[list[list[int]]]) -> list[np.ndarray]:
        """Logits of each call, run on the worker threads when there are several."""
        if len(calls) == 1 or self.workers == 1:
            return [self._run(variant, c) for c in calls]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sentiment-onnx")
        return list(self._pool.map(lambda c: self._run(variant, c), calls))

    def _run(self, variant: str, ids: list[list[int]]) -> np.ndarray:
        """Logits of one ONNX call over ``ids`` padded to the longest."""
        n = max(len(i) for i in ids)
        x = np.full((len(ids), n), self._pad, np.int64)
        mask = np.zeros((len(ids), n), np.int64)
        for r, i in enumerate(ids):
            x[r, : len(i)] = i
            mask[r, : len(i)] = 1
        feeds = {"input_ids": x, "attention_mask": mask, "token_type_ids": np.zeros_like(x)}
        return self._sess[variant].run(None, {k: a for k, a in feeds.items()
                                              if k in self._inputs})[0]

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
