"""The text features in Feast: an offline file, a view, an opt-in service.

- ``<data_dir>/offline/text_features.parquet``: ``ticker, ts`` + ``TEXT_FEATURES`` +
  ``text_asof_ts`` (epoch seconds), written atomically by :func:`write_text_offline`;
- ``text_features`` view over it (``ticker`` entity, 7-day TTL like the daily views: a ticker
  without text for a week has no text row rather than a stale one);
- ``stockray_text_v1`` service: the text view alone, opt-in. The LightGBM services do not
  include it, so models trained without text keep serving exactly what they were trained on;
  a model trained with text reads this service beside its own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table
from features.text.daily import TEXT_FEATURES, TEXT_TS

TEXT_VIEW = "text_features"
TEXT_SERVICE = "stockray_text_v1"
TEXT_TTL = timedelta(days=7)
TEXT_FILE = "text_features.parquet"


def text_view_and_service(ticker, offline_dir: Path) -> list:
    """The view and the service (Feast objects) for ``definitions``."""
    from feast import FeatureService, FeatureView, Field, FileSource
    from feast.types import Float64, String

    source = FileSource(name="text_features_source", path=str(offline_dir / TEXT_FILE),
                        timestamp_field="ts")
    view = FeatureView(
        name=TEXT_VIEW, entities=[ticker], ttl=TEXT_TTL, online=True, source=source,
        schema=[Field(name="ticker", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in (*TEXT_FEATURES, TEXT_TS)],
        description="Daily news/filing counts and sentiment per ticker; text after the "
                    "16:00 New York close counts for the next session.")
    service = FeatureService(name=TEXT_SERVICE, features=[view],
                             description="Text features (opt-in; not in the LightGBM sets).")
    return [view, service]


def write_text_offline(frame: pd.DataFrame, offline_dir: Path) -> Path:
    """The Feast source file; ``text_asof_ts`` as epoch seconds (Feast serves floats)."""
    out = frame[["ticker", "ts", *TEXT_FEATURES]].copy()
    out[TEXT_TS] = pd.DatetimeIndex(frame[TEXT_TS]).asi8 / 1e9
    for c in TEXT_FEATURES:
        out[c] = out[c].astype(float)
    path = offline_dir / TEXT_FILE
    atomic_write_table(pa.Table.from_pandas(out, preserve_index=False), path)
    return path
