"""Ray Tune: ASHA search over `SequenceConfig` with the plain loop as the trial."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from training.nets import EpochState, SequenceConfig, SequenceNet
from training.sequence.loop import fit_scalers, make_optimizer, train_epochs
from training.sequence.model import SequenceModel
from training.sequence.windows import purge_labels, segment_masks
from training.tune import asha_scheduler, raise_failed_trials, tune_domain


def sequence_trainable(
    config: dict[str, Any],
    frame: pd.DataFrame | None = None,
    feature_names: Sequence[str] = (),
    segments: dict[str, Sequence[Any]] | None = None,
) -> None:
    """Tune function trainable: the plain torch loop, one ``tune.report`` per epoch.

    Not a TorchTrainer per trial: that costs ~10-12 s of fixed start-up per trial here
    (measured in ``bench/training.py``), more than a small trial's training; ASHA stops bad
    trials on the per-epoch ``val_loss``. Windows are cut inside the trial because
    ``window`` is a searched parameter.
    """
    from ray import tune

    cfg = SequenceConfig.from_dict(config["seq"])
    torch.set_num_threads(int(config.get("cpus", 1)))
    torch.manual_seed(cfg.seed)
    tr, va, _ = segment_masks(frame, segments)
    model = SequenceModel(cfg, feature_names)
    train = model.windows(purge_labels(frame, cfg.horizons, segments["valid"][0], rows=tr), tr)
    valid = model.windows(frame, va)
    net = SequenceNet(len(feature_names), cfg)
    fit_scalers(net, train.x, train.y)
    opt = make_optimizer(net, cfg)

    def report(_st: EpochState, metrics: dict[str, float]) -> None:
        tune.report(metrics)

    train_epochs(
        net,
        opt,
        train.x,
        train.y,
        cfg,
        valid=(valid.x, valid.y, valid.index.get_level_values("ts").to_numpy()),
        on_epoch_end=report,
    )


def load_sequence_yaml(path: str | Path) -> dict[str, Any]:
    """Read ``configs/sequence.yaml``: ``segments``, ``model`` (SequenceConfig defaults),
    ``search_space`` and ``tune`` sections, validated.

    Returns:
        ``{"segments": {...}, "model": SequenceConfig, "search_space": {...}, "tune": {...}}``.
    """
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    for key in ("segments", "model", "search_space", "tune"):
        if key not in raw:
            raise KeyError(f"{path}: missing section {key!r}")
    seg = raw["segments"]
    prev_end = None
    for name in ("train", "valid", "test"):
        lo, hi = (pd.Timestamp(v) for v in seg[name])
        if hi < lo or (prev_end is not None and lo <= prev_end):
            raise ValueError(
                f"{path}: segment {name} {seg[name]} is empty or overlaps the "
                f"previous one; segments must be ordered train < valid < test"
            )
        prev_end = hi
    model = SequenceConfig.from_dict(raw["model"])
    unknown = set(raw["search_space"]) - {f.name for f in fields(SequenceConfig)}
    if unknown:
        raise ValueError(
            f"{path}: search_space keys {sorted(unknown)} are not SequenceConfig fields"
        )
    return {
        "segments": seg,
        "model": model,
        "search_space": raw["search_space"],
        "tune": raw["tune"],
    }


def _tune_domain(spec: Any) -> Any:
    """YAML spec -> Tune domain: ``{choice: [...]}``, ``{loguniform: [lo, hi]}``, ... (see
    `training.tune.tune_domain`), or a plain value."""
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, arg),) = spec.items()
        return tune_domain(kind, arg)
    return spec


def tune_sequence(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    spec: dict[str, Any],
    storage_path: str | Path,
    *,
    name: str = "sequence-tune",
) -> pd.DataFrame:
    """ASHA search over `SequenceConfig` on the connected Ray cluster.

    Args:
        frame: training frame (features + labels) covering the train and valid segments.
        spec: `load_sequence_yaml` output; ``tune`` holds ``num_samples``, ``grace_period``,
            ``cpus_per_trial``, ``max_concurrent`` and ``metric`` (default ``val_loss``).

    Returns:
        One row per trial: its searched parameters, epochs run and last ``val_loss`` /
        ``val_ic_*``, best first.
    """
    from ray import tune

    t = spec["tune"]
    base = asdict(spec["model"])
    seq_space = {**base, **{k: _tune_domain(v) for k, v in spec["search_space"].items()}}
    cpus = float(t.get("cpus_per_trial", 1))
    trainable = tune.with_resources(
        tune.with_parameters(
            sequence_trainable,
            frame=frame,
            feature_names=list(feature_names),
            segments=spec["segments"],
        ),
        {"cpu": cpus},
    )
    metric = t.get("metric", "val_loss")
    mode = "min" if metric.endswith("loss") else "max"
    tuner = tune.Tuner(
        trainable,
        param_space={"seq": seq_space, "cpus": max(1, int(cpus))},
        tune_config=tune.TuneConfig(
            num_samples=int(t.get("num_samples", 4)),
            metric=metric,
            mode=mode,
            max_concurrent_trials=t.get("max_concurrent"),
            scheduler=asha_scheduler(base["epochs"], t.get("grace_period", 1),
                                     t.get("reduction_factor", 2)),
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage_path), verbose=0),
    )
    grid = tuner.fit()
    raise_failed_trials(grid, "sequence")
    rows = []
    for res in grid:
        m = res.metrics or {}
        row = {k: res.config["seq"][k] for k in spec["search_space"]}
        row.update({"epochs_run": int(m.get("epoch", -1)) + 1, metric: m.get(metric)})
        row.update({k: v for k, v in m.items() if k.startswith("val_ic_")})
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(metric, ascending=(mode == "min"), na_position="last", ignore_index=True)
