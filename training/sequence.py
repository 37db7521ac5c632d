"""Sequence models (LSTM, Transformer encoder) on rolling feature windows, multi-horizon.

A sample is the window of the last ``window`` feature rows of one ticker ending at ``ts``
(rows at or before ``ts`` only, never crossing tickers; a ticker's first rows are left-padded
with NaN, which the network reads as "the training mean"). Its targets are the forward
returns ``fwd_ret_{1,5,20}d`` at ``ts``, learned jointly by one head per horizon; a label that
is NaN (end of history, or purged because its window reaches the next segment) is masked out
of the loss instead of dropping the whole sample.

The network carries its own scalers as buffers: feature mean/std fitted on the **train
segment only**, and per-horizon target mean/std (so the 20-day head, whose returns vary ~20x
more than the 1-day ones, does not dominate the loss). ``SequenceNet`` therefore maps *raw*
feature windows ``(N, L, F)`` to forward log returns ``(N, H)``: the same module is trained,
exported to ONNX and explained with integrated gradients.

Pure torch + pandas, no Ray. ``train_loop_per_worker`` (Ray Train) and ``sequence_trainable``
(Ray Tune) are thin wrappers around `train_epochs`; Ray is imported inside them.

Typical use::

    cfg = SequenceConfig(model="lstm", window=20, epochs=10)
    model = SequenceModel(cfg, feature_names=FEATURE_NAMES)
    train, valid, test = segment_masks(frame, segments)
    model.fit(frame, train, valid)   # purges train labels reaching the valid segment
    pred = model.predict(frame, mask=valid, horizon=5)   # Series indexed by (ts, ticker)
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from training.evaluate import ic
from training.splits import purge_mask

# Standardised inputs are clipped here: a 10-sigma print (a split the adjuster missed, a
# halted ticker's first bar) should not swing a small network's hidden state.
INPUT_CLIP = 5.0
CHECKPOINT_FILE = "state.pt"
#: Ray Train V2 controller poll interval (s) set for our fits unless the environment sets one.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_INTERVAL_S = 0.2
#: Ray adds this to every task/actor worker's niceness when it starts it (default 15);
#: `fit_ray_train` sets it for its Train workers (``worker_niceness``).
WORKER_NICENESS_ENV = "RAY_worker_niceness"


@dataclass
class SequenceConfig:
    """Hyperparameters of a sequence model (in-process; Ray passes ``asdict`` of it)."""

    model: str = "lstm"
    """``"lstm"`` or ``"transformer"``."""
    window: int = 20
    """Rows of history per sample (the window ending at ts, inclusive)."""
    hidden: int = 32
    """LSTM hidden size / Transformer d_model. Small on purpose: daily returns are mostly
    noise and this trains on 2 CPU cores."""
    layers: int = 1
    """Stacked LSTM layers / Transformer encoder layers."""
    heads: int = 2
    """Attention heads (Transformer only; must divide ``hidden``)."""
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 10
    batch_size: int = 512
    """Large batches: per-step overhead dominates small LSTMs on CPU."""
    horizons: tuple[int, ...] = (1, 5, 20)
    """Label horizons in trading days; targets are ``fwd_ret_{h}d``."""
    seed: int = 0
    num_threads: int = 0
    """torch intra-op threads; 0 keeps torch's default."""

    def __post_init__(self) -> None:
        self.horizons = tuple(int(h) for h in self.horizons)
        if self.model not in ("lstm", "transformer"):
            raise ValueError(
                f"SequenceConfig.model must be 'lstm' or 'transformer', got {self.model!r}"
            )
        if self.window < 1 or self.hidden < 1 or self.layers < 1 or self.epochs < 0:
            raise ValueError(
                f"SequenceConfig needs window, hidden, layers >= 1 and epochs >= 0, got {self}"
            )
        if self.model == "transformer" and self.hidden % self.heads:
            raise ValueError(
                f"SequenceConfig.hidden={self.hidden} is not divisible by heads={self.heads}"
            )

    @property
    def label_columns(self) -> list[str]:
        return [f"fwd_ret_{h}d" for h in self.horizons]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceConfig:
        """Build from a dict, rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown SequenceConfig keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**d)


# --- windows -------------------------------------------------------------------------------


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


# --- networks ------------------------------------------------------------------------------


class _LstmEncoder(nn.Module):
    def __init__(self, n_features: int, cfg: SequenceConfig) -> None:
        super().__init__()
        self.rnn = nn.LSTM(
            n_features,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, hidden)
        out, _ = self.rnn(z)
        return out[:, -1]


class _TransformerEncoder(nn.Module):
    def __init__(self, n_features: int, cfg: SequenceConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(n_features, cfg.hidden)
        self.pos = nn.Parameter(torch.zeros(1, cfg.window, cfg.hidden))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            dim_feedforward=2 * cfg.hidden,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        # nested tensors are a padding-mask fast path we never use; off keeps export simple
        self.enc = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, hidden)
        h = self.enc(self.proj(z) + self.pos[:, -z.shape[1] :])
        return self.norm(h[:, -1])  # the token at ts attends to the whole window


class SequenceNet(nn.Module):
    """Raw feature windows ``(B, L, F)`` -> forward log returns ``(B, H)``.

    Buffers ``x_mean``/``x_std`` (F,) standardise inputs (NaN -> 0 = the train mean, clip at
    ``INPUT_CLIP``); ``y_mean``/``y_std`` (H,) map the heads' standardised outputs back to
    returns. `forward_std` is what the loss sees.
    """

    def __init__(self, n_features: int, cfg: SequenceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc = _LstmEncoder if cfg.model == "lstm" else _TransformerEncoder
        self.encoder = enc(n_features, cfg)
        self.head = nn.Linear(cfg.hidden, len(cfg.horizons))
        h = len(cfg.horizons)
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(h))
        self.register_buffer("y_std", torch.ones(h))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.x_mean) / self.x_std
        z = torch.where(torch.isnan(z), torch.zeros_like(z), z)
        return torch.clamp(z, -INPUT_CLIP, INPUT_CLIP)

    def forward_std(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.standardize(x)))

    def forward(self, x: torch.Tensor, standardized: bool = False) -> torch.Tensor:
        # ``standardized=True`` is the training path: it goes through ``forward`` so a DDP
        # wrapper's gradient hooks see it
        out = self.forward_std(x)
        return out if standardized else out * self.y_std + self.y_mean


def fit_scalers(net: SequenceNet, x: np.ndarray, y: np.ndarray) -> None:
    """Set the net's scaler buffers from training samples only.

    Feature statistics use the *last* row of each training window (= each training row's own
    features, once), so rows before the train segment never enter them.
    """
    last = x[:, -1, :].astype(np.float64)
    mean = np.nanmean(last, axis=0) if len(last) else np.zeros(last.shape[1])
    std = np.nanstd(last, axis=0) if len(last) else np.ones(last.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    ym = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in y.T])
    ys = np.array([np.nanstd(c) if np.isfinite(c).sum() > 1 else 1.0 for c in y.T])
    ys = np.where(ys > 1e-12, ys, 1.0)
    with torch.no_grad():
        net.x_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        net.x_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        net.y_mean.copy_(torch.as_tensor(ym, dtype=torch.float32))
        net.y_std.copy_(torch.as_tensor(ys, dtype=torch.float32))


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over horizons of the per-horizon MSE on the finite targets only.

    Each horizon averages over its own labelled rows, so a horizon with many purged labels
    is not down-weighted; a horizon without any label in the batch contributes nothing.
    Zero (with a gradient) when no label at all is finite.
    """
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    count = mask.sum(dim=0)  # (H,)
    per_h = (diff * diff).sum(dim=0) / count.clamp(min=1)
    present = count > 0
    if not bool(present.any()):
        return (pred * 0.0).sum()
    return per_h[present].mean()


