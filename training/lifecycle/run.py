"""The retrain step loop: idempotent and resumable.

A step whose recorded key equals its current key (and whose data outputs are still intact) is
skipped; so re-running with unchanged data and code does nothing new, and a run that crashed
after step k resumes at k+1. A data step whose files were changed or deleted since runs
again. ``force`` re-runs every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from features.settings import Settings
from training.config import DEFAULT_CONFIG, load_experiment
from training.lifecycle.config import STEPS, RetrainConfig, RetrainResult, StepFailed
from training.lifecycle.state import load_state, outputs_intact, save_state, state_path
from training.lifecycle.steps import STEP_FUNCS, Ctx, deps
from training.registry import config_hash


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_retrain(cfg: RetrainConfig, settings: Settings, *, ingest: Callable,
                build_features: Callable, log: Callable[[str], None] = print,
                step_funcs: dict[str, Callable] | None = None) -> RetrainResult:
    """Run every retrain step on whatever Ray the caller connected, skipping done steps.

    Args:
        cfg: what to run.
        settings: where state, lake, store and registry live.
        ingest: ``(cfg, settings) -> IngestReport`` of the ingest stage.
        build_features: ``(engine, settings) -> FeaturesResult`` of the features stage.
        log: progress lines.
        step_funcs: replace step implementations (tests inject a crash this way).

    Raises:
        StepFailed: a step raised; earlier steps stay recorded, so re-running resumes.
    """
    settings = settings.resolved()
    exp = load_experiment(cfg.config_path or DEFAULT_CONFIG)
    funcs = {**STEP_FUNCS, **(step_funcs or {})}
    state = {"steps": {}} if cfg.force else load_state(settings)
    cfg_hash = config_hash({"experiment": exp.to_dict(), "max_folds": cfg.max_folds,
                            "seeds": cfg.seeds, "num_boost_round": cfg.num_boost_round,
                            "promote": cfg.promote, "after_decay": cfg.after_decay})
    ctx = Ctx(cfg, settings, exp, {"_config_hash": cfg_hash}, log, ingest, build_features)
    ran, skipped = [], []
    for i, step in enumerate(STEPS, 1):
        d = deps(step, ctx)
        key = config_hash(d)
        rec = state["steps"].get(step)
        if (rec and rec.get("key") == key and rec.get("status") == "done"
                and outputs_intact(step, rec["output"], settings)):
            ctx.outputs[step] = rec["output"]
            skipped.append(step)
            log(f"[{i}/{len(STEPS)}] {step}: unchanged, skipped")
            continue
        t0 = time.perf_counter()
        try:
            out = funcs[step](ctx)
        except Exception as e:
            state["steps"][step] = {"key": key, "status": "failed", "error": repr(e)[:2000],
                                    "at": _now()}
            save_state(settings, state)
            raise StepFailed(f"retrain step {step!r} failed: {e!r}; fix it and re-run — "
                             f"finished steps are skipped") from e
        ctx.outputs[step] = out
        # later steps depend on this one's output: their recorded keys no longer match
        state["steps"][step] = {"key": key, "status": "done", "output": out,
                                "depends_on": {k: v for k, v in d.items()
                                               if k not in ("registered", "evaluated")},
                                "seconds": round(time.perf_counter() - t0, 1), "at": _now()}
        save_state(settings, state)
        ran.append(step)
        log(f"[{i}/{len(STEPS)}] {step}: done ({time.perf_counter() - t0:.1f}s)")
    outputs = {k: v for k, v in ctx.outputs.items() if not k.startswith("_")}
    return RetrainResult(ran, skipped, outputs, state_path(settings))
