"""A real Feast SQLite online store on a temp dir (no Ray): re-materialize and push are seen by
the serving lookup at once, inside its TTL, because both bump the generation stamp."""

import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES, build_features_local
from features.sources import MARKET_TICKER
from features.store import (
    FeastOnlineReader,
    apply_repo,
    materialize,
    push_online,
    read_online_generation,
    write_offline,
)
from serving.lookup import FeatureLookup, GenerationWatch
from tests.unit.test_pipeline import synthetic_bars

pytestmark = pytest.mark.integration


def _shift(frame: pd.DataFrame, by: float) -> pd.DataFrame:
    out = frame.copy()
    out[list(FEATURE_NAMES)] = out[list(FEATURE_NAMES)] + by
    return out


def _expected(frame: pd.DataFrame, ticker: str) -> dict[str, float]:
    last = frame[frame["ticker"] == ticker].sort_values("ts").iloc[-1]
    return {n: float(last[n]) for n in FEATURE_NAMES}


def _assert_values(got: dict[str, float], want: dict[str, float]) -> None:
    for n, v in want.items():
        assert got[n] == pytest.approx(v, nan_ok=True), n


def test_rematerialize_and_push_invalidate_the_lookup_cache(tmp_path):
    start = "2010-01-01"
    bars = pd.concat([synthetic_bars("AAA", n=80, start=start),
                      synthetic_bars(MARKET_TICKER, n=80, seed=9, start=start)])
    frame_a = build_features_local(bars)
    write_offline(frame_a, tmp_path / "offline", partitioned=False)
    store = apply_repo(tmp_path, tmp_path / "offline")
    materialize(store, frame_a)
    assert read_online_generation(tmp_path / "feast")["generation"] == 1

    reader = FeastOnlineReader(str(tmp_path / "feast"))  # what the replica builds
    lookup = FeatureLookup(reader, ttl_s=3600.0,  # an hour: only the stamp can invalidate
                           watch=GenerationWatch(reader.generation_path, check_every_s=0.0))
    _assert_values(lookup.get("AAA").values, _expected(frame_a, "AAA"))
    assert lookup.get("AAA") is lookup.get("AAA")  # served from the cache

    frame_b = _shift(frame_a, 1.0)
    write_offline(frame_b, tmp_path / "offline", partitioned=False)
    materialize(store, frame_b)
    stamp = read_online_generation(tmp_path / "feast")
    assert stamp["generation"] == 2 and stamp["writer"] == "materialize"
    assert "AAA" in stamp["tickers"]
    row = lookup.get("AAA")  # immediately, well inside the TTL
    _assert_values(row.values, _expected(frame_b, "AAA"))
    assert lookup.invalidations == 1

    frame_c = _shift(frame_a, -2.0)
    assert push_online(store, frame_c[frame_c["ticker"] == "AAA"]) == 1
    stamp = read_online_generation(tmp_path / "feast")
    assert stamp["generation"] == 3 and stamp["writer"] == "push" and stamp["tickers"] == ["AAA"]
    row = lookup.get("AAA")
    _assert_values(row.values, _expected(frame_c, "AAA"))
    assert row.feature_ts == pytest.approx(frame_c[frame_c["ticker"] == "AAA"]["ts"].max()
                                           .timestamp())
