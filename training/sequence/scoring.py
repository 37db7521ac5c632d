"""Scoring a trained sequence net against the naive baselines, and what the registry logs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.bundle import residual_calibration
from training.evaluate import ic, rank_ic, rmse
from training.lgbm import baseline_predictions
from training.nets import SequenceConfig, SequenceNet
from training.sequence.loop import predict_array
from training.sequence.windows import build_windows, segment_masks

# Validation windows kept with a result for the bundle's ONNX parity check (real windows, NaN
# warm-up cells included).
PARITY_WINDOWS = 64


@dataclass
class SequenceResult:
    """A trained sequence net and how it did: what ``training.registry.register_sequence`` logs.

    Attributes:
        net: the trained `SequenceNet` (eval mode).
        feature_names: its inputs, in order.
        metrics: per horizon, `score_sequence` output (``val_*``, ``test_*``, baselines,
            validation residual calibration).
        split: the explicit segments (``{"train": [start, end], ...}``) and sample counts.
        history: per-epoch training metrics.
        parity_windows: ``(N, L, F)`` validation windows for the ONNX parity check.
    """

    net: SequenceNet
    feature_names: list[str]
    metrics: dict[int, dict[str, float]]
    split: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    parity_windows: np.ndarray | None = None

    @property
    def cfg(self) -> SequenceConfig:
        return self.net.cfg

    def calibration(self) -> dict[int, dict[str, float]]:
        """Per horizon, the validation residual statistics (``val_resid_*``, conformal)."""
        keys = ("val_resid_", "val_conformal_")
        return {h: {k: v for k, v in m.items() if k.startswith(keys)}
                for h, m in self.metrics.items()}


def score_sequence(
    net: SequenceNet,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    masks: dict[str, np.ndarray],
) -> dict[int, dict[str, float]]:
    """Per-horizon metrics of ``net`` on time-ordered segments, beside the naive baselines.

    For each segment (``"valid"`` -> prefix ``val``, ``"test"`` -> ``test``): ``{p}_ic``,
    ``{p}_rank_ic``, ``{p}_rmse``, ``n_{segment}``, and the zero / momentum / reversal
    baselines of ``training.lgbm.baseline_predictions`` on the same rows — named like
    LightGBM's (``baseline_momentum_ic`` on valid, ``test_baseline_momentum_ic`` on test) so
    the model card and ``stockray models`` read both families alike. The validation residuals
    give ``training.bundle.residual_calibration`` (serving's P(up) and intervals).

    Args:
        net: trained `SequenceNet`.
        frame: panel with ``ticker``, ``ts``, features, labels and the past returns the
            baselines read (``ret_{h}d``).
        feature_names: the net's inputs, in order.
        masks: segment name -> boolean row mask of ``frame``.

    Returns:
        ``{horizon: {metric: value}}``.
    """
    cfg = net.cfg
    out: dict[int, dict[str, float]] = {int(h): {} for h in cfg.horizons}
    keyed = frame.assign(ts=pd.to_datetime(frame["ts"])).set_index(["ts", "ticker"])
    for seg, mask in masks.items():
        if not np.asarray(mask).any():
            continue
        pre = "val" if seg == "valid" else seg
        w = build_windows(frame, feature_names, cfg.window, cfg.label_columns, mask)
        pred = predict_array(net, w.x).astype(np.float64)
        rows = keyed.reindex(pd.MultiIndex.from_arrays(
            [pd.to_datetime(w.index.get_level_values("ts")), w.index.get_level_values("ticker")]))
        dates = w.index.get_level_values("ts").to_numpy()
        for j, h in enumerate(cfg.horizons):
            y = w.y[:, j].astype(np.float64)
            m = np.isfinite(y)
            p, yy, d = pred[m, j], y[m], dates[m]
            met = out[int(h)]
            met.update({f"{pre}_ic": ic(p, yy, d), f"{pre}_rank_ic": rank_ic(p, yy, d),
                        f"{pre}_rmse": rmse(p, yy), f"n_{seg}": float(m.sum())})
            bpre = "baseline" if seg == "valid" else f"{pre}_baseline"
            # panels without past-return columns (tiny test frames) have no baselines
            base_rows = rows.iloc[np.flatnonzero(m)] if "ret_1d" in rows else None
            bases = baseline_predictions(base_rows, h) if base_rows is not None else {}
            for name, base in bases.items():
                met[f"{bpre}_{name}_rmse"] = rmse(base, yy)
                if name != "zero":  # a constant forecast has no correlation with anything
                    met[f"{bpre}_{name}_ic"] = ic(base, yy, d)
                    met[f"{bpre}_{name}_rank_ic"] = rank_ic(base, yy, d)
            if seg == "valid":
                met.update(residual_calibration(yy - p))
    return out


def sequence_result(
    net: SequenceNet,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    segments: dict[str, Sequence[Any]],
    *,
    history: list[dict[str, float]] | None = None,
    n_train: int | None = None,
) -> SequenceResult:
    """Score a trained net on the valid/test segments and package it for the registry."""
    net.eval()
    _, va, te = segment_masks(frame, segments)
    metrics = score_sequence(net, frame, feature_names, {"valid": va, "test": te})
    pw = build_windows(frame, feature_names, net.cfg.window, mask=va).x[:PARITY_WINDOWS]
    split = {k: [str(v) for v in segments[k]] for k in ("train", "valid", "test") if k in segments}
    if n_train is not None:
        split["n_train"] = int(n_train)
        for m in metrics.values():
            m["n_train"] = float(n_train)
    return SequenceResult(net=net, feature_names=list(feature_names), metrics=metrics,
                          split=split, history=list(history or []), parity_windows=pw)

def ic_by_horizon(pred: pd.DataFrame, frame: pd.DataFrame) -> dict[int, float]:
    """Mean per-date IC of `SequenceModel.predict_frame` output against the frame's labels."""
    lab = frame.set_index(["ts", "ticker"])
    out = {}
    for col in pred.columns:
        h = int(col.removeprefix("fwd_ret_").removesuffix("d"))
        y = lab[col].reindex(pred.index).to_numpy(float)
        m = np.isfinite(y)
        out[h] = (
            ic(pred[col].to_numpy()[m], y[m], pred.index.get_level_values("ts")[m])
            if m.any()
            else math.nan
        )
    return out
