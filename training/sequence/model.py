"""`SequenceModel`: an LSTM / Transformer forecaster behind the `training.model.Model` interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from training.model import TEST, TRAIN, VALID, Dataset
from training.nets import SequenceConfig, SequenceNet
from training.sequence.loop import fit_net, predict_array
from training.sequence.windows import Windows, build_windows, purge_labels


class SequenceModel:
    """LSTM / Transformer forecaster of ``fwd_ret_{h}d`` for every configured horizon.

    A `training.model.Model`: ``fit(dataset)`` on its ``train`` segment (watching ``valid``
    when it has one), ``predict(dataset, segment) -> pd.Series`` indexed by (ts, ticker),
    ``export(dir)`` to a sequence bundle.

    Args:
        cfg: hyperparameters.
        feature_names: inputs, in order.
        samples_per_epoch: windows drawn per epoch (`fit_net`); None = all.
        window_cache: a dict shared by models fitted on the same dataset (seeds, candidates
            of one walk-forward fold): windows are cut once per segment and window length.
    """

    def __init__(self, cfg: SequenceConfig, feature_names: Sequence[str], *,
                 samples_per_epoch: int | None = None,
                 window_cache: dict | None = None) -> None:
        self.cfg = cfg
        self.feature_names = list(feature_names)
        self.samples_per_epoch = samples_per_epoch
        self.window_cache = window_cache
        self.net: SequenceNet | None = None
        self.history: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return self.cfg.model

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

    def _segment_windows(self, dataset: Dataset, segment: str | None, labels: bool) -> Windows:
        if self.window_cache is None:
            return self.windows(dataset.frame, dataset.mask(segment), labels)
        key = (id(dataset.frame), segment, self.cfg.window,
               tuple(self.cfg.label_columns) if labels else (), tuple(self.feature_names))
        if key not in self.window_cache:
            self.window_cache[key] = self.windows(dataset.frame, dataset.mask(segment), labels)
        return self.window_cache[key]

    def fit(self, dataset: Dataset) -> SequenceModel:
        """Fit on the ``train`` rows; score the ``valid`` rows after every epoch.

        With a ``valid`` segment, training labels whose window reaches the first validation
        date are purged per horizon (`purge_labels`); without one, purge against your own
        next segment before calling.

        Raises:
            ValueError: fewer than 100 training samples with a label.
        """
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        frame = dataset.frame
        train_mask = dataset.mask(TRAIN)
        if dataset.has(VALID):
            first_valid = pd.to_datetime(frame["ts"])[dataset.mask(VALID)].min()
            frame_tr = purge_labels(frame, self.cfg.horizons, first_valid, rows=train_mask)
            train = self.windows(frame_tr, train_mask)
        else:
            train = self._segment_windows(dataset, TRAIN, labels=True)
        n_lab = int(np.isfinite(train.y).any(axis=1).sum())
        if n_lab < 100:
            raise ValueError(
                f"SequenceModel.fit: only {n_lab} labelled training samples "
                f"(config {self.cfg}); widen the train segment"
            )
        valid = None
        if dataset.has(VALID):
            w = self.windows(frame, dataset.mask(VALID))
            valid = (w.x, w.y, w.index.get_level_values("ts").to_numpy())
        self.net, self.history = fit_net(train.x, train.y, self.cfg, valid=valid,
                                         samples_per_epoch=self.samples_per_epoch)
        return self

    def _require_net(self) -> SequenceNet:
        if self.net is None:
            raise RuntimeError("SequenceModel is not fitted: call fit() first")
        return self.net

    def predict_frame(self, dataset: Dataset, segment: str | None = TEST) -> pd.DataFrame:
        """Forecasts of every horizon: columns ``fwd_ret_{h}d``, index (ts, ticker)."""
        w = self._segment_windows(dataset, segment, labels=False)
        pred = predict_array(self._require_net(), w.x)
        return pd.DataFrame(pred.astype(float), index=w.index, columns=self.cfg.label_columns)

    def predict(
        self, dataset: Dataset, segment: str | None = TEST, horizon: int | None = None
    ) -> pd.Series:
        """Forecast of one horizon (default: the first) as a Series indexed by (ts, ticker)."""
        h = self.cfg.horizons[0] if horizon is None else int(horizon)
        if h not in self.cfg.horizons:
            raise ValueError(f"horizon {h} not in the model's horizons {self.cfg.horizons}")
        return self.predict_frame(dataset, segment)[f"fwd_ret_{h}d"].rename(f"pred_{h}d")

    def export(self, out_dir: Path, *, horizon: int | None = None, model_name: str | None = None,
               model_version: str = "unregistered", **kwargs) -> Path:
        """A ``kind: "sequence"`` serving bundle of the net for ``horizon`` (default: the first
        head); ``kwargs`` go to `training.export.export_sequence_bundle` (calibration,
        parity_input, extra)."""
        from training.export import export_sequence_bundle

        h = self.cfg.horizons[0] if horizon is None else int(horizon)
        return export_sequence_bundle(
            self._require_net(), self.feature_names, out_dir,
            model_name=model_name or f"stockray-{self.cfg.model}-h{h}",
            model_version=model_version, horizon=h, history=self.history, **kwargs)
