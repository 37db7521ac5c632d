"""Helpers for serving tests: a fake feature reader (importable by path) and tiny bundles."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tests.conftest import free_port  # noqa: F401  (re-exported: tests import it here)

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


class SlowReader(FakeReader):
    """FakeReader whose reads take ``delay_s``: keeps calls in flight on a lookup replica, so
    a replica killed under load nearly always dies holding some (tests/.../test_stage_retry)."""

    def __init__(self, rows: Mapping[str, Mapping[str, float]], delay_s: float = 0.05):
        super().__init__(rows)
        self.delay_s = delay_s

    def read(self, tickers: Sequence[str]) -> dict[str, dict[str, float] | None]:
        time.sleep(self.delay_s)
        return super().read(tickers)


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


def served_models(dirs: Mapping[int, str], challenger: Mapping[int, str] | None = None, **kw):
    """``ServedModels`` over bundle directories (champion, optional challenger)."""
    from serving.models import ModelSource
    from serving.modelset import ServedModels

    sources = {"champion": ModelSource(bundle_dirs=dict(dirs))}
    if challenger:
        sources["challenger"] = ModelSource(bundle_dirs=dict(challenger))
    return ServedModels(sources, **kw)


# --- sequence (LSTM / Transformer) bundles and the offline history they read -------------------


def sequence_frame(n_tickers: int = 6, n_days: int = 160, seed: int = 5):
    """A tiny panel in the serving fixtures' feature names, ending on ``FEATURE_TS``'s date.

    ``ret_1d`` of the last two days drives the 1-day label (a planted signal a window model can
    use); ``ret_5d`` also carries the 5-day label's drift. Columns: ``ticker``, ``ts`` (UTC),
    `FEATURES`, ``feature_ts`` and ``fwd_ret_{1,5}d``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(end=pd.Timestamp(FEATURE_TS, unit="s", tz="UTC"), periods=n_days)
    parts = []
    for t in ["AAPL", "MSFT", "NVDA", "SPY", "GOOG", "AMZN", "META", "TSLA"][:n_tickers]:
        x = rng.standard_normal((n_days, len(FEATURES))).astype(np.float32)
        prev = np.r_[0.0, x[:-1, 0]]
        y1 = 0.01 * (0.7 * x[:, 0] + 0.5 * prev) + 0.005 * rng.standard_normal(n_days)
        y5 = 0.02 * x[:, 1] + 2 * y1 + 0.01 * rng.standard_normal(n_days)
        p = pd.DataFrame(x, columns=list(FEATURES))
        p.insert(0, "ts", dates)
        p.insert(0, "ticker", t)
        p["feature_ts"] = dates.asi8 / 1e9
        p["fwd_ret_1d"], p["fwd_ret_5d"] = y1, y5
        p.loc[p.index[-1:], "fwd_ret_1d"] = np.nan  # labels not known yet at the end
        p.loc[p.index[-5:], "fwd_ret_5d"] = np.nan
        parts.append(p)
    return pd.concat(parts, ignore_index=True).sort_values(["ts", "ticker"], ignore_index=True)


def write_offline_features(frame, path: Path) -> Path:
    """The offline feature table as ``features.store.write_offline`` lays it out (no labels),
    rows shuffled so readers must sort by ts themselves."""
    cols = ["ticker", "ts", *FEATURES, "feature_ts"]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[cols].sample(frac=1.0, random_state=0).to_parquet(path, index=False)
    return path


def latest_rows(frame) -> dict[str, dict[str, float]]:
    """Each ticker's last row as the online store would hold it (for `FakeReader`)."""
    last = frame.sort_values("ts").groupby("ticker").tail(1)
    return {r["ticker"]: {f: float(r[f]) for f in FEATURES} for _, r in last.iterrows()}


def train_sequence(frame, model: str = "lstm", window: int = 6, epochs: int = 3, seed: int = 0):
    """A `training.sequence.SequenceResult` of a small net fitted on ``frame`` (a few s)."""
    from training.model import Dataset
    from training.sequence import SequenceConfig, SequenceModel, segment_masks, sequence_result

    d = sorted(frame["ts"].unique())
    seg = {"train": [str(d[0].date()), str(d[99].date())],
           "valid": [str(d[106].date()), str(d[-1].date())]}
    cfg = SequenceConfig(model=model, window=window, hidden=8, heads=2, epochs=epochs,
                         lr=3e-3, dropout=0.0, horizons=(1, 5), seed=seed, num_threads=1)
    tr, va, _ = segment_masks(frame, seg)
    fitted = SequenceModel(cfg, FEATURES).fit(Dataset.of(frame, FEATURES, train=tr, valid=va))
    return sequence_result(fitted.net, frame, FEATURES, seg, history=fitted.history,
                           n_train=int(tr.sum()))


def make_sequence_bundles(root: Path, result, *, version: str = "2") -> dict[int, str]:
    """One bundle per head of ``result``'s net (exported once, retargeted per horizon)."""
    from training.export import export_sequence_bundle, retarget_sequence_bundle

    fam = result.cfg.model
    hs = list(result.cfg.horizons)
    staged = export_sequence_bundle(
        result.net, result.feature_names, root / "staged", model_name=f"stockray-{fam}-h{hs[0]}",
        model_version=version, horizon=hs[0], calibration=result.calibration(),
        parity_input=result.parity_windows, history=result.history)
    return {h: str(retarget_sequence_bundle(staged, root / f"h{h}", horizon=h,
                                            model_name=f"stockray-{fam}-h{h}",
                                            model_version=version,
                                            extra={"metrics": result.metrics[h]}))
            for h in hs}


def auth_headers() -> dict[str, str]:
    """HTTP headers a client sends: the API token the test servers use (tests/conftest.py)."""
    from serving.auth import client_token

    return {"authorization": f"Bearer {client_token()}"}
