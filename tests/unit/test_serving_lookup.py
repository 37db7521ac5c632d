"""FeatureLookup invalidation by the online-store generation stamp (no Ray, no Feast), and the
explanation cache staying equal to a fresh computation after the features change."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from features.store import bump_online_generation, online_generation_path, read_online_generation
from serving.config import StageConfig
from serving.explainer import Explainer
from serving.lookup import FeatureLookup, GenerationWatch
from serving.models import ModelSource, resolve_bundles
from serving.protos import stockray_pb2 as pb
from serving.scorer import feature_vector
from serving.service import PredictionService
from tests.serving_fixtures import FEATURES, FakeReader, make_bundles, synthetic_rows


class StampedReader(FakeReader):
    """A fake store whose writers bump ``<repo_path>/online_generation.json`` (like Feast's)."""

    def __init__(self, rows, repo_path: str, **kw):
        super().__init__(rows, **kw)
        self.generation_path = str(online_generation_path(repo_path))


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_stamp_is_monotonic_and_atomic(tmp_path):
    assert read_online_generation(tmp_path) == {"generation": 0}
    gens = []

    def bump():
        for _ in range(10):
            gens.append(bump_online_generation(tmp_path, ["B", "A", "A"])["generation"])

    ts = [threading.Thread(target=bump) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(gens) == list(range(1, 41))  # no lost or repeated generation
    stamp = json.loads(online_generation_path(tmp_path).read_text())
    assert stamp["generation"] == 40 and stamp["tickers"] == ["A", "B"]
    assert stamp["writer"] == "materialize" and stamp["written_at"] > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_new_generation_drops_the_cache_within_the_ttl(tmp_path):
    rows = synthetic_rows()
    reader = FakeReader(rows)
    clock = Clock()
    watch = GenerationWatch(online_generation_path(tmp_path), check_every_s=0.0)
    lookup = FeatureLookup(reader, ttl_s=3600.0, clock=clock, watch=watch)
    old = lookup.get("AAPL").values["ret_1d"]
    reader.rows["AAPL"]["ret_1d"] = old + 1.0  # the store changes ...
    assert lookup.get("AAPL").values["ret_1d"] == old  # ... unseen without a stamp: cached
    assert reader.calls == 1
    bump_online_generation(tmp_path, ["AAPL"])  # first stamp: the file appears
    assert lookup.get("AAPL").values["ret_1d"] == old + 1.0  # same clock: TTL not passed
    assert reader.calls == 2 and lookup.invalidations == 1
    reader.rows["AAPL"]["ret_1d"] = old + 2.0
    bump_online_generation(tmp_path, ["AAPL"])  # replacing an existing stamp
    assert lookup.get_many(["aapl", "MSFT"])["AAPL"].values["ret_1d"] == old + 2.0
    assert lookup.get("MSFT") and reader.calls == 3  # cached again in the new generation
    assert watch.stamp["generation"] == 2


def test_watch_checks_at_most_every_interval(tmp_path):
    clock = Clock()
    watch = GenerationWatch(online_generation_path(tmp_path), check_every_s=0.05, clock=clock)
    assert watch.poll() == 0
    bump_online_generation(tmp_path)
    clock.t = 0.01
    assert watch.poll() == 0  # inside the interval: no stat
    clock.t = 0.06
    assert watch.poll() == 1 and watch.stamp["generation"] == 1
    assert watch.poll() == 1  # unchanged file: same generation


def test_a_read_that_races_a_materialize_is_not_cached(tmp_path):
    """Materialize commits and bumps while a request is reading: that row must not be cached
    under the new generation."""
    rows = synthetic_rows()

    class RacingReader(FakeReader):
        def read(self, tickers):
            got = super().read(tickers)  # old values read ...
            if self.calls == 1:
                self.rows["AAPL"]["ret_1d"] = 42.0  # ... then the writer commits and bumps
                bump_online_generation(tmp_path, ["AAPL"])
            return got

    reader = RacingReader(rows)
    watch = GenerationWatch(online_generation_path(tmp_path), check_every_s=0.0)
    lookup = FeatureLookup(reader, ttl_s=3600.0, watch=watch)
    assert lookup.get("AAPL").values["ret_1d"] != 42.0  # the racing request: old row
    assert lookup.get("AAPL").values["ret_1d"] == 42.0  # the next one: never the old row


def test_ttl_is_still_a_backstop_without_a_stamp():
    reader = FakeReader(synthetic_rows())
    clock = Clock()
    lookup = FeatureLookup(reader, ttl_s=5.0, clock=clock)
    lookup.get("AAPL")
    reader.rows["AAPL"]["ret_1d"] = 7.0
    clock.t = 4.9
    assert lookup.get("AAPL").values["ret_1d"] != 7.0
    clock.t = 5.1
    assert lookup.get("AAPL").values["ret_1d"] == 7.0


def test_stage_config_wires_the_watch_and_rewarms_explanations(tmp_path):
    """Fused stages: after a stamp bump the lookup serves the new row, the warm-up listener
    explains it in one batch, and the served (cached) explanation equals a fresh TreeSHAP."""
    dirs = make_bundles(tmp_path / "bundles", horizons=(1, 5))
    rows = synthetic_rows()
    cfg = StageConfig(
        models=ModelSource(bundle_dirs=dirs),
        reader="tests.unit.test_serving_lookup:StampedReader",
        reader_kwargs={"rows": rows, "repo_path": str(tmp_path)},
        feature_generation_check_s=0.0,
        warm_tickers=list(rows),
    )
    stages = cfg.build_local_stages()
    lookup, explainer = stages.lookup_stage, stages.served.sets["champion"].explainer
    assert lookup.watch is not None and lookup.watch.path == str(
        tmp_path / "online_generation.json"
    )
    svc = PredictionService(stages, cfg.policy())
    req = pb.PredictRequest(ticker="NVDA", explain=True, top_k=len(FEATURES))
    before = asyncio.run(svc.predict(req))

    reader = lookup._reader
    new = {f: v + 0.5 for f, v in rows["NVDA"].items()}
    reader.rows["NVDA"].update(new)
    other = {f: v - 0.25 for f, v in rows["MSFT"].items()}  # changed, never requested
    reader.rows["MSFT"].update(other)
    bump_online_generation(tmp_path, ["NVDA", "MSFT"])
    after = asyncio.run(svc.predict(req))  # sees the stamp, drops the cache, reads new rows

    fresh = Explainer(resolve_bundles(ModelSource(bundle_dirs=dirs)), cache_size=0)
    for p0, p in zip(before.predictions, after.predictions, strict=True):
        assert p.predicted_return != p0.predicted_return
        want = fresh.explain(new, [p.horizon], top_k=0)[p.horizon]
        got = {c.feature: (c.value, c.shap) for c in p.contributions}
        assert got == {c.feature: (c.value, c.shap) for c in want.contributions}
        assert p.base_value == want.base_value
    # The re-warm listener explained MSFT's new vector in the background (no MSFT request),
    # and the cached explanation equals a fresh computation.
    for h in (1, 5):
        x = feature_vector(other, FEATURES, horizon=h)
        deadline = time.monotonic() + 30
        while (cached := explainer.cached(h, x)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cached is not None
        ref = fresh._boosters[h].predict(x, pred_contrib=True, num_threads=1).reshape(-1)
        np.testing.assert_array_equal(cached[0], ref[:-1])
        assert cached[1] == ref[-1]


def test_reader_without_stamp_gets_ttl_only(tmp_path):
    cfg = StageConfig(
        models=ModelSource(bundle_dirs={1: str(tmp_path)}),
        reader="tests.serving_fixtures:FakeReader",
        reader_kwargs={"rows": synthetic_rows()},
    )
    assert cfg.build_lookup().watch is None


@pytest.mark.parametrize("check_every_s", [0.0, 0.05])
def test_default_check_interval_is_visible_to_a_test(tmp_path, check_every_s):
    """With the real clock: a bump is seen within the configured interval."""
    reader = FakeReader(synthetic_rows())
    watch = GenerationWatch(online_generation_path(tmp_path), check_every_s=check_every_s)
    lookup = FeatureLookup(reader, ttl_s=3600.0, watch=watch)
    lookup.get("SPY")
    reader.rows["SPY"]["gap"] = 9.0
    bump_online_generation(tmp_path, ["SPY"])
    time.sleep(check_every_s + 0.01)
    assert lookup.get("SPY").values["gap"] == 9.0
