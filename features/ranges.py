"""Out-of-range feature values are caught where features are built, not at model export.

Models and the online store work in float32 (max ~3.4e38). A feature value that is infinite
(a division by a zero price or volume window) or beyond :data:`FEATURE_ABS_MAX` would
overflow that cast, and LightGBM would place split thresholds between such values. Those
values are set to NaN (the feature is unknown for that row, like any other gap) and counted
per feature in the data-quality report (``out_of_range``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Largest |value| kept; far inside float32 range, so midpoints of split thresholds fit too.
FEATURE_ABS_MAX = 1e30


def mask_out_of_range(frame: pd.DataFrame, names) -> dict[str, int]:
    """Set infinite or |x| > :data:`FEATURE_ABS_MAX` values of ``names`` to NaN, in place.

    Returns:
        Values masked per feature (features with none are left out).
    """
    counts: dict[str, int] = {}
    for n in names:
        v = frame[n].to_numpy(float)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(v) | (np.abs(v) > FEATURE_ABS_MAX)
        k = int(bad.sum())
        if k:
            v = v.copy()
            v[bad] = np.nan
            frame[n] = v
            counts[n] = k
    return counts


def merge_counts(parts) -> dict[str, int]:
    """Sum per-feature counts of several chunks."""
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))
