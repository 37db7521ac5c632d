"""The text features as model inputs: join point in time, fill, and say what serving needs.

A config with ``features: {text: true}`` (`training.config.FeatureInputs`) trains on the price
features plus ``features.text.fill.TEXT_MODEL_FEATURES``:

- the text features are joined onto the training frame point in time under their view's TTL
  (`training.data.join_text_features`, equal to Feast's historical join);
- days without text get the one fill rule of serving (`features.text.fill`: counts 0,
  sentiment 0, ``news_has_text_1d`` 0), so training and serving see the same values;
- the price features go through the missing-feature rule (`features.coverage`) as always; the
  text inputs are never dropped by it (filled, they are never NaN);
- the bundle's ``extra.feature_set`` gains ``services`` (``stockray_text_v1``) and ``fills``
  (service -> rule name): serving reads that service for this model only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.coverage import FeatureSelection, select_features
from features.pipeline import FEATURE_NAMES
from features.text.fill import HAS_TEXT, TEXT_MODEL_FEATURES, feature_set_entry, fill_text_frame
from features.text.views import TEXT_SERVICE
from training.data import join_text_features


def with_text(frame: pd.DataFrame, offline_dir: Path) -> pd.DataFrame:
    """``frame`` (``ticker, ts`` rows) with the text inputs joined and filled."""
    return fill_text_frame(join_text_features(frame, offline_dir))


def text_coverage(frame: pd.DataFrame) -> dict:
    """How much of ``frame`` had text: rows, and rows with a record in their window."""
    return {"rows": len(frame), "rows_with_text": int((frame[HAS_TEXT] > 0).sum())}


def model_inputs(frame: pd.DataFrame, offline_dir: Path, text: bool
                 ) -> tuple[pd.DataFrame, FeatureSelection, dict]:
    """(frame, selection, bundle ``feature_set``) of a model with or without text.

    Returns:
        the training frame (text joined and filled when ``text``), the feature selection
        (``kept`` = the model's inputs in order) and the dict the bundle stores as
        ``extra.feature_set``.
    """
    fs = select_features(frame, FEATURE_NAMES)
    if not text:
        return frame, fs, fs.to_dict()
    frame = with_text(frame, offline_dir)
    fs = FeatureSelection(kept=[*fs.kept, *TEXT_MODEL_FEATURES], dropped=fs.dropped)
    entry = {**fs.to_dict(), **feature_set_entry([TEXT_SERVICE]),
             "text_coverage": text_coverage(frame)}
    return frame, fs, entry
