"""The feature store: offline parquet files, Feast registry, SQLite (or Redis) online store.

Online stores (``--online``): ``sqlite`` (default) is stockray's own Feast online store on
SQLite (``features.online_sqlite``: one row per ticker and view, batched upserts, WAL);
``feast-sqlite`` is Feast's built-in SQLite store (one row per ticker and feature); ``redis``.

- ``write_offline``: features and labels into ``<data_dir>/offline/``: the Feast sources
  ``features.parquet`` / ``labels.parquet`` (one atomic pair, ``features.offline_tables``) and
  the same panel partitioned by year (``panel/year=YYYY/``) for scans outside Feast;
- ``apply_repo``: write ``feature_store.yaml`` under ``<data_dir>/feast`` and register the
  definitions (what ``feast apply`` does, without importing every .py in a folder);
- ``materialize``: copy the latest features per ticker of every served view online;
- ``push_online``: write given rows straight into the online store (intraday corrections);
- ``FeastOnlineReader``: what the serving graph reads.

**Online generation stamp.** Every online write made here (``materialize``, ``push_online``) is
followed by :func:`bump_online_generation`: ``<data_dir>/feast/online_generation.json`` is
replaced atomically with a monotonic counter, the time and the tickers touched. Serving replicas
``os.stat`` it (``serving.lookup.GenerationWatch``) and drop their feature cache when it
changes, so a re-materialize is visible within milliseconds instead of the cache TTL. Writes to
the online store that bypass these functions (``feast materialize`` on the command line, another
program's ``write_to_online_store``) do not bump it: the TTL is the backstop for those. With the
Redis online store the stamp is still a file next to the repo: replicas on other nodes see it
only on a shared ``data_dir`` (which they need anyway for ``feature_store.yaml``).
"""

from __future__ import annotations

import copy
import fcntl
import json
import math
import shutil
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from features.durable import atomic_write_json
from features.lake import replace_dir
from features.offline_tables import write_table_pair
from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_FAMILY, FEATURE_NAMES

_TEMPLATE = Path(__file__).parent / "feature_repo" / "feature_store.yaml"
ONLINE_STORES = ("sqlite", "feast-sqlite", "redis")
ONLINE_GENERATION_FILE = "online_generation.json"


def write_offline(frame: pd.DataFrame, offline_dir: Path, partitioned: bool = True
                  ) -> dict[str, Path]:
    """Split the pipeline output into the feature table and the label table.

    Args:
        frame: pipeline output (features, ``feature_ts`` and labels per ticker and ts).
        offline_dir: ``<data_dir>/offline``.
        partitioned: also write ``panel/year=YYYY/*.parquet`` (features + labels).
    """
    feats = frame[["ticker", "ts", *FEATURE_NAMES, "feature_ts"]]
    labs = frame[["ticker", "ts", *ALL_LABEL_COLUMNS]]
    paths = write_table_pair(offline_dir, pa.Table.from_pandas(feats, preserve_index=False),
                             pa.Table.from_pandas(labs, preserve_index=False))
    if partitioned:
        paths["panel"] = write_panel(frame, offline_dir / "panel")
    return paths


