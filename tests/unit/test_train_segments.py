"""`stockray train`'s LightGBM path uses the experiment config's segments: it fits on the train
segment only (purged before the valid start), validates on exactly the valid segment, never
touches the test segment, and says so in the result, the model card and the terminal."""

import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES
from tests.training_fixtures import planted_frame
from training import lgbm
from training.config import load_experiment
from training.lgbm import LgbmParams, fit_horizon
from training.lifecycle.train import TrainResult, describe
from training.registry import RegisteredVersion, _lgbm_holdout_note
from training.segments import SegmentFractions
from training.splits import label_end, segment_fold

H = 5


@pytest.fixture(scope="module")
def frame():
    return planted_frame(n_tickers=8, n_days=320)


@pytest.fixture(scope="module")
def run(frame):
    """fit_horizon with the shipped config's fraction segments; records what `fit` saw."""
    seen = []
    real_fit = lgbm.LgbmModel.fit

    def spy(self, dataset):
        seen.append(dataset.rows("train")["ts"].copy())
        return real_fit(self, dataset)

    seg = load_experiment().segments.resolve(frame["ts"], gap=H)
    mp = pytest.MonkeyPatch()
    mp.setattr(lgbm.LgbmModel, "fit", spy)
    try:
        res = fit_horizon(frame, FEATURE_NAMES, H, LgbmParams(num_boost_round=10),
                          segments=seg)
    finally:
        mp.undo()
    return seg, res, seen


def _day(v) -> pd.Timestamp:
    return pd.Timestamp(v).tz_localize(None).normalize()


def test_fit_uses_train_segment_only_and_validates_on_the_valid_segment(frame, run):
    seg, res, seen = run
    assert isinstance(load_experiment().segments, SegmentFractions)  # data-derived dates
    (fit_ts,) = seen
    fit_days = pd.DatetimeIndex(fit_ts.map(_day))
    train_lo, train_hi = (pd.Timestamp(v) for v in seg["train"])
    valid_lo, valid_hi = (pd.Timestamp(v) for v in seg["valid"])
    test_lo = pd.Timestamp(seg["test"][0])
    # no fitted row outside the train segment; in particular none from valid or test
    assert fit_days.min() >= train_lo and fit_days.max() <= train_hi
    assert not (fit_days >= test_lo).any()
    # purge: the last fitted date is >= H trading dates before the valid start
    dates = pd.DatetimeIndex(sorted({_day(t) for t in frame["ts"]}))
    assert dates.searchsorted(valid_lo) - dates.searchsorted(fit_days.max()) > H
    # validation dates are the valid segment's trading dates, not the last 20% of dates
    in_valid = dates[(dates >= valid_lo) & (dates <= valid_hi)]
    assert _day(res.split["valid"]["start"]) == in_valid[0]
    assert _day(res.split["valid"]["end"]) == in_valid[-1]
    assert res.split["valid"]["n_dates"] == len(in_valid)
    assert _day(res.split["test"]["start"]) == test_lo  # held out, recorded
    assert res.split["source"] == "config segments"
    assert res.split["segments"] == {k: list(v) for k, v in seg.items()}
    assert res.metrics["n_train"] == len(fit_ts)
    # the old default would have validated up to the last date, i.e. on the test segment
    assert _day(res.split["valid"]["end"]) < test_lo < dates[-1]


def test_valid_rows_purged_against_the_test_start(frame):
    seg = load_experiment().segments.resolve(frame["ts"], gap=H)
    fold = segment_fold(frame["ts"], seg, horizon=H)
    valid = frame[fold.valid_mask(frame)]
    assert len(valid) and not fold.test_mask(frame)[fold.valid_mask(frame)].any()
    reach = label_end(frame, H)[fold.valid_mask(frame)]
    assert (reach < fold.test.start).all()


def test_segment_fold_errors_name_the_segment(frame):
    with pytest.raises(ValueError, match="valid segment"):
        segment_fold(frame["ts"], {"train": ["2018-01-01", "2018-12-31"],
                                   "valid": ["2030-01-01", "2030-02-01"],
                                   "test": ["2031-01-01", "2031-02-01"]}, horizon=H)


def test_card_and_terminal_say_the_real_split(run):
    seg, res, _ = run
    note = _lgbm_holdout_note(res.split)
    assert f"valid {seg['valid'][0]}..{seg['valid'][1]}" in note and "20%" not in note
    assert _lgbm_holdout_note({"source": "valid_frac", "valid_frac": 0.3}).startswith(
        "Hold-out (last 30% of dates")
    rv = RegisteredVersion(name="stockray-lgbm-h5", version="1", run_id="r", horizon=H,
                           bundle_dir=None)
    text = describe(TrainResult(registered={H: rv}, metrics={H: res.metrics},
                                split={"source": "config segments", "segments": res.split[
                                    "segments"]}))
    assert f"valid {seg['valid'][0]}..{seg['valid'][1]}" in text
    assert f"test {seg['test'][0]}..{seg['test'][1]} untouched" in text
    assert "last 20%" not in text


def test_registered_card_states_the_config_segments(settings, run):
    import mlflow

    from training.registry import CARD_FILE, ensure_experiment, register_horizon

    seg, res, _ = run
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    exp = ensure_experiment(settings.tracking_uri, settings.artifact_uri, "t")
    rv = register_horizon(res, tracking_uri=settings.tracking_uri, experiment_id=exp,
                          bundle_root=settings.models_dir, params={})
    card = mlflow.artifacts.load_text(f"runs:/{rv.run_id}/{CARD_FILE}")
    assert f"valid {seg['valid'][0]}..{seg['valid'][1]}" in card
    assert f"test {seg['test'][0]}..{seg['test'][1]}" in card
    assert "last 20% of dates" not in card
