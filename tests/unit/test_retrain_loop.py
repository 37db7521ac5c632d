"""The retrain step loop without Ray: every step runs once, an unchanged re-run skips all of
them, a failed step is recorded and the re-run resumes there, and a changed data file
re-runs the step that wrote it and everything after."""

import itertools

import pytest

from features.settings import Settings
from training.data import offline_snapshot_hash
from training.lifecycle.config import STEPS, RetrainConfig, StepFailed
from training.lifecycle.run import run_retrain
from training.lifecycle.state import lake_hash, load_state

_SNAPSHOT = itertools.count()


def _steps(calls: list[str]):
    def ingest(ctx):
        calls.append("ingest")
        return {"lake_sha256": lake_hash(ctx.settings)}

    def features(ctx):
        calls.append("features")
        off = ctx.settings.offline_dir
        off.mkdir(parents=True, exist_ok=True)
        # each run writes a new snapshot: what a rebuilt offline store looks like
        (off / "features.parquet").write_bytes(f"v{next(_SNAPSHOT)}".encode())
        return {"tickers": ["A"], "data_sha256": offline_snapshot_hash(off)}

    def plain(name):
        def f(ctx):
            calls.append(name)
            return {"5": {"calls": len(calls)}}  # evaluate's shape: per horizon
        return f

    return {"ingest": ingest, "validate": plain("validate"), "features": features,
            "train": plain("train"), "evaluate": plain("evaluate"), "promote": plain("promote")}


def _run(settings, calls, **over):
    return run_retrain(RetrainConfig(auth=False), settings, ingest=None, build_features=None,
                       log=lambda _: None, step_funcs={**_steps(calls), **over})


def test_steps_run_once_skip_when_unchanged_and_resume_after_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr("training.registry.git_revision", lambda: "rev")
    settings = Settings(data_dir=tmp_path).resolved()
    calls: list[str] = []
    first = _run(settings, calls)
    assert first.ran == list(STEPS) and calls == list(STEPS)
    calls.clear()
    again = _run(settings, calls)
    assert again.ran == [] and again.skipped == list(STEPS) and calls == []

    # the offline store was deleted behind the run's back: the features step runs again, and
    # its new snapshot re-runs training, which fails
    (settings.offline_dir / "features.parquet").unlink()

    def boom(ctx):
        raise RuntimeError("simulated")

    with pytest.raises(StepFailed, match="train"):
        _run(settings, calls, train=boom)
    assert calls == ["features"]
    st = load_state(settings)["steps"]
    assert st["features"]["status"] == "done" and st["train"]["status"] == "failed"
    calls.clear()
    resumed = _run(settings, calls)
    assert resumed.skipped == ["ingest", "validate", "features"]
    assert resumed.ran == ["train", "evaluate", "promote"] == calls
