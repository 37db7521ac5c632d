"""stockray's SQLite online store (features.online_sqlite) through real Feast: the same online
reads as Feast's own SQLite store for materialize, ``write_to_online_store`` and the batched
``write_frame``; a failed batch changes nothing; a non-numeric view is refused at apply."""

import sqlite3
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, String

from features.intraday import INTRADAY_VIEW, push_intraday
from features.microbatch import INTRADAY_TS, MinuteEngine, intraday_columns
from features.online_sqlite import (
    STORE_TYPE,
    _upsert,
    connect,
    db_path,
    is_stockray_sqlite,
    table_name,
    write_frame,
)
from features.pipeline import FEATURE_NAMES, build_features_local
from features.sources import MARKET_TICKER
from features.store import FeastOnlineReader, apply_repo, materialize, write_offline
from tests.unit.test_pipeline import synthetic_bars

pytestmark = pytest.mark.integration


def minute_bars(tickers, n, seed=0):
    """``n`` one-minute random-walk bars per ticker."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-04 14:30", periods=n, freq="1min", tz="UTC")
    parts = []
    for t in tickers:
        c = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        parts.append(pd.DataFrame({"ticker": t, "ts": ts, "open": c, "high": c * 1.001,
                                   "low": c * 0.999, "close": c,
                                   "volume": rng.integers(100, 1000, n).astype(float)}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """The same features materialized into stockray's store and into Feast's."""
    start = "2010-01-01"
    bars = pd.concat([synthetic_bars("AAA", n=90, start=start),
                      synthetic_bars("BBB", n=80, seed=5, start=start),
                      synthetic_bars(MARKET_TICKER, n=90, seed=9, start=start)])
    frame = build_features_local(bars)
    out = {}
    for online in ("sqlite", "feast-sqlite"):
        data = tmp_path_factory.mktemp(online)
        write_offline(frame, data / "offline", partitioned=False)
        store = apply_repo(data, data / "offline", online=online)
        materialize(store, frame)
        out[online] = (data, store)
    return out, frame


def _intraday_refs():
    return [f"{INTRADAY_VIEW}:{c}" for c in [*intraday_columns(), INTRADAY_TS]]


def test_config_names_the_custom_store(two_stores):
    stores, _ = two_stores
    data, store = stores["sqlite"]
    assert f"type: {STORE_TYPE}" in (data / "feast" / "feature_store.yaml").read_text()
    assert is_stockray_sqlite(store) and not is_stockray_sqlite(stores["feast-sqlite"][1])
    conn = sqlite3.connect(db_path(store.config))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # one row per ticker and view, not one per feature
    n = conn.execute(f"SELECT COUNT(*) FROM {table_name('stockray', 'technical_features')}"
                     ).fetchone()[0]
    assert n == 2


def test_materialized_reads_equal_feasts_own_sqlite_store(two_stores):
    stores, frame = two_stores
    got = {k: FeastOnlineReader(str(d / "feast")).read(["AAA", "BBB", "NOPE"])
           for k, (d, _) in stores.items()}
    assert got["sqlite"]["NOPE"] is None and got["feast-sqlite"]["NOPE"] is None
    for t in ("AAA", "BBB"):
        last = frame[frame["ticker"] == t].iloc[-1]
        assert got["sqlite"][t]["feature_ts"] == pytest.approx(last["ts"].timestamp())
        for name in [*FEATURE_NAMES, "feature_ts"]:
            a, b = got["sqlite"][t][name], got["feast-sqlite"][t][name]
            assert a == pytest.approx(b, nan_ok=True), name
    # NaN features (the warm-up of long windows) come back missing, like Feast's store
    assert any(np.isnan(v) for v in got["sqlite"]["BBB"].values())


def test_batched_writer_equals_write_to_online_store(two_stores):
    stores, _ = two_stores
    me = MinuteEngine()
    me.update(minute_bars(["AAA", "BBB", "CCC"], 30, seed=3))
    rows = me.intraday_rows(["AAA", "BBB", "CCC"])
    rows.loc[1, "m1_rsi_14"] = np.nan
    _, ours = stores["sqlite"]
    _, feasts = stores["feast-sqlite"]
    assert push_intraday(ours, rows) == 3  # write_frame
    feasts.write_to_online_store(INTRADAY_VIEW, rows)  # Feast's proto path
    entity = [{"ticker": t} for t in ("AAA", "BBB", "CCC", "ZZZ")]
    a = ours.get_online_features(features=_intraday_refs(), entity_rows=entity).to_dict()
    b = feasts.get_online_features(features=_intraday_refs(), entity_rows=entity).to_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert [np.nan if v is None else v for v in a[k]] == pytest.approx(
            [np.nan if v is None else v for v in b[k]], nan_ok=True), k
    assert a["m1_rsi_14"][1] is None and a[INTRADAY_TS][3] is None
    assert a[INTRADAY_TS][0] == rows[INTRADAY_TS].iloc[0]
    # and Feast's own proto path into our store gives the same rows again
    ours.write_to_online_store(INTRADAY_VIEW, rows.assign(m1_rsi_14=1.5))
    c = ours.get_online_features(features=_intraday_refs(), entity_rows=entity).to_dict()
    assert c["m1_rsi_14"][:3] == [1.5, 1.5, 1.5] and c[INTRADAY_TS] == a[INTRADAY_TS]


def test_a_failed_batch_changes_nothing(two_stores):
    stores, _ = two_stores
    _, store = stores["sqlite"]
    me = MinuteEngine()
    me.update(minute_bars(["AAA", "BBB"], 10, seed=4))
    rows = me.intraday_rows(["AAA", "BBB"])
    write_frame(store, INTRADAY_VIEW, rows)
    ref = [f"{INTRADAY_VIEW}:{INTRADAY_TS}"]
    before = store.get_online_features(features=ref, entity_rows=[{"ticker": "AAA"}]).to_dict()
    conn = connect(db_path(store.config))
    table = table_name("stockray", INTRADAY_VIEW)
    good = conn.execute(f"SELECT * FROM {table} WHERE entity_key = (SELECT entity_key FROM "
                        f"{table} LIMIT 1)").fetchone()
    changed = (good[0], good[1] + 1, good[2], good[3], np.zeros(9).tobytes())
    broken = (b"x", 1, 1, good[3], None)  # vals NOT NULL: fails after the first row
    with pytest.raises(sqlite3.IntegrityError):
        _upsert(conn, table, [changed, broken])
    assert conn.execute(f"SELECT * FROM {table} WHERE entity_key = ?", (good[0],)
                        ).fetchone() == good
    after = store.get_online_features(features=ref, entity_rows=[{"ticker": "AAA"}]).to_dict()
    assert after == before
    with pytest.raises(KeyError, match="not features of the view"):
        write_frame(store, INTRADAY_VIEW, rows.assign(bogus=1.0))


def test_non_numeric_view_is_refused_at_apply(tmp_path):
    store = apply_repo(tmp_path, tmp_path / "offline")
    pd.DataFrame({"ticker": ["A"], "ts": [pd.Timestamp("2024-01-02", tz="UTC")],
                  "sector": ["tech"]}).to_parquet(tmp_path / "s.parquet")
    ticker = Entity(name="ticker", join_keys=["ticker"])
    view = FeatureView(name="sectors", entities=[ticker], ttl=timedelta(days=1),
                       schema=[Field(name="ticker", dtype=String),
                               Field(name="sector", dtype=String)],
                       source=FileSource(path=str(tmp_path / "s.parquet"),
                                         timestamp_field="ts"))
    with pytest.raises(TypeError, match="numeric scalar features only.*feast-sqlite"):
        store.apply([ticker, view])
    ok = FeatureView(name="num", entities=[ticker], ttl=timedelta(days=1),
                     schema=[Field(name="ticker", dtype=String), Field(name="x", dtype=Float64)],
                     source=FileSource(path=str(tmp_path / "s.parquet"), timestamp_field="ts"))
    store.apply([ticker, ok])  # the refusal left the store usable


def test_a_deleted_database_file_is_reopened_not_written_blind(tmp_path):
    path = str(tmp_path / "online.db")
    conn = connect(path)
    _upsert(conn, '"p_v"', [(b"k", 1, 1, 1, np.ones(2).tobytes())])
    for f in tmp_path.glob("online.db*"):
        f.unlink()
    again = connect(path)  # the file is gone: a new connection, a new file, tables recreated
    assert again is not conn
    _upsert(again, '"p_v"', [(b"k", 2, 2, 1, np.ones(2).tobytes())])
    fresh = sqlite3.connect(path)
    assert fresh.execute('SELECT event_ts FROM "p_v"').fetchall() == [(2,)]
    assert connect(path) is again  # unchanged file: the cached connection
