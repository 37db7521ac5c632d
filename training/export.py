"""Export a trained model as a *model bundle* that ``serving`` loads.

A bundle is a directory; ``bundle.json``'s ``kind`` says which of two layouts it has.

``kind: "lgbm"`` (`export_bundle`; bundles without ``kind`` are this one):

- ``model.onnx``  — the booster converted with onnxmltools (input ``features``, float32
  ``[N, F]``, dynamic batch; output ``variable`` float32 ``[N, 1]``);
- ``model.txt``   — the LightGBM booster text, for TreeSHAP (``pred_contrib=True``);
- ``bundle.json`` — ``model_name``, ``model_version``, ``horizon``, ``feature_names``,
  ``onnx_parity_max_abs``, ``created_at`` (ISO 8601 UTC), ``onnx_opset``, ``extra``.

``kind: "sequence"`` (`export_sequence_bundle`, an LSTM / Transformer ``SequenceNet``):

- ``model.onnx``  — the whole network, standardisation included (input ``window`` float32
  ``[B, L, F]`` of *raw* features, NaN allowed; output ``returns`` float32 ``[B, H]``, one
  column per horizon of ``horizons``), dynamic batch;
- ``state.pt``    — the torch state (``training.sequence.save_state`` format) that serving's
  explainer rebuilds the net from for integrated gradients;
- ``bundle.json`` — as above plus ``architecture``, ``window`` (L), ``horizons``,
  ``output_index`` (the column of ``horizon``), ``calibration`` (per horizon, keyed by
  ``str(h)``: `residual_calibration` of the validation residuals) and ``config``.

A sequence network forecasts every horizon at once, but the registry holds one version per
horizon (``stockray-lstm-h5`` ...): each registered version carries the same graph with its own
``horizon`` / ``output_index`` (`retarget_sequence_bundle`).

This module owns the bundle *format* (file names, metadata read/write, ONNX provider choice);
``serving`` imports those small helpers, never the training code. The heavy converters
(onnxmltools, lightgbm) are imported inside :func:`export_bundle` so ``serving`` can import
this module with only onnxruntime installed.

``model_version`` is only known after MLflow registration: export first, register, then call
:func:`write_bundle_meta` with ``model_version=...`` (atomic rewrite of ``bundle.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.durable import atomic_write_json
from features.lake import staged_dir

ONNX_FILE = "model.onnx"
BOOSTER_FILE = "model.txt"
STATE_FILE = "state.pt"
META_FILE = "bundle.json"
KIND_LGBM, KIND_SEQUENCE = "lgbm", "sequence"
ONNX_INPUT_NAME = "features"
# onnxmltools 1.16 converts LightGBM up to opset 15 (17 raises; see STACK.md).
ONNX_TARGET_OPSET = 15
# Parity check on this many synthetic rows; a float32 model vs float64 LightGBM drifts ~1e-6.
PARITY_ROWS = 256
PARITY_MAX_ABS_LIMIT = 1e-3

# Preference order: TensorRT, then CUDA, then CPU. onnxruntime-gpu lists GPU providers even
# without a GPU and silently falls back (STACK.md), so callers must check ``get_providers()``.
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

    One intra-op thread: single-row requests gain nothing from more and the box has 2 cores
    shared by every replica. The provider actually used is ``session.get_providers()[0]``.
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
    _write_json_atomic(Path(bundle_dir) / META_FILE, meta)
    return meta


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_json(path, obj, indent=2, sort_keys=True)


def _parity_sample(booster: Any, n_features: int, rows: int, seed: int = 0) -> np.ndarray:
    """Rows spread over the trees' split thresholds, so the check crosses many branches."""
    rng = np.random.default_rng(seed)
    dump = booster.dump_model()
    thresholds: dict[int, list[float]] = {}

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            thresholds.setdefault(node["split_feature"], []).append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump["tree_info"]:
        walk(tree["tree_structure"])
    x = rng.standard_normal((rows, n_features))
    for j, ts in thresholds.items():
        lo, hi = min(ts), max(ts)
        span = max(hi - lo, 1e-6)
        x[:, j] = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, rows)
    x = x.astype(np.float32)
    # A float32 input equal to float32(t) where float32(t) > t goes left in ONNX (float32
    # thresholds) and right in LightGBM (float64): a rounding artefact, not a conversion error.
    # With one threshold (span 1e-6) a quarter of the samples land there; move them off it.
    for j, ts in thresholds.items():
        for t in set(ts):
            t32 = np.float32(t)
            if float(t32) > t:
                col = x[:, j]
                col[col == t32] = np.nextafter(t32, np.float32(np.inf))
    return x


