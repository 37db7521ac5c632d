"""Bring your own universe: a synthetic universe with no index series, written as a CSV, goes
through `stockray up --file ... --once` (real Ray, Feast, MLflow, Serve gRPC) and a ticker gets
a served prediction with its explanation, called with the API token."""

import json
import math

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.pipeline import MARKET_FEATURES
from features.store import FeastOnlineReader
from ray_apps.cli import app
from ray_apps.train import TrainConfig
from ray_apps.up import UpConfig, main
from serving.client import PredictionClient, PredictionError
from serving.models import load_bundle
from training.lgbm import LgbmParams
from training.synthetic import make_market

pytestmark = pytest.mark.integration

SHORT = "SYN009"  # only its last 40 sessions: too short for the 50/200-day windows


def write_universe(path, n_tickers=10, n_days=260, start="2022-01-03", seed=11):
    """A user's CSV: Yahoo-style column names, one ticker with a short history, no index."""
    bars = make_market(n_tickers=n_tickers, n_days=n_days, start=start, seed=seed).bars
    bars = bars[(bars["ticker"] != SHORT)
                | (bars["ts"] >= bars["ts"].drop_duplicates().iloc[-40])]
    out = pd.DataFrame({"Symbol": bars["ticker"], "Date": bars["ts"].dt.strftime("%Y-%m-%d"),
                        "Open": bars["open"], "High": bars["high"], "Low": bars["low"],
                        "Close": bars["close"], "Adj Close": bars["adj_close"],
                        "Volume": bars["volume"]})
    out.to_csv(path, index=False)
    return path


def test_up_file_without_index_serves_explained_predictions(settings, tmp_path):
    csv = write_universe(tmp_path / "my_universe.csv")
    checks = {}

    def on_ready(ep):
        with PredictionClient(ep.grpc_target) as client:  # token from STOCKRAY_AUTH_DIR
            checks["resp"] = client.predict("SYN003", [1, 5, 20], explain=True, top_k=50)
            with pytest.raises(PredictionError) as e:
                client.predict(SHORT, [5])
            checks["short"] = e.value
        reader = FeastOnlineReader(str(settings.feast_dir))
        checks["row"] = reader.read(["SYN003"])["SYN003"]

    cfg = UpConfig(once=True, files=[csv],
                   train=TrainConfig(params=LgbmParams(num_boost_round=30)))
    res = main(cfg, settings, on_ready=on_ready)

    # the user's universe only: no embedded tickers, no index series stored
    assert res.features.tickers == [f"SYN{i:03d}" for i in range(10)]
    q = res.features.quality
    assert q["market_context"]["source"].startswith("derived from the universe")
    assert q["market_context"]["weighting"].startswith("cap-weighted")
    assert "out_of_range" in q and q["out_of_range"]["values"] >= 0
    # every ticker with enough history is served; the short one is not, with its reason
    assert SHORT not in res.servable and len(res.servable) == 9
    latest = json.loads((settings.reports_dir / "data_quality" / "latest.json").read_text())
    assert SHORT in latest["serving"]["not_servable"]

    resp = checks["resp"]
    assert [p.horizon for p in resp.predictions] == [1, 5, 20]
    for p in resp.predictions:
        bundle = load_bundle(settings.models_dir / f"h{p.horizon}")
        names = bundle.feature_names
        # market context derived from the universe is a real input, never a NaN column
        assert set(MARKET_FEATURES) <= set(names)
        fs = bundle.meta["extra"]["feature_set"]
        assert fs["kept"] == list(names) and not set(fs["dropped"]) & set(names)
        x = np.array([[checks["row"][n] for n in names]], dtype=np.float32)
        assert np.isfinite(x).all()
        sess = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
        want = float(sess.run(None, {"features": x})[0].reshape(-1)[0])
        assert p.predicted_return == pytest.approx(want, abs=1e-6)
        assert p.contributions and math.isfinite(p.base_value)
        total = p.base_value + sum(c.shap for c in p.contributions)
        assert total == pytest.approx(p.predicted_return, abs=1e-5)
    assert checks["short"].code.name == "FAILED_PRECONDITION"
    # the command's own sample: the first servable ticker, explained
    assert res.sample.startswith(res.servable[0]) and "top contributions" in res.sample


def test_up_file_cli_refuses_a_used_data_dir_and_index_without_file(settings, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["--data-dir", str(settings.data_dir), "up",
                              "--index-ticker", "SPY", "--once"])
    assert out.exit_code != 0 and "--file" in out.output
    lake = settings.bars_dir / "ticker=AAPL"
    lake.mkdir(parents=True)
    (lake / "bars.parquet").write_bytes(b"")  # a lake from an earlier run
    csv = write_universe(tmp_path / "u.csv", n_tickers=3, n_days=60)
    out = runner.invoke(app, ["--data-dir", str(settings.data_dir), "up", "--file", str(csv),
                              "--once"])
    assert out.exit_code == 2
    assert "fresh" in out.output and "--data-dir" in out.output


@pytest.mark.slow
def test_retrain_file_universe_with_data_derived_segments(settings, tmp_path, monkeypatch):
    """`stockray retrain --file` on one year of a universe without an index: segments come
    from the config's fractions, the walk-forward windows shrink to fit, the features missing
    in this universe are dropped, and every step runs."""
    import yaml

    from ray_apps.cluster import local_cluster
    from ray_apps.retrain import STEPS, RetrainConfig
    from ray_apps.retrain import main as retrain
    from training.config import DEFAULT_CONFIG

    monkeypatch.setattr("training.registry.git_revision", lambda: "test-revision")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["tune"]["num_samples"] = 0
    cfg_path = tmp_path / "lgbm.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    csv = write_universe(tmp_path / "u.csv", n_tickers=8, n_days=252)
    cfg = RetrainConfig(config_path=cfg_path, files=[csv], seeds=(0,), max_folds=2,
                        num_boost_round=20)
    with local_cluster(settings, dashboard=False, num_cpus=2):
        res = retrain(cfg, settings, log=print)
    assert res.ran == list(STEPS)
    v = res.outputs["validate"]
    assert v["index"] == "derived from the universe"
    assert sum(v["walkforward_days"]) < 252  # 756/126/126 scaled down to one year
    tr = res.outputs["train"]
    seg = tr["segments"]
    assert seg["train"][0] >= "2022-01-03" and seg["test"][1] <= "2022-12-30"
    assert "mkt_ret_1d" in tr["features"]["kept"]
    # arch's macro series end years before 2022: dropped, with the reason, not trained on
    assert tr["features"]["dropped"]["core_cpi_yoy"].startswith("NaN on every row")
    assert res.outputs["evaluate"]["5"]["verdict"]
