"""The feature store: offline parquet files, Feast registry, SQLite online store.

- ``write_offline``: features and labels into ``<data_dir>/offline/`` (atomic writes);
- ``apply_repo``: write ``feature_store.yaml`` under ``<data_dir>/feast`` and register the
  definitions (what ``feast apply`` does, without importing every .py in a folder);
- ``materialize``: copy the latest features per ticker into the online store;
- ``FeastOnlineReader``: what the serving graph reads.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table
from features.pipeline import FEATURE_NAMES, LABEL_COLUMNS

_TEMPLATE = Path(__file__).parent / "feature_repo" / "feature_store.yaml"


def write_offline(frame: pd.DataFrame, offline_dir: Path) -> dict[str, Path]:
    """Split the pipeline output into the feature table and the label table."""
    feats = frame[["ticker", "ts", *FEATURE_NAMES, "feature_ts"]]
    labs = frame[["ticker", "ts", *LABEL_COLUMNS]]
    paths = {"features": offline_dir / "features.parquet",
             "labels": offline_dir / "labels.parquet"}
    atomic_write_table(pa.Table.from_pandas(feats, preserve_index=False), paths["features"])
    atomic_write_table(pa.Table.from_pandas(labs, preserve_index=False), paths["labels"])
    return paths


def write_repo_config(data_dir: Path) -> Path:
    """Write ``<data_dir>/feast/feature_store.yaml`` from the template; returns the repo dir."""
    repo = data_dir / "feast"
    repo.mkdir(parents=True, exist_ok=True)
    text = _TEMPLATE.read_text().replace("{data_dir}", str(data_dir))
    (repo / "feature_store.yaml").write_text(text)
    return repo


def open_store(data_dir: Path):
    """A ``feast.FeatureStore`` on the run's repo (config written if missing)."""
    from feast import FeatureStore

    repo = data_dir / "feast"
    if not (repo / "feature_store.yaml").exists():
        write_repo_config(data_dir)
    return FeatureStore(repo_path=str(repo))


def apply_repo(data_dir: Path, offline_dir: Path):
    """Register entity, views and services (idempotent). Returns the FeatureStore."""
    from features.feature_repo.definitions import definitions

    write_repo_config(data_dir)
    store = open_store(data_dir)
    store.apply(definitions(offline_dir))
    return store


def materialize(store, frame: pd.DataFrame) -> int:
    """Load features of the frame's whole time span into the online store.

    Returns the number of tickers now online.
    """
    from features.feature_repo.definitions import FEATURE_VIEW

    start = pd.Timestamp(frame["ts"].min()).to_pydatetime() - pd.Timedelta(days=1)
    end = pd.Timestamp(frame["ts"].max()).to_pydatetime() + pd.Timedelta(days=1)
    store.materialize(start_date=start, end_date=end, feature_views=[FEATURE_VIEW])
    return int(frame["ticker"].nunique())


class FeastOnlineReader:
    """Reads the latest feature row per ticker from Feast's online store.

    Implements the serving graph's reader protocol: ``read(tickers)`` returns, per ticker, a
    dict of feature name -> float (NaN for a missing value) including ``feature_ts`` (epoch
    seconds, UTC), or None when the store has no row for that ticker.
    """

    def __init__(self, repo_path: str, feature_view: str = "daily_features",
                 feature_names: Sequence[str] | None = None):
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(repo_path))
        names = list(feature_names or FEATURE_NAMES)
        if "feature_ts" not in names:
            names.append("feature_ts")
        self.names = names
        self.refs = [f"{feature_view}:{n}" for n in names]

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
    return datetime.now(timezone.utc)
