"""MLflow tracking and registry: one run and one registered model per horizon.

Registered names are ``stockray-lgbm-h{h}``; each version's run holds the LightGBM model
(MLflow's ``lightgbm`` flavor) and the serving bundle (ONNX + booster + metadata) under the
artifact path ``bundle/``. The newest version trained by ``stockray train`` gets the alias
``champion`` (the promotion rule that compares challenger and champion is a later step).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from training.export import export_bundle, write_bundle_meta
from training.lgbm import HorizonResult

REGISTERED_NAME = "stockray-lgbm-h{h}"
BUNDLE_ARTIFACT_PATH = "bundle"


@dataclass
class RegisteredVersion:
    """Where one horizon's model ended up."""

    name: str
    version: str
    run_id: str
    horizon: int
    bundle_dir: Path


def git_revision() -> str:
    """The code's git commit, or 'unknown' outside a checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def ensure_experiment(tracking_uri: str, artifact_uri: str, name: str) -> str:
    """Create the experiment (artifacts under ``artifact_uri``) if missing; returns its id."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=f"{artifact_uri}/{name}")


def register_horizon(result: HorizonResult, *, tracking_uri: str, experiment_id: str,
                     bundle_root: Path, params: dict, tags: dict | None = None,
                     alias: str = "champion") -> RegisteredVersion:
    """Log one horizon's run, register its model, set ``alias``, and export its bundle.

    The local copy of the bundle (``bundle_root/h{h}``) is what the serving graph loads when
    it is pointed at bundle directories; the registry copy is what it loads by alias.
    """
    import lightgbm as lgb
    import mlflow

    h = result.horizon
    name = REGISTERED_NAME.format(h=h)
    booster = lgb.Booster(model_str=result.booster_text)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"lgbm-h{h}") as run:
        mlflow.set_tags({"horizon": h, "git_revision": git_revision(), **(tags or {})})
        mlflow.log_params({**params, "horizon": h, "n_features": len(result.feature_names)})
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if v == v})  # drop NaN
        mlflow.log_dict(result.split, "split.json")
        mlflow.log_dict({"feature_names": result.feature_names}, "features.json")
        # Explicit requirements: inference would otherwise add torch to a LightGBM model.
        logged = mlflow.lightgbm.log_model(booster, name="model",
                                           pip_requirements=[f"lightgbm=={lgb.__version__}"])
        with tempfile.TemporaryDirectory() as tmp:
            staged = export_bundle(booster, result.feature_names, Path(tmp) / "bundle",
                                   model_name=name, model_version="unregistered", horizon=h,
                                   extra={"metrics": result.metrics, "run_id": run.info.run_id})
            mlflow.log_artifacts(str(staged), BUNDLE_ARTIFACT_PATH)
        run_id = run.info.run_id
    mv = mlflow.register_model(logged.model_uri, name)
    client.set_registered_model_alias(name, alias, mv.version)
    local = export_bundle(booster, result.feature_names, bundle_root / f"h{h}",
                          model_name=name, model_version=str(mv.version), horizon=h,
                          extra={"metrics": result.metrics, "run_id": run_id})
    write_bundle_meta(local, model_version=str(mv.version))
    return RegisteredVersion(name=name, version=str(mv.version), run_id=run_id, horizon=h,
                             bundle_dir=local)
