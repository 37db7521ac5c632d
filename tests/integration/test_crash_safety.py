"""SIGKILL a real writer process mid-write (ingest, features, materialize, export, promote,
state files) at random points, then check the store is readable and consistent and that no
completed write was lost (tests/crash_harness.py). The default run kills each writer a few
times (the cheap writers only: materialize and promote need ~1 min of set-up each, so they
run in the slow variant), the slow run 25 times per store (``python -m tests.crash_harness``
for JSON figures)."""

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
