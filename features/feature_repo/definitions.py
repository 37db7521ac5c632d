"""Feast objects of stockray. Built by functions (not at import) because the offline parquet
paths depend on the run's data directory.

- Entity ``ticker``: the only join key.
- One FeatureView per feature family (``features.pipeline.FAMILIES``): ``technical_features``
  (also carries ``feature_ts``, the as-of time), ``market_features``, ``calendar_features``,
  ``cross_sectional_features``, ``macro_features``. Every view is keyed by ticker: market and
  macro values repeat per ticker, so one online read per ticker returns every family and the
  point-in-time join stays a single (ticker, ts) key.
- ``intraday_features``: the minute stream's engine indicators (``m1_*``) and ``intraday_ts``,
  written through the PushSource ``intraday_push`` (``features.intraday``); not in any
  service: the daily models serve daily features (refreshed for the running session).
- ``text_features`` and the opt-in service ``stockray_text_v1``: daily news/filing features
  (``features.text.views``); in no LightGBM service.
- ``labels``: forward returns and directions, offline only (never materialized or served).
- One FeatureService per feature-set version, ``stockray_lgbm_<version>``
  (``features.pipeline.FEATURE_SETS``), e.g. ``stockray_lgbm_v2`` for the current models.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, String

from features.intraday import INTRADAY_PUSH, INTRADAY_VIEW
from features.microbatch import INTRADAY_TS, intraday_columns
from features.pipeline import (
    ALL_LABEL_COLUMNS,
    FAMILIES,
    FAMILY_FEATURES,
    FEATURE_FAMILY,
    FEATURE_SET_VERSION,
    FEATURE_SETS,
)
from features.text.views import text_view_and_service

#: family -> Feast view name
FEATURE_VIEWS = {fam: f"{fam}_features" for fam in FAMILIES}
#: the view that carries ``feature_ts`` (kept under this name for older callers)
FEATURE_VIEW = FEATURE_VIEWS["technical"]
LABEL_VIEW = "labels"
TS_FIELD = "feature_ts"

# Daily features stay valid over a weekend or a market holiday; older than this, a point-in-time
# join returns nothing rather than a stale value. The same TTL for every family: they are
# computed on the same (ticker, ts) rows (macro is already as of its release date).
FEATURE_TTL = timedelta(days=7)
VIEW_TTLS = {fam: FEATURE_TTL for fam in FAMILIES}

_DESCRIPTIONS = {
    "technical": "Kernels over the ticker's own adjusted bars, and feature_ts (as-of time).",
    "market": "S&P 500 returns, volatility, trend/volatility regimes, as of the session.",
    "calendar": "Day of week, month, days to month end, trading-calendar gaps.",
    "cross_sectional": "Ranks in [0, 1] of a ticker's features among all tickers that date.",
    "macro": "Core CPI and the AAA-BAA default spread as of their release dates.",
}


def service_name(version: str = FEATURE_SET_VERSION, model: str = "lgbm") -> str:
    """``stockray_<model>_<feature set version>``, e.g. ``stockray_lgbm_v2``."""
    return f"stockray_{model}_{version}"


def ticker_entity() -> Entity:
    # One row of features per ticker per session: the ticker is the only join key.
    return Entity(name="ticker", join_keys=["ticker"], description="Listed symbol, e.g. AAPL")


def _view_fields(family: str) -> list[str]:
    names = list(FAMILY_FEATURES[family])
    return names + [TS_FIELD] if family == "technical" else names


def definitions(offline_dir: Path, service_name_: str | None = None) -> list:
    """Entity, one served view per family, the offline-only label view, a service per
    feature-set version (``service_name_`` overrides the current version's name)."""
    ticker = ticker_entity()
    # All families live in one parquet file (one row per ticker and session); each view reads
    # its own columns of it.
    feature_source = FileSource(
        name="daily_features_source", path=str(offline_dir / "features.parquet"),
        timestamp_field="ts")
    label_source = FileSource(
        name="labels_source", path=str(offline_dir / "labels.parquet"), timestamp_field="ts")
    views = {
        fam: FeatureView(
            name=FEATURE_VIEWS[fam], entities=[ticker], ttl=VIEW_TTLS[fam], online=True,
            source=feature_source,
            schema=[Field(name="ticker", dtype=String)]
            + [Field(name=n, dtype=Float64) for n in _view_fields(fam)],
            description=_DESCRIPTIONS[fam])
        for fam in FAMILIES
    }
    # Forward returns are known only h days later: offline only, never materialized or served.
    label_view = FeatureView(
        name=LABEL_VIEW, entities=[ticker], ttl=timedelta(days=1), online=False,
        source=label_source,
        schema=[Field(name="ticker", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in ALL_LABEL_COLUMNS],
        description="Training labels (forward log returns and directions). Offline only.")
    # The minute stream pushes here; its batch source is where an offline copy would go.
    intraday_push = PushSource(name=INTRADAY_PUSH, batch_source=FileSource(
        name="intraday_batch_source", path=str(offline_dir / "intraday.parquet"),
        timestamp_field="ts"))
    # One session: an intraday row older than a day is yesterday's and must not be served.
    intraday_view = FeatureView(
        name=INTRADAY_VIEW, entities=[ticker], ttl=timedelta(days=1), online=True,
        source=intraday_push,
        schema=[Field(name="ticker", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in [*intraday_columns(), INTRADAY_TS]],
        description="Minute-bar indicators of the stream (kernels.Engine), pushed per batch.")
    services = []
    for version, names in FEATURE_SETS.items():
        # What the models of one feature-set version read, plus feature_ts; one service each.
        projections = []
        for fam in FAMILIES:
            cols = [n for n in names if FEATURE_FAMILY[n] == fam]
            if fam == "technical":
                cols.append(TS_FIELD)
            if cols:
                projections.append(views[fam][cols])
        name = service_name(version)
        if version == FEATURE_SET_VERSION and service_name_:
            name = service_name_
        services.append(FeatureService(
            name=name, features=projections,
            description=f"Features of the stockray LightGBM models, feature set {version}."))
    return [ticker, *views.values(), intraday_view, label_view, *services,
            *text_view_and_service(ticker, offline_dir)]
