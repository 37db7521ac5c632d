"""The one rule for days without text, shared by training and serving (``text_fill_v1``).

Text is sparse: most (ticker, session) pairs have no record, a ticker's text row stops a week
after its last record (the view's TTL), and sentiment is undefined where nothing was scored.
A model that uses the text features must still score every ticker, and serving refuses a NaN
input, so before a model sees them (training frame and served row alike) the text features go
through :func:`fill_text_frame` / :func:`fill_text_values`:

- ``news_has_text_1d`` (added): 1.0 when the session's window held at least one record of the
  ticker (``news_count_1d > 0``), else 0.0 (also when there is no text row at all);
- every text feature (``features.text.daily.TEXT_FEATURES``) that is missing becomes 0.0:
  counts and filing flags (no record = zero of them), the sentiment means and shares (no
  scored text = neutral), the surprises (no baseline = no surprise). Values that exist are
  kept as they are.

A text row counts only when it is not older than the view's TTL relative to the price row and
not newer than it (serving: :func:`text_row_usable`; training: the point-in-time join with the
same TTL), so an online text row from weeks ago is "no text", as in training.

The rule's name is stored in a text model's bundle (``extra.feature_set.fills``); serving
refuses a bundle whose rule it does not apply (`check_fills`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.text.daily import TEXT_FEATURES, TEXT_TS
from features.text.views import TEXT_SERVICE, TEXT_TTL

TEXT_FILL_RULE = "text_fill_v1"
HAS_TEXT = "news_has_text_1d"
#: what a text model reads: the view's features and the indicator, in this order
TEXT_MODEL_FEATURES = (*TEXT_FEATURES, HAS_TEXT)
FILL_VALUE = 0.0
#: service -> the fill rule applied to its columns (the only opt-in service today)
SERVICE_FILLS = {TEXT_SERVICE: TEXT_FILL_RULE}
_DAY_S = 86400.0


def fill_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (text features joined, NaN where none) with the rule applied: a copy."""
    out = frame.copy()
    count = pd.to_numeric(out["news_count_1d"], errors="coerce")
    out[HAS_TEXT] = (count.fillna(0.0) > 0).astype(float)
    for c in TEXT_FEATURES:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float).fillna(FILL_VALUE)
    return out


def text_row_usable(text_asof_ts: float | None, feature_ts: float) -> bool:
    """Whether an online text row (its session's close, epoch s) belongs with a price row
    (``feature_ts``: its session, midnight UTC): same session or up to the TTL before it.

    The close (16:00 New York) falls on the session's own UTC date, so whole days compare.
    """
    if text_asof_ts is None or not math.isfinite(text_asof_ts) or not math.isfinite(feature_ts):
        return False
    text_day = math.floor(text_asof_ts / _DAY_S) * _DAY_S
    age = feature_ts - text_day
    return 0.0 <= age <= TEXT_TTL.total_seconds()


def fill_text_values(values: Mapping[str, float], feature_ts: float) -> dict[str, float]:
    """One served row: ``values`` (price features and, when read, the text service's columns)
    with the text features replaced by the rule's. A text row that is not usable
    (`text_row_usable`) counts as no text."""
    out = dict(values)
    usable = text_row_usable(out.get(TEXT_TS), feature_ts)
    for c in TEXT_FEATURES:
        v = out.get(c) if usable else None
        out[c] = FILL_VALUE if v is None or not np.isfinite(v) else float(v)
    out[HAS_TEXT] = 1.0 if out["news_count_1d"] > 0 else 0.0
    out.pop(TEXT_TS, None)
    return out


def feature_set_entry(services: list[str]) -> dict:
    """What a bundle records about its opt-in inputs (``extra.feature_set``): the services
    serving must read beside the price features, and the fill rule of each."""
    unknown = sorted(set(services) - set(SERVICE_FILLS))
    if unknown:
        raise ValueError(f"no fill rule for service(s) {unknown}; known {sorted(SERVICE_FILLS)}")
    return {"services": list(services), "fills": {s: SERVICE_FILLS[s] for s in services}}


def check_fills(fills: Mapping[str, str]) -> None:
    """Raise ValueError when a bundle wants a service or a rule this code does not apply."""
    for service, rule in fills.items():
        have = SERVICE_FILLS.get(service)
        if have != rule:
            raise ValueError(
                f"the bundle was trained with fill rule {rule!r} for service {service!r}; this "
                f"server applies {have!r}: retrain the model or serve it with matching code")


def apply_service_fills(values: Mapping[str, float], services, feature_ts: float
                        ) -> dict[str, float]:
    """The rule of every service in ``services`` applied to one served row."""
    out = dict(values)
    for s in services:
        if SERVICE_FILLS.get(s) == TEXT_FILL_RULE:
            out = fill_text_values(out, feature_ts)
        else:
            raise ValueError(f"no fill rule for service {s!r}")
    return out
