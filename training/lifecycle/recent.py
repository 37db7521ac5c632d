"""Recent-window promotion: how a retrain triggered by decay is judged.

Why not the walk-forward rule: `training.registry.promotion_rule` compares walk-forward RankIC
over the whole history, which after a regime change (a signal that flipped sign) is mostly
the old regime, against the champion's earlier scores. A model that learned the new regime
then loses that comparison however well it does now, so a decay retrain could never be
promoted honestly.

The recent-window criterion (``lifecycle.decay_promotion: recent_window``):

- the after-decay retrain fits on the ``decay_train_sessions`` sessions before its cut-off
  (validates on the next ``decay_valid_sessions``), and holds out the most recent
  ``decay_window`` label-complete sessions, purged by the horizon: every judged row's feature
  date is more than ``h`` sessions after the cut-off, so no label the challenger saw overlaps
  a judged one (no look-ahead);
- champion, challenger and the naive baselines (momentum, reversal; `training.lgbm`) are
  scored on exactly those rows; the challenger is promoted only when its RankIC beats the
  champion's by ``decay_margin`` AND is at least ``decay_floor`` (and, with
  ``decay_beat_baselines``, beats the best baseline too);
- the judgement (decision, reason, every figure) is tagged on the challenger version
  (`JUDGEMENT_TAG`) and written to ``<reports>/monitor/judgements/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.durable import atomic_write_json
from training.evaluate import rank_ic

DECAY_PROMOTIONS = ("recent_window", "walkforward")


@dataclass
class Judgement:
    """One recent-window comparison of a challenger with the champion."""

    promote: bool
    reason: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _dates(ts) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(ts)).drop_duplicates().sort_values())


def decay_segments(dates, *, horizon: int, window: int, train_sessions: int,
                   valid_sessions: int) -> dict[str, list[str]]:
    """Train / valid / test segments of an after-decay retrain, counted back from the end.

    Args:
        dates: the trading dates whose ``horizon`` label is known (any order, repeats ok).
        window: sessions of the test segment = the recent window the judgement scores.
        train_sessions: sessions the model fits on (0: all history before valid).
        valid_sessions: validation sessions between train and test.

    Each gap between segments is ``horizon`` sessions (the purge). Raises ValueError when the
    dates are too few.
    """
    d = _dates(dates)
    need = window + horizon + valid_sessions + horizon + max(train_sessions, 20)
    if len(d) < need:
        raise ValueError(f"{len(d)} label-complete sessions; an after-decay retrain needs "
                         f"{need} (window {window}, valid {valid_sessions}, train "
                         f"{train_sessions}, purge {horizon} twice)")
    test_lo = len(d) - window
    valid_hi = test_lo - horizon - 1
    valid_lo = valid_hi - valid_sessions + 1
    train_hi = valid_lo - horizon - 1
    train_lo = max(0, train_hi - train_sessions + 1) if train_sessions else 0

    def seg(lo: int, hi: int) -> list[str]:
        return [str(d[lo].date()), str(d[hi].date())]

    return {"train": seg(train_lo, train_hi), "valid": seg(valid_lo, valid_hi),
            "test": seg(test_lo, len(d) - 1)}


def recent_rows(frame: pd.DataFrame, *, cutoff, horizon: int, window: int) -> pd.DataFrame:
    """The rows a judgement scores: feature dates more than ``horizon`` sessions after
    ``cutoff`` (the last date whose label the challenger saw), label known, the last
    ``window`` such sessions."""
    target = f"fwd_ret_{horizon}d"
    ts = pd.to_datetime(frame["ts"])
    cut = pd.Timestamp(cutoff)
    if cut.tzinfo is None and ts.dt.tz is not None:
        cut = cut.tz_localize(ts.dt.tz)
    cut = cut + pd.Timedelta(days=1)  # a cut-off date covers that whole day
    after = _dates(ts[ts >= cut])
    usable = after[horizon:]  # purge: these labels cannot overlap the challenger's
    known = _dates(ts[frame[target].notna() & ts.isin(usable)])[-window:]
    return frame[ts.isin(known)].sort_values(["ts", "ticker"]).reset_index(drop=True)


def judge_recent(rows: pd.DataFrame, *, horizon: int, champion_pred, challenger_pred,
                 margin: float, floor: float, min_sessions: int,
                 beat_baselines: bool = False, cutoff=None) -> Judgement:
    """Challenger vs champion (and the naive baselines) on the same ``rows``.

    Args:
        rows: `recent_rows` (features, ``ret_*`` past returns, ``fwd_ret_{h}d``).
        champion_pred / challenger_pred: predictions for ``rows`` in order (champion None:
            none scored, it counts as RankIC 0).
        margin: challenger RankIC must exceed the champion's by at least this.
        floor: challenger RankIC must be at least this.
        min_sessions: fewer judged sessions refuse (too little evidence yet).
        beat_baselines: also require beating the best naive baseline's RankIC.
    """
    from training.lgbm import baseline_predictions

    y = rows[f"fwd_ret_{horizon}d"].to_numpy(float)
    d = rows["ts"].to_numpy()
    n_sessions = int(pd.Series(d).nunique())
    figs: dict = {"n_sessions": n_sessions, "n_rows": len(rows), "horizon": horizon,
                  "margin": margin, "floor": floor, "min_sessions": min_sessions,
                  "cutoff": None if cutoff is None else str(pd.Timestamp(cutoff).date()),
                  "first": str(pd.Timestamp(d.min()).date()) if len(d) else None,
                  "last": str(pd.Timestamp(d.max()).date()) if len(d) else None}
    if n_sessions < min_sessions:
        return Judgement(False, f"{n_sessions} post-cut-off session(s) judged; the "
                                f"recent-window rule needs {min_sessions}", figs)
    ch = rank_ic(np.asarray(challenger_pred, float), y, d)
    k = rank_ic(np.asarray(champion_pred, float), y, d) if champion_pred is not None else 0.0
    base = {n: rank_ic(p, y, d) for n, p in baseline_predictions(rows, horizon).items()
            if n != "zero"}  # a constant has no rank correlation
    best_name, best = max(base.items(), key=lambda kv: (np.nan_to_num(kv[1], nan=-9), kv[0]))
    figs.update({"challenger_rank_ic": ch, "champion_rank_ic": k,
                 **{f"baseline_{n}_rank_ic": v for n, v in base.items()},
                 "difference": ch - k})
    txt = (f"on {n_sessions} sessions after the cut-off ({figs['first']}..{figs['last']}): "
           f"challenger RankIC {ch:.4f} vs champion {k:.4f} (difference {ch - k:.4f}, "
           f"margin {margin}), floor {floor}, best baseline {best_name} {best:.4f}")
    why = []
    if not np.isfinite(ch) or ch - k < margin:
        why.append("challenger does not beat the champion by the margin")
    if not np.isfinite(ch) or ch < floor:
        why.append("challenger is below the floor")
    if beat_baselines and not (np.isfinite(ch) and ch > np.nan_to_num(best, nan=-9)):
        why.append(f"challenger does not beat the {best_name} baseline")
    if why:
        return Judgement(False, "; ".join(why) + " — " + txt, figs)
    return Judgement(True, "recent window holds — " + txt, figs)


def write_judgement(reports_dir: Path, name: str, version: str, j: Judgement) -> Path:
    """The judgement as JSON beside the monitor reports (`JUDGEMENT_TAG` has the same)."""
    out = Path(reports_dir) / "monitor" / "judgements"
    out.mkdir(parents=True, exist_ok=True)
    p = out / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{name}-v{version}.json"
    atomic_write_json(p, {"name": name, "version": version, **j.to_dict()}, indent=2,
                      default=str)
    return p


def load_lgbm(tracking_uri: str, name: str, version: str):
    """The LightGBM booster registered as ``name`` ``version`` (every LightGBM family logs
    one with `mlflow.lightgbm`)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.lightgbm.load_model(f"models:/{name}/{version}")


