"""Report: mean ± std over seeds, NaN kept honest, self-contained HTML, JSON with nulls."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from training.evaluate import calibration_table
from training.report import RunResult, comparison_table, render_html, report_dict, write_report

DATES = pd.bdate_range("2024-01-01", periods=30, tz="UTC")


def _runs():
    eq = pd.Series(np.linspace(1.0, 1.1, 30), index=DATES)
    runs = [
        RunResult(
            "lgbm",
            "model",
            s,
            {"ic": v, "bt_sharpe": 2 * v},
            equity=eq * (1 + v),
            daily_ic=pd.Series(v, index=DATES),
            feature_importance=pd.Series({"r1": 10.0, "r5": 3.0 + s}),
            calibration=calibration_table(np.arange(50.0), np.arange(50.0), 5),
        )
        for s, v in zip((0, 1, 2), (0.01, 0.02, 0.06), strict=True)
    ]
    runs.append(RunResult("always_up", "baseline", None, {"ic": float("nan"), "bt_sharpe": 0.0}))
    runs.append(RunResult("momentum", "baseline", None, {"ic": -0.01, "bt_sharpe": -0.3}))
    return runs


def test_comparison_table_mean_std_over_seeds():
    t = comparison_table([_runs()[3], *_runs()[:3], _runs()[4]], metrics=("ic", "bt_sharpe"))
    assert list(t.index) == [("model", "lgbm"), ("baseline", "always_up"), ("baseline", "momentum")]
    row = t.loc[("model", "lgbm")]
    assert row["n_seeds"] == 3
    assert row["ic_mean"] == pytest.approx(0.03)
    assert row["ic_std"] == pytest.approx(math.sqrt((0.02**2 + 0.01**2 + 0.03**2) / 2))
    assert row["bt_sharpe_mean"] == pytest.approx(0.06)
    assert math.isnan(t.loc[("baseline", "always_up"), "ic_mean"])  # undefined, not 0
    assert math.isnan(t.loc[("baseline", "momentum"), "ic_std"])  # one run: no spread


def test_report_json_and_html(tmp_path):
    paths = write_report(_runs(), tmp_path / "rep", title="unit <test>", meta={"horizon": 5})
    data = json.loads(paths["json"].read_text())
    assert data["meta"] == {"horizon": 5}
    cmp = {r["name"]: r for r in data["comparison"]}
    assert cmp["always_up"]["ic_mean"] is None  # NaN -> null, never a fake number
    assert cmp["lgbm"]["ic_mean"] == pytest.approx(0.03)
    assert len(data["runs"]) == 5 and data["runs"][0]["equity"]["values"][0] == 1.01
    page = paths["html"].read_text()
    assert "unit &lt;test&gt;" in page and "0.0300 ± 0.0265" in page
    for div in ("fig-equity", "fig-ic", "fig-importance", "fig-calibration"):
        assert div in page
    # plotly.js is embedded exactly once and nothing is fetched from a CDN
    assert page.count("plotly.js v") >= 1 and '<script src="http' not in page
    assert len(page) > 1_000_000


def test_report_without_curves_and_bad_kind():
    runs = [RunResult("zero", "baseline", None, {"ic": float("nan")})]
    page = render_html(runs)
    assert "fig-equity" not in page and "NaN" in page
    assert report_dict(runs)["runs"][0]["equity"] is None
    with pytest.raises(ValueError, match="kind"):
        RunResult("x", "champion", 0, {})
    with pytest.raises(ValueError, match="no runs"):
        comparison_table([])


def test_report_end_to_end_on_synthetic_market(tmp_path):
    """synthetic bars -> walk-forward folds -> baselines + oracle -> metrics -> report."""
    from training.baselines import baseline_predictions
    from training.evaluate import backtest, daily_ic, evaluate_predictions
    from training.splits import walk_forward
    from training.synthetic import make_market

    h = 5
    panel = make_market(n_tickers=30, n_days=300, seed=5).panel()
    panel = panel.join(baseline_predictions(panel, h))
    y = f"fwd_ret_{h}d"
    folds = walk_forward(panel["ts"], train_days=120, valid_days=40, test_days=40, horizon=h)
    runs = []
    for name, kind in (("oracle_5d", "model"), ("reversal_1d", "baseline"), ("zero", "baseline")):
        for fold in folds:  # folds play the role of seeds here
            test = panel[fold.test_mask(panel) & panel[y].notna().to_numpy()]
            m = evaluate_predictions(test, name, y, h, cost_bps=5.0)
            runs.append(
                RunResult(
                    name,
                    kind,
                    fold.index,
                    m,
                    equity=backtest(test, name, y, horizon=h, cost_bps=5.0).equity,
                    daily_ic=daily_ic(test[name], test[y], test["ts"]),
                )
            )
    table = comparison_table(runs)
    assert table.loc[("model", "oracle_5d"), "n_seeds"] == len(folds) == 3
    assert table.loc[("model", "oracle_5d"), "ic_mean"] > 0.05
    # the 1-day reversal baseline sees the same planted signal through raw prices
    assert table.loc[("baseline", "reversal_1d"), "ic_mean"] > 0.03
    assert math.isnan(table.loc[("baseline", "zero"), "ic_mean"])
    paths = write_report(runs, tmp_path, meta={"horizon": h, "folds": len(folds)})
    assert paths["html"].stat().st_size > 1_000_000
