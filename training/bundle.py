"""The model-bundle *format*: what ``serving`` reads and ``training.export`` writes.

No training imports (numpy, `features.durable` and, lazily, onnxruntime only), so ``serving`` depends on this
module instead of the trainers. A bundle is a directory; ``bundle.json``'s ``kind`` says which
layout it has (``lgbm`` when absent); ``training.export`` documents both layouts.

Here: the file names and kinds, ``bundle.json`` read / atomic update, the ONNX session on the
best execution provider (TensorRT > CUDA > CPU, checked against what onnxruntime really has),
and the validation-residual calibration a served model turns into intervals and P(up).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from features.durable import atomic_write_json

ONNX_FILE = "model.onnx"
BOOSTER_FILE = "model.txt"
STATE_FILE = "state.pt"
META_FILE = "bundle.json"
KIND_LGBM, KIND_SEQUENCE = "lgbm", "sequence"
#: Input name of a LightGBM bundle's graph (float32 ``[N, F]``).
ONNX_INPUT_NAME = "features"
#: Input / output names of a sequence bundle's graph (``[B, L, F]`` -> ``[B, H]``).
TORCH_ONNX_INPUT_NAME = "window"
TORCH_ONNX_OUTPUT_NAME = "returns"

# Preference order: TensorRT, then CUDA, then CPU. onnxruntime-gpu lists GPU providers even
# without a GPU and silently falls back, so callers must check ``get_providers()``.
_PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def onnx_providers(available: Sequence[str] | None = None) -> list[str]:
    """Execution providers to request, best first: TensorRT > CUDA > CPU.

    Args:
        available: provider names to choose from; defaults to
            ``onnxruntime.get_available_providers()``.

    Returns:
        The available providers among TensorRT/CUDA/CPU in preference order; always ends with
        ``CPUExecutionProvider`` so a session can fall back.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = [p for p in _PROVIDER_PREFERENCE if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def onnx_session(path: str | os.PathLike[str], *, intra_op_threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on the best provider (see :func:`onnx_providers`).

    One intra-op thread: single-row requests gain nothing from more and every replica shares
    the host's cores. The provider actually used is ``session.get_providers()[0]``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers())


def read_bundle_meta(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the parsed ``bundle.json`` of a bundle directory."""
    path = Path(bundle_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {bundle_dir} is not a model bundle "
            "(export one with training.export.export_bundle)"
        )
    return json.loads(path.read_text())


def write_bundle_meta(bundle_dir: str | os.PathLike[str], **updates: Any) -> dict[str, Any]:
    """Update fields of ``bundle.json`` atomically (e.g. ``model_version`` after registering).

    Returns:
        The metadata as written.
    """
    meta = read_bundle_meta(bundle_dir)
    meta.update(updates)
    write_json_atomic(Path(bundle_dir) / META_FILE, meta)
    return meta


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` as JSON next to ``path`` and rename it over ``path``, fsynced (never
    half-written, even after a power cut)."""
    atomic_write_json(path, obj, indent=2, sort_keys=True)


# --- validation residual calibration (serving's conformal intervals and P(up)) ---------------

# Coverages of the split-conformal half-widths stored by :func:`residual_calibration`.
CONFORMAL_COVERAGES = (0.8, 0.9)


def residual_calibration(residuals: Any) -> dict[str, float]:
    """Validation-residual statistics a served model needs for intervals and P(up).

    ``residuals`` are ``y - prediction`` on held-out (validation) rows the model never saw.
    Returns ``val_resid_mean``, ``val_resid_std``, ``val_resid_n`` and, per coverage c in
    :data:`CONFORMAL_COVERAGES`, ``val_conformal_q{100c}``: the split-conformal half-width, the
    ``ceil((n + 1) c) / n`` empirical quantile of ``|residual|`` (finite-sample corrected), so
    ``prediction ± q`` covers a new label with probability >= c under exchangeability. Empty
    when fewer than 20 finite residuals.
    """
    r = np.asarray(residuals, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = int(r.size)
    if n < 20:
        return {}
    out = {"val_resid_mean": float(r.mean()), "val_resid_std": float(r.std(ddof=1)),
           "val_resid_n": float(n)}
    a = np.sort(np.abs(r))
    for c in CONFORMAL_COVERAGES:
        k = min(n, int(np.ceil((n + 1) * c)))
        out[f"val_conformal_q{round(100 * c)}"] = float(a[k - 1])
    return out
