"""The plain torch training loop shared by the in-process, Ray Train and Ray Tune paths."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from training.evaluate import ic
from training.nets import EpochState, SequenceConfig, SequenceNet


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


def fit_net(
    x: np.ndarray,
    y: np.ndarray,
    cfg: SequenceConfig,
    *,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    samples_per_epoch: int | None = None,
) -> tuple[SequenceNet, list[dict[str, float]]]:
    """A fresh `SequenceNet` trained on windows ``x`` / labels ``y``: seeded init, scalers from
    these windows only, AdamW on the masked loss.

    With ``samples_per_epoch`` below ``len(x)``, each epoch trains on a fresh seeded draw of
    that many windows instead of all of them (bounds the cost of long histories).

    Returns:
        ``(net in eval mode, epoch history)``.
    """
    torch.manual_seed(cfg.seed)
    net = SequenceNet(x.shape[2], cfg)
    fit_scalers(net, x, y)
    opt = make_optimizer(net, cfg)
    if samples_per_epoch is None or len(x) <= samples_per_epoch:
        state = train_epochs(net, opt, x, y, cfg, valid=valid)
    else:
        rng = np.random.default_rng(cfg.seed)
        state = None
        for epoch in range(cfg.epochs):
            # sorted draw: contiguous-ish memory reads; train_epochs shuffles the batches
            idx = np.sort(rng.choice(len(x), samples_per_epoch, replace=False))
            state = train_epochs(net, opt, x[idx], y[idx], replace(cfg, epochs=epoch + 1),
                                 start_epoch=epoch, state=state, valid=valid)
    net.eval()
    return net, (state.history if state is not None else [])
