"""`stockray sentiment train --tune` on a real local Ray: Ray Tune trials over lr / epochs /
max_len, then a TorchTrainer fit of the best, registered as champion (slow: ~minutes)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_cli_train_with_tune(settings):
    from ray_apps.cli import app

    r = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "sentiment", "train",
                                 "--tune", "--tune-samples", "2", "--seeds", "0",
                                 "--train-limit", "128", "--max-len", "32"])
    assert r.exit_code == 0, r.output
    assert "tfidf_logreg" in r.output and "alias champion" in r.output
    report = json.loads((settings.reports_dir / "sentiment" / "report.json").read_text())
    assert len(report["tune_trials"]) == 2
    assert all(t["val_macro_f1"] is not None for t in report["tune_trials"])
    assert report["meta"]["config"]["epochs"] in (3, 4, 5)
    assert (settings.models_dir / "sentiment" / "bundle.json").is_file()
