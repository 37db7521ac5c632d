"""The planted-signal check through *our* pipeline: synthetic bars -> features.pipeline ->
training.lgbm.fit_horizon must recover >= 80% of the oracle IC on the validation dates.

If features, labels, the split or the trainer broke (a shifted label, a leaked or lost
feature), the recovered share collapses and this fails.
"""

import pandas as pd

from features.pipeline import FEATURE_NAMES, build_features_local
from tests.training_fixtures import market_bars
from training.lgbm import LgbmParams, fit_horizon
from training.synthetic import empirical_oracle_ic, make_market


def test_planted_signal_recovered_through_the_pipeline():
    market = make_market(n_tickers=60, n_days=1000, seed=7)
    stocks = market.bars.drop(columns=["adj_close"])
    bars = pd.concat([stocks, market_bars(market.bars)], ignore_index=True)
    bars = bars.assign(adj_factor=1.0, source="synthetic", ingested_at=bars["ts"].max())
    frame = build_features_local(bars)
    res = fit_horizon(frame, FEATURE_NAMES, 1, LgbmParams(num_boost_round=200))
    oracle = empirical_oracle_ic(market, 1, start=pd.Timestamp(res.split["valid"]["start"]))
    assert oracle > 0.15  # the planted signal is there to find
    assert res.metrics["val_ic"] >= 0.8 * oracle, (res.metrics["val_ic"], oracle)
