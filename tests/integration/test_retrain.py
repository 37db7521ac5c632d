"""Retraining as a Ray job on a real local Ray cluster + MLflow (sqlite, tmp): every step runs,
an unchanged re-run skips them all, a crash resumes at the failed step, the promotion rule is
applied and the reports hold every model and baseline; the ASHA search runs on the cluster.

Not covered here (too slow for the default suite): ``stockray submit -- stockray retrain``
through ``ray job submit``; the ``RAY_ADDRESS`` branch of `ray_connection` is what it uses.
"""

import json
from pathlib import Path

import pytest
import yaml

from ray_apps.cluster import local_cluster
from ray_apps.retrain import STEPS, RetrainConfig, StepFailed, load_state, main
from training.config import DEFAULT_CONFIG

pytestmark = pytest.mark.integration


@pytest.fixture
def small_config(tmp_path):
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["walkforward"].update(train_days=250, valid_days=60, test_days=60, max_folds=2)
    raw["params"].update(num_boost_round=20)
    raw["tune"]["num_samples"] = 0
    p = tmp_path / "lgbm-small.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_retrain_idempotent_resumable_promotes(settings, small_config, monkeypatch):
    # the git revision is part of every training step's key; the lead may commit while this
    # runs, which would (correctly) invalidate them — pin it
    monkeypatch.setattr("training.registry.git_revision", lambda: "test-revision")
    cfg = RetrainConfig(config_path=small_config, tickers=("AAPL", "IBM", "MSFT"),
                        start="2009-01-01", end="2012-12-31")
    lines = []
    with local_cluster(settings, dashboard=False, num_cpus=2):
        first = main(cfg, settings, log=lines.append)
        assert first.ran == list(STEPS) and first.skipped == []
        reg = first.outputs["train"]["registered"]
        assert {n: v["alias"] for n, v in reg.items()} == {
            "stockray-lgbm-h5": "champion", "stockray-lgbmrank-h5": "champion"}
        report = json.loads(Path(first.outputs["evaluate"]["5"]["report"]["json"]).read_text())
        names = {r["name"] for r in report["comparison"]}
        assert {"lgbm_reg", "lgbm_rank", "regime_ensemble", "zero", "momentum",
                "reversal_1d", "reversal_5d", "always_up", "linear"} <= names
        assert all(r["n_seeds"] == 3 for r in report["comparison"] if r["kind"] == "model")
        assert first.outputs["promote"]["stockray-lgbm-h5"]["reason"] == \
            "no challenger to promote"

        again = main(cfg, settings, log=lines.append)  # unchanged data + code + config
        assert again.ran == [] and again.skipped == list(STEPS)

        # new training config; evaluation crashes once -> train is recorded, evaluate not
        cfg2 = RetrainConfig(**{**cfg.__dict__, "num_boost_round": 25})

        def crash(ctx):
            raise RuntimeError("simulated crash")

        with pytest.raises(StepFailed, match="evaluate"):
            main(cfg2, settings, log=lines.append, step_funcs={"evaluate": crash})
        st = load_state(settings)["steps"]
        assert st["train"]["status"] == "done" and st["evaluate"]["status"] == "failed"

        resumed = main(cfg2, settings, log=lines.append)
        assert resumed.skipped == ["ingest", "validate", "features", "train"]
        assert resumed.ran == ["evaluate", "promote"]
        new = resumed.outputs["train"]["registered"]["stockray-lgbm-h5"]
        assert new["version"] == "2" and new["alias"] == "challenger"
        decision = resumed.outputs["promote"]["stockray-lgbm-h5"]
        assert decision["challenger"] == "2" and "RankIC" in decision["reason"]

        # ASHA over the LightGBM space on the same cluster, 1-CPU trials
        from features.pipeline import FEATURE_NAMES
        from training.data import load_training_frame
        from training.lgbm import LgbmParams
        from training.tune import tune_lgbm

        frame = load_training_frame(settings.offline_dir)
        best, trials = tune_lgbm(
            frame, FEATURE_NAMES, horizon=5, base_params=LgbmParams(num_boost_round=15),
            search={"num_leaves": {"choice": [7, 15]},
                    "learning_rate": {"loguniform": [0.01, 0.1]}},
            num_samples=3, start="2009-01-01", end="2011-12-31", max_folds=2,
            grace_period=1, reduction_factor=2, storage_path=settings.ray_dir / "results")
        assert len(trials) == 3 and best.num_leaves in (7, 15)
        assert trials["rank_ic"].notna().all()