def _booster_output(booster: Any) -> dict[str, Any]:
    """``objective``, ``output`` and ``servable_as_return`` of a LightGBM booster."""
    objective = str(booster.dump_model(num_iteration=1).get("objective", "")).split()[0]
    rank = objective.startswith(("lambdarank", "rank_xendcg"))
    return {"objective": objective, "output": "rank_score" if rank else "log_return",
            "servable_as_return": not rank}


def export_bundle(
    booster: Any,
    feature_names: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    model_name: str,
    model_version: str,
    horizon: int,
    extra: dict[str, Any] | None = None,
    parity_rows: int = PARITY_ROWS,
) -> Path:
    """Write a model bundle for ``booster`` to ``out_dir`` (replacing it atomically).

    Everything is written into a temporary directory beside ``out_dir`` and renamed into place,
    so a reader never sees a half-written bundle.

    Args:
        booster: a trained ``lightgbm.Booster``; a regression one forecasts a return, a
            lambdarank one exports too (ONNX parity holds) but ``bundle.json`` then says
            ``output: rank_score`` and ``servable_as_return: false``.
        feature_names: names of the model's input columns, in order.
        out_dir: bundle directory to create (its parent is created if missing).
        model_name: registered model name, e.g. ``stockray-lgbm-h5``.
        model_version: registered version (``"0"`` or similar until registered; update with
            :func:`write_bundle_meta`).
        horizon: forecast horizon in trading days.
        extra: more JSON-serialisable metadata, stored under ``extra``.
        parity_rows: rows of the ONNX-vs-LightGBM parity check.

    Returns:
        The bundle directory.

    Raises:
        ValueError: feature names don't match the booster, or ONNX parity is worse than
            ``PARITY_MAX_ABS_LIMIT``.
    """
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = [str(n) for n in feature_names]
    if len(names) != booster.num_feature():
        raise ValueError(
            f"{len(names)} feature names for a booster with {booster.num_feature()} features"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate feature names: {names}")
    out = Path(out_dir).expanduser().resolve()
    with staged_dir(out) as tmp:
        onnx_model = onnxmltools.convert_lightgbm(
            booster,
            initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, len(names)]))],
            target_opset=ONNX_TARGET_OPSET,
        )
        (tmp / ONNX_FILE).write_bytes(onnx_model.SerializeToString())
        booster.save_model(str(tmp / BOOSTER_FILE))

        sess = onnx_session(tmp / ONNX_FILE)
        x = _parity_sample(booster, len(names), parity_rows)
        onnx_pred = sess.run(None, {ONNX_INPUT_NAME: x})[0].reshape(-1).astype(np.float64)
        lgb_pred = booster.predict(x.astype(np.float64), num_threads=1)
        parity = float(np.max(np.abs(onnx_pred - lgb_pred)))
        if not parity <= PARITY_MAX_ABS_LIMIT:
            raise ValueError(
                f"ONNX parity {parity:.3g} exceeds {PARITY_MAX_ABS_LIMIT}: the converted model "
                "disagrees with LightGBM; check the objective is supported by onnxmltools"
            )
        meta = {
            "kind": KIND_LGBM,
            "family": "lgbmrank" if _booster_output(booster)["output"] == "rank_score" else "lgbm",
            "model_name": model_name,
            "model_version": str(model_version),
            "horizon": int(horizon),
            "feature_names": names,
            "onnx_parity_max_abs": parity,
            "onnx_parity_rows": int(parity_rows),
            "onnx_opset": ONNX_TARGET_OPSET,
            "onnx_input": ONNX_INPUT_NAME,
            "onnx_provider_at_export": sess.get_providers()[0],
            "num_trees": int(booster.num_trees()),
            # lambdarank's output is a per-date rank score, not a return: it must not be
            # served as a forecast (no return scale, no intervals, no P(up))
            **_booster_output(booster),
            "created_at": datetime.now(UTC).isoformat(),
            "extra": dict(extra or {}),
        }
        _write_json_atomic(tmp / META_FILE, meta)
    return out


# --- torch models (sequence networks) ----------------------------------------------------------

TORCH_ONNX_INPUT_NAME = "window"
TORCH_ONNX_OUTPUT_NAME = "returns"
# One file up to this size: ONNX protobufs cannot exceed 2 GiB, so larger models keep the
# exporter's side file ``<name>.onnx.data``.
TORCH_ONNX_INLINE_MAX_BYTES = 1 << 30