def write_panel(frame: pd.DataFrame, panel_dir: Path) -> Path:
    """The whole panel as a hive-partitioned dataset by year (replaced as a whole)."""
    tmp = panel_dir.with_name(f".{panel_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    table = pa.Table.from_pandas(frame.assign(year=frame["ts"].dt.year.astype("int32")),
                                 preserve_index=False)
    pads.write_dataset(table, tmp, format="parquet", partitioning=["year"],
                       partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore")
    replace_dir(tmp, panel_dir)
    return panel_dir


def _online_block(online: str, data_dir: Path, redis_address: str) -> str:
    if online == "sqlite":
        from features.online_sqlite import STORE_TYPE

        return f"    type: {STORE_TYPE}\n    path: {data_dir}/feast/online_stockray.db"
    if online == "feast-sqlite":
        return f"    type: sqlite\n    path: {data_dir}/feast/online.db"
    if online == "redis":
        return f"    type: redis\n    connection_string: \"{redis_address}\""
    raise ValueError(f"online store must be one of {ONLINE_STORES}, not {online!r}")


def write_repo_config(data_dir: Path, online: str = "sqlite",
                      redis_address: str = "127.0.0.1:6379") -> Path:
    """Write ``<data_dir>/feast/feature_store.yaml`` from the template; returns the repo dir.

    Args:
        online: ``"sqlite"`` (stockray's store, ``<data_dir>/feast/online_stockray.db``),
            ``"feast-sqlite"`` (Feast's, ``<data_dir>/feast/online.db``) or ``"redis"``.
        redis_address: ``host:port`` of the Redis server (with ``online="redis"``).
    """
    repo = data_dir / "feast"
    repo.mkdir(parents=True, exist_ok=True)
    text = (_TEMPLATE.read_text().replace("{online_store}",
                                          _online_block(online, data_dir, redis_address))
            .replace("{data_dir}", str(data_dir)))
    (repo / "feature_store.yaml").write_text(text)
    return repo


def open_store(data_dir: Path):
    """A ``feast.FeatureStore`` on the run's repo (config written if missing)."""
    from feast import FeatureStore

    repo = data_dir / "feast"
    if not (repo / "feature_store.yaml").exists():
        write_repo_config(data_dir)
    return FeatureStore(repo_path=str(repo))


def apply_repo(data_dir: Path, offline_dir: Path, online: str = "sqlite",
               redis_address: str = "127.0.0.1:6379"):
    """Register entity, views and services (idempotent). Returns the FeatureStore."""
    from features.feature_repo.definitions import definitions

    write_repo_config(data_dir, online=online, redis_address=redis_address)
    store = open_store(data_dir)
    store.apply(definitions(offline_dir))
    return store


def materialize(store, frame: pd.DataFrame) -> int:
    """Load features of the frame's whole time span into the online store (every served view).

    Returns the number of tickers now online.
    """
    from features.feature_repo.definitions import FEATURE_VIEWS

    start = pd.Timestamp(frame["ts"].min()).to_pydatetime() - pd.Timedelta(days=1)
    end = pd.Timestamp(frame["ts"].max()).to_pydatetime() + pd.Timedelta(days=1)
    store.materialize(start_date=start, end_date=end,
                      feature_views=list(FEATURE_VIEWS.values()))
    tickers = sorted(frame["ticker"].unique())
    bump_online_generation(store.repo_path, tickers, writer="materialize")
    return len(tickers)


def push_online(store, frame: pd.DataFrame) -> int:
    """Write the latest row per ticker of ``frame`` into every served view's online table.

    For corrections between daily materialize runs (no offline round trip). ``frame`` has
    ``ticker``, ``ts`` and every served view's columns (the pipeline output's shape). Bumps
    the online generation. Returns the number of tickers written.
    """
    from features.feature_repo.definitions import FEATURE_VIEWS

    cols = {v: [f.name for f in store.get_feature_view(v).features]
            for v in FEATURE_VIEWS.values()}
    missing = sorted({c for names in cols.values() for c in names} - set(frame.columns))
    if missing:
        raise KeyError(f"push_online: frame lacks column(s) {missing[:8]}: pass pipeline output")
    latest = frame.sort_values("ts").groupby("ticker", as_index=False).tail(1)
    for view, names in cols.items():
        store.write_to_online_store(view, latest[["ticker", "ts", *names]])
    tickers = sorted(latest["ticker"].unique())
    bump_online_generation(store.repo_path, tickers, writer="push")
    return len(tickers)


def online_generation_path(repo_path: str | Path) -> Path:
    """``<data_dir>/feast/online_generation.json`` for the repo ``<data_dir>/feast``."""
    return Path(repo_path) / ONLINE_GENERATION_FILE


def read_online_generation(repo_path: str | Path) -> dict:
    """The current stamp (``{"generation": 0}`` before the first online write)."""
    try:
        return json.loads(online_generation_path(repo_path).read_text())
    except FileNotFoundError:
        return {"generation": 0}


def bump_online_generation(repo_path: str | Path, tickers: Iterable[str] = (),
                           writer: str = "materialize") -> dict:
    """Record that the online store just changed: counter + 1, time, tickers touched.

    Call it *after* the write has committed: a reader that sees the new stamp then reads new
    rows. The file is replaced atomically (``os.replace``), so a reader sees the old or the new
    stamp, never half of one; a lock file serialises concurrent writers so the counter is
    strictly increasing. Returns the new stamp.
    """
    path = online_generation_path(repo_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prev = int(read_online_generation(repo_path).get("generation", 0))
        stamp = {"generation": prev + 1, "written_at": time.time(), "writer": writer,
                 "tickers": sorted(set(tickers))}
        atomic_write_json(path, stamp)
    return stamp


def feature_refs(feature_names: Sequence[str] | None = None,
                 feature_view: str | None = None) -> list[str]:
    """Feast references ``view:name`` of the given features (default: the served set) plus
    ``feature_ts``; each name's view comes from its family unless ``feature_view`` is given."""
    from features.feature_repo.definitions import FEATURE_VIEW, FEATURE_VIEWS, TS_FIELD

    names = [n for n in (feature_names or FEATURE_NAMES) if n != TS_FIELD]
    unknown = [n for n in names if n not in FEATURE_FAMILY and feature_view is None]
    if unknown:
        raise KeyError(f"unknown feature(s) {unknown}; served: {FEATURE_NAMES}")
    refs = [f"{feature_view or FEATURE_VIEWS[FEATURE_FAMILY[n]]}:{n}" for n in names]
    return refs + [f"{feature_view or FEATURE_VIEW}:{TS_FIELD}"]


class FeastOnlineReader:
    """Reads the latest feature row per ticker from Feast's online store (all views).

    Implements the serving graph's reader protocol: ``read(tickers)`` returns, per ticker, a
    dict of feature name -> float (NaN for a missing value) including ``feature_ts`` (epoch
    seconds, UTC), or None when the store has no row for that ticker.

    Args:
        repo_path: ``<data_dir>/feast`` (its ``feature_store.yaml`` says SQLite or Redis).
        feature_view: read every name from this one view (older single-view repos).
        feature_names: the features to read (default: ``features.pipeline.FEATURE_NAMES``,
            each from its family's view).
        feature_service: read exactly what this FeatureService serves (e.g.
            ``stockray_lgbm_v1`` for a model trained on the v1 set) instead of names.

    ``with_services(names)``: a reader of the same features plus those opt-in services'
    (e.g. ``stockray_text_v1``), in one online call; a ticker without a row in a service gets
    None for its columns (NaN here; serving's fill rule decides what that means).
    """

    def __init__(self, repo_path: str, feature_view: str | None = None,
                 feature_names: Sequence[str] | None = None,
                 feature_service: str | None = None):
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(repo_path))
        if feature_service:
            service = self.store.get_feature_service(feature_service)
            self.refs = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections
                         for f in p.features]
        else:
            self.refs = feature_refs(feature_names, feature_view)
        self.names = [r.split(":", 1)[1] for r in self.refs]
        if "feature_ts" not in self.names:
            raise ValueError(f"{feature_service or self.refs} does not serve feature_ts")
        # Serving watches this file to drop its feature cache when the online store changes.
        self.generation_path = str(online_generation_path(repo_path))
        self.repo_path = str(repo_path)

    def service_refs(self, service: str) -> list[str]:
        """``view:feature`` references of a registered FeatureService."""
        svc = self.store.get_feature_service(service)
        return [f"{p.name_to_use()}:{f.name}" for p in svc.feature_view_projections
                for f in p.features]

    def with_services(self, services: Sequence[str]) -> FeastOnlineReader:
        """This reader extended with the features of ``services`` (see the class docstring).

        Raises:
            feast's FeatureServiceNotFoundException: a service is not registered.
        """
        self.store.refresh_registry()  # the service may be newer than this reader
        out = copy.copy(self)
        extra = [r for s in services for r in self.service_refs(s) if r not in self.refs]
        out.refs = [*self.refs, *extra]
        out.names = [r.split(":", 1)[1] for r in out.refs]
        return out

    def read(self, tickers: Sequence[str]) -> dict[str, dict[str, float] | None]:
        rows = self.store.get_online_features(
            features=self.refs, entity_rows=[{"ticker": t} for t in tickers]).to_dict()
        out: dict[str, dict[str, float] | None] = {}
        for i, t in enumerate(tickers):
            values = {n: rows[n][i] for n in self.names}
            if values["feature_ts"] is None:
                out[t] = None
                continue
            out[t] = {n: (math.nan if v is None else float(v)) for n, v in values.items()}
        return out


def utc_now() -> datetime:
    return datetime.now(UTC)
