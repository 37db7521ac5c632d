"""Walk-forward and single time splits: segments, purge gap, per-ticker purge."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from training.splits import (
    Fold,
    label_end,
    purge_mask,
    time_split,
    trading_dates,
    walk_forward,
)

DATES = pd.bdate_range("2021-01-04", periods=40, tz="UTC")


def _panel(tickers=("A", "B", "C"), dates=DATES, seed=0):
    f = pd.DataFrame({"ticker": np.repeat(tickers, len(dates)), "ts": np.tile(dates, len(tickers))})
    f["x"] = np.arange(len(f), dtype=float)
    return f.sample(frac=1.0, random_state=seed)  # row order must not matter


def test_trading_dates_unique_sorted():
    d = trading_dates(_panel()["ts"])
    assert list(d) == list(DATES)


def test_time_split_purges_exactly_the_overlapping_rows():
    f = _panel()
    fold = time_split(f["ts"], horizon=5, valid_start=DATES[30])
    assert fold.valid.start == DATES[30] and fold.valid.end == DATES[-1]
    assert fold.train.start == DATES[0] and fold.train.end == DATES[24]
    tr = fold.train_mask(f)
    # a row at date index i keeps its label out of validation iff i + 5 < 30
    idx = DATES.get_indexer(f["ts"])
    np.testing.assert_array_equal(tr, idx + 5 < 30)
    assert tr.sum() == 3 * 25
    assert fold.valid_mask(f).sum() == 3 * 10
    # every kept training label ends strictly before validation
    assert (label_end(f, 5)[tr] < fold.valid.start).all()


def test_purge_uses_the_tickers_own_rows_when_a_date_is_missing():
    f = _panel()
    f = f[~((f["ticker"] == "C") & (f["ts"] == DATES[27]))]  # C halted one day
    fold = time_split(f["ts"], horizon=5, valid_start=DATES[30])
    train = f[fold.train_mask(f)]
    # C's row at date 24 has rows 25, 26, 28, 29, 30 ahead: its label ends in validation
    assert set(train.loc[train["ts"] == DATES[24], "ticker"]) == {"A", "B"}
    assert set(train.loc[train["ts"] == DATES[23], "ticker"]) == {"A", "B", "C"}
    assert len(train) == 3 * 25 - 1


def test_label_end_is_nat_beyond_the_data():
    f = _panel()
    e = label_end(f, 5)
    idx = DATES.get_indexer(f["ts"])
    assert e[idx >= 35].isna().all()
    assert (e[idx < 35].to_numpy() == DATES[idx[idx < 35] + 5].to_numpy()).all()
    assert not purge_mask(f, 5, DATES[39])[idx >= 35].any()


def test_embargo_defaults_to_horizon_may_grow_never_shrink():
    assert time_split(DATES, horizon=3, valid_frac=0.25).embargo == 3
    fold = time_split(DATES, horizon=3, valid_start=DATES[30], embargo=8)
    assert fold.train.end == DATES[21]  # 8 empty dates: 22..29
    with pytest.raises(ValueError, match="embargo"):
        time_split(DATES, horizon=5, valid_frac=0.25, embargo=2)


def test_time_split_valid_frac_and_errors():
    fold = time_split(DATES, horizon=1, valid_frac=0.25)
    assert fold.valid.n_dates == 10 and fold.train.n_dates == 29
    with pytest.raises(ValueError, match="exactly one"):
        time_split(DATES, horizon=1)
    with pytest.raises(ValueError, match="empty"):
        time_split(DATES, horizon=5, valid_start=DATES[3])


def test_walk_forward_expanding_segments():
    d = pd.bdate_range("2020-01-01", periods=100, tz="UTC")
    folds = walk_forward(d, train_days=40, valid_days=10, test_days=10, horizon=5)
    assert len(folds) == 4  # test of fold k ends at index 69 + 10k <= 99
    for k, f in enumerate(folds):
        assert f.train.start == d[0] and f.train.end == d[39 + 10 * k]
        assert (f.valid.start, f.valid.end) == (d[45 + 10 * k], d[54 + 10 * k])
        assert (f.test.start, f.test.end) == (d[60 + 10 * k], d[69 + 10 * k])
    # test segments tile with no overlap
    assert all(a.test.end < b.test.start for a, b in itertools.pairwise(folds))


def test_walk_forward_rolling_and_first_valid_start():
    d = pd.bdate_range("2020-01-01", periods=100, tz="UTC")
    folds = walk_forward(
        d, train_days=40, valid_days=10, horizon=2, expanding=False, step_days=20, max_folds=2
    )
    assert [(f.train.start, f.train.end) for f in folds] == [(d[0], d[39]), (d[20], d[59])]
    assert folds[1].valid.start == d[62] and folds[1].test is None
    f0 = walk_forward(d, first_valid_start=d[50], valid_days=10, horizon=4)[0]
    assert f0.train.end == d[45] and f0.valid.start == d[50]


def test_walk_forward_masks_and_split_on_a_panel():
    f = _panel(dates=pd.bdate_range("2020-01-01", periods=60, tz="UTC"))
    fold = walk_forward(f["ts"], train_days=20, valid_days=10, test_days=10, horizon=5)[0]
    train, valid, test = fold.split(f)
    assert (train["ts"].max(), valid["ts"].min()) == (fold.train.end, fold.valid.start)
    d = trading_dates(f["ts"])
    # valid = [25, 35), test = [40, 50): the 5-date gap already keeps valid labels out of test
    assert (valid["ts"].min(), valid["ts"].max(), len(valid)) == (d[25], d[34], 30)
    # ... and a halted ticker's valid label that reaches the test start is purged
    g = f[~((f["ticker"] == "A") & (f["ts"] == d[37]))]
    assert fold.valid_mask(g)[
        (g["ticker"] == "A").to_numpy() & (g["ts"] == d[34]).to_numpy()
    ].tolist() == [False]
    assert len(test) == 3 * 10
    assert json.loads(json.dumps(fold.to_dict()))["embargo"] == 5
    assert isinstance(fold, Fold)


def test_walk_forward_no_fold_fits():
    with pytest.raises(ValueError, match="no fold fits"):
        walk_forward(DATES, train_days=30, valid_days=10, horizon=5)
