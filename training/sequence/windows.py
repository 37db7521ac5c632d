"""Samples for the sequence nets: rolling feature windows, segment masks, label purging."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.splits import purge_mask


@dataclass
class Windows:
    """Samples cut from a panel.

    Attributes:
        x: ``(N, L, F)`` float32 raw feature windows, row ``L-1`` = features at ``ts``.
        y: ``(N, H)`` float32 labels (NaN = unknown / masked).
        index: ``(ts, ticker)`` MultiIndex of the sample rows.
    """

    x: np.ndarray
    y: np.ndarray
    index: pd.MultiIndex

    def __len__(self) -> int:
        return len(self.x)


def build_windows(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    window: int,
    label_columns: Sequence[str] = (),
    mask: np.ndarray | None = None,
) -> Windows:
    """Rolling windows per ticker, no look-ahead, no crossing tickers.

    The window of the row (ticker, ts) holds that ticker's feature rows at positions
    ``t - window + 1 .. t`` in its own ts order; positions before the ticker's first row are
    NaN. Only rows where ``mask`` is True become samples, but their windows may reach back
    into unmasked rows (the features there were known at ts).

    Args:
        frame: long panel with ``ticker``, ``ts``, the features and (optionally) labels.
        feature_names: input columns, in order.
        window: rows per window.
        label_columns: label columns to carry as ``y`` (missing columns raise).
        mask: boolean array aligned to ``frame`` rows selecting the samples (default all).

    Returns:
        `Windows` in (ts, ticker) order.
    """
    missing = [c for c in ("ticker", "ts", *feature_names, *label_columns) if c not in frame]
    if missing:
        raise KeyError(f"build_windows: frame lacks columns {missing}")
    sel = np.ones(len(frame), bool) if mask is None else np.asarray(mask, bool)
    if sel.shape != (len(frame),):
        raise ValueError(f"mask has shape {sel.shape}, frame has {len(frame)} rows")
    # dates as int64 ns for sorting: a tz-aware column's to_numpy() is an object array of
    # Timestamps, ~100x slower to build and to sort
    ts_all = pd.DatetimeIndex(pd.to_datetime(frame["ts"]))
    order = np.lexsort((ts_all.asi8, frame["ticker"].to_numpy()))
    f = frame.iloc[order]
    ts_all, sel = ts_all[order], sel[order]
    feats = f[list(feature_names)].to_numpy(np.float32)  # (rows, F), ticker-major, ts-ascending
    labels = f[list(label_columns)].to_numpy(np.float32) if label_columns else None
    tick = f["ticker"].to_numpy()
    n_f = feats.shape[1]
    xs, pos = [], []
    bounds = np.flatnonzero(np.r_[True, tick[1:] != tick[:-1], True])
    for a, b in itertools.pairwise(bounds):
        rows = np.flatnonzero(sel[a:b])
        if not len(rows):
            continue
        padded = np.concatenate([np.full((window - 1, n_f), np.nan, np.float32), feats[a:b]])
        # (n_rows, F, L) view -> (n_rows, L, F); view row r covers padded[r : r + window],
        # i.e. ticker rows r - window + 1 .. r
        view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
        xs.append(np.ascontiguousarray(view[rows].transpose(0, 2, 1)))
        pos.append(a + rows)
    if not xs:
        empty = pd.MultiIndex.from_arrays([[], []], names=["ts", "ticker"])
        return Windows(
            np.zeros((0, window, n_f), np.float32),
            np.zeros((0, len(label_columns)), np.float32),
            empty,
        )
    x = np.concatenate(xs)
    p = np.concatenate(pos)  # rows of f, in x's order
    by_date = np.lexsort((tick[p], ts_all.asi8[p]))
    p = p[by_date]
    y = labels[p] if labels is not None else np.zeros((len(p), 0), np.float32)
    index = pd.MultiIndex.from_arrays([ts_all[p], tick[p]], names=["ts", "ticker"])
    return Windows(x[by_date], y, index)


def segment_masks(
    frame: pd.DataFrame,
    segments: dict[str, Sequence[Any]],
) -> tuple[np.ndarray, ...]:
    """Row masks of explicit date segments ``{"train": [start, end], "valid": ..., "test": ...}``.

    Bounds are inclusive dates. Returns ``(train, valid, test)`` masks (``test`` all False
    when absent). Purging of labels that reach the next segment is `purge_labels`' job.
    """
    ts = pd.to_datetime(frame["ts"])
    tz = ts.dt.tz

    def stamp(v):
        t = pd.Timestamp(v)
        return t.tz_localize(tz) if (t.tzinfo is None and tz is not None) else t

    out = []
    for name in ("train", "valid", "test"):
        if name not in segments:
            if name == "test":
                out.append(np.zeros(len(frame), bool))
                continue
            raise KeyError(f"segments lacks {name!r}: give [start, end] dates for it")
        lo, hi = segments[name]
        # an end date covers that whole day
        out.append(np.asarray((ts >= stamp(lo)) & (ts < stamp(hi) + pd.Timedelta(days=1))))
    return tuple(out)


def purge_labels(
    frame: pd.DataFrame, horizons: Sequence[int], next_start, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Copy of ``frame`` with ``fwd_ret_{h}d`` set to NaN on ``rows`` (default: all rows)
    whose ``h``-day label window reaches ``next_start``.

    Per horizon: the 1-day label of a row may survive while its 20-day label is purged — the
    masked loss uses whatever is left. Rows outside ``rows`` (the next segments) keep their
    labels.
    """
    out = frame.copy()
    if next_start is None:
        return out
    tz = pd.to_datetime(frame["ts"]).dt.tz
    t = pd.Timestamp(next_start)
    if t.tzinfo is None and tz is not None:
        t = t.tz_localize(tz)
    subject = np.ones(len(frame), bool) if rows is None else np.asarray(rows, bool)
    for h in horizons:
        drop = subject & ~purge_mask(frame, int(h), t)
        out.loc[drop, f"fwd_ret_{h}d"] = np.nan
    return out
