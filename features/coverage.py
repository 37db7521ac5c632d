"""The one rule for missing features, shared by training and serving.

A universe may lack whole feature families: no macro series for its dates, too few days for a
200-day window. Serving refuses a prediction whose input holds a NaN (``FAILED_PRECONDITION``),
so a model must never depend on a feature that is missing for everyone. Before training, every
model's feature set goes through :func:`select_features`:

- a feature that is NaN on every row of the universe is dropped;
- a feature that is NaN for every ticker on the latest date is dropped too (serving reads that
  date's row, so it would refuse every ticker).

The dropped names and reasons are stored in the model bundle (``extra.feature_set``) and the
model card; the bundle's ``feature_names`` (what serving reads and checks) are the kept ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

ALL_NAN = "NaN on every row of the universe"
NAN_AT_LAST_DATE = "NaN for every ticker on the latest date (serving would refuse it)"


@dataclass
class FeatureSelection:
    kept: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # name -> reason

    def to_dict(self) -> dict:
        return asdict(self)


def select_features(frame: pd.DataFrame, names) -> FeatureSelection:
    """Apply the rule to ``frame`` (rows of the universe with ``ts`` and ``names``).

    Raises:
        ValueError: no feature is left.
    """
    names = list(names)
    present = frame[names].notna()
    last = frame["ts"] == frame["ts"].max() if len(frame) else present.index == -1
    dropped: dict[str, str] = {}
    for n in names:
        if not present[n].any():
            dropped[n] = ALL_NAN
        elif not present.loc[last, n].any():
            dropped[n] = NAN_AT_LAST_DATE
    kept = [n for n in names if n not in dropped]
    if not kept:
        raise ValueError(f"every one of the {len(names)} features is missing in this universe")
    return FeatureSelection(kept=kept, dropped=dropped)


def summarize_names(items, first: int = 5) -> str:
    """``"524 (A, AA, AAPL, AB, ABC, ...)"``: a count and the first few. Long lists go to the
    reports whole, never to the terminal."""
    items = list(items)
    head = ", ".join(map(str, items[:first]))
    return f"{len(items)} ({head}{', ...' if len(items) > first else ''})"


def servable_tickers(feast_dir, tickers, feature_names, services=()
                     ) -> tuple[list[str], dict[str, str]]:
    """Tickers whose online row holds every one of ``feature_names`` (what serving checks),
    and why the others are not servable (e.g. too short a history for a window).

    ``services``: opt-in feature services the model reads too (a text model's
    ``stockray_text_v1``), read and filled as serving does (``features.text.fill``)."""
    import math

    from features.store import FeastOnlineReader
    from features.text.fill import apply_service_fills

    reader = FeastOnlineReader(str(feast_dir))
    if services:
        reader = reader.with_services(list(services))
    rows = reader.read(list(tickers))
    rows = {t: r if r is None or not services else
            apply_service_fills(r, services, float(r.get("feature_ts", math.nan)))
            for t, r in rows.items()}
    ok, why = [], {}
    for t in tickers:
        row = rows.get(t)
        if row is None:
            why[t] = "no online row"
            continue
        nan = [n for n in feature_names if n not in row or row[n] is None
               or math.isnan(float(row[n]))]
        if nan:
            why[t] = f"missing {len(nan)} feature(s), e.g. {nan[0]} (history too short?)"
        else:
            ok.append(t)
    return ok, why