def predict(booster, rows: pd.DataFrame) -> np.ndarray:
    from training.lgbm import model_matrix

    return booster.predict(model_matrix(rows, booster.feature_name()))


def after_decay(ctx) -> bool:
    """Does this retrain (a `training.lifecycle.steps.Ctx`) run the recent-window path?"""
    return bool(ctx.cfg.after_decay) and ctx.exp.lifecycle.decay_promotion == "recent_window"


def train_segments(ctx, frame: pd.DataFrame) -> dict[str, list[str]]:
    """`decay_segments` of the training frame for an after-decay retrain."""
    lc, h = ctx.exp.lifecycle, max(ctx.exp.horizons)
    return decay_segments(frame.loc[frame[f"fwd_ret_{h}d"].notna(), "ts"], horizon=h,
                          window=lc.decay_window, train_sessions=lc.decay_train_sessions,
                          valid_sessions=lc.decay_valid_sessions)


def promote_recent(ctx) -> dict:
    """The promote step of an after-decay retrain: judge each new version against its
    champion on the recent window, record the judgement, promote when it holds."""
    from training.data import load_training_frame
    from training.registry import CHAMPION, alias_version, promote_judged

    s, lc = ctx.settings, ctx.exp.lifecycle
    frame = load_training_frame(s.offline_dir)
    cutoff = ctx.outputs["train"]["segments"]["valid"][1]
    out = {}
    for name, v in ctx.outputs["train"]["registered"].items():
        champ = alias_version(s.tracking_uri, name, CHAMPION)
        if champ == v["version"]:  # first version of the name: nothing to judge against
            out[name] = {"promoted": False, "reason": "first version is champion already"}
            continue
        rows = recent_rows(frame, cutoff=cutoff, horizon=v["horizon"], window=lc.decay_window)
        ch_pred = predict(load_lgbm(s.tracking_uri, name, v["version"]), rows) if len(rows) \
            else np.array([])
        k_pred = (predict(load_lgbm(s.tracking_uri, name, champ), rows)
                  if champ and len(rows) else None)
        j = judge_recent(rows, horizon=v["horizon"], champion_pred=k_pred,
                         challenger_pred=ch_pred, margin=lc.decay_margin,
                         floor=lc.decay_floor, min_sessions=lc.decay_min_sessions,
                         beat_baselines=lc.decay_beat_baselines, cutoff=cutoff)
        j.figures.update({"champion_version": champ, "challenger_version": v["version"]})
        path = write_judgement(s.reports_dir, name, v["version"], j)
        d = promote_judged(s.tracking_uri, name, v["version"], ok=j.promote, reason=j.reason,
                           judgement=j.to_dict(), bundle_root=s.models_dir)
        out[name] = {"promoted": d.promoted, "reason": d.reason, "champion_before": champ,
                     "challenger": v["version"], "figures": j.figures, "report": str(path)}
        ctx.log(f"  {name}: challenger v{v['version']} "
                f"{'PROMOTED' if d.promoted else 'not promoted'} (recent window): {d.reason}")
    return out
