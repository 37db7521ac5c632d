"""Ray Train: fit a `SequenceNet` with ``TorchTrainer``, a checkpoint per epoch, resumable."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from training.nets import (
    EpochState,
    SequenceConfig,
    SequenceNet,
    load_state,
    net_from_state,
    save_state,
)
from training.sequence.loop import fit_scalers, make_optimizer, train_epochs
from training.sequence.model import SequenceModel
from training.sequence.scoring import SequenceResult, sequence_result
from training.sequence.windows import Windows, purge_labels, segment_masks

CHECKPOINT_FILE = "state.pt"
#: Ray Train V2 controller poll interval (s) set for our fits unless the environment sets one.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_INTERVAL_S = 0.2
#: Ray adds this to every task/actor worker's niceness when it starts it (default 15);
#: `fit_ray_train` sets it for its Train workers (``worker_niceness``).
WORKER_NICENESS_ENV = "RAY_worker_niceness"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: train a `SequenceNet`, checkpoint every epoch, resume from the latest.

    Config keys: ``seq`` (``asdict(SequenceConfig)``), ``data`` (dict of arrays ``x, y,
    vx, vy, vdates`` or an ObjectRef of one, scalers already applied by the driver through
    ``x_mean`` ... keys), ``cpus`` (threads), and for the failure test ``kill_at_epoch`` +
    ``kill_marker``: once that epoch's checkpoint is registered the worker SIGKILLs itself
    once (the marker file remembers it did); ``run_dir`` is the run's storage directory.

    Each report carries ``epoch``, ``resumed_from`` (epoch of the checkpoint this worker
    group started from, -1 for a fresh start), ``niceness`` (the training thread's, see
    `fit_ray_train`) and the epoch's metrics.
    """
    import ray
    import ray.train
    import ray.train.torch

    cfg = SequenceConfig.from_dict(config["seq"])
    torch.set_num_threads(int(config.get("cpus", 1)))
    niceness = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's on Linux
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # equal contiguous shards: DDP needs every rank to run the same number of steps
    per = len(data["x"]) // world
    x, y = data["x"][rank * per : (rank + 1) * per], data["y"][rank * per : (rank + 1) * per]
    valid = (data["vx"], data["vy"], data["vdates"]) if rank == 0 and "vx" in data else None
    device = ray.train.torch.get_device()

    torch.manual_seed(cfg.seed)
    net = SequenceNet(x.shape[2], cfg)
    with torch.no_grad():
        for k in ("x_mean", "x_std", "y_mean", "y_std"):
            getattr(net, k).copy_(torch.as_tensor(data[k]))
    start_epoch, state, resumed_from = 0, None, -1
    ckpt = ray.train.get_checkpoint()
    opt_state = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            blob = load_state(Path(d, CHECKPOINT_FILE))
        net.load_state_dict(blob["model"])
        opt_state = blob["optimizer"]
        resumed_from = int(blob["epoch"])
        start_epoch = resumed_from + 1
        state = EpochState(epoch=resumed_from, history=list(blob["history"]))
    net = ray.train.torch.prepare_model(net)  # moves to device; DDP when world > 1
    core = net.module if hasattr(net, "module") else net
    opt = make_optimizer(net, cfg)
    if opt_state is not None:
        opt.load_state_dict(opt_state)

    def report(st: EpochState, metrics: dict[str, float]) -> None:
        metrics = dict(metrics, resumed_from=float(resumed_from), world_size=float(world),
                       niceness=float(niceness))
        st.history[-1].update(resumed_from=float(resumed_from), niceness=float(niceness))
        with tempfile.TemporaryDirectory() as tmp:
            ck = None
            if rank == 0:
                save_state(Path(tmp, CHECKPOINT_FILE), core, opt, st, cfg, x.shape[2])
                ck = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ck, checkpoint_dir_name=f"epoch_{st.epoch:04d}")
        marker = config.get("kill_marker")
        if (
            marker
            and st.epoch == config.get("kill_at_epoch")
            and rank == 0
            and not Path(marker).exists()
        ):
            # The controller registers reported checkpoints when it polls the workers (every
            # 2 s); die only once this epoch's checkpoint is in its snapshot, so the resume
            # point is deterministic.
            _wait_registered(Path(config["run_dir"]), f"epoch_{st.epoch:04d}")
            Path(marker).write_text(f"killed pid {os.getpid()} after epoch {st.epoch}\n")
            os.kill(os.getpid(), 9)

    train_epochs(
        core,
        opt,
        x,
        y,
        cfg,
        start_epoch=start_epoch,
        state=state,
        valid=valid,
        device=device,
        on_epoch_end=report,
        module=net,
    )


