"""The one interface every stockray model implements (Qlib's uniform fit / predict).

A `Dataset` is a frame of samples plus named boolean row masks (segments). A `Model` fits on
the dataset's ``train`` segment (watching ``valid`` where it has one), predicts a Series for
a segment's rows, and exports itself to a serving bundle. Walk-forward evaluation, retraining
and the CLI call only this interface, so a new candidate is one class.

Market models predict a Series indexed by ``(ts, ticker)``; the text classifier predicts one
label per row, indexed like the frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

TRAIN, VALID, TEST = "train", "valid", "test"


@dataclass(frozen=True)
class Dataset:
    """Samples a model sees, with time-ordered segments.

    Attributes:
        frame: one row per sample (market rows carry ``ts``, ``ticker``, features, labels).
        features: input columns, in order.
        target: label column (None where the model picks its own, e.g. one per horizon).
        segments: segment name -> boolean mask over ``frame`` rows (never a random split).
    """

    frame: pd.DataFrame
    features: tuple[str, ...]
    target: str | None = None
    segments: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, mask in self.segments.items():
            if len(mask) != len(self.frame):
                raise ValueError(f"Dataset segment {name!r}: mask has {len(mask)} rows, "
                                 f"frame has {len(self.frame)}")

    def mask(self, segment: str | None) -> np.ndarray:
        """The rows of ``segment`` (every row for None)."""
        if segment is None:
            return np.ones(len(self.frame), bool)
        if segment not in self.segments:
            raise KeyError(f"Dataset has no segment {segment!r}; it has {sorted(self.segments)}")
        return np.asarray(self.segments[segment], bool)

    def rows(self, segment: str | None) -> pd.DataFrame:
        """The frame's rows of ``segment``."""
        return self.frame[self.mask(segment)]

    def has(self, segment: str) -> bool:
        """True when ``segment`` exists and selects at least one row."""
        return segment in self.segments and bool(np.asarray(self.segments[segment]).any())

    @classmethod
    def of(cls, frame: pd.DataFrame, features, target: str | None = None,
           **segments: np.ndarray | None) -> Dataset:
        """A dataset over ``frame``; each keyword is a segment mask (None = every row), e.g.
        ``Dataset.of(train_rows, names, train=None)`` to fit on every row of a frame."""
        n = len(frame)
        masks = {k: np.ones(n, bool) if v is None else np.asarray(v, bool)
                 for k, v in segments.items()}
        return cls(frame, tuple(features), target, masks)


def keyed(rows: pd.DataFrame, values, name: str) -> pd.Series:
    """``values`` (one per row of ``rows``, in order) as a Series indexed by (ts, ticker).

    Rows without both columns (e.g. a cross-section-free toy frame) keep their own index.
    """
    values = np.asarray(values)
    if "ts" in rows and "ticker" in rows:
        index = pd.MultiIndex.from_arrays([rows["ts"], rows["ticker"]], names=["ts", "ticker"])
    else:
        index = rows.index
    return pd.Series(values, index=index, name=name)


@runtime_checkable
class Model(Protocol):
    """What walk-forward, retrain and the CLI rely on; every candidate implements it."""

    name: str

    def fit(self, dataset: Dataset) -> Model:
        """Fit on ``dataset``'s ``train`` segment (``valid`` only for monitoring/early signals)."""
        ...

    def predict(self, dataset: Dataset, segment: str | None = TEST) -> pd.Series:
        """Predictions for ``segment``'s rows (market models: indexed by (ts, ticker))."""
        ...

    def export(self, out_dir: Path) -> Path:
        """Write a serving bundle under ``out_dir``; returns the bundle directory."""
        ...
