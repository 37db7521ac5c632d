"""Ray Train overhead vs the same plain torch loop, side by side in one run.

    .venv/bin/python -m bench.training --out data/bench/training.json

Both paths run `training.sequence.train_epochs` on the same windows (a synthetic planted
market through the real feature pipeline), the same `SequenceConfig`, 2 torch threads:

- ``plain``: the loop in this process, no checkpoints, run before and after Ray (mean);
- ``ray_train``: ``TorchTrainer`` with one worker of ``{"CPU": 2}`` reporting a checkpoint every
  epoch (`training.sequence.fit_ray_train`), on a private local Ray started here
  (``ray.init`` time is reported apart, not counted).

Reported: wall time of each, the ratio ``ray_train / plain`` (target <= 1.3 at realistic epoch
counts), Ray's fixed cost (wall minus the sum of its in-loop epoch times), the steady-state
per-epoch ratio, and training throughput in samples/s. The machine's load average is recorded
because the box is shared and every figure moves with it.
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON result file")
    ap.add_argument("--model", default="lstm", choices=["lstm", "transformer"])
    ap.add_argument("--tickers", type=int, default=50)
    ap.add_argument("--days", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=12)  # configs/sequence.yaml's max_t
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    # 1: on this shared 2-core box 2 torch threads ran 25x slower than 1 under load
    ap.add_argument("--threads", type=int, default=1)
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
        net = SequenceNet(len(FEATURE_NAMES), cfg)
        fit_scalers(net, w.x, w.y)
        opt = make_optimizer(net, cfg)
        t0 = time.perf_counter()
        state = train_epochs(net, opt, w.x, w.y, cfg)
        return time.perf_counter() - t0, [h["epoch_seconds"] for h in state.history]

    # plain, Ray Train, plain again: the box is shared, so the plain figure is the mean of
    # the runs bracketing Ray's (load drifts between phases)
    plain_before = plain_run()

    # Ray Train, private local cluster
    temp_dir = tempfile.mkdtemp(prefix="/tmp/srb-")
    storage = tempfile.mkdtemp(prefix="/tmp/srb-store-")
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=args.threads,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    init_s = time.perf_counter() - t0
    try:
        data = ray_train_data(cfg, w, None, len(FEATURE_NAMES))
        t0 = time.perf_counter()
        result = fit_ray_train(data, cfg, storage, name="bench", cpus_per_worker=args.threads)
        ray_wall = time.perf_counter() - t0
        if result.error is not None:
            raise RuntimeError(f"Ray Train run failed: {result.error}")
        with result.checkpoint.as_directory() as d:
            ray_epochs = [
                h["epoch_seconds"] for h in load_state(Path(d, CHECKPOINT_FILE))["history"]
            ]
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)

    plain_after = plain_run()
    plain_wall = (plain_before[0] + plain_after[0]) / 2
    plain_epochs = plain_before[1] + plain_after[1]
    samples = n * cfg.epochs
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
            "samples_per_s": samples / plain_wall,
            "median_epoch_s": _steady(plain_epochs),
        },
        "ray_train": {
            "wall_s": ray_wall,
            "samples_per_s": samples / ray_wall,
            "median_epoch_s": _steady(ray_epochs),
            "fixed_cost_s": ray_wall - float(np.sum(ray_epochs)),
            "ray_init_s": init_s,
            "workers": 1,
            "cpus_per_worker": args.threads,
            "checkpoint_every_epoch": True,
        },
        "ratio_wall_ray_over_plain": ray_wall / plain_wall,
        "ratio_epoch_ray_over_plain": _steady(ray_epochs) / _steady(plain_epochs),
        "target_ratio": 1.3,
        "loadavg_1m_start_end": [load0[0], os.getloadavg()[0]],
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"plain     {plain_wall:7.1f} s  {out['plain']['samples_per_s']:8.0f} samples/s")
    print(
        f"ray_train {ray_wall:7.1f} s  {out['ray_train']['samples_per_s']:8.0f} samples/s  "
        f"(fixed {out['ray_train']['fixed_cost_s']:.1f} s, ray.init {init_s:.1f} s apart)"
    )
    print(
        f"ratio ray/plain: wall {out['ratio_wall_ray_over_plain']:.2f}x, "
        f"per epoch {out['ratio_epoch_ray_over_plain']:.2f}x (target <= 1.3x wall)"
    )
    return out


if __name__ == "__main__":
    main()
