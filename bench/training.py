"""Ray Train overhead vs the same plain torch loop, side by side in one run.

    .venv/bin/python -m bench.training --out data/bench/training.json            # 40 epochs
    .venv/bin/python -m bench.training --out /tmp/t.json --epochs 4 --tickers 10  # smoke run

Both paths run `training.sequence.train_epochs` on the same windows (a synthetic planted
market through the real feature pipeline), the same `SequenceConfig`, ``--threads`` torch
threads:

- ``plain``: the loop in this process, no checkpoints, run before and after Ray (mean);
- ``ray_train``: ``TorchTrainer`` with one worker of ``{"CPU": threads}`` reporting a
  checkpoint every epoch (`training.sequence.fit_ray_train`, defaults: its worker at the
  driver's niceness instead of Ray's +15, ``worker_niceness`` as recorded), on a private
  local Ray started here (``ray.init(num_cpus=threads, include_dashboard=False)``, time
  reported apart, not counted). It runs twice: ``--epochs``
  (the realistic count, 40 by default) and ``--short-epochs`` (2), so that

      wall(E) = fixed_s + E * per_epoch_s

  is solved for Ray's fixed start cost and its per-epoch cost *including* the per-epoch
  report + checkpoint (which the in-loop epoch timer does not see). The plain loop's fixed
  cost is its wall minus its epochs. ``ratio_at_epochs`` then gives ``ray / plain`` at any
  epoch count, and ``epochs_for_target_ratio`` the count above which Ray Train stays within
  the 1.3x target.

Also reported: training throughput (samples/s, wall and steady in-loop) and, when the data
dir holds an offline store (``stockray ingest && stockray features``), the time to retrain
every horizon on the default universe: the one multi-horizon sequence net (1/5/20 days) at
``configs/sequence.yaml``'s epochs on its train segment — one plain epoch measured, the rest
from the per-epoch figures above, scaled by window count — plus a LightGBM regression fit
per horizon (measured). The machine's load average is recorded because the box is shared
and every figure moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd


def build_frame(n_tickers: int, n_days: int, seed: int) -> pd.DataFrame:
    from features.pipeline import build_features_local
    from features.sources import MARKET_TICKER
    from training.synthetic import make_market

    market = make_market(n_tickers=n_tickers, n_days=n_days, seed=seed)
    stocks = market.bars.drop(columns=["adj_close"])
    logret = np.log(market.bars.pivot(index="ts", columns="ticker", values="close")).diff()
    level = 100 * np.exp(logret.mean(axis=1).fillna(0).cumsum())
    idx = pd.DataFrame(
        {
            "ticker": MARKET_TICKER,
            "ts": level.index,
            "open": level.values,
            "high": level.values,
            "low": level.values,
            "close": level.values,
            "volume": 1.0,
        }
    )
    bars = pd.concat([stocks, idx], ignore_index=True)
    bars = bars.assign(adj_factor=1.0, source="synthetic", ingested_at=bars["ts"].max())
    return build_features_local(bars)


def _steady(xs: list[float]) -> float:
    """Median epoch time, skipping the first (allocator / thread-pool warm-up)."""
    return float(np.median(xs[1:] if len(xs) > 1 else xs))


def fixed_and_per_epoch(e_short: int, wall_short: float, e_long: int,
                        wall_long: float) -> tuple[float, float]:
    """Solve ``wall(E) = fixed + E * per_epoch`` from two runs -> ``(fixed, per_epoch)``."""
    if e_long <= e_short:
        raise ValueError(f"need --epochs > --short-epochs, got {e_long} <= {e_short}")
    per_epoch = (wall_long - wall_short) / (e_long - e_short)
    return wall_short - e_short * per_epoch, per_epoch


def ratio_at(epochs: float, ray: tuple[float, float], plain: tuple[float, float]) -> float:
    """``ray / plain`` wall at ``epochs`` from ``(fixed, per_epoch)`` of each path."""
    return (ray[0] + epochs * ray[1]) / (plain[0] + epochs * plain[1])


def epochs_for_ratio(target: float, ray: tuple[float, float],
                     plain: tuple[float, float]) -> float | None:
    """Smallest epoch count with ``ratio_at <= target``; None if no count reaches it (Ray's
    per-epoch cost alone is above ``target`` x the plain one)."""
    slack = target * plain[1] - ray[1]  # per-epoch room under the target
    if slack <= 0:
        return None if ray[0] > target * plain[0] else 0.0
    return max(0.0, (ray[0] - target * plain[0]) / slack)


def default_universe_retrain(offline_dir: Path, threads: int, ray_fixed_s: float,
                             ray_epoch_overhead_s: float) -> dict:
    """Time to retrain every horizon on the default universe (see the module docstring).

    Sequence net: `configs/sequence.yaml`'s ``model`` (all horizons in one net) on its train
    segment with labels purged against the valid start; one plain epoch after a warm-up
    epoch is timed. LightGBM: `configs/lgbm.yaml`'s params, one regression fit per horizon
    on the same segment, timed.
    """
    from dataclasses import replace

    import torch

    from features.pipeline import FEATURE_NAMES
    from training.config import CONFIG_DIR, DEFAULT_CONFIG, load_experiment
    from training.data import load_training_frame
    from training.lgbm import LgbmModel
    from training.model import Dataset
    from training.sequence import (
        SequenceModel,
        SequenceNet,
        fit_scalers,
        load_sequence_yaml,
        make_optimizer,
        purge_labels,
        segment_masks,
        train_epochs,
    )
    from training.splits import purge_mask

    frame = load_training_frame(offline_dir)
    spec = load_sequence_yaml(CONFIG_DIR / "sequence.yaml")
    cfg = replace(spec["model"], num_threads=threads)
    tr, _va, _ = segment_masks(frame, spec["segments"])
    valid_start = spec["segments"]["valid"][0]
    model = SequenceModel(cfg, FEATURE_NAMES)
    w = model.windows(purge_labels(frame, cfg.horizons, valid_start, rows=tr), tr)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    net = SequenceNet(len(FEATURE_NAMES), cfg)
    fit_scalers(net, w.x, w.y)
    state = train_epochs(net, make_optimizer(net, cfg), w.x, w.y, replace(cfg, epochs=2))
    epoch_s = state.history[-1]["epoch_seconds"]
    seq_plain = cfg.epochs * epoch_s
    seq_ray = ray_fixed_s + cfg.epochs * (epoch_s + ray_epoch_overhead_s)

    exp = load_experiment(DEFAULT_CONFIG)
    ts = frame["ts"]
    vs = pd.Timestamp(valid_start, tz=ts.dt.tz) if ts.dt.tz is not None else \
        pd.Timestamp(valid_start)
    lgbm_s = {}
    for h in cfg.horizons:
        rows = frame[tr & purge_mask(frame, h, vs)]
        t0 = time.perf_counter()
        LgbmModel(FEATURE_NAMES, h, exp.params).fit(
            Dataset.of(rows, FEATURE_NAMES, f"fwd_ret_{h}d", train=None))
        lgbm_s[h] = time.perf_counter() - t0
    lgbm_total = float(sum(lgbm_s.values()))
    return {
        "offline_dir": str(offline_dir),
        "sequence": {
            "config": asdict(cfg),
            "train_windows": len(w),
            "plain_epoch_s": epoch_s,
            "plain_s": seq_plain,
            "ray_train_s": seq_ray,
            "how": "plain: epochs x one timed epoch; ray_train: + Ray's fixed cost and its "
                   "per-epoch report/checkpoint overhead from this bench",
        },
        "lgbm_fit_s_per_horizon": {str(h): v for h, v in lgbm_s.items()},
        "all_horizons_plain_s": seq_plain + lgbm_total,
        "all_horizons_ray_train_s": seq_ray + lgbm_total,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON result file")
    ap.add_argument("--model", default="lstm", choices=["lstm", "transformer"])
    ap.add_argument("--tickers", type=int, default=50)
    ap.add_argument("--days", type=int, default=1000)
    # a realistic full training run: ASHA's max_t is 12, a final fit runs longer
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--short-epochs", type=int, default=2,
                    help="Epochs of the second Ray Train run (solves for the fixed cost).")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    # 1: on this shared 2-core box 2 torch threads ran 25x slower than 1 under load
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="Data dir with the default universe's offline store "
                         "[default: STOCKRAY_DATA_DIR or ./data]; skipped if absent.")
    args = ap.parse_args(argv)

    import ray
    import torch

    from features.pipeline import FEATURE_NAMES
    from training.sequence import (
        CHECKPOINT_FILE,
        SequenceConfig,
        SequenceNet,
        build_windows,
        fit_ray_train,
        fit_scalers,
        load_state,
        make_optimizer,
        ray_train_data,
        train_epochs,
    )

    cfg = SequenceConfig(
        model=args.model,
        window=args.window,
        hidden=args.hidden,
        epochs=args.epochs,
        num_threads=args.threads,
    )
    frame = build_frame(args.tickers, args.days, seed=0)
    w = build_windows(frame, FEATURE_NAMES, cfg.window, cfg.label_columns)
    n = len(w)
    load0 = os.getloadavg()

    def plain_run() -> tuple[float, list[float]]:
        torch.set_num_threads(args.threads)
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        net = SequenceNet(len(FEATURE_NAMES), cfg)
        fit_scalers(net, w.x, w.y)
        opt = make_optimizer(net, cfg)
        state = train_epochs(net, opt, w.x, w.y, cfg)
        return time.perf_counter() - t0, [h["epoch_seconds"] for h in state.history]

    # plain, Ray Train, plain again: the box is shared, so the plain figure is the mean of
    # the runs bracketing Ray's (load drifts between phases)
    plain_before = plain_run()

    # Ray Train, private local cluster: the long run, then the short one
    temp_dir = tempfile.mkdtemp(prefix="/tmp/srb-")
    storage = tempfile.mkdtemp(prefix="/tmp/srb-store-")
    ray_runs = {}
    try:
        t0 = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=args.threads,
            include_dashboard=False,
            _temp_dir=temp_dir,
            log_to_driver=False,
        )
        init_s = time.perf_counter() - t0
        data = ray_train_data(cfg, w, None, len(FEATURE_NAMES))
        for epochs in (args.epochs, args.short_epochs):
            run_cfg = SequenceConfig(**{**asdict(cfg), "epochs": epochs})
            t0 = time.perf_counter()
            result = fit_ray_train(data, run_cfg, storage, name=f"bench-{epochs}",
                                   cpus_per_worker=args.threads)
            wall = time.perf_counter() - t0
            if result.error is not None:
                raise RuntimeError(f"Ray Train run failed: {result.error}")
            with result.checkpoint.as_directory() as d:
                hist = load_state(Path(d, CHECKPOINT_FILE))["history"]
            ray_runs[epochs] = (wall, [h["epoch_seconds"] for h in hist])
            worker_nice = hist[-1].get("niceness")
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)

    plain_after = plain_run()
    plain_wall = (plain_before[0] + plain_after[0]) / 2
    plain_epochs = plain_before[1] + plain_after[1]
    plain_fixed = plain_wall - float(np.sum(plain_epochs)) / 2
    plain_fp = (plain_fixed, (plain_wall - plain_fixed) / cfg.epochs)
    ray_wall, ray_epochs = ray_runs[args.epochs]
    ray_fp = fixed_and_per_epoch(args.short_epochs, ray_runs[args.short_epochs][0],
                                 args.epochs, ray_wall)
    samples = n * cfg.epochs
    target = 1.3
    data_dir = args.data_dir or Path(os.environ.get("STOCKRAY_DATA_DIR", "data"))
    offline = data_dir.expanduser().resolve() / "offline"
    retrain = (
        default_universe_retrain(offline, args.threads, ray_fp[0], ray_fp[1] - plain_fp[1])
        if any(offline.glob("*.parquet"))
        else {"skipped": f"no offline store in {offline}: stockray ingest && stockray features"}
    )
    out = {
        "config": asdict(cfg),
        "data": {
            "tickers": args.tickers,
            "days": args.days,
            "samples": n,
            "features": len(FEATURE_NAMES),
        },
        "plain": {
            "wall_s": plain_wall,
            "wall_s_before_after_ray": [plain_before[0], plain_after[0]],
            "fixed_s": plain_fp[0],
            "per_epoch_s": plain_fp[1],
            "samples_per_s": samples / plain_wall,
            "steady_samples_per_s": n / _steady(plain_epochs),
            "median_epoch_s": _steady(plain_epochs),
        },
        "ray_train": {
            "wall_s": ray_wall,
            "wall_s_short_run": ray_runs[args.short_epochs][0],
            "short_run_epochs": args.short_epochs,
            "fixed_s": ray_fp[0],
            "per_epoch_s": ray_fp[1],
            "per_epoch_report_checkpoint_s": ray_fp[1] - _steady(ray_epochs),
            "samples_per_s": samples / ray_wall,
            "steady_samples_per_s": n / _steady(ray_epochs),
            "median_epoch_s": _steady(ray_epochs),
            "fixed_cost_minus_in_loop_s": ray_wall - float(np.sum(ray_epochs)),
            "ray_init_s": init_s,
            "workers": 1,
            "cpus_per_worker": args.threads,
            "worker_niceness": worker_nice,
            "driver_niceness": os.getpriority(os.PRIO_PROCESS, 0),
            "checkpoint_every_epoch": True,
        },
        "ratio_wall_ray_over_plain": ray_wall / plain_wall,
        "ratio_epoch_ray_over_plain": _steady(ray_epochs) / _steady(plain_epochs),
        "ratio_at_epochs": {str(e): ratio_at(e, ray_fp, plain_fp) for e in (1, 5, 12, 40, 100)},
        "epochs_for_target_ratio": epochs_for_ratio(target, ray_fp, plain_fp),
        "target_ratio": target,
        "default_universe_retrain": retrain,
        "loadavg_1m_start_end": [load0[0], os.getloadavg()[0]],
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{n} windows, {cfg.epochs} epochs, {args.threads} thread(s), "
          f"load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"plain     {plain_wall:7.1f} s  {out['plain']['samples_per_s']:8.0f} samples/s  "
          f"(fixed {plain_fp[0]:.2f} s + {plain_fp[1]:.3f} s/epoch)")
    print(
        f"ray_train {ray_wall:7.1f} s  {out['ray_train']['samples_per_s']:8.0f} samples/s  "
        f"(fixed {ray_fp[0]:.1f} s + {ray_fp[1]:.3f} s/epoch; ray.init {init_s:.1f} s apart)"
    )
    be = out["epochs_for_target_ratio"]
    print(
        f"ratio ray/plain at {cfg.epochs} epochs: {out['ratio_wall_ray_over_plain']:.2f}x "
        f"(target <= {target}x); per epoch {ray_fp[1] / plain_fp[1]:.2f}x; within target from "
        + ("never" if be is None else f"{be:.0f} epochs")
    )
    if "all_horizons_plain_s" in retrain:
        print(f"retrain all horizons, default universe: plain {retrain['all_horizons_plain_s']:.0f}"
              f" s, Ray Train {retrain['all_horizons_ray_train_s']:.0f} s")
    return out


if __name__ == "__main__":
    main()
