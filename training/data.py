"""Training frames: point-in-time joins of labels with the features known at their time.

The label table says *what happened after* ``ts``; the feature table says *what was known at*
``ts``. Each label row is joined with the newest feature row of the same ticker at or before
its ``ts`` (an as-of join, never forward), no older than the feature view's TTL — the same
semantics as Feast's ``get_historical_features`` over the same view definitions
(``features.feature_repo.definitions``: views per family, ``VIEW_TTLS``), computed with a
DuckDB ``ASOF JOIN`` because Feast's file offline store runs out of memory here at 25k+ entity
rows. ``tests/integration/test_feature_store.py`` checks equality with Feast.

Also the loaders of whole training frames: `load_training_frame` (a data dir's offline store,
with `offline_snapshot_hash`) and `skfolio_frame` (the skfolio research universe).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.feature_repo.definitions import FEATURE_TTL, VIEW_TTLS
from features.pipeline import (
    ALL_LABEL_COLUMNS,
    FEATURE_FAMILY,
    FEATURE_NAMES,
    build_features_local,
)
from features.sources import files_sha256, skfolio_bars, skfolio_snapshot_hash


def _ns(ts: pd.Series) -> np.ndarray:
    idx = pd.DatetimeIndex(ts)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.as_unit("ns").asi8


def point_in_time_join(entities: pd.DataFrame, features: pd.DataFrame,
                       ttl: timedelta = FEATURE_TTL, by: str = "ticker",
                       on: str = "ts") -> pd.DataFrame:
    """For each entity row, the latest feature row with ``feature.ts <= entity.ts``.

    Args:
        entities: rows (``by``, ``on`` and any other columns, e.g. labels).
        features: feature rows keyed by (``by``, ``on``), unique per key.
        ttl: feature rows older than this relative to the entity time are not used.

    Returns:
        ``entities`` with the feature columns added (NaN where nothing was known in time),
        in the entities' original order.
    """
    ent = entities.reset_index(drop=True)
    feat_cols = [c for c in features.columns if c not in (by, on)]
    left = pd.DataFrame({"k": ent[by].astype(str).to_numpy(), "t": _ns(ent[on]),
                         "row": np.arange(len(ent), dtype=np.int64)})
    right = pd.DataFrame({"k": features[by].astype(str).to_numpy(), "t": _ns(features[on]),
                          "frow": np.arange(len(features), dtype=np.int64)})
    con = duckdb.connect()
    try:
        con.register("l", left)
        con.register("r", right)
        # ASOF: per key, the greatest r.t <= l.t; only row ids travel through DuckDB.
        hit = con.execute(
            "SELECT l.row, r.frow, l.t - r.t AS age FROM l ASOF LEFT JOIN r "
            "ON l.k = r.k AND l.t >= r.t").fetchnumpy()
    finally:
        con.close()
    order = np.argsort(hit["row"])
    frow = np.ma.asarray(hit["frow"])[order]  # masked where no feature row matched
    age = np.ma.asarray(hit["age"])[order]
    valid = ~np.ma.getmaskarray(frow) & ~np.ma.getmaskarray(age)
    frow = frow.filled(0).astype(np.int64)
    valid &= age.filled(0).astype(np.int64) <= pd.Timedelta(ttl).value
    out = ent.copy()
    for c in feat_cols:
        v = features[c].to_numpy()
        if v.dtype.kind in "fiu":
            col = v.astype(float)[frow]
            col[~valid] = np.nan
        else:
            col = pd.Series(v[frow]).where(valid).to_numpy()
        out[c] = col
    return out


def point_in_time_join_views(entities: pd.DataFrame, features: pd.DataFrame,
                             feature_names=FEATURE_NAMES) -> pd.DataFrame:
    """:func:`point_in_time_join` with each feature's own view TTL (one join per distinct TTL).

    Every family shares ``FEATURE_TTL`` today, so this is one join; it stays correct if a
    view's TTL changes."""
    by_ttl: dict[timedelta, list[str]] = defaultdict(list)
    for n in feature_names:
        by_ttl[VIEW_TTLS[FEATURE_FAMILY[n]]].append(n)
    out = entities
    for ttl, names in by_ttl.items():
        out = point_in_time_join(out, features[["ticker", "ts", *names]], ttl=ttl)
    return out


def load_training_frame(offline_dir: Path, feature_names=FEATURE_NAMES) -> pd.DataFrame:
    """Labels joined point-in-time with features, sorted by (ts, ticker).

    Args:
        offline_dir: ``<data_dir>/offline`` (``features.parquet``, ``labels.parquet``).
        feature_names: the features to join (default: the served set).
    """
    labels = pd.read_parquet(offline_dir / "labels.parquet")
    label_cols = [c for c in ALL_LABEL_COLUMNS if c in labels.columns]
    features = pd.read_parquet(offline_dir / "features.parquet",
                               columns=["ticker", "ts", *feature_names])
    frame = point_in_time_join_views(labels[["ticker", "ts", *label_cols]], features,
                                     feature_names)
    return frame.sort_values(["ts", "ticker"]).reset_index(drop=True)


def offline_snapshot_hash(offline_dir: Path) -> str:
    """Hash of the offline store's parquet files (features + labels)."""
    files = sorted(Path(offline_dir).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files in {offline_dir}: run `stockray features`")
    return files_sha256(files)


def skfolio_frame(data_dir: Path | None = None) -> tuple[pd.DataFrame, str]:
    """(features + labels panel, snapshot hash of the two CSVs) of the skfolio universe
    (`features.sources.skfolio_bars`), sorted by (ts, ticker)."""
    frame = build_features_local(skfolio_bars(data_dir))
    digest = skfolio_snapshot_hash(data_dir)
    return frame.sort_values(["ts", "ticker"]).reset_index(drop=True), digest


def join_text_features(frame: pd.DataFrame, offline_dir: Path) -> pd.DataFrame:
    """``frame`` (``ticker, ts`` rows) with the text features (``features.text``) joined
    point in time under their view's TTL; NaN where no text was known. Opt-in: the text
    file exists only after ``stockray news features``."""
    from features.text.daily import TEXT_FEATURES
    from features.text.views import TEXT_FILE, TEXT_TTL

    path = offline_dir / TEXT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no text features at {path}: run `stockray news features`")
    text = pd.read_parquet(path, columns=["ticker", "ts", *TEXT_FEATURES])
    return point_in_time_join(frame, text, ttl=TEXT_TTL)
