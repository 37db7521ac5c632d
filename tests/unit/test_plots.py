"""Report figures: one line per model (mean over seeds + band), baselines dashed, drawdown,
smoothed and cumulative IC, aggregated importances, calibration only for return forecasts and
deciles for rank scores. Checked on the figures' traces, not on HTML text."""

import numpy as np
import pandas as pd
import pytest

from training import plots
from training.evaluate import calibration_table, market_wide_features
from training.report import RunResult, report_dict, write_report

DATES = pd.bdate_range("2021-01-01", periods=200, tz="UTC")


def _runs() -> list[RunResult]:
    rng = np.random.default_rng(0)
    runs = []
    for name, output, scale in (("lgbm_reg", "return", 0.01), ("lgbm_rank", "score", 1.5)):
        for seed in (0, 1, 2):
            eq = pd.Series(np.cumprod(1 + rng.normal(0.0005, 0.01, len(DATES))), index=DATES)
            pred = rng.normal(0, scale, 500)
            target = 0.3 * pred / scale * 0.01 + rng.normal(0, 0.01, 500)
            runs.append(RunResult(
                name, "model", seed, {"rank_ic": 0.02 + 0.01 * seed}, equity=eq,
                daily_ic=pd.Series(rng.normal(0.02, 0.1, len(DATES)), index=DATES),
                feature_importance=pd.Series(rng.uniform(1, 10, 30),
                                             index=[f"f{i}" for i in range(30)]),
                calibration=calibration_table(pred, target), output=output))
    for name in ("momentum", "reversal"):
        runs.append(RunResult(
            name, "baseline", None, {"rank_ic": 0.0},
            equity=pd.Series(np.cumprod(1 + rng.normal(0, 0.01, len(DATES))), index=DATES),
            daily_ic=pd.Series(rng.normal(0, 0.1, len(DATES)), index=DATES)))
    return runs


def _data():
    return report_dict(_runs())["runs"]


def _not_constant(trace) -> bool:
    y = np.asarray(trace.y if trace.orientation != "h" else trace.x, float)
    y = y[np.isfinite(y)]
    return len(y) > 1 and np.ptp(y) > 0


def test_equity_one_line_per_model_with_band_and_dashed_baselines():
    fig = plots.equity_figure(_data())
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.legendgroup for t in lines] == ["lgbm_reg", "lgbm_rank", "momentum", "reversal"]
    assert [t.line.dash for t in lines] == ["solid", "solid", "dash", "dash"]
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 2  # one seed band per model, none for a deterministic baseline
    drawdowns = [t for t in fig.data if t.name.endswith("drawdown")]
    assert len(drawdowns) == 4 and all(t.yaxis == "y2" for t in drawdowns)
    assert all(np.nanmax(np.asarray(t.y, float)) <= 0.0 for t in drawdowns)
    assert all(_not_constant(t) for t in lines + drawdowns)
    assert fig.layout.yaxis2.title.text == "drawdown"
    # 15+ tangled lines before: now 4 named lines for 2 models x 3 seeds + 2 baselines
    assert len(lines) == 4


def test_ic_smoothed_and_cumulative():
    fig = plots.ic_figure(_data(), window=63)
    rolling = [t for t in fig.data if t.yaxis == "y"]
    cumul = [t for t in fig.data if t.yaxis == "y2"]
    assert len(rolling) == len(cumul) == 4
    assert all(_not_constant(t) for t in rolling + cumul)
    y = np.asarray(rolling[0].y, float)
    assert np.isnan(y[:20]).all()  # min_periods = window // 3: no noisy early points
    raw = pd.concat([plots._series(r["daily_ic"]) for r in _data()[:3]], axis=1).mean(axis=1)
    assert np.asarray(cumul[0].y, float)[-1] == pytest.approx(raw.sum())


def test_importance_top20_aggregated_with_error_bars():
    fig = plots.importance_figure(_data(), top=20)
    assert len(fig.data) == 2  # one panel per model, not one bar set per seed
    for t in fig.data:
        assert len(t.y) == 20 and t.error_x.visible
        x = np.asarray(t.x, float)
        assert np.all(np.diff(x) >= 0)  # largest at the top of a horizontal chart
        assert np.all(np.asarray(t.error_x.array, float) > 0)
    tab = plots.importance_table(_data(), top=20)["lgbm_reg"]
    assert tab["n"].iloc[0] == 3 and tab["mean"].is_monotonic_decreasing


def test_calibration_only_for_returns_and_deciles_for_scores():
    cal = plots.calibration_figure(_data())
    names = [t.name for t in cal.data]
    assert names == ["lgbm_reg", "ideal"]  # the rank model's +-1.5 scores are not on this axis
    x = np.asarray(cal.data[0].x, float)
    assert np.abs(x).max() < 0.1
    dec = plots.decile_figure(_data())
    assert [t.name for t in dec.data] == ["lgbm_rank"]
    assert list(dec.data[0].x) == list(range(1, 11))
    y = np.asarray(dec.data[0].y, float)
    assert y[-1] > y[0]  # the planted ranking shows as a rising decile chart


def test_figures_keys_and_report_sections(tmp_path):
    assert [k for k, _ in plots.figures(_data())] == ["equity", "ic", "importance",
                                                      "calibration", "deciles"]
    page = write_report(_runs(), tmp_path, title="t")["html"].read_text()
    for key in ("fig-equity", "fig-ic", "fig-importance", "fig-calibration", "fig-deciles"):
        assert key in page


def test_market_timing_note_from_data():
    frame = pd.DataFrame({
        "ts": np.repeat(DATES[:50], 4), "ticker": np.tile(list("ABCD"), 50),
        "macro": np.repeat(np.arange(50.0), 4),            # same for every ticker on a date
        "stock": np.arange(200.0),                          # differs across tickers
    })
    assert market_wide_features(frame, ["macro", "stock"]) == ["macro"]
    runs = [RunResult("lgbm", "model", s, {}, feature_importance=pd.Series(
        {"macro": 8.0, "stock": 2.0})) for s in (0, 1)]
    data = report_dict(runs)["runs"]
    note = plots.market_timing_note(data, ["macro"])
    assert note and "lgbm" in note and "macro" in note and "80%" in note
    assert plots.market_timing_note(data, ["stock"]) is None


def test_run_result_output_validated():
    with pytest.raises(ValueError, match="output"):
        RunResult("x", "model", 0, {}, output="probability")
