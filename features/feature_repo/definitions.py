"""Feast objects of stockray. Built by functions (not at import) because the offline parquet
paths depend on the run's data directory."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, String

from features.pipeline import FEATURE_NAMES, LABEL_COLUMNS

FEATURE_VIEW = "daily_features"
LABEL_VIEW = "labels"

# Daily features stay valid over a weekend or a market holiday; older than this, a point-in-time
# join returns nothing rather than a stale value.
FEATURE_TTL = timedelta(days=7)


def ticker_entity() -> Entity:
    # One row of features per ticker per session: the ticker is the only join key.
    return Entity(name="ticker", join_keys=["ticker"], description="Listed symbol, e.g. AAPL")


def definitions(offline_dir: Path, service_name: str = "stockray_lgbm_v1") -> list:
    """Entity, the served feature view, the offline-only label view, and a FeatureService."""
    ticker = ticker_entity()
    feature_source = FileSource(
        name="daily_features_source", path=str(offline_dir / "features.parquet"),
        timestamp_field="ts")
    label_source = FileSource(
        name="labels_source", path=str(offline_dir / "labels.parquet"), timestamp_field="ts")
    # Served online: everything a model reads at prediction time, plus its as-of time.
    daily = FeatureView(
        name=FEATURE_VIEW, entities=[ticker], ttl=FEATURE_TTL, online=True,
        source=feature_source,
        schema=[Field(name="ticker", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in [*FEATURE_NAMES, "feature_ts"]],
        description="Daily technical, market and calendar features as of the session close.")
    # Forward returns are known only h days later: offline only, never materialized or served.
    label_view = FeatureView(
        name=LABEL_VIEW, entities=[ticker], ttl=timedelta(days=1), online=False,
        source=label_source,
        schema=[Field(name="ticker", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in LABEL_COLUMNS],
        description="Training labels (forward log returns). Offline only.")
    # What the first LightGBM family reads; a new model version gets its own service.
    service = FeatureService(name=service_name, features=[daily],
                             description="Features of the stockray LightGBM models.")
    return [ticker, daily, label_view, service]
