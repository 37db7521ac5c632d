"""Macro series joined by *release date*, never by period end.

A monthly value for month M is not known on the last day of M: it is published later. Each
series therefore carries a stated publication lag, turns every period into a release
timestamp, and the feature pipeline joins a bar at ``ts`` with the newest release at or before
``ts`` (an as-of join on the release time). Values older than :data:`MACRO_STALE_AFTER` after
their release are NaN rather than carried forever (the ``arch`` data ends in 2018).

Series (``arch.data``, FRED copies):

- ``core_cpi`` (CPILFESL, index, month M dated M-01): BLS publishes it around the 10th–17th of
  M+1. Lag used: **available from the 20th of M+1** (conservative; the 2013 shutdown delay is
  not modelled).
- ``default`` (Moody's AAA and BAA yields, monthly averages of daily values, dated M-01): the
  average is complete at the end of M and FRED posts it on the first business day of M+1. Lag
  used: **available from the 2nd calendar day of M+1**.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Beyond this age a release is stale: a monthly series normally refreshes within ~31 days;
# 62 allows one late or missing release before the feature becomes NaN.
MACRO_STALE_AFTER = pd.Timedelta(days=62)


@dataclass(frozen=True)
class MacroSeries:
    """A monthly series: where it comes from, when each month is published, what it yields."""

    name: str
    source: str
    lag: str
    release: Callable[[pd.DatetimeIndex], pd.DatetimeIndex]
    features: Callable[[pd.DataFrame], pd.DataFrame]


def _next_month_day(day: int):
    def release(period: pd.DatetimeIndex) -> pd.DatetimeIndex:
        start = period.to_period("M").to_timestamp() + pd.offsets.MonthBegin(1)
        return (start + pd.Timedelta(days=day - 1)).tz_localize("UTC")
    return release


def _cpi_features(m: pd.DataFrame) -> pd.DataFrame:
    logc = np.log(m["CPILFESL"].astype(float))
    return pd.DataFrame({"core_cpi_yoy": logc - logc.shift(12),
                         "core_cpi_3m_ann": 4.0 * (logc - logc.shift(3))}, index=m.index)


def _default_features(m: pd.DataFrame) -> pd.DataFrame:
    spread = m["BAA"].astype(float) - m["AAA"].astype(float)
    return pd.DataFrame({"default_spread": spread,
                         "default_spread_chg_3m": spread - spread.shift(3)}, index=m.index)


MACRO_SERIES: tuple[MacroSeries, ...] = (
    MacroSeries("core_cpi", "arch.data.core_cpi (CPILFESL)", "month M available from M+1, day 20",
                _next_month_day(20), _cpi_features),
    MacroSeries("default", "arch.data.default (Moody's AAA, BAA)",
                "month M available from M+1, day 2", _next_month_day(2), _default_features),
)


@functools.cache
def _arch_raw() -> dict[str, pd.DataFrame]:
    from arch.data import core_cpi, default

    return {"core_cpi": core_cpi.load(), "default": default.load()}


def load_macro_raw() -> dict[str, pd.DataFrame]:
    """Monthly raw frames of every series, indexed by period start (copies; safe to edit)."""
    return {k: v.copy() for k, v in _arch_raw().items()}


def macro_releases(raw: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """Per series: ``release_ts`` (UTC) and the feature columns known from that instant.

    Args:
        raw: monthly frames indexed by period start (default: :func:`load_macro_raw`). Tests
            pass edited copies to check that nothing is visible before its release.
    """
    raw = load_macro_raw() if raw is None else raw
    out = {}
    for s in MACRO_SERIES:
        m = raw[s.name].sort_index()
        feats = s.features(m)
        feats.insert(0, "release_ts", s.release(pd.DatetimeIndex(m.index)))
        out[s.name] = feats.reset_index(drop=True)
    return out


MACRO_FEATURES = ["core_cpi_yoy", "core_cpi_3m_ann", "default_spread", "default_spread_chg_3m"]


def join_macro(frame: pd.DataFrame, releases: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Add the macro columns to ``frame`` (sorted by ``ts``): the newest release <= ts."""
    if not releases:
        for name in MACRO_FEATURES:
            frame[name] = np.nan
        return frame
    for table in releases.values():
        table = table.assign(release_ts=table["release_ts"].astype(frame["ts"].dtype))
        frame = pd.merge_asof(frame, table.sort_values("release_ts"), left_on="ts",
                              right_on="release_ts", direction="backward",
                              tolerance=MACRO_STALE_AFTER).drop(columns=["release_ts"])
    return frame
