"""A real two-node Ray cluster on this machine: a head and a second node started with
``ray start --address`` (own temp dir, one CPU each, a custom resource only each node has,
token auth on both as stockray runs it). The feature build (``features.stream.build_offline``,
Ray Data) and a Ray Train fit must both run on both node ids. Only the processes started here
are stopped (their own process groups); never ``ray stop``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from features.lake import write_bars
from features.settings import Settings
from features.sources import MARKET_TICKER
from ray_apps.cluster import _reload_ray_config, auth_env
from tests.conftest import free_port
from tests.ray_fixtures import REPO
from tests.two_node_fit import fit_loop
from tests.unit.test_pipeline import synthetic_bars

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RAY = str(Path(sys.executable).with_name("ray"))


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    # --block keeps the node's processes children of this one; a new session gives them a
    # process group of their own, which is what we stop at the end.
    return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    import ray

    settings = Settings(data_dir=tmp_path_factory.mktemp("two")).resolved()
    env = {**os.environ, **auth_env(settings), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(REPO)}
    port = free_port()
    tmp = [tempfile.mkdtemp(prefix="/tmp/sr2n-h-"), tempfile.mkdtemp(prefix="/tmp/sr2n-w-")]
    head = _start(["--head", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                   "--include-dashboard=false", f"--temp-dir={tmp[0]}",
                   "--resources=" + json.dumps({"head_only": 1})], env,
                  settings.data_dir / "head.log")
    procs = [head]
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    try:
        time.sleep(8)
        worker = _start([f"--address=127.0.0.1:{port}", "--num-cpus=1",
                         "--node-ip-address=127.0.0.1", f"--temp-dir={tmp[1]}",
                         "--resources=" + json.dumps({"node2_only": 1})], env,
                        settings.data_dir / "worker.log")
        procs.append(worker)
        os.environ.update(auth_env(settings))
        _reload_ray_config()
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        for _ in range(120):
            if len([n for n in ray.nodes() if n["Alive"]]) == 2:
                break
            time.sleep(0.5)
        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2, (settings.data_dir / "worker.log").read_text()[-2000:]
        yield settings, nodes
    finally:
        ray.shutdown()
        for p in reversed(procs):
            _stop(p)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_ray_config()
        for t in tmp:
            shutil.rmtree(t, ignore_errors=True)


def _node_of(resource: str):
    import ray

    @ray.remote(num_cpus=0, resources={resource: 0.01})
    def where():
        return ray.get_runtime_context().get_node_id()

    return ray.get(where.remote())


def test_feature_build_and_training_fit_run_on_both_nodes(two_nodes):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from features.stream import build_offline

    settings, nodes = two_nodes
    head, second = _node_of("head_only"), _node_of("node2_only")
    assert head != second and {head, second} == set(nodes)

    start = "2010-01-01"
    bars = pd.concat([synthetic_bars(f"T{i}", n=150, seed=i, start=start) for i in range(6)]
                     + [synthetic_bars(MARKET_TICKER, n=150, seed=99, start=start)])
    write_bars(bars, settings.bars_dir)
    res = build_offline(settings.bars_dir, settings.offline_dir, settings.data_dir / "work",
                        engine="ray", macro=None, max_chunk_rows=150, partitioned=False)
    assert res.chunks == 6 and sum(res.nodes.values()) == 6
    assert set(res.nodes) == {head, second}, res.nodes  # Ray Data used both nodes

    out = settings.data_dir / "fit"
    out.mkdir()
    trainer = DataParallelTrainer(
        fit_loop, train_loop_config={"features": str(res.paths["features"]),
                                      "labels": str(settings.offline_dir / "labels.parquet"),
                                      "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1},
                                     placement_strategy="SPREAD"),
        run_config=RunConfig(storage_path=str(settings.data_dir / "train"), name="two-node"))
    trainer.fit()
    ran = [json.loads(p.read_text()) for p in sorted(out.glob("rank-*.json"))]
    assert {r["node"] for r in ran} == {head, second}
    assert all(r["trees"] > 0 and r["rows"] > 100 for r in ran)
