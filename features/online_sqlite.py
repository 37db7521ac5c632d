"""A Feast online store on SQLite that writes a whole batch in one statement.

Feast's own SQLite store keeps one row per (entity, feature) and turns every value into a
protobuf before writing, so a 500-ticker minute batch of 9 columns is 4,500 rows and 4,500
protobufs. This store keeps **one row per entity and view**: the values of the row are one
little-endian float64 array (``numpy`` bytes) next to the entity key and timestamps, and a
batch is a single ``executemany`` upsert in one transaction. The file runs in WAL mode with
``synchronous=NORMAL``, so serving processes keep reading while the stream writes and a commit
does not wait for an fsync (a power cut can lose the last commits, never corrupt the file).

It is registered with Feast as a custom online store (``feature_store.yaml``: ``type:
features.online_sqlite.StockraySqliteOnlineStore``), so ``feast apply``, ``materialize``,
``write_to_online_store`` and every ``get_online_features`` read go through Feast as before.
:func:`write_frame` is the batched writer of the minute stream: same table, same encoding, but
straight from the DataFrame (no protobuf per value).

Values: numeric scalar types only (Float32/64, Int32/64, Bool; every stockray view is Float64).
Integers are stored as float64, exact up to 2**53. NaN and null are the same thing here
(missing): a NaN is read back as a null value. Each stored row records its column layout (an id
in ``stockray_layouts``), so rows written before a view gained or lost a feature stay readable.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import Entity, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64
from pydantic import StrictStr

STORE_TYPE = "features.online_sqlite.StockraySqliteOnlineStore"
_NUMERIC = {Float64: "double_val", Float32: "float_val", Int64: "int64_val",
            Int32: "int32_val", Bool: "bool_val"}
_CAST = {"double_val": float, "float_val": float, "int64_val": int, "int32_val": int,
         "bool_val": bool}


class StockraySqliteOnlineStoreConfig(FeastConfigBaseModel):
    """``online_store`` block of ``feature_store.yaml`` for :class:`StockraySqliteOnlineStore`."""

    type: Literal["features.online_sqlite.StockraySqliteOnlineStore"] = STORE_TYPE
    path: StrictStr = "online.db"  #: SQLite file (relative: to the repo directory)


def db_path(config: RepoConfig) -> str:
    path = Path(config.online_store.path)
    if not path.is_absolute() and config.repo_path is not None:
        path = Path(config.repo_path) / path
    return str(path)


def table_name(project: str, view: str) -> str:
    name = f"{project}_{view}"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"feature view name {view!r} must be letters, digits and '_'")
    return f'"{name}"'


_local = threading.local()  # one connection per thread and file (sqlite3 objects stay put)
# per open connection (by id; cleared when it is closed): tables known to exist, layout ids
_caches: dict[int, dict] = {}


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def connect(path: str) -> sqlite3.Connection:
    """This thread's connection to ``path``; reopened when the file was replaced or deleted
    (a cached handle would keep writing to the unlinked file)."""
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn, ino = conns.get(path, (None, None))
    if conn is not None and _inode(path) != ino:
        _caches.pop(id(conn), None)
        conn.close()
        conn = None
    if conn is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS stockray_layouts "
                     "(id INTEGER PRIMARY KEY, names TEXT UNIQUE NOT NULL)")
        _caches[id(conn)] = {"created": set(), "layout": {}, "names": {}}
        conns[path] = (conn, _inode(path))
    return conn


def _create(conn: sqlite3.Connection, table: str) -> None:
    created = _caches[id(conn)]["created"]
    if table in created:
        return
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (entity_key BLOB PRIMARY KEY, "
                 "event_ts INTEGER NOT NULL, created_ts INTEGER, layout INTEGER NOT NULL, "
                 "vals BLOB NOT NULL) WITHOUT ROWID")
    created.add(table)


def _drop(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    _caches[id(conn)]["created"].discard(table)


def _layout_id(conn: sqlite3.Connection, names: Sequence[str]) -> int:
    key = json.dumps(list(names))
    cache = _caches[id(conn)]["layout"]
    lid = cache.get(key)
    if lid is None:
        conn.execute("INSERT OR IGNORE INTO stockray_layouts (names) VALUES (?)", (key,))
        lid = cache[key] = conn.execute("SELECT id FROM stockray_layouts WHERE names = ?",
                                        (key,)).fetchone()[0]
    return lid


def _layout_names(conn: sqlite3.Connection, lid: int) -> list[str]:
    cache = _caches[id(conn)]["names"]
    names = cache.get(lid)
    if names is None:
        row = conn.execute("SELECT names FROM stockray_layouts WHERE id = ?", (lid,)).fetchone()
        if row is None:
            raise RuntimeError(f"row layout {lid} is not in stockray_layouts")
        names = cache[lid] = json.loads(row[0])
    return names


def _check_types(view: FeatureView) -> None:
    bad = [f"{f.name} ({f.dtype})" for f in view.features if f.dtype not in _NUMERIC]
    if bad:
        raise TypeError(f"{STORE_TYPE} stores numeric scalar features only; view "
                        f"{view.name!r} has {bad}: use the 'feast-sqlite' or 'redis' store")


def _ns(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # Feast: a naive timestamp is UTC
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1e6) * 1000


def _upsert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    """All rows in one transaction: a reader sees the batch before or after, never half."""
    _create(conn, table)
    sql = (f"INSERT OR REPLACE INTO {table} (entity_key, event_ts, created_ts, layout, vals) "
           "VALUES (?, ?, ?, ?, ?)")
    for attempt in (0, 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
        except sqlite3.OperationalError as e:
            conn.execute("ROLLBACK")
            if attempt or "no such table" not in str(e):
                raise
            _caches[id(conn)]["created"].discard(table)  # dropped elsewhere: create again
            _create(conn, table)
            continue
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return


class StockraySqliteOnlineStore(OnlineStore):
    """One row per entity and view, numpy-encoded values, batched upserts (module docstring)."""

    def online_write_batch(self, config: RepoConfig, table: FeatureView,
                           data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime,
                                            datetime | None]],
                           progress: Callable[[int], Any] | None) -> None:
        if not data:
            return
        path = db_path(config)
        conn = connect(path)
        name = table_name(config.project, table.name)
        names = [f.name for f in table.features]
        lid = _layout_id(conn, names)
        vals = np.full((len(data), len(names)), np.nan)
        for i, (_, values, _, _) in enumerate(data):
            for j, n in enumerate(names):
                v = values.get(n)
                kind = v.WhichOneof("val") if v is not None else None
                if kind is not None:
                    vals[i, j] = float(getattr(v, kind))
        v = config.entity_key_serialization_version
        rows = [(serialize_entity_key(key, entity_key_serialization_version=v), _ns(ts),
                 _ns(created), lid, vals[i].tobytes())
                for i, (key, _, ts, created) in enumerate(data)]
        _upsert(conn, name, rows)
        if progress:
            progress(len(data))

    def online_read(self, config: RepoConfig, table: FeatureView,
                    entity_keys: list[EntityKeyProto], requested_features: list[str] | None = None
                    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        path = db_path(config)
        conn = connect(path)
        name = table_name(config.project, table.name)
        v = config.entity_key_serialization_version
        keys = [serialize_entity_key(k, entity_key_serialization_version=v) for k in entity_keys]
        if not table.online:
            raise ValueError(f"feature view {table.name!r} is offline only (online=False)")
        found = {r[0]: r[1:] for r in conn.execute(
            f"SELECT entity_key, event_ts, layout, vals FROM {name} "
            f"WHERE entity_key IN ({','.join('?' * len(keys))})", keys)}
        kinds = {f.name: _NUMERIC.get(f.dtype, "double_val") for f in table.features}
        want = requested_features or list(kinds)
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for k in keys:
            hit = found.get(k)
            if hit is None:
                out.append((None, None))
                continue
            event_ns, lid, blob = hit
            stored = dict(zip(_layout_names(conn, lid), np.frombuffer(blob, "<f8"),
                              strict=True))
            values = {}
            for n in want:
                x = stored.get(n)
                if x is None or np.isnan(x):
                    values[n] = ValueProto()
                else:
                    kind = kinds.get(n, "double_val")
                    values[n] = ValueProto(**{kind: _CAST[kind](x)})
            out.append((datetime.fromtimestamp(event_ns / 1e9, tz=UTC), values))
        return out

    def update(self, config: RepoConfig, tables_to_delete: Sequence[FeatureView],
               tables_to_keep: Sequence[FeatureView], entities_to_delete: Sequence[Entity],
               entities_to_keep: Sequence[Entity], partial: bool) -> None:
        conn = connect(db_path(config))
        for t in tables_to_keep:
            if not getattr(t, "online", True):
                continue  # offline only (labels): no online table, reads fail like Feast's
            _check_types(t)
            _create(conn, table_name(config.project, t.name))
        for t in tables_to_delete:
            _drop(conn, table_name(config.project, t.name))

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView],
                 entities: Sequence[Entity]) -> None:
        conn = connect(db_path(config))
        for t in tables:
            _drop(conn, table_name(config.project, t.name))


_key_cache: dict[tuple[str, str, int], bytes] = {}


def _entity_key(join_key: str, value: str, version: int) -> bytes:
    k = (join_key, value, version)
    out = _key_cache.get(k)
    if out is None:
        proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)])
        out = _key_cache[k] = serialize_entity_key(proto, entity_key_serialization_version=version)
    return out


def is_stockray_sqlite(store) -> bool:
    """True when ``store`` (a ``feast.FeatureStore``) is configured with this online store."""
    return getattr(store.config.online_store, "type", None) == STORE_TYPE


def write_frame(store, view: FeatureView | str, frame: pd.DataFrame,
                ts_column: str = "ts") -> int:
    """Upsert one row per entity of ``frame`` into ``view``'s online table, in one statement.

    The same rows :meth:`StockraySqliteOnlineStore.online_write_batch` would write from
    ``store.write_to_online_store(view, frame)``, without a protobuf per value. ``frame`` holds
    the view's single string join key, ``ts_column`` (tz-aware) and any of the view's features
    (the others are stored missing). Returns the number of rows written.
    """
    if not is_stockray_sqlite(store):
        raise ValueError(f"write_frame needs online_store type {STORE_TYPE}")
    if frame.empty:
        return 0
    fv = store.get_feature_view(view) if isinstance(view, str) else view
    if len(fv.join_keys) != 1:
        raise ValueError(f"write_frame supports one join key; {fv.name} has {fv.join_keys}")
    names = [f.name for f in fv.features]
    extra = [c for c in frame.columns if c not in names and c not in (*fv.join_keys, ts_column)]
    if extra:
        raise KeyError(f"{fv.name}: frame column(s) {extra} are not features of the view")
    config = store.config
    path = db_path(config)
    conn = connect(path)
    name = table_name(config.project, fv.name)
    lid = _layout_id(conn, names)
    vals = np.full((len(frame), len(names)), np.nan)
    for j, n in enumerate(names):
        if n in frame.columns:
            vals[:, j] = frame[n].to_numpy(np.float64, na_value=np.nan)
    vals = np.ascontiguousarray(vals, "<f8")
    event = pd.DatetimeIndex(frame[ts_column]).tz_convert("UTC").asi8
    created = time.time_ns()
    jk, ver = fv.join_keys[0], config.entity_key_serialization_version
    rows = [(_entity_key(jk, str(t), ver), int(e), created, lid, r.tobytes())
            for t, e, r in zip(frame[jk].tolist(), event, vals, strict=True)]
    _upsert(conn, name, rows)
    return len(rows)