def _wait_registered(run_dir: Path, checkpoint_name: str, timeout_s: float = 120.0) -> None:
    """Block until Ray Train's checkpoint-manager snapshot lists ``checkpoint_name``."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if snap.exists() and checkpoint_name in snap.read_text():
            return
        time.sleep(0.2)
    raise TimeoutError(f"checkpoint {checkpoint_name} not registered in {snap} after {timeout_s} s")


def ray_train_data(
    net_cfg: SequenceConfig, train: Windows, valid: Windows | None, n_features: int
) -> dict[str, np.ndarray]:
    """Arrays for `train_loop_per_worker`: windows plus scalers fitted on ``train`` only."""
    tmp = SequenceNet(n_features, net_cfg)
    fit_scalers(tmp, train.x, train.y)
    data = {
        "x": train.x,
        "y": train.y,
        **{k: getattr(tmp, k).numpy().copy() for k in ("x_mean", "x_std", "y_mean", "y_std")},
    }
    if valid is not None and len(valid):
        data.update(vx=valid.x, vy=valid.y, vdates=valid.index.get_level_values("ts").to_numpy())
    return data


def worker_runtime_env(worker_niceness: int | None) -> dict[str, Any] | None:
    """Runtime env of `fit_ray_train`'s workers: ``RAY_worker_niceness`` = the driver's
    ``RAY_worker_niceness`` if set, else ``worker_niceness``; None (Ray's default) for None."""
    if worker_niceness is None:
        return None
    nice = os.environ.get(WORKER_NICENESS_ENV, str(int(worker_niceness)))
    return {"env_vars": {WORKER_NICENESS_ENV: nice}}


def fit_ray_train(
    data: dict[str, np.ndarray],
    cfg: SequenceConfig,
    storage_path: str | Path,
    *,
    name: str = "sequence",
    cpus_per_worker: int = 2,
    num_workers: int = 1,
    max_failures: int = 1,
    extra_config: dict[str, Any] | None = None,
    worker_niceness: int | None = 0,
) -> Any:
    """Run `train_loop_per_worker` with ``TorchTrainer`` on the connected Ray cluster.

    One worker with ``cpus_per_worker`` CPUs by default (on a small CPU host one multi-thread
    worker beats 1-CPU DDP workers); GPUs are used when torch sees one. ``FailureConfig``
    restarts a dead worker group from the latest checkpoint up to ``max_failures`` times.

    ``worker_niceness``: the niceness the Ray Train worker processes add to the raylet's
    (``RAY_worker_niceness`` in their runtime env, via Ray Train's DeveloperAPI
    ``RunConfig.worker_runtime_env``; the driver's own ``RAY_worker_niceness`` wins when set).
    Ray starts every task/actor worker at +15, so whenever something else wants the same CPU
    (another job on a shared host, Ray's own nice-0 raylet/GCS/driver threads) the training
    loop yields to it, where a plain loop at 0 would not (`bench.training` measures the
    in-loop cost against a plain process). 0 (default) runs
    the loop at the priority of the process that started Ray, as Ray's job supervisor does
    for job drivers; None keeps Ray's +15. Ray's helper actors stay at +15 either way.

    Returns:
        The ``ray.train.Result`` (``metrics`` = last report, ``checkpoint`` = latest).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = torch.cuda.is_available()
    # Ray Train V2's worker result queue holds one report; the controller drains it when it
    # polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, default 2 s), so with
    # epochs shorter than that every report-with-checkpoint waits for the next poll. Poll
    # faster unless the user chose an interval (the driver's value is propagated by Ray).
    os.environ.setdefault(HEALTH_CHECK_ENV, str(HEALTH_CHECK_INTERVAL_S))
    config = {
        "seq": asdict(cfg),
        "data": ray.put(data),
        "cpus": cpus_per_worker,
        "run_dir": str(Path(storage_path) / name),
        **(extra_config or {}),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env=worker_runtime_env(worker_niceness),
        ),
    )
    return trainer.fit()


def fit_sequence_ray(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    cfg: SequenceConfig,
    segments: dict[str, Sequence[Any]],
    storage_path: str | Path,
    *,
    name: str = "sequence",
    cpus_per_worker: int = 2,
) -> SequenceResult:
    """Train with Ray Train (`fit_ray_train`, a checkpoint per epoch) on the train segment,
    then score the valid/test segments (`sequence_result`). Needs a connected Ray cluster.

    Training labels whose window reaches the first validation date are purged per horizon.

    Raises:
        ValueError: fewer than 100 labelled training windows.
        RuntimeError: the Ray Train run failed.
    """
    tr, va, _ = segment_masks(frame, segments)
    model = SequenceModel(cfg, feature_names)
    train = model.windows(purge_labels(frame, cfg.horizons, segments["valid"][0], rows=tr), tr)
    n_lab = int(np.isfinite(train.y).any(axis=1).sum())
    if n_lab < 100:
        raise ValueError(f"fit_sequence_ray: only {n_lab} labelled training windows in "
                         f"segment {segments['train']}; widen it or ingest a longer history")
    valid = model.windows(frame, va)
    data = ray_train_data(cfg, train, valid, len(feature_names))
    result = fit_ray_train(data, cfg, storage_path, name=name, cpus_per_worker=cpus_per_worker)
    if result.error is not None or result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name!r} failed: {result.error}")
    with result.checkpoint.as_directory() as d:
        blob = load_state(Path(d, CHECKPOINT_FILE))
    net = net_from_state(blob)
    return sequence_result(net, frame, feature_names, segments, history=list(blob["history"]),
                           n_train=len(train))
