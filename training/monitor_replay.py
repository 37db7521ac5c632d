"""The monitor's rules replayed day by day: when would a decision have fired?

`replay_decisions` judges the live window as it stood after every session: on session ``k``
only forecasts whose outcome was known then count (feature date ``d`` with ``d + h <= k``
sessions), exactly what a daily monitor run on that day would have seen. `detection_delay`
turns that into the figure the lifecycle is judged by: trading days of data after a regime
change (e.g. a signal flip) until the first ``retrain`` (or ``rollback``) decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.evaluate import daily_ic
from training.monitor import Decision, MonitorRules, decide


def replay_decisions(outcomes: pd.DataFrame, sessions: Sequence, rules: MonitorRules, *,
                     validation_rank_ic: float | None = None,
                     previous_champion_ic: float | None = None,
                     start: int = 0) -> pd.DataFrame:
    """One row per (session index ``k`` >= ``start``, model, version, horizon): the decision a
    monitor run after session ``k`` takes on the champion rows of ``outcomes`` (`realised`).

    The live RankIC of a window is the mean of its dates' cross-sectional rank ICs (what
    `live_metrics` computes), so each date's IC is computed once and windows are averaged.

    Args:
        sessions: the trading calendar (UTC-naive normalised dates, ascending) ``outcomes``
            dates are drawn from.
    """
    cols = ["k", "as_of", "action", "reason", "live_rank_ic", "n_dates", "model", "version",
            "horizon"]
    days = pd.DatetimeIndex(sessions)
    champ = outcomes[outcomes["alias"] == "champion"]
    if champ.empty:
        return pd.DataFrame(columns=cols)
    pos = days.get_indexer(pd.DatetimeIndex(champ["date"]))
    if (pos < 0).any():
        raise ValueError("outcome dates outside the session calendar")
    rows = []
    for (model, version, h), g in champ.assign(pos=pos).groupby(["model", "version",
                                                                 "horizon"]):
        ics = daily_ic(g["pred"], g["realised"], g["pos"], "spearman")
        dates = np.sort(g["pos"].unique())  # feature-date positions, outcome known at pos + h
        for k in range(start, len(days)):
            known = dates[dates + int(h) <= k][-rules.window_dates:]
            if not len(known):
                continue
            w = ics[ics.index.isin(known)]
            live = {"model": model, "version": str(version), "horizon": int(h),
                    "n_dates": len(known), "rank_ic": float(w.mean()) if len(w) else np.nan}
            d: Decision = decide(live, rules, validation_rank_ic=validation_rank_ic,
                                 previous_champion_ic=previous_champion_ic)
            rows.append({"k": k, "as_of": days[k], "action": d.action, "reason": d.reason,
                         "live_rank_ic": live["rank_ic"], "n_dates": live["n_dates"],
                         "model": model, "version": str(version), "horizon": int(h)})
    return pd.DataFrame(rows, columns=cols)


def detection_delay(replay: pd.DataFrame, change_at: int,
                    actions: tuple[str, ...] = ("retrain", "rollback")) -> int | None:
    """Sessions after ``change_at`` (index of the first session of the new regime) until the
    first decision in ``actions`` on or after it; None when none fired."""
    fired = replay[(replay["k"] >= change_at) & replay["action"].isin(actions)]
    if fired.empty:
        return None
    return int(np.min(fired["k"])) - change_at