def export_torch_onnx(
    model: Any,
    example: Any,
    path: str | os.PathLike[str],
    *,
    input_name: str = TORCH_ONNX_INPUT_NAME,
    output_name: str = TORCH_ONNX_OUTPUT_NAME,
    parity_input: Any | None = None,
) -> dict[str, Any]:
    """Export a torch module with one tensor input to ONNX with a dynamic batch dimension.

    Uses the default (dynamo) exporter. Its weights land in a side ``<path>.data`` file; they
    are folded back into the single ``.onnx`` file when small enough
    (``TORCH_ONNX_INLINE_MAX_BYTES``), so the model is one self-contained file; otherwise the
    side file is kept next to it and reported. A batch-1 example would fix the batch at 1,
    so an example with batch < 2 is repeated to batch 2.

    Args:
        model: a ``torch.nn.Module`` (put in eval mode here).
        example: example input tensor ``(B, ...)``.
        path: ``.onnx`` file to write (parent created).
        parity_input: input for the ONNX-vs-eager parity check (default: ``example`` tiled to
            a batch of 7, a size the export never saw).

    Returns:
        ``path``, ``data_path`` (side file or None), ``opset``, ``providers`` (of the parity
        session, `onnx_providers` order), ``parity_max_abs`` and ``parity_rows``.

    Raises:
        ValueError: parity worse than ``PARITY_MAX_ABS_LIMIT``.
    """
    import onnx
    import torch

    out = Path(path).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    ex = example.detach().float()
    if ex.shape[0] < 2:
        ex = ex.repeat(2, *([1] * (ex.dim() - 1)))
    batch = torch.export.Dim("batch", min=1)
    side = out.with_name(out.name + ".data")
    for stale in (out, side):
        stale.unlink(missing_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (ex,),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    program.save(str(out), external_data=True)
    data_path: Path | None = side if side.exists() else None
    if data_path is not None and data_path.stat().st_size <= TORCH_ONNX_INLINE_MAX_BYTES:
        proto = onnx.load(str(out), load_external_data=True)
        tmp = out.with_name(f".{out.name}.tmp")
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        os.replace(tmp, out)
        data_path.unlink()
        data_path = None
    onnx.checker.check_model(str(out))
    opset = next(
        (
            o.version
            for o in onnx.load(str(out), load_external_data=False).opset_import
            if o.domain in ("", "ai.onnx")
        ),
        None,
    )

    x = parity_input if parity_input is not None else ex[:1].repeat(7, *([1] * (ex.dim() - 1)))
    if parity_input is None:
        # distinct rows, so a batch mix-up would show
        x = x + 0.1 * torch.randn_like(x)
    with torch.no_grad():
        want = model(x.float()).numpy()
    sess = onnx_session(out)
    got = sess.run(None, {input_name: x.float().numpy()})[0]
    parity = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    if not parity <= PARITY_MAX_ABS_LIMIT:
        raise ValueError(
            f"ONNX parity {parity:.3g} exceeds {PARITY_MAX_ABS_LIMIT}: the "
            f"exported graph disagrees with torch eager for {type(model).__name__}"
        )
    return {
        "path": str(out),
        "data_path": None if data_path is None else str(data_path),
        "opset": opset,
        "providers": list(sess.get_providers()),
        "parity_max_abs": parity,
        "parity_rows": int(x.shape[0]),
        "input": input_name,
        "output": output_name,
    }


# --- validation residual calibration (serving's conformal intervals and P(up)) ---------------

# Coverages of the split-conformal half-widths stored by :func:`residual_calibration`.
CONFORMAL_COVERAGES = (0.8, 0.9)


def residual_calibration(residuals: Any) -> dict[str, float]:
    """Validation-residual statistics a served model needs for intervals and P(up).

    ``residuals`` are ``y - prediction`` on held-out (validation) rows the booster never saw.
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


# --- sequence bundles (LSTM / Transformer) -----------------------------------------------------

# Random windows for the parity check: values ~N(mean, (3 std)^2) around the train mean (so the
# input clip at 5 sigma is crossed), with NaN warm-up cells like a young ticker's first windows.
SEQUENCE_PARITY_ROWS = 64


def _sequence_parity_windows(net: Any, window: int, rows: int, seed: int = 0) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    n_f = net.x_mean.shape[0]
    z = 3.0 * torch.randn(rows, window, n_f, generator=g)
    x = net.x_mean + z * net.x_std
    x[: rows // 4, : window // 2] = float("nan")
    return x.float()


def export_sequence_bundle(
    net: Any,
    feature_names: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    model_name: str,
    model_version: str,
    horizon: int,
    calibration: dict[int, dict[str, float]] | None = None,
    parity_input: Any | None = None,
    extra: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
) -> Path:
    """Write a ``kind: "sequence"`` bundle for a trained ``SequenceNet`` (atomic replace).

    The ONNX graph is the network's own ``forward`` (standardisation, NaN -> train mean and
    the input clip inside), exported by `export_torch_onnx` with a dynamic batch; its parity
    against torch eager (max abs over every output column) is checked and stored as
    ``onnx_parity_max_abs``.

    Args:
        net: a trained ``training.sequence.SequenceNet`` (put in eval mode).
        feature_names: the net's input columns, in order (``F`` of ``[B, L, F]``).
        out_dir: bundle directory to create.
        model_name: registered name, e.g. ``stockray-lstm-h5``.
        model_version: registered version (``"unregistered"`` until known).
        horizon: the horizon this bundle serves; must be one of ``net.cfg.horizons``.
        calibration: ``{h: residual_calibration(valid residuals of head h)}``.
        parity_input: ``[N, L, F]`` real windows for the parity check (validation windows
            are best); `SEQUENCE_PARITY_ROWS` random windows (NaN cells, values beyond the
            input clip) are checked besides, or instead when None.
        extra: more JSON-serialisable metadata (``extra.metrics`` = this horizon's metrics).
        history: per-epoch training history stored in ``state.pt``.

    Returns:
        The bundle directory.

    Raises:
        ValueError: feature names don't match the net, the horizon is not one of its heads,
            or ONNX parity is worse than ``PARITY_MAX_ABS_LIMIT``.
    """
    import torch

    from training.sequence import EpochState, save_state

    cfg = net.cfg
    names = [str(n) for n in feature_names]
    n_f = int(net.x_mean.shape[0])
    if len(names) != n_f or len(set(names)) != len(names):
        raise ValueError(f"{len(names)} feature names (unique: {len(set(names))}) for a "
                         f"SequenceNet with {n_f} inputs")
    horizons = [int(h) for h in cfg.horizons]
    if int(horizon) not in horizons:
        raise ValueError(f"horizon {horizon} is not a head of this net (horizons {horizons})")
    net = net.eval()
    # Real windows rarely hold NaN padding or 5-sigma values: synthetic rows always join them,
    # so the stated parity covers the NaN -> mean and clip paths of the graph too.
    x = _sequence_parity_windows(net, cfg.window, SEQUENCE_PARITY_ROWS)
    if parity_input is not None:
        given = torch.as_tensor(np.asarray(parity_input, np.float32))
        if given.dim() != 3 or given.shape[1:] != (cfg.window, n_f):
            raise ValueError(f"parity_input has shape {tuple(given.shape)}; "
                             f"want [N, {cfg.window}, {n_f}]")
        x = torch.cat([given, x[: SEQUENCE_PARITY_ROWS // 4]])
    out = Path(out_dir).expanduser().resolve()
    with staged_dir(out) as tmp:
        # Export from finite rows (NaN in the example is fine for torch.export, but finite
        # rows keep the trace off data-dependent paths); parity runs on x, NaN included.
        finite = torch.nan_to_num(x[:2], nan=0.0) if len(x) >= 2 else torch.nan_to_num(x)
        info = export_torch_onnx(net, finite, tmp / ONNX_FILE, parity_input=x)
        save_state(tmp / STATE_FILE, net, None, EpochState(epoch=-1, history=list(history or [])),
                   cfg, n_f)
        cal = {str(h): dict(v) for h, v in (calibration or {}).items()}
        meta = {
            "kind": KIND_SEQUENCE,
            "family": cfg.model,
            "architecture": cfg.model,
            "model_name": model_name,
            "model_version": str(model_version),
            "horizon": int(horizon),
            "horizons": horizons,
            "output_index": horizons.index(int(horizon)),
            "window": int(cfg.window),
            "feature_names": names,
            "calibration": cal,
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in vars(cfg).items()},
            "onnx_parity_max_abs": info["parity_max_abs"],
            "onnx_parity_rows": info["parity_rows"],
            "onnx_opset": info["opset"],
            "onnx_input": info["input"],
            "onnx_output": info["output"],
            "onnx_provider_at_export": info["providers"][0],
            "created_at": datetime.now(UTC).isoformat(),
            "extra": dict(extra or {}),
        }
        _write_json_atomic(tmp / META_FILE, meta)
    return out


def retarget_sequence_bundle(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, horizon: int,
    model_name: str, model_version: str, extra: dict[str, Any] | None = None,
) -> Path:
    """Copy a sequence bundle so it serves another of its net's horizons (no re-export).

    Sets ``horizon``, ``output_index``, ``model_name``, ``model_version`` and (when given)
    ``extra``; the graph and state are the same files.
    """
    meta = read_bundle_meta(src)
    if meta.get("kind") != KIND_SEQUENCE:
        raise ValueError(f"{src} is a {meta.get('kind', KIND_LGBM)!r} bundle, not a sequence one")
    horizons = [int(h) for h in meta["horizons"]]
    if int(horizon) not in horizons:
        raise ValueError(f"horizon {horizon} is not a head of {src} (horizons {horizons})")
    out = Path(out_dir).expanduser().resolve()
    with staged_dir(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        updates: dict[str, Any] = {"horizon": int(horizon),
                                   "output_index": horizons.index(int(horizon)),
                                   "model_name": model_name, "model_version": str(model_version)}
        if extra is not None:
            updates["extra"] = dict(extra)
        write_bundle_meta(tmp, **updates)
    return out
