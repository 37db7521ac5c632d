"""The Ray Train loop of tests/integration/test_two_node_ray.py, in an importable module (Ray
workers unpickle it by module name; test modules are not importable there)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def fit_loop(config: dict) -> None:
    """Each worker fits LightGBM on its half of the tickers (the data-parallel shape) and
    records the node it ran on."""
    import lightgbm as lgb
    import ray.train

    ctx = ray.train.get_context()
    rank, size = ctx.get_world_rank(), ctx.get_world_size()
    f = pd.read_parquet(config["features"])
    y = pd.read_parquet(config["labels"])["fwd_ret_1d"]
    tickers = sorted(f["ticker"].unique())[rank::size]
    m = f["ticker"].isin(tickers) & y.notna()
    x = f.loc[m, ["ret_1d", "ret_5d", "rsi_14", "vol_20"]]
    booster = lgb.train({"objective": "regression", "num_leaves": 7, "verbose": -1,
                         "num_threads": 1}, lgb.Dataset(x, y[m]), num_boost_round=10)
    node = ray.get_runtime_context().get_node_id()
    Path(config["out"], f"rank-{rank}.json").write_text(json.dumps(
        {"node": node, "trees": booster.num_trees(), "rows": int(m.sum())}))
