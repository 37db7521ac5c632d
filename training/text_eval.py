"""Does text help? The walk-forward of the same model with and without the text inputs, in one
run, next to the naive baselines (``stockray news evaluate``).

Both arms see the same frame (text joined and filled, `training.text_inputs`), the same folds,
seeds and hyperparameters; only the feature list differs. Reported per arm: mean ± std over
seeds of RankIC / IC over every stitched test row, and the same over the *text period* only
(test rows on or after the first date a ticker had text), where a gain could show; baselines
(zero, momentum, reversal, linear ...) come from the same run. The gain is the with-text minus
without-text RankIC, quoted with the seeds' spread: on the SYNTHETIC sample news (random tone,
no planted link to returns) it should be about zero, and the report says what it measures.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.coverage import select_features
from features.durable import atomic_write_json
from features.pipeline import FEATURE_NAMES
from features.text.fill import HAS_TEXT, TEXT_MODEL_FEATURES
from training.evaluate import rank_ic
from training.walkforward import WalkForwardConfig, pred_column, run_walkforward

ARMS = ("without_text", "with_text")


def _arm_metrics(res, cfg: WalkForwardConfig, model: str, text_from: pd.Timestamp | None
                 ) -> dict:
    t = res.table()
    row = t.loc[("model", model)]
    out = {"rank_ic_mean": float(row["rank_ic_mean"]), "rank_ic_std": float(row["rank_ic_std"]),
           "ic_mean": float(row["ic_mean"]), "ic_std": float(row["ic_std"]),
           "seeds_rank_ic": res.seed_metric(model, "rank_ic")}
    p = res.predictions
    target = f"fwd_ret_{cfg.horizon}d"
    if p is not None and text_from is not None:
        sub = p[p["ts"] >= text_from]
        per_seed = [rank_ic(sub[pred_column(model, s)], sub[target], sub["ts"])
                    for s in cfg.seeds]
        out["text_period"] = {"rows": len(sub), "rank_ic_seeds": per_seed,
                              "rank_ic_mean": float(np.nanmean(per_seed)) if per_seed else None}
    return out


def _baselines(res, cfg: WalkForwardConfig, text_from: pd.Timestamp | None) -> dict:
    t = res.table()
    out = {}
    p = res.predictions
    target = f"fwd_ret_{cfg.horizon}d"
    for (kind, name), row in t.iterrows():
        if kind != "baseline":
            continue
        d = {"rank_ic": float(row["rank_ic_mean"]), "ic": float(row["ic_mean"])}
        if p is not None and text_from is not None and name in p:
            sub = p[p["ts"] >= text_from]
            d["text_period_rank_ic"] = rank_ic(sub[name], sub[target], sub["ts"])
        out[name] = d
    return out


def evaluate_text_gain(frame: pd.DataFrame, base_features: list[str], cfg: WalkForwardConfig,
                       *, model: str = "lgbm_reg", map_folds=None, log=None) -> dict:
    """Run both arms on ``frame`` (text inputs already joined and filled) and compare.

    Returns:
        a JSON-able report: per arm the model's metrics, the baselines (from the with-text
        run; they do not depend on the feature list except ``linear``), the gain, and how much
        of the frame had text.
    """
    cfg = replace(cfg, models=(model,))
    has = frame[HAS_TEXT] > 0
    text_from = pd.Timestamp(frame.loc[has, "ts"].min()) if has.any() else None
    arms, results = {}, {}
    t0 = time.perf_counter()
    for arm in ARMS:
        names = base_features + (list(TEXT_MODEL_FEATURES) if arm == "with_text" else [])
        if log:
            log(f"walk-forward {arm}: {len(names)} features")
        results[arm] = res = run_walkforward(frame, names, cfg, log=log, map_folds=map_folds)
        arms[arm] = _arm_metrics(res, cfg, model, text_from)
        arms[arm]["features_used"] = len(res.feature_names)
        arms[arm]["baselines"] = _baselines(res, cfg, text_from)
    # a fold whose train segment holds no text cannot learn from it (LightGBM drops constant
    # columns): both arms then fit the same trees, so count the folds that could differ
    text_days = pd.DatetimeIndex(frame.loc[has, "ts"])
    folds = results["with_text"].folds
    with_text_train = sum(
        bool(((text_days >= pd.Timestamp(f["train"]["start"]))
              & (text_days <= pd.Timestamp(f["train"]["end"]))).any()) for f in folds)
    w, wo = arms["with_text"], arms["without_text"]
    gain = {"rank_ic": w["rank_ic_mean"] - wo["rank_ic_mean"],
            "rank_ic_seeds": [a - b for a, b in zip(w["seeds_rank_ic"], wo["seeds_rank_ic"],
                                                   strict=True)]}
    if "text_period" in w:
        gain["text_period_rank_ic"] = (w["text_period"]["rank_ic_mean"]
                                       - wo["text_period"]["rank_ic_mean"])
    return {"model": model, "horizon": cfg.horizon, "seeds": list(cfg.seeds),
            "folds": len(folds), "folds_with_text_in_train": with_text_train,
            "rows": len(frame), "rows_with_text": int(has.sum()),
            "text_from": str(text_from.date()) if text_from is not None else None,
            "arms": arms, "gain": gain, "seconds": round(time.perf_counter() - t0, 1)}


def format_text_gain(rep: dict) -> str:
    """The comparison as a few lines for the terminal."""
    lines = [(f"text inputs, walk-forward h={rep['horizon']} {rep['model']}, {rep['folds']} folds"
              f" ({rep['folds_with_text_in_train']} with text in their train segment), seeds "
              f"{rep['seeds']}; {rep['rows_with_text']} of {rep['rows']} rows had text "
              f"(from {rep['text_from']})"),
             f"  {'arm':<14} {'RankIC':>18} {'IC':>18} {'RankIC text period':>20}"]
    for arm in ARMS:
        a = rep["arms"][arm]
        tp = a.get("text_period", {}).get("rank_ic_mean")
        lines.append(f"  {arm:<14} {a['rank_ic_mean']:>9.4f} ± {a['rank_ic_std']:<6.4f} "
                     f"{a['ic_mean']:>9.4f} ± {a['ic_std']:<6.4f} "
                     f"{'' if tp is None else f'{tp:>20.4f}'}")
    b = rep["arms"]["with_text"]["baselines"]
    for name, d in b.items():
        tp = d.get("text_period_rank_ic")
        lines.append(f"  {'base ' + name:<14} {d['rank_ic']:>18.4f} {d['ic']:>18.4f} "
                     f"{'' if tp is None else f'{tp:>20.4f}'}")
    g = rep["gain"]
    lines.append(f"gain with text: RankIC {g['rank_ic']:+.4f} (per seed "
                 f"{', '.join(f'{x:+.4f}' for x in g['rank_ic_seeds'])})"
                 + (f"; text period {g['text_period_rank_ic']:+.4f}"
                    if "text_period_rank_ic" in g else ""))
    return "\n".join(lines)


def write_text_gain(rep: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "text_gain.json"
    atomic_write_json(path, json.loads(json.dumps(rep, default=float)), indent=2)
    return path


def text_eval_frame(offline_dir: Path, start: str | None) -> tuple[pd.DataFrame, list[str],
                                                                   str | None]:
    """(frame, price features, start) that `evaluate_text_gain` compares on: the offline
    store's training frame with the text inputs joined and filled, from ``start`` on.

    ``start`` None = 4 years before the first text (earlier folds compare two models whose
    text columns are all zero: the same trees); ``"all"`` = the whole history."""
    from training.data import load_training_frame
    from training.text_inputs import with_text

    frame = with_text(load_training_frame(offline_dir), offline_dir)
    has = frame[HAS_TEXT] > 0
    if start is None and has.any():
        start = str((frame.loc[has, "ts"].min() - pd.DateOffset(years=4)).date())
    if start and start != "all":
        frame = frame[frame["ts"] >= pd.Timestamp(start, tz="UTC")].reset_index(drop=True)
    return frame, select_features(frame, FEATURE_NAMES).kept, start
