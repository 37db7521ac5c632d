"""SIGKILL a real writer process mid-write (ingest, features, materialize, export, promote,
state files, the streaming features build) at random points, then check the store is readable
and consistent and that no completed write was lost (tests/crash_harness.py). The default run
kills each cheap writer a few times; materialize and promote (~1 min of set-up each) and the
streaming build (~30 s per writer start) run in the slow variant, 25 kills per store (8 for
the streaming build). ``python -m tests.crash_harness`` gives JSON figures."""

import json

import pytest

from tests.crash_harness import run_kills

FAST = {"ingest": 2, "features": 2, "export": 1, "state": 3}
ALL = [*FAST, "materialize", "promote"]


@pytest.mark.parametrize("store", sorted(FAST))
def test_store_survives_sigkill(store, tmp_path):
    res = run_kills(store, tmp_path / store, FAST[store], seed=7)
    assert res["kills_survived"] == FAST[store]
    print(json.dumps(res))


@pytest.mark.slow
@pytest.mark.parametrize("store", sorted(ALL))
def test_store_survives_many_sigkills(store, tmp_path):
    res = run_kills(store, tmp_path / store, 25, seed=11)
    assert res["kills_survived"] == 25 and res["rounds_completed"] > 0
    print(json.dumps(res))


@pytest.mark.slow
def test_streaming_features_pair_survives_sigkills(tmp_path):
    """`stockray features`' own writer (build_offline -> write_offline_from_parts): after
    every kill features.parquet and labels.parquet hold the same keys (one generation)."""
    res = run_kills("features_stream", tmp_path / "features_stream", 8, seed=13)
    assert res["kills_survived"] == 8 and res["rounds_completed"] > 0
    print(json.dumps(res))
