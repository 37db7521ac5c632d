"""Helpers for serving tests: a fake feature reader (importable by path) and tiny bundles."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

FEATURES = ("ret_1d", "ret_5d", "rsi_14", "vol_20d", "volume_z", "gap")
FEATURE_TS = 1_714_521_600.0  # 2024-05-01T00:00:00Z


class FakeReader:
    """Serves fixed rows; ``rows`` maps ticker -> {feature: value} (feature_ts added)."""

    def __init__(self, rows: Mapping[str, Mapping[str, float]], feature_ts: float = FEATURE_TS):
        self.rows = {k.upper(): {**v, "feature_ts": feature_ts} for k, v in rows.items()}
        self.calls = 0

    def read(self, tickers: Sequence[str]) -> dict[str, dict[str, float] | None]:
        self.calls += 1
        return {t: (dict(self.rows[t]) if t in self.rows else None) for t in tickers}


class BrokenReader:
    """A store that fails: the service must answer INTERNAL without leaking the error text."""

    def read(self, tickers: Sequence[str]) -> dict[str, dict[str, float] | None]:
        raise RuntimeError("sqlite3.OperationalError: secret/path/online.db is locked")


def synthetic_rows(n_tickers: int = 4, seed: int = 7) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    names = ["AAPL", "MSFT", "NVDA", "SPY", "GOOG", "AMZN", "META", "TSLA"][:n_tickers]
    return {t: {f: float(rng.standard_normal()) for f in FEATURES} for t in names}


def train_booster(horizon: int, seed: int = 0, n_rows: int = 600, rounds: int = 30):
    """A tiny LightGBM regressor with a planted signal (feature 0 and 2 drive the target)."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed + horizon)
    x = rng.standard_normal((n_rows, len(FEATURES)))
    y = 0.01 * horizon * (0.8 * x[:, 0] - 0.5 * np.tanh(x[:, 2])) + 0.002 * rng.standard_normal(
        n_rows
    )
    ds = lgb.Dataset(x, y, feature_name=list(FEATURES), free_raw_data=False)
    params = {
        "objective": "regression",
        "num_leaves": 7,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
    }
    return lgb.train(params, ds, num_boost_round=rounds)


def validation_metrics(booster, horizon: int, seed: int = 99, n_rows: int = 400) -> dict:
    """Residual calibration of ``booster`` on fresh rows of the planted market (held out)."""
    from training.export import residual_calibration

    rng = np.random.default_rng(seed + horizon)
    x = rng.standard_normal((n_rows, len(FEATURES)))
    y = 0.01 * horizon * (0.8 * x[:, 0] - 0.5 * np.tanh(x[:, 2])) + 0.002 * rng.standard_normal(
        n_rows
    )
    return residual_calibration(y - booster.predict(x, num_threads=1))


def make_bundles(
    root: Path,
    horizons: Sequence[int] = (1, 5),
    *,
    version: str = "3",
    calibrated: bool = True,
    seed: int = 0,
) -> dict[int, str]:
    """Export one tiny bundle per horizon under ``root``; returns {horizon: dir}.

    ``calibrated``: store validation residual statistics (prob_up + intervals) like training.
    """
    from training.export import export_bundle

    out = {}
    for h in horizons:
        booster = train_booster(h, seed=seed)
        extra = {"metrics": validation_metrics(booster, h)} if calibrated else {}
        d = export_bundle(
            booster,
            FEATURES,
            root / f"h{h}",
            model_name=f"stockray-lgbm-h{h}",
            model_version=version,
            horizon=h,
            extra=extra,
        )
        out[h] = str(d)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_models(dirs: Mapping[int, str], challenger: Mapping[int, str] | None = None, **kw):
    """``ServedModels`` over bundle directories (champion, optional challenger)."""
    from serving.models import ModelSource
    from serving.modelset import ServedModels

    sources = {"champion": ModelSource(bundle_dirs=dict(dirs))}
    if challenger:
        sources["challenger"] = ModelSource(bundle_dirs=dict(challenger))
    return ServedModels(sources, **kw)
