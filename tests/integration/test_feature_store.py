"""Real Feast on local files: apply (views per family, services per feature-set version),
materialize, online reads across views, and our DuckDB PIT training join equal to Feast's own
``get_historical_features`` on a small sample."""

import numpy as np
import pandas as pd
import pytest

from features.feature_repo.definitions import FEATURE_VIEWS, service_name
from features.pipeline import FEATURE_NAMES, FEATURE_SETS, build_features_local
from features.sources import MARKET_TICKER
from features.store import (
    FeastOnlineReader,
    apply_repo,
    feature_refs,
    materialize,
    write_offline,
)
from tests.unit.test_pipeline import synthetic_bars
from training.data import load_training_frame, point_in_time_join

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_and_frame(tmp_path_factory):
    data = tmp_path_factory.mktemp("feast")
    start = "2010-01-01"  # inside the packaged macro history: the macro view has values
    bars = pd.concat([synthetic_bars("AAA", n=120, start=start),
                      synthetic_bars("BBB", n=100, seed=5, start=start),
                      synthetic_bars(MARKET_TICKER, n=120, seed=9, start=start)])
    frame = build_features_local(bars)
    paths = write_offline(frame, data / "offline")
    store = apply_repo(data, data / "offline")
    materialize(store, frame)
    return data, store, frame, paths


def test_registry_has_a_view_per_family_and_a_service_per_version(store_and_frame):
    _, store, _, paths = store_and_frame
    views = {v.name for v in store.list_feature_views()}
    assert set(FEATURE_VIEWS.values()) | {"labels"} <= views
    services = {s.name for s in store.list_feature_services()}
    assert {service_name(v) for v in FEATURE_SETS} <= services
    assert sorted(p.name for p in paths["panel"].iterdir()) == ["year=2010"]


def test_online_read_returns_latest_row_per_ticker_across_views(store_and_frame):
    data, _, frame, _ = store_and_frame
    reader = FeastOnlineReader(str(data / "feast"))  # what the serving graph constructs
    assert set(reader.names) == {*FEATURE_NAMES, "feature_ts"}
    assert len({r.split(":")[0] for r in reader.refs}) == len(FEATURE_VIEWS)
    got = reader.read(["AAA", "BBB", "NOPE"])
    assert got["NOPE"] is None
    for t in ("AAA", "BBB"):
        last = frame[frame["ticker"] == t].iloc[-1]
        assert got[t]["feature_ts"] == pytest.approx(last["ts"].timestamp())
        for name in FEATURE_NAMES:
            assert got[t][name] == pytest.approx(last[name], nan_ok=True), name
    assert np.isfinite(got["AAA"]["core_cpi_yoy"]) and np.isfinite(got["AAA"]["cs_rank_ret_1d"])


def test_service_reader_serves_an_older_feature_set(store_and_frame):
    data, _, frame, _ = store_and_frame
    reader = FeastOnlineReader(str(data / "feast"), feature_service=service_name("v1"))
    assert set(reader.names) == {*FEATURE_SETS["v1"], "feature_ts"}
    row = reader.read(["AAA"])["AAA"]
    assert row["rsi_14"] == pytest.approx(frame[frame["ticker"] == "AAA"].iloc[-1]["rsi_14"])


def test_labels_are_not_served_online(store_and_frame):
    _, store, _, _ = store_and_frame
    with pytest.raises(Exception):  # noqa: B017 — Feast's error type varies by version
        store.get_online_features(features=["labels:fwd_ret_1d"],
                                  entity_rows=[{"ticker": "AAA"}]).to_dict()


def test_our_pit_join_equals_feast_historical_features(store_and_frame):
    _, store, frame, _ = store_and_frame
    rng = np.random.default_rng(0)
    rows = frame.sample(40, random_state=1)[["ticker", "ts"]].reset_index(drop=True)
    # also entity times between sessions (weekends), beyond the TTL, and before any data
    shift = pd.to_timedelta(rng.integers(0, 3, len(rows)), unit="D")
    ents = rows.assign(ts=rows["ts"] + shift)
    ents.loc[0, "ts"] = pd.Timestamp("2009-06-01", tz="UTC")
    ents.loc[1, "ts"] = frame["ts"].max() + pd.Timedelta(days=9)  # older than the 7-day TTL
    ents = ents.drop_duplicates(["ticker", "ts"]).reset_index(drop=True)
    want = store.get_historical_features(
        entity_df=ents.rename(columns={"ts": "event_timestamp"}),
        features=feature_refs()).to_df()
    want = want.rename(columns={"event_timestamp": "ts"}).sort_values(["ticker", "ts"])
    ours = point_in_time_join(ents, frame[["ticker", "ts", *FEATURE_NAMES]])
    assert ours.loc[0, FEATURE_NAMES].isna().all()  # the 2009 row found nothing
    assert ours.loc[1, FEATURE_NAMES].isna().all()  # beyond the TTL
    # Feast's file store leaves out entity rows that match no feature row within the TTL (the
    # 2009 one, before any data, and the stale one); ours keeps them with NaN features.
    # Everything else is equal, bit for bit.
    missing = ents.merge(want[["ticker", "ts"]], how="left", indicator=True)
    assert missing.loc[missing["_merge"] != "both", "ts"].tolist() == ents.loc[:1, "ts"].tolist()
    ours = ours.iloc[2:].sort_values(["ticker", "ts"])
    assert len(want) == len(ents) - 2 > 30
    pd.testing.assert_frame_equal(
        ours[FEATURE_NAMES].reset_index(drop=True).astype(float),
        want[FEATURE_NAMES].reset_index(drop=True).astype(float), check_exact=True)


def test_training_frame_from_the_offline_store(store_and_frame):
    data, _, frame, _ = store_and_frame
    tf = load_training_frame(data / "offline")
    assert len(tf) == len(frame)
    assert {"fwd_ret_5d", "fwd_dir_5d", *FEATURE_NAMES} <= set(tf.columns)
    assert tf[["ts", "ticker"]].equals(tf.sort_values(["ts", "ticker"])[["ts", "ticker"]])


def test_streaming_ray_data_path_writes_the_in_memory_tables(settings):
    """``features.stream`` with ``engine="ray"`` (a Ray Data task per ticker chunk, parts
    written by the workers) on a real local Ray cluster: the in-memory path's files, bit for
    bit (the one Ray feature path; it replaced the whole-frame Ray Data builder)."""
    import pyarrow.parquet as pq

    from features.contracts import check_bars
    from features.lake import read_bars, write_bars
    from features.stream import build_offline
    from ray_apps.cluster import local_cluster

    bars = pd.concat([*(synthetic_bars(t, n=90, seed=i, start="2010-01-01")
                        for i, t in enumerate(("AAA", "BBB", "CCC", "DDD", "EEE"))),
                      synthetic_bars(MARKET_TICKER, n=90, seed=9, start="2010-01-01")])
    data = settings.data_dir
    write_bars(bars, data / "lake" / "bars")
    write_offline(build_features_local(check_bars(read_bars(data / "lake" / "bars"),
                                                  run_id="r").bars), data / "memory")
    with local_cluster(settings, dashboard=False):
        res = build_offline(data / "lake" / "bars", data / "offline", data / "tmp" / "run",
                            engine="ray", max_chunk_rows=200)  # 2-3 tickers per chunk
    assert res.engine == "ray" and res.chunks == 3
    for name in ("features.parquet", "labels.parquet"):
        assert pq.read_table(data / "offline" / name).equals(pq.read_table(data / "memory" / name))