# --- training loop (shared by the plain, Ray Train and Ray Tune paths) ----------------------


@dataclass
class EpochState:
    """What a checkpoint holds: the epoch just finished and the run so far."""

    epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(net: nn.Module, cfg: SequenceConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _std_targets(net: SequenceNet, y: torch.Tensor) -> torch.Tensor:
    return (y - net.y_mean) / net.y_std


def evaluate_net(
    net: SequenceNet,
    x: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray | None = None,
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Validation loss (standardised, masked) and, with ``dates``, IC per horizon."""
    pred = predict_array(net, x, batch_size=batch_size, device=device)
    with torch.no_grad():
        p, t = torch.as_tensor(pred), torch.as_tensor(y)
        loss = float(masked_mse((p - net.y_mean.cpu()) / net.y_std.cpu(), _std_targets_cpu(net, t)))
    out = {"val_loss": loss}
    if dates is not None:
        for j, h in enumerate(net.cfg.horizons):
            m = np.isfinite(y[:, j])
            out[f"val_ic_{h}d"] = ic(pred[m, j], y[m, j], dates[m]) if m.any() else float("nan")
    return out


def _std_targets_cpu(net: SequenceNet, y: torch.Tensor) -> torch.Tensor:
    return (y - net.y_mean.cpu()) / net.y_std.cpu()


def predict_array(
    net: SequenceNet, x: np.ndarray, batch_size: int = 4096, device: torch.device | str = "cpu"
) -> np.ndarray:
    """``(N, L, F)`` raw windows -> ``(N, H)`` float32 forward returns (eval mode)."""
    was_training = net.training
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i : i + batch_size], device=device)
            outs.append(net(xb).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0, len(net.cfg.horizons)), np.float32)


def train_epochs(
    net: SequenceNet,
    opt: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    cfg: SequenceConfig,
    *,
    start_epoch: int = 0,
    state: EpochState | None = None,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[EpochState, dict[str, float]], None] | None = None,
    module: nn.Module | None = None,
) -> EpochState:
    """Epochs ``start_epoch .. cfg.epochs - 1`` of mini-batch AdamW on the masked loss.

    On a CUDA device the forward pass runs under ``torch.autocast`` (float16) with a
    ``GradScaler``; on CPU in float32.

    Args:
        net: a `SequenceNet` whose scalers are already fitted (`fit_scalers`).
        x, y: training windows ``(N, L, F)`` and labels ``(N, H)``.
        start_epoch: first epoch to run (resuming from a checkpoint).
        state: the resumed run's state (history is appended to).
        module: what to call for the forward pass, e.g. the DDP wrapper of ``net``
            (default ``net``).
        valid: optional ``(x, y, dates)`` scored after every epoch.
        on_epoch_end: called with ``(state, metrics)`` after each epoch (checkpointing,
            reporting); it may raise to stop.

    Returns:
        The final `EpochState`.
    """
    dev = torch.device(device)
    fwd = module if module is not None else net
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = state or EpochState(epoch=start_epoch - 1)
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 100_003 + epoch)  # same batches whether resumed or not
        perm = torch.randperm(len(xt), generator=gen)
        net.train()
        t0, total, n_seen = time.perf_counter(), 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            xb = xt[b].to(dev, non_blocking=True)
            yb = _std_targets(net, yt[b].to(dev, non_blocking=True))
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                pred = fwd(xb, True)
            loss = masked_mse(pred.float(), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            total += loss.item() * len(b)
            n_seen += len(b)
        seconds = time.perf_counter() - t0
        metrics = {
            "epoch": float(epoch),
            "train_loss": total / max(n_seen, 1),
            "epoch_seconds": seconds,
            "samples_per_s": n_seen / max(seconds, 1e-9),
        }
        if valid is not None and len(valid[0]):
            metrics.update(evaluate_net(net, valid[0], valid[1], valid[2], device=dev))
        state.epoch = epoch
        state.history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(state, metrics)
    return state


def save_state(
    path: str | os.PathLike[str],
    net: nn.Module,
    opt: torch.optim.Optimizer | None,
    state: EpochState,
    cfg: SequenceConfig,
    n_features: int,
) -> None:
    """One-file checkpoint: weights (incl. scalers), optimizer, epoch, history, config.

    ``opt`` None (an exported bundle's ``state.pt``: weights for inference and integrated
    gradients only) stores no optimizer state; such a file cannot resume training.
    """
    torch.save(
        {
            "model": net.state_dict(),
            "optimizer": None if opt is None else opt.state_dict(),
            "epoch": state.epoch,
            "history": state.history,
            "config": asdict(cfg),
            "n_features": n_features,
        },
        path,
    )


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def net_from_state(blob: dict[str, Any]) -> SequenceNet:
    """Rebuild a `SequenceNet` (eval mode) from a `save_state` blob."""
    cfg = SequenceConfig.from_dict(blob["config"])
    net = SequenceNet(int(blob["n_features"]), cfg)
    net.load_state_dict(blob["model"])
    return net.eval()


# --- the model object ------------------------------------------------------------------------


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


# --- Ray Train ---------------------------------------------------------------------------------


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: train a `SequenceNet`, checkpoint every epoch, resume from the latest.

    Config keys: ``seq`` (``asdict(SequenceConfig)``), ``data`` (dict of arrays ``x, y,
    vx, vy, vdates`` or an ObjectRef of one, scalers already applied by the driver through
    ``x_mean`` ... keys), ``cpus`` (threads), and for the failure test ``kill_at_epoch`` +
    ``kill_marker``: once that epoch's checkpoint is registered the worker SIGKILLs itself
    once (the marker file remembers it did); ``run_dir`` is the run's storage directory.

    Each report carries ``epoch``, ``resumed_from`` (epoch of the checkpoint this worker
    group started from, -1 for a fresh start), ``niceness`` (the training thread's, see
    `fit_ray_train`) and the epoch's metrics.
    """
    import ray
    import ray.train
    import ray.train.torch

    cfg = SequenceConfig.from_dict(config["seq"])
    torch.set_num_threads(int(config.get("cpus", 1)))
    niceness = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's on Linux
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # equal contiguous shards: DDP needs every rank to run the same number of steps
    per = len(data["x"]) // world
    x, y = data["x"][rank * per : (rank + 1) * per], data["y"][rank * per : (rank + 1) * per]
    valid = (data["vx"], data["vy"], data["vdates"]) if rank == 0 and "vx" in data else None
    device = ray.train.torch.get_device()

    torch.manual_seed(cfg.seed)
    net = SequenceNet(x.shape[2], cfg)
    with torch.no_grad():
        for k in ("x_mean", "x_std", "y_mean", "y_std"):
            getattr(net, k).copy_(torch.as_tensor(data[k]))
    start_epoch, state, resumed_from = 0, None, -1
    ckpt = ray.train.get_checkpoint()
    opt_state = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            blob = load_state(Path(d, CHECKPOINT_FILE))
        net.load_state_dict(blob["model"])
        opt_state = blob["optimizer"]
        resumed_from = int(blob["epoch"])
        start_epoch = resumed_from + 1
        state = EpochState(epoch=resumed_from, history=list(blob["history"]))
    net = ray.train.torch.prepare_model(net)  # moves to device; DDP when world > 1
    core = net.module if hasattr(net, "module") else net
    opt = make_optimizer(net, cfg)
    if opt_state is not None:
        opt.load_state_dict(opt_state)

    def report(st: EpochState, metrics: dict[str, float]) -> None:
        metrics = dict(metrics, resumed_from=float(resumed_from), world_size=float(world),
                       niceness=float(niceness))
        st.history[-1].update(resumed_from=float(resumed_from), niceness=float(niceness))
        with tempfile.TemporaryDirectory() as tmp:
            ck = None
            if rank == 0:
                save_state(Path(tmp, CHECKPOINT_FILE), core, opt, st, cfg, x.shape[2])
                ck = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ck, checkpoint_dir_name=f"epoch_{st.epoch:04d}")
        marker = config.get("kill_marker")
        if (
            marker
            and st.epoch == config.get("kill_at_epoch")
            and rank == 0
            and not Path(marker).exists()
        ):
            # The controller registers reported checkpoints when it polls the workers (every
            # 2 s); die only once this epoch's checkpoint is in its snapshot, so the resume
            # point is deterministic.
            _wait_registered(Path(config["run_dir"]), f"epoch_{st.epoch:04d}")
            Path(marker).write_text(f"killed pid {os.getpid()} after epoch {st.epoch}\n")
            os.kill(os.getpid(), 9)

    train_epochs(
        core,
        opt,
        x,
        y,
        cfg,
        start_epoch=start_epoch,
        state=state,
        valid=valid,
        device=device,
        on_epoch_end=report,
        module=net,
    )


def _wait_registered(run_dir: Path, checkpoint_name: str, timeout_s: float = 120.0) -> None:
    """Block until Ray Train's checkpoint-manager snapshot lists ``checkpoint_name``."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if snap.exists() and checkpoint_name in snap.read_text():
            return
        time.sleep(0.2)
    raise TimeoutError(f"checkpoint {checkpoint_name} not registered in {snap} after {timeout_s} s")


def ray_train_data(
    net_cfg: SequenceConfig, train: Windows, valid: Windows | None, n_features: int
) -> dict[str, np.ndarray]:
    """Arrays for `train_loop_per_worker`: windows plus scalers fitted on ``train`` only."""
    tmp = SequenceNet(n_features, net_cfg)
    fit_scalers(tmp, train.x, train.y)
    data = {
        "x": train.x,
        "y": train.y,
        **{k: getattr(tmp, k).numpy().copy() for k in ("x_mean", "x_std", "y_mean", "y_std")},
    }
    if valid is not None and len(valid):
        data.update(vx=valid.x, vy=valid.y, vdates=valid.index.get_level_values("ts").to_numpy())
    return data


def worker_runtime_env(worker_niceness: int | None) -> dict[str, Any] | None:
    """Runtime env of `fit_ray_train`'s workers: ``RAY_worker_niceness`` = the driver's
    ``RAY_worker_niceness`` if set, else ``worker_niceness``; None (Ray's default) for None."""
    if worker_niceness is None:
        return None
    nice = os.environ.get(WORKER_NICENESS_ENV, str(int(worker_niceness)))
    return {"env_vars": {WORKER_NICENESS_ENV: nice}}


def fit_ray_train(
    data: dict[str, np.ndarray],
    cfg: SequenceConfig,
    storage_path: str | Path,
    *,
    name: str = "sequence",
    cpus_per_worker: int = 2,
    num_workers: int = 1,
    max_failures: int = 1,
    extra_config: dict[str, Any] | None = None,
    worker_niceness: int | None = 0,
) -> Any:
    """Run `train_loop_per_worker` with ``TorchTrainer`` on the connected Ray cluster.

    One worker with ``cpus_per_worker`` CPUs by default (it beat two 1-CPU DDP workers on
    this 2-core box, STACK.md); GPUs are used when torch sees one. ``FailureConfig``
    restarts a dead worker group from the latest checkpoint up to ``max_failures`` times.

    ``worker_niceness``: the niceness the Ray Train worker processes add to the raylet's
    (``RAY_worker_niceness`` in their runtime env, via Ray Train's DeveloperAPI
    ``RunConfig.worker_runtime_env``; the driver's own ``RAY_worker_niceness`` wins when set).
    Ray starts every task/actor worker at +15, so whenever something else wants the same CPU
    (another job on this shared 2-core box, Ray's own nice-0 raylet/GCS/driver threads) the
    training loop yields to it, where a plain loop at 0 would not. Measured here with epochs
    alternating in one worker, each paired with a plain-process epoch: 1.17x the plain epoch
    at +15 vs 1.03x at 0 under the box's usual load (~5), 1.00x vs 0.96x when it was quiet;
    `bench.training`'s in-loop ratio 1.29x -> 0.95x (40 epochs, load ~1). 0 (default) runs
    the loop at the priority of the process that started Ray, as Ray's job supervisor does
    for job drivers; None keeps Ray's +15. Ray's helper actors stay at +15 either way.

    Returns:
        The ``ray.train.Result`` (``metrics`` = last report, ``checkpoint`` = latest).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = torch.cuda.is_available()
    # Ray Train V2's worker result queue holds one report; the controller drains it when it
    # polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, default 2 s), so with
    # epochs shorter than that every report-with-checkpoint waits for the next poll. Poll
    # faster unless the user chose an interval (the driver's value is propagated by Ray).
    os.environ.setdefault(HEALTH_CHECK_ENV, str(HEALTH_CHECK_INTERVAL_S))
    config = {
        "seq": asdict(cfg),
        "data": ray.put(data),
        "cpus": cpus_per_worker,
        "run_dir": str(Path(storage_path) / name),
        **(extra_config or {}),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env=worker_runtime_env(worker_niceness),
        ),
    )
    return trainer.fit()


# --- evaluation against the baselines, and what the registry logs ---------------------------

# Validation windows kept with a result for the bundle's ONNX parity check (real windows, NaN
# warm-up cells included).
PARITY_WINDOWS = 64


@dataclass
class SequenceResult:
    """A trained sequence net and how it did: what ``training.registry.register_sequence`` logs.

    Attributes:
        net: the trained `SequenceNet` (eval mode).
        feature_names: its inputs, in order.
        metrics: per horizon, `score_sequence` output (``val_*``, ``test_*``, baselines,
            validation residual calibration).
        split: the explicit segments (``{"train": [start, end], ...}``) and sample counts.
        history: per-epoch training metrics.
        parity_windows: ``(N, L, F)`` validation windows for the ONNX parity check.
    """

    net: SequenceNet
    feature_names: list[str]
    metrics: dict[int, dict[str, float]]
    split: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    parity_windows: np.ndarray | None = None

    @property
    def cfg(self) -> SequenceConfig:
        return self.net.cfg

    def calibration(self) -> dict[int, dict[str, float]]:
        """Per horizon, the validation residual statistics (``val_resid_*``, conformal)."""
        keys = ("val_resid_", "val_conformal_")
        return {h: {k: v for k, v in m.items() if k.startswith(keys)}
                for h, m in self.metrics.items()}


def score_sequence(
    net: SequenceNet,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    masks: dict[str, np.ndarray],
) -> dict[int, dict[str, float]]:
    """Per-horizon metrics of ``net`` on time-ordered segments, beside the naive baselines.

    For each segment (``"valid"`` -> prefix ``val``, ``"test"`` -> ``test``): ``{p}_ic``,
    ``{p}_rank_ic``, ``{p}_rmse``, ``n_{segment}``, and the zero / momentum / reversal
    baselines of ``training.lgbm.baseline_predictions`` on the same rows — named like
    LightGBM's (``baseline_momentum_ic`` on valid, ``test_baseline_momentum_ic`` on test) so
    the model card and ``stockray models`` read both families alike. The validation residuals
    give ``training.export.residual_calibration`` (serving's P(up) and intervals).

    Args:
        net: trained `SequenceNet`.
        frame: panel with ``ticker``, ``ts``, features, labels and the past returns the
            baselines read (``ret_{h}d``).
        feature_names: the net's inputs, in order.
        masks: segment name -> boolean row mask of ``frame``.

    Returns:
        ``{horizon: {metric: value}}``.
    """
    from training.evaluate import rank_ic, rmse
    from training.export import residual_calibration
    from training.lgbm import baseline_predictions

    cfg = net.cfg
    out: dict[int, dict[str, float]] = {int(h): {} for h in cfg.horizons}
    keyed = frame.assign(ts=pd.to_datetime(frame["ts"])).set_index(["ts", "ticker"])
    for seg, mask in masks.items():
        if not np.asarray(mask).any():
            continue
        pre = "val" if seg == "valid" else seg
        w = build_windows(frame, feature_names, cfg.window, cfg.label_columns, mask)
        pred = predict_array(net, w.x).astype(np.float64)
        rows = keyed.reindex(pd.MultiIndex.from_arrays(
            [pd.to_datetime(w.index.get_level_values("ts")), w.index.get_level_values("ticker")]))
        dates = w.index.get_level_values("ts").to_numpy()
        for j, h in enumerate(cfg.horizons):
            y = w.y[:, j].astype(np.float64)
            m = np.isfinite(y)
            p, yy, d = pred[m, j], y[m], dates[m]
            met = out[int(h)]
            met.update({f"{pre}_ic": ic(p, yy, d), f"{pre}_rank_ic": rank_ic(p, yy, d),
                        f"{pre}_rmse": rmse(p, yy), f"n_{seg}": float(m.sum())})
            bpre = "baseline" if seg == "valid" else f"{pre}_baseline"
            # panels without past-return columns (tiny test frames) have no baselines
            base_rows = rows.iloc[np.flatnonzero(m)] if "ret_1d" in rows else None
            bases = baseline_predictions(base_rows, h) if base_rows is not None else {}
            for name, base in bases.items():
                met[f"{bpre}_{name}_rmse"] = rmse(base, yy)
                if name != "zero":  # a constant forecast has no correlation with anything
                    met[f"{bpre}_{name}_ic"] = ic(base, yy, d)
                    met[f"{bpre}_{name}_rank_ic"] = rank_ic(base, yy, d)
            if seg == "valid":
                met.update(residual_calibration(yy - p))
    return out


def sequence_result(
    net: SequenceNet,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    segments: dict[str, Sequence[Any]],
    *,
    history: list[dict[str, float]] | None = None,
    n_train: int | None = None,
) -> SequenceResult:
    """Score a trained net on the valid/test segments and package it for the registry."""
    net.eval()
    _, va, te = segment_masks(frame, segments)
    metrics = score_sequence(net, frame, feature_names, {"valid": va, "test": te})
    pw = build_windows(frame, feature_names, net.cfg.window, mask=va).x[:PARITY_WINDOWS]
    split = {k: [str(v) for v in segments[k]] for k in ("train", "valid", "test") if k in segments}
    if n_train is not None:
        split["n_train"] = int(n_train)
        for m in metrics.values():
            m["n_train"] = float(n_train)
    return SequenceResult(net=net, feature_names=list(feature_names), metrics=metrics,
                          split=split, history=list(history or []), parity_windows=pw)


def fit_sequence_ray(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    cfg: SequenceConfig,
    segments: dict[str, Sequence[Any]],
    storage_path: str | Path,
    *,
    name: str = "sequence",
    cpus_per_worker: int = 2,
) -> SequenceResult:
    """Train with Ray Train (`fit_ray_train`, a checkpoint per epoch) on the train segment,
    then score the valid/test segments (`sequence_result`). Needs a connected Ray cluster.

    Training labels whose window reaches the first validation date are purged per horizon.

    Raises:
        ValueError: fewer than 100 labelled training windows.
        RuntimeError: the Ray Train run failed.
    """
    tr, va, _ = segment_masks(frame, segments)
    model = SequenceModel(cfg, feature_names)
    train = model.windows(purge_labels(frame, cfg.horizons, segments["valid"][0], rows=tr), tr)
    n_lab = int(np.isfinite(train.y).any(axis=1).sum())
    if n_lab < 100:
        raise ValueError(f"fit_sequence_ray: only {n_lab} labelled training windows in "
                         f"segment {segments['train']}; widen it or ingest a longer history")
    valid = model.windows(frame, va)
    data = ray_train_data(cfg, train, valid, len(feature_names))
    result = fit_ray_train(data, cfg, storage_path, name=name, cpus_per_worker=cpus_per_worker)
    if result.error is not None or result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name!r} failed: {result.error}")
    with result.checkpoint.as_directory() as d:
        blob = load_state(Path(d, CHECKPOINT_FILE))
    net = net_from_state(blob)
    return sequence_result(net, frame, feature_names, segments, history=list(blob["history"]),
                           n_train=len(train))


# --- Ray Tune ----------------------------------------------------------------------------------


def sequence_trainable(
    config: dict[str, Any],
    frame: pd.DataFrame | None = None,
    feature_names: Sequence[str] = (),
    segments: dict[str, Sequence[Any]] | None = None,
) -> None:
    """Tune function trainable: the plain torch loop, one ``tune.report`` per epoch.

    Not a TorchTrainer per trial: that costs ~10-12 s of fixed start-up per trial here
    (measured in ``bench/training.py``), more than a small trial's training; ASHA stops bad
    trials on the per-epoch ``val_loss``. Windows are cut inside the trial because
    ``window`` is a searched parameter.
    """
    from ray import tune

    cfg = SequenceConfig.from_dict(config["seq"])
    torch.set_num_threads(int(config.get("cpus", 1)))
    torch.manual_seed(cfg.seed)
    tr, va, _ = segment_masks(frame, segments)
    model = SequenceModel(cfg, feature_names)
    train = model.windows(purge_labels(frame, cfg.horizons, segments["valid"][0], rows=tr), tr)
    valid = model.windows(frame, va)
    net = SequenceNet(len(feature_names), cfg)
    fit_scalers(net, train.x, train.y)
    opt = make_optimizer(net, cfg)

    def report(_st: EpochState, metrics: dict[str, float]) -> None:
        tune.report(metrics)

    train_epochs(
        net,
        opt,
        train.x,
        train.y,
        cfg,
        valid=(valid.x, valid.y, valid.index.get_level_values("ts").to_numpy()),
        on_epoch_end=report,
    )


def load_sequence_yaml(path: str | Path) -> dict[str, Any]:
    """Read ``configs/sequence.yaml``: ``segments``, ``model`` (SequenceConfig defaults),
    ``search_space`` and ``tune`` sections, validated.

    Returns:
        ``{"segments": {...}, "model": SequenceConfig, "search_space": {...}, "tune": {...}}``.
    """
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    for key in ("segments", "model", "search_space", "tune"):
        if key not in raw:
            raise KeyError(f"{path}: missing section {key!r}")
    seg = raw["segments"]
    prev_end = None
    for name in ("train", "valid", "test"):
        lo, hi = (pd.Timestamp(v) for v in seg[name])
        if hi < lo or (prev_end is not None and lo <= prev_end):
            raise ValueError(
                f"{path}: segment {name} {seg[name]} is empty or overlaps the "
                f"previous one; segments must be ordered train < valid < test"
            )
        prev_end = hi
    model = SequenceConfig.from_dict(raw["model"])
    unknown = set(raw["search_space"]) - {f.name for f in fields(SequenceConfig)}
    if unknown:
        raise ValueError(
            f"{path}: search_space keys {sorted(unknown)} are not SequenceConfig fields"
        )
    return {
        "segments": seg,
        "model": model,
        "search_space": raw["search_space"],
        "tune": raw["tune"],
    }


def _tune_domain(spec: Any) -> Any:
    """YAML spec -> Tune domain: ``{choice: [...]}``, ``{loguniform: [lo, hi]}``,
    ``{uniform: [lo, hi]}``, or a plain value."""
    from ray import tune

    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, arg),) = spec.items()
        if kind == "choice":
            return tune.choice(list(arg))
        if kind == "loguniform":
            return tune.loguniform(float(arg[0]), float(arg[1]))
        if kind == "uniform":
            return tune.uniform(float(arg[0]), float(arg[1]))
        raise ValueError(f"unknown search-space kind {kind!r} (choice, loguniform, uniform)")
    return spec


def tune_sequence(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    spec: dict[str, Any],
    storage_path: str | Path,
    *,
    name: str = "sequence-tune",
) -> pd.DataFrame:
    """ASHA search over `SequenceConfig` on the connected Ray cluster.

    Args:
        frame: training frame (features + labels) covering the train and valid segments.
        spec: `load_sequence_yaml` output; ``tune`` holds ``num_samples``, ``grace_period``,
            ``cpus_per_trial``, ``max_concurrent`` and ``metric`` (default ``val_loss``).

    Returns:
        One row per trial: its searched parameters, epochs run and last ``val_loss`` /
        ``val_ic_*``, best first.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    t = spec["tune"]
    base = asdict(spec["model"])
    seq_space = {**base, **{k: _tune_domain(v) for k, v in spec["search_space"].items()}}
    cpus = float(t.get("cpus_per_trial", 1))
    trainable = tune.with_resources(
        tune.with_parameters(
            sequence_trainable,
            frame=frame,
            feature_names=list(feature_names),
            segments=spec["segments"],
        ),
        {"cpu": cpus},
    )
    metric = t.get("metric", "val_loss")
    mode = "min" if metric.endswith("loss") else "max"
    tuner = tune.Tuner(
        trainable,
        param_space={"seq": seq_space, "cpus": max(1, int(cpus))},
        tune_config=tune.TuneConfig(
            num_samples=int(t.get("num_samples", 4)),
            metric=metric,
            mode=mode,
            max_concurrent_trials=t.get("max_concurrent"),
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=int(base["epochs"]),
                grace_period=int(t.get("grace_period", 1)),
                reduction_factor=int(t.get("reduction_factor", 2)),
            ),
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage_path), verbose=0),
    )
    grid = tuner.fit()
    rows = []
    for res in grid:
        if res.error is not None:
            raise RuntimeError(f"sequence trial failed: {res.error}") from res.error
        m = res.metrics or {}
        row = {k: res.config["seq"][k] for k in spec["search_space"]}
        row.update({"epochs_run": int(m.get("epoch", -1)) + 1, metric: m.get(metric)})
        row.update({k: v for k, v in m.items() if k.startswith("val_ic_")})
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(metric, ascending=(mode == "min"), na_position="last", ignore_index=True)


def ic_by_horizon(pred: pd.DataFrame, frame: pd.DataFrame) -> dict[int, float]:
    """Mean per-date IC of `SequenceModel.predict_frame` output against the frame's labels."""
    lab = frame.set_index(["ts", "ticker"])
    out = {}
    for col in pred.columns:
        h = int(col.removeprefix("fwd_ret_").removesuffix("d"))
        y = lab[col].reindex(pred.index).to_numpy(float)
        m = np.isfinite(y)
        out[h] = (
            ic(pred[col].to_numpy()[m], y[m], pred.index.get_level_values("ts")[m])
            if m.any()
            else math.nan
        )
    return out
