"""`SequenceModel`: an LSTM / Transformer forecaster behind the `training.model.Model` interface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from training.nets import SequenceConfig, SequenceNet
from training.sequence.loop import fit_scalers, make_optimizer, predict_array, train_epochs
from training.sequence.windows import Windows, build_windows, purge_labels


class SequenceModel:
    """LSTM / Transformer forecaster of ``fwd_ret_{h}d`` for every configured horizon.

    Shares the models' shape: ``fit(frame, train_mask, valid_mask)`` and
    ``predict(frame, mask, horizon) -> pd.Series`` indexed by (ts, ticker).
    """

    def __init__(self, cfg: SequenceConfig, feature_names: Sequence[str]) -> None:
        self.cfg = cfg
        self.feature_names = list(feature_names)
        self.net: SequenceNet | None = None
        self.history: list[dict[str, float]] = []

    def windows(
        self, frame: pd.DataFrame, mask: np.ndarray | None = None, labels: bool = True
    ) -> Windows:
        return build_windows(
            frame,
            self.feature_names,
            self.cfg.window,
            self.cfg.label_columns if labels else (),
            mask,
        )

    def fit(
        self, frame: pd.DataFrame, train_mask: np.ndarray, valid_mask: np.ndarray | None = None
    ) -> SequenceModel:
        """Fit on the rows of ``train_mask``; score ``valid_mask`` rows after every epoch.

        With a ``valid_mask``, training labels whose window reaches the first validation date
        are purged per horizon (`purge_labels`); without one, purge against your own next
        segment before calling.

        Raises:
            ValueError: fewer than 100 training samples with a label.
        """
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        torch.manual_seed(self.cfg.seed)
        train_mask = np.asarray(train_mask, bool)
        if valid_mask is not None and np.asarray(valid_mask).any():
            first_valid = pd.to_datetime(frame["ts"])[np.asarray(valid_mask, bool)].min()
            frame_tr = purge_labels(frame, self.cfg.horizons, first_valid, rows=train_mask)
        else:
            frame_tr = frame
        train = self.windows(frame_tr, train_mask)
        n_lab = int(np.isfinite(train.y).any(axis=1).sum())
        if n_lab < 100:
            raise ValueError(
                f"SequenceModel.fit: only {n_lab} labelled training samples "
                f"(config {self.cfg}); widen the train segment"
            )
        valid = None
        if valid_mask is not None and np.asarray(valid_mask).any():
            w = self.windows(frame, valid_mask)
            valid = (w.x, w.y, w.index.get_level_values("ts").to_numpy())
        self.net = SequenceNet(len(self.feature_names), self.cfg)
        fit_scalers(self.net, train.x, train.y)
        opt = make_optimizer(self.net, self.cfg)
        state = train_epochs(self.net, opt, train.x, train.y, self.cfg, valid=valid)
        self.history = state.history
        self.net.eval()
        return self

    def _require_net(self) -> SequenceNet:
        if self.net is None:
            raise RuntimeError("SequenceModel is not fitted: call fit() first")
        return self.net

    def predict_frame(self, frame: pd.DataFrame, mask: np.ndarray | None = None) -> pd.DataFrame:
        """Forecasts of every horizon: columns ``fwd_ret_{h}d``, index (ts, ticker)."""
        w = self.windows(frame, mask, labels=False)
        pred = predict_array(self._require_net(), w.x)
        return pd.DataFrame(pred.astype(float), index=w.index, columns=self.cfg.label_columns)

    def predict(
        self, frame: pd.DataFrame, mask: np.ndarray | None = None, horizon: int | None = None
    ) -> pd.Series:
        """Forecast of one horizon (default: the first) as a Series indexed by (ts, ticker)."""
        h = self.cfg.horizons[0] if horizon is None else int(horizon)
        if h not in self.cfg.horizons:
            raise ValueError(f"horizon {h} not in the model's horizons {self.cfg.horizons}")
        return self.predict_frame(frame, mask)[f"fwd_ret_{h}d"].rename(f"pred_{h}d")
