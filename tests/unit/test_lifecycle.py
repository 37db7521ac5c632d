"""Model lifecycle on a real MLflow (sqlite, tmp dir), no Ray: first version champion, later
ones challenger, the promotion rule both ways, forced promotion, rollback, listing, cards."""

import json

import mlflow
import pytest
from typer.testing import CliRunner

from features.pipeline import FEATURE_NAMES
from tests.training_fixtures import planted_frame
from training.lgbm import LgbmParams, fit_horizon
from training.registry import (
    CARD_FILE,
    HISTORY_TAG,
    ensure_experiment,
    list_versions,
    promote,
    promotion_rule,
    record_walkforward,
    register_horizon,
    registered_name,
    rollback,
)


def test_promotion_rule_both_ways():
    ok, why = promotion_rule([0.05, 0.06, 0.04], [0.03, 0.03, 0.03], margin=0.005, min_seeds=3)
    assert ok and "beats" in why
    ok, why = promotion_rule([0.032, 0.033, 0.034], [0.03] * 3, margin=0.005, min_seeds=3)
    assert not ok and "< margin" in why
    ok, why = promotion_rule([0.1, 0.1], [0.0] * 3, margin=0.005, min_seeds=3)
    assert not ok and "needs 3" in why
    ok, why = promotion_rule([0.01] * 3, None, margin=0.005, min_seeds=3)
    assert ok and "counts as 0" in why
    ok, _ = promotion_rule([-0.01] * 3, None, margin=0.005, min_seeds=3)
    assert not ok


@pytest.fixture(scope="module")
def result():
    return fit_horizon(planted_frame(n_tickers=10, n_days=300), FEATURE_NAMES, 5,
                       LgbmParams(num_boost_round=10))


def test_lifecycle_promote_rollback(settings, result):
    uri = settings.tracking_uri
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    exp = ensure_experiment(uri, settings.artifact_uri, "t")
    kw = {"tracking_uri": uri, "experiment_id": exp, "bundle_root": settings.models_dir,
          "params": {"num_boost_round": 10}, "data_hash": "d" * 64}
    name = registered_name("lgbm", 5)
    v1 = register_horizon(result, **kw)
    v2 = register_horizon(result, **kw)
    assert (v1.alias, v2.alias) == ("champion", "challenger")
    assert (settings.models_dir / "h5" / "bundle.json").exists()  # mirrors the champion
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(v1.run_id)
    assert run.data.tags["data_snapshot_sha256"] == "d" * 64 and run.data.tags["git_revision"]
    card = mlflow.artifacts.load_text(f"runs:/{v1.run_id}/{CARD_FILE}")
    for heading in ("## Intended use", "## Data", "## Metrics vs baselines", "## Limits"):
        assert heading in card

    # challenger not evaluated: the rule refuses
    d = promote(uri, name, margin=0.005, min_seeds=3)
    assert not d.promoted and "needs 3" in d.reason
    # evaluated but not better than the champion by the margin: refused
    record_walkforward(uri, name, v1.version, rank_ic_seeds=[0.03, 0.03, 0.03],
                       metrics={"wf_rank_ic_mean": 0.03})
    record_walkforward(uri, name, v2.version, rank_ic_seeds=[0.031, 0.032, 0.033],
                       metrics={"wf_rank_ic_mean": 0.032}, card="# card v2\n")
    d = promote(uri, name, margin=0.005, min_seeds=3)
    assert not d.promoted and d.champion == "1" and d.challenger == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert mlflow.artifacts.load_text(f"runs:/{v2.run_id}/{CARD_FILE}") == "# card v2\n"
    # better by the margin: promoted, challenger alias gone, history extended
    record_walkforward(uri, name, v2.version, rank_ic_seeds=[0.05, 0.04, 0.045],
                       metrics={"wf_rank_ic_mean": 0.045})
    d = promote(uri, name, margin=0.005, min_seeds=3, bundle_root=settings.models_dir)
    assert d.promoted, d.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    rm = client.get_registered_model(name)
    assert "challenger" not in rm.aliases and json.loads(rm.tags[HISTORY_TAG]) == ["1", "2"]
    meta = json.loads((settings.models_dir / "h5" / "bundle.json").read_text())
    assert meta["model_version"] == "2"

    # rollback: champion back to v1, recorded as tags; a second rollback has nowhere to go
    assert rollback(uri, name, bundle_root=settings.models_dir) == ("2", "1")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    rm = client.get_registered_model(name)
    assert rm.tags["last_rollback"].startswith("v2 -> v1")
    assert "rolled_back_at" in client.get_model_version(name, "2").tags
    assert json.loads((settings.models_dir / "h5" / "bundle.json").read_text())[
        "model_version"] == "1"
    with pytest.raises(ValueError, match="no previous champion"):
        rollback(uri, name)

    # a third version is a challenger again; --force promotes it against the rule
    v3 = register_horizon(result, **kw)
    assert v3.alias == "challenger"
    from ray_apps.cli import app

    cli = ["--data-dir", str(settings.data_dir)]
    out = CliRunner().invoke(app, [*cli, "promote", "--horizon", "5", "--family", "lgbm"])
    assert out.exit_code == 0 and "not promoted" in out.output, out.output
    out = CliRunner().invoke(app, [*cli, "promote", "--horizon", "5", "--family", "lgbm",
                                   "--force"])
    assert out.exit_code == 0 and "PROMOTED" in out.output and "forced" in out.output
    out = CliRunner().invoke(app, [*cli, "models"])
    assert out.exit_code == 0 and "stockray-lgbm-h5" in out.output
    assert "champion" in out.output and "0.0450" in out.output  # v2's wf RankIC
    out = CliRunner().invoke(app, [*cli, "rollback", "--horizon", "5"])
    assert out.exit_code == 0 and "from v3 to v1" in out.output, out.output

    rows = {(v.name, v.version): v for v in list_versions(uri)}
    assert rows[(name, "1")].aliases == ["champion"]
    assert rows[(name, "2")].metrics["wf_rank_ic_mean"] == pytest.approx(0.045)


def test_first_version_of_each_family_is_its_own_champion(settings, result):
    uri = settings.tracking_uri
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    exp = ensure_experiment(uri, settings.artifact_uri, "t")
    rv = register_horizon(result, tracking_uri=uri, experiment_id=exp,
                          bundle_root=settings.models_dir, params={}, family="lgbmrank")
    assert rv.name == "stockray-lgbmrank-h5" and rv.alias == "champion"
    assert not (settings.models_dir / "h5").exists()  # only the served family is mirrored
    with pytest.raises(ValueError, match="unknown model family"):
        registered_name("xgb", 5)
