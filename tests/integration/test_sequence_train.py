"""Sequence models on a real local Ray: TorchTrainer with a checkpoint every epoch, a worker
killed mid-run that resumes from its last checkpoint, and an ASHA search as Tune function
trainables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.ray_fixtures import private_ray
from training.sequence import (
    CHECKPOINT_FILE,
    SequenceConfig,
    build_windows,
    fit_ray_train,
    load_sequence_yaml,
    load_state,
    net_from_state,
    predict_array,
    ray_train_data,
    segment_masks,
    tune_sequence,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FEATURES = ["f0", "f1", "f2"]


def tiny_panel(n_tickers=8, n_days=160, seed=0) -> pd.DataFrame:
    """Features whose f0 predicts the 1-day label; enough for a few quick epochs."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days, tz="UTC")
    rows = []
    for k in range(n_tickers):
        f = rng.standard_normal((n_days, 3))
        y1 = 0.01 * f[:, 0] + 0.01 * rng.standard_normal(n_days)
        rows.append(
            pd.DataFrame(
                {
                    "ticker": f"T{k}",
                    "ts": dates,
                    "f0": f[:, 0],
                    "f1": f[:, 1],
                    "f2": f[:, 2],
                    "fwd_ret_1d": y1,
                    "fwd_ret_5d": y1 + 0.02 * rng.standard_normal(n_days),
                    "fwd_ret_20d": np.nan,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def ray_local():
    with private_ray(prefix="srq-it-"):
        yield


# One 1-CPU worker: the box is shared by parallel jobs, and 2 torch threads on a loaded 2-core
# machine ran a tiny LSTM step 25x slower than 1 thread (OpenMP threads waiting on each other).


def _data(cfg: SequenceConfig):
    frame = tiny_panel()
    w = build_windows(frame, FEATURES, cfg.window, cfg.label_columns)
    return ray_train_data(cfg, w, None, len(FEATURES)), w


def test_torch_trainer_checkpoints_every_epoch(ray_local, settings):
    cfg = SequenceConfig(model="lstm", window=5, hidden=8, epochs=3, batch_size=256)
    data, w = _data(cfg)
    result = fit_ray_train(
        data, cfg, settings.ray_dir / "train", name="seq-ckpt", cpus_per_worker=1
    )
    assert result.error is None
    assert result.metrics["epoch"] == 2
    assert result.metrics["resumed_from"] == -1
    # the training loop ran at this process's priority, not Ray's worker default of +15
    assert result.metrics["niceness"] == os.getpriority(os.PRIO_PROCESS, 0)
    # one checkpoint per epoch was reported (CheckpointConfig keeps the last 2)
    assert len(result.best_checkpoints) == 2
    with result.checkpoint.as_directory() as d:
        blob = load_state(Path(d, CHECKPOINT_FILE))
    assert blob["epoch"] == 2 and [h["epoch"] for h in blob["history"]] == [0, 1, 2]
    net = net_from_state(blob)
    pred = predict_array(net, w.x[:50])
    assert pred.shape == (50, 3) and np.isfinite(pred).all()


@pytest.mark.slow  # two worker-group start-ups: ~60-70 s on a busy 2-core box
def test_killed_worker_resumes_from_last_checkpoint(ray_local, settings):
    cfg = SequenceConfig(model="lstm", window=5, hidden=8, epochs=4, batch_size=256)
    data, _ = _data(cfg)
    marker = settings.ray_dir / "killed.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    result = fit_ray_train(
        data,
        cfg,
        settings.ray_dir / "train",
        name="seq-kill",
        cpus_per_worker=1,
        max_failures=1,
        extra_config={"kill_at_epoch": 1, "kill_marker": str(marker)},
    )
    assert marker.exists(), "the worker never killed itself"
    assert result.error is None
    assert result.metrics["epoch"] == cfg.epochs - 1
    assert result.metrics["resumed_from"] == 1
    with result.checkpoint.as_directory() as d:
        blob = load_state(Path(d, CHECKPOINT_FILE))
    hist = blob["history"]
    # every epoch ran exactly once: 0-1 before the kill, 2-3 after resuming from epoch 1
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert [h.get("resumed_from", -1) for h in hist] == [-1, -1, 1, 1]


def test_asha_search_from_the_shipped_yaml(ray_local, settings):
    spec = load_sequence_yaml(REPO / "configs" / "sequence.yaml")
    frame = tiny_panel()
    dates = sorted(frame["ts"].unique())
    spec["segments"] = {"train": [dates[0], dates[99]], "valid": [dates[110], dates[-1]]}
    spec["model"] = SequenceConfig(**{**spec["model"].__dict__, "epochs": 2, "hidden": 8})
    spec["search_space"] = {
        "model": {"choice": ["lstm", "transformer"]},
        "window": {"choice": [3, 5]},
        "lr": {"loguniform": [1e-3, 3e-3]},
    }
    spec["tune"] = {**spec["tune"], "num_samples": 2, "grace_period": 1, "cpus_per_trial": 1}
    table = tune_sequence(frame, FEATURES, spec, settings.ray_dir / "tune")
    assert len(table) == 2
    assert set(table.columns) >= {"model", "window", "lr", "epochs_run", "val_loss", "val_ic_1d"}
    assert table["epochs_run"].between(1, 2).all()
    assert np.isfinite(table["val_loss"]).all()
    assert segment_masks(frame, spec["segments"])[1].any()
