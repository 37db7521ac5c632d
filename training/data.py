"""Training frames: point-in-time joins of labels with the features known at their time.

The label table says *what happened after* ``ts``; the feature table says *what was known at*
``ts``. Each label row is joined with the newest feature row of the same ticker at or before
its ``ts`` (an as-of join, never forward), no older than the feature view's TTL — the same
semantics as Feast's ``get_historical_features``, computed with ``pandas.merge_asof`` because
Feast's file offline store runs out of memory here at 25k+ entity rows (see STACK.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

from features.feature_repo.definitions import FEATURE_TTL
from features.pipeline import FEATURE_NAMES, LABEL_COLUMNS


def point_in_time_join(entities: pd.DataFrame, features: pd.DataFrame,
                       ttl: timedelta = FEATURE_TTL, by: str = "ticker",
                       on: str = "ts") -> pd.DataFrame:
    """For each entity row, the latest feature row with ``feature.ts <= entity.ts``.

    Args:
        entities: rows (``by``, ``on`` and any other columns, e.g. labels).
        features: feature rows keyed by (``by``, ``on``).
        ttl: feature rows older than this relative to the entity time are not used.

    Returns:
        ``entities`` with the feature columns added (NaN where nothing was known in time),
        in the entities' original order.
    """
    ent = entities.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
    feat_cols = [c for c in features.columns if c not in (by, on)]
    right = features[[by, on, *feat_cols]].rename(columns={on: "_feature_time"})
    left = ent.sort_values(on)
    right = right.sort_values("_feature_time")
    joined = pd.merge_asof(left, right, left_on=on, right_on="_feature_time", by=by,
                           direction="backward", tolerance=pd.Timedelta(ttl))
    joined = joined.sort_values("_row").drop(columns=["_row", "_feature_time"])
    return joined.reset_index(drop=True)


def load_training_frame(offline_dir: Path) -> pd.DataFrame:
    """Labels joined point-in-time with features, sorted by (ts, ticker)."""
    labels = pd.read_parquet(offline_dir / "labels.parquet")
    features = pd.read_parquet(offline_dir / "features.parquet")
    frame = point_in_time_join(labels[["ticker", "ts", *LABEL_COLUMNS]],
                               features[["ticker", "ts", *FEATURE_NAMES]])
    return frame.sort_values(["ts", "ticker"]).reset_index(drop=True)
