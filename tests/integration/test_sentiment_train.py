"""A tiny sentiment run end to end on a real local Ray: TorchTrainer fine-tune (1 epoch, 96
sentences, max_len 32), baselines, report, ONNX bundle, MLflow registry alias; then the
bundle's scorer and the CLI. The full run is `make sentiment` / the slow test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.sentiment_models import InvalidTextError, SentimentScorer
from tests.ray_fixtures import private_ray
from training.sentiment import MODEL_NAME, SentimentConfig
from training.sentiment_export import PARITY_TEXTS
from training.sentiment_run import SentimentRunConfig, run_sentiment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sent")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    run = SentimentRunConfig(
        model=SentimentConfig(epochs=1, max_len=32, train_limit=96, batch_size=32), seeds=(0,))
    with private_ray(prefix="srsent-"):
        report = run_sentiment(run, out_dir=root / "report", storage_path=root / "ray",
                               bundle_dir=root / "models" / "sentiment", tracking_uri=tracking,
                               artifact_uri=(root / "artifacts").as_uri())
    return root, tracking, report


def test_report_compares_with_baselines(tiny_run):
    root, _, report = tiny_run
    assert set(report["summary"]) == {"encoder", "majority", "lexicon_fair", "lexicon_leaky",
                                      "tfidf_logreg"}
    for name, row in report["summary"].items():
        assert 0.0 <= row["accuracy_mean"] <= 1.0, name
        assert np.asarray(row["confusion_sum"]).sum() == report["meta"]["test_rows"]
    saved = json.loads((root / "report" / "report.json").read_text())
    assert saved["meta"]["corpus_rows"] >= 1000
    page = (root / "report" / "report.html").read_text()
    assert "tfidf_logreg" in page and "LEAKY" in page
    hist = report["per_seed"]["encoder"][0]
    assert hist["train_s"] > 0 and hist["epochs_run"] == 1 and hist["best_epoch"] == 0


def test_bundle_parity_and_registry(tiny_run):
    import mlflow

    root, tracking, report = tiny_run
    b = report["bundle"]
    assert b["onnx_parity_max_abs_prob"] <= 1e-3
    assert b["onnx_batch_vs_single_max_abs_prob"] <= 1e-5  # fp32: batch-independent
    assert b["int8_quantization"].startswith("dynamic") and b["eval_rows"] == report["meta"][
        "test_rows"]
    assert b["serve_variant"] in ("int8", "fp32") and -1 < b["int8_accuracy_delta"] < 1
    client = mlflow.MlflowClient(tracking_uri=tracking)
    mv = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(mv.version) == report["meta"]["model_version"] == "1"
    assert "Model card: stockray-sentiment v1" in mv.description
    meta = json.loads((root / "models" / "sentiment" / "bundle.json").read_text())
    assert meta["model_version"] == "1" and meta["labels"] == ["negative", "neutral", "positive"]


def test_scorer_is_batch_independent_and_checks_input(tiny_run):
    root = tiny_run[0]
    for variant in ("fp32", "int8"):
        s = SentimentScorer.from_bundle(root / "models" / "sentiment", variant=variant)
        batch = s.score(PARITY_TEXTS)
        one = np.vstack([s.score([t]) for t in PARITY_TEXTS])
        assert batch.shape == (len(PARITY_TEXTS), 3)
        np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(batch, one, atol=1e-3)
        with pytest.raises(InvalidTextError, match="empty"):
            s.score(["ok", "  "])
        with pytest.raises(InvalidTextError, match="limit"):
            s.score(["x" * 5000])
    # auto: a lone sentence is int8 (one per call), a batch fp32 in length-sorted groups
    bundle = root / "models" / "sentiment"
    auto, f32, i8 = (SentimentScorer.from_bundle(bundle, variant=v) for v in ("auto", "fp32", "int8"))
    assert (auto.variant_for(1), auto.variant_for(2)) == ("int8", "fp32")
    np.testing.assert_array_equal(auto.score(PARITY_TEXTS[:1]), i8.score(PARITY_TEXTS[:1]))
    np.testing.assert_array_equal(auto.score(PARITY_TEXTS), f32.score(PARITY_TEXTS))


def test_cli_scores_a_sentence_and_a_csv(tiny_run, tmp_path):
    from ray_apps.cli import app

    root = tiny_run[0]
    bundle = str(root / "models" / "sentiment")
    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "sentiment", "score",
                                 "Revenue beat estimates.", "--bundle", bundle, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    want = SentimentScorer.from_bundle(bundle).classify(["Revenue beat estimates."])[0]
    assert got["label"] == want[0]
    assert got["probabilities"] == pytest.approx(want[1], abs=1e-6)

    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "headline": ["Guidance was cut.", "", "Shares rose."]}
                 ).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "sentiment", "score", "--input",
                                 str(src), "--text-column", "headline", "--out", str(out),
                                 "--bundle", bundle])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["id", "headline", "label", "p_negative", "p_neutral",
                                "p_positive"]
    assert df.loc[1, "label"] == ""  # empty text: kept, not scored
    p = SentimentScorer.from_bundle(bundle).score(["Guidance was cut.", "Shares rose."])
    np.testing.assert_allclose(df.loc[[0, 2], ["p_negative", "p_neutral", "p_positive"]]
                               .astype(float).to_numpy(), p, atol=1e-6)

    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "sentiment", "score", "--input",
                                 str(src), "--text-column", "nope", "--out", str(out),
                                 "--bundle", bundle])
    assert r.exit_code == 2 and "no column 'nope'" in r.output
