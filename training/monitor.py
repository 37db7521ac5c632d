"""Live model health: realised outcomes of served forecasts, live metrics, and the written
rules that decide to retrain or roll back.

Inputs are tables, not services: the served forecasts (from the audit log, see
`serving.outcomes`), the lake's bars, the offline features. `ray_apps.monitor` wires them and
carries the decision out (Ray Jobs API for a retrain, `training.registry.rollback`).

Rules (`MonitorRules`), judged per served model version and horizon once at least
``min_dates`` feature dates have realised outcomes in the last ``window_dates``:

- **rollback** when the champion's live RankIC is below the previous champion's live RankIC
  (recorded when it was replaced) by more than ``rollback_margin``;
- **retrain** when the live RankIC is below ``ic_floor``, or below the version's validation
  RankIC by more than ``ic_decay``, or when more than ``max_shifted_share`` of the features
  drifted (PSI > `training.drift.PSI_SHIFT` against the training window);
- otherwise **none**. Promotion of a challenger stays the registry's rule
  (`training.registry.promote`), run by the same job.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from training.evaluate import hit_rate, ic, interval_coverage, rank_ic


@dataclass(frozen=True)
class MonitorRules:
    """Thresholds of the monitoring decisions (see the module docstring)."""

    window_dates: int = 60
    min_dates: int = 20
    ic_floor: float = 0.0
    ic_decay: float = 0.05
    max_shifted_share: float = 0.3
    rollback_margin: float = 0.02


def _sessions(bars: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ticker -> (session dates as datetime64[ns] UTC-naive, adjusted close)."""
    out = {}
    for t, b in bars.sort_values(["ticker", "ts"]).groupby("ticker", sort=False):
        d = pd.to_datetime(b["ts"], utc=True).dt.tz_localize(None).dt.normalize()
        adj = (b["close"] * b.get("adj_factor", 1.0)).to_numpy(float)
        out[str(t)] = (d.to_numpy("datetime64[ns]"), adj)
    return out


def realised(served: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Served forecasts whose horizon has passed, with the realised forward log return.

    A forecast made on features of session ``d`` is judged on ``log(adj[d + h] / adj[d])``
    (the training label's definition). The last forecast per (model version, ticker, horizon,
    feature date) counts once, however often it was requested.
    """
    cols = [*served.columns, "date", "realised"]
    if served.empty:
        return pd.DataFrame(columns=cols)
    s = served.copy()
    s["date"] = s["feature_ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    s = s.drop_duplicates(["model", "version", "ticker", "horizon", "date"], keep="last")
    sessions = _sessions(bars)
    y = np.full(len(s), np.nan)
    for i, (t, d, h) in enumerate(zip(s["ticker"], s["date"].to_numpy("datetime64[ns]"),
                                      s["horizon"], strict=True)):
        if t not in sessions:
            continue
        dates, adj = sessions[t]
        j = int(np.searchsorted(dates, d))
        if j < len(dates) and dates[j] == d and j + h < len(dates):
            y[i] = math.log(adj[j + h] / adj[j])
    s["realised"] = y
    return s[np.isfinite(y)].reset_index(drop=True)[cols]


def live_metrics(outcomes: pd.DataFrame, window_dates: int = 60) -> pd.DataFrame:
    """Per (alias, model, version, horizon) over its last ``window_dates`` feature dates:
    n_dates, rank_ic, ic, hit_rate, coverage (of the served intervals), last_date."""
    rows = []
    for (alias, model, version, h), g in outcomes.groupby(["alias", "model", "version",
                                                           "horizon"], sort=True):
        dates = np.sort(g["date"].unique())[-window_dates:]
        g = g[g["date"].isin(dates)]
        cov = (interval_coverage(g["lo"].astype(float), g["hi"].astype(float), g["realised"])
               if g["lo"].notna().any() else float("nan"))
        rows.append({"alias": alias, "model": model, "version": version, "horizon": int(h),
                     "n_dates": len(dates), "n": len(g),
                     "rank_ic": rank_ic(g["pred"], g["realised"], g["date"]),
                     "ic": ic(g["pred"], g["realised"], g["date"]),
                     "hit_rate": hit_rate(g["pred"], g["realised"]), "coverage": cov,
                     "last_date": str(pd.Timestamp(dates[-1]).date())})
    return pd.DataFrame(rows)


def rolling_rank_ic(outcomes: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Daily rank IC per (model, version, horizon) and its ``window``-date rolling mean."""
    from training.evaluate import daily_ic

    parts = []
    for (model, version, h), g in outcomes.groupby(["model", "version", "horizon"]):
        d = daily_ic(g["pred"], g["realised"], g["date"], "spearman")
        parts.append(pd.DataFrame({"model": model, "version": version, "horizon": h,
                                   "date": d.index, "rank_ic": d.to_numpy(),
                                   "rolling": d.rolling(window, min_periods=5).mean()
                                   .to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["model", "version", "horizon", "date", "rank_ic", "rolling"])


@dataclass
class Decision:
    """What the monitor decided for one served model version and why."""

    name: str
    version: str
    horizon: int
    action: str                      # none | retrain | rollback | wait
    reason: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def decide(live: dict, rules: MonitorRules, *, validation_rank_ic: float | None = None,
           shifted_share: float = 0.0, previous_champion_ic: float | None = None) -> Decision:
    """Apply the rules to one row of `live_metrics` (see the module docstring)."""
    figs = {"live_rank_ic": live["rank_ic"], "n_dates": live["n_dates"],
            "validation_rank_ic": validation_rank_ic, "shifted_share": shifted_share,
            "previous_champion_live_rank_ic": previous_champion_ic,
            "hit_rate": live.get("hit_rate"), "coverage": live.get("coverage")}
    base = {"name": live["model"], "version": str(live["version"]),
            "horizon": int(live["horizon"]), "figures": figs}
    r = live["rank_ic"]
    if live["n_dates"] < rules.min_dates or not np.isfinite(r):
        return Decision(**base, action="wait",
                        reason=f"{live['n_dates']} realised dates; rules need "
                               f"{rules.min_dates}")
    if previous_champion_ic is not None and r < previous_champion_ic - rules.rollback_margin:
        return Decision(**base, action="rollback",
                        reason=f"live RankIC {r:.4f} < previous champion's "
                               f"{previous_champion_ic:.4f} - margin {rules.rollback_margin}")
    why = []
    if r < rules.ic_floor:
        why.append(f"live RankIC {r:.4f} < floor {rules.ic_floor}")
    if validation_rank_ic is not None and r < validation_rank_ic - rules.ic_decay:
        why.append(f"live RankIC {r:.4f} decayed from validation {validation_rank_ic:.4f} "
                   f"by more than {rules.ic_decay}")
    if shifted_share > rules.max_shifted_share:
        why.append(f"{shifted_share:.0%} of features drifted (PSI > 0.25) > "
                   f"{rules.max_shifted_share:.0%}")
    if why:
        return Decision(**base, action="retrain", reason="; ".join(why))
    return Decision(**base, action="none",
                    reason=f"live RankIC {r:.4f} over {live['n_dates']} dates within the rules")
