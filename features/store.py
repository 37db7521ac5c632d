"""The feature store: offline parquet files, Feast registry, SQLite (or Redis) online store.

- ``write_offline``: features and labels into ``<data_dir>/offline/`` (atomic writes): the
  Feast sources ``features.parquet`` / ``labels.parquet`` and the same panel partitioned by
  year (``panel/year=YYYY/``) for scans outside Feast;
- ``apply_repo``: write ``feature_store.yaml`` under ``<data_dir>/feast`` and register the
  definitions (what ``feast apply`` does, without importing every .py in a folder);
- ``materialize``: copy the latest features per ticker of every served view online;
- ``FeastOnlineReader``: what the serving graph reads.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from features.lake import atomic_write_table
from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_FAMILY, FEATURE_NAMES

_TEMPLATE = Path(__file__).parent / "feature_repo" / "feature_store.yaml"
ONLINE_STORES = ("sqlite", "redis")


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
    paths = {"features": offline_dir / "features.parquet",
             "labels": offline_dir / "labels.parquet"}
    atomic_write_table(pa.Table.from_pandas(feats, preserve_index=False), paths["features"])
    atomic_write_table(pa.Table.from_pandas(labs, preserve_index=False), paths["labels"])
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
    old = panel_dir.with_name(f".{panel_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if panel_dir.exists():
        panel_dir.rename(old)
    tmp.rename(panel_dir)
    shutil.rmtree(old, ignore_errors=True)
    return panel_dir


def _online_block(online: str, data_dir: Path, redis_address: str) -> str:
    if online == "sqlite":
        return f"    type: sqlite\n    path: {data_dir}/feast/online.db"
    if online == "redis":
        return f"    type: redis\n    connection_string: \"{redis_address}\""
    raise ValueError(f"online store must be one of {ONLINE_STORES}, not {online!r}")


def write_repo_config(data_dir: Path, online: str = "sqlite",
                      redis_address: str = "127.0.0.1:6379") -> Path:
    """Write ``<data_dir>/feast/feature_store.yaml`` from the template; returns the repo dir.

    Args:
        online: ``"sqlite"`` (``<data_dir>/feast/online.db``) or ``"redis"``.
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
    return int(frame["ticker"].nunique())


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
