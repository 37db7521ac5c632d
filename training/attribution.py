"""Integrated gradients for the sequence networks (no Ray, no serving imports).

IG (Sundararajan et al. 2017) attributes ``f(x) - f(x')`` to the inputs by integrating the
gradient along the straight path from a baseline ``x'`` to ``x``::

    IG_i(x) = (x_i - x'_i) * integral_0^1 df/dx_i (x' + a (x - x')) da

approximated with the trapezoid rule on ``steps + 1`` evenly spaced points. *Completeness*
says the attributions sum to ``f(x) - f(x')``; the quadrature's gap is returned per row as
``delta`` so callers (and tests) can check the approximation is good enough.

Batched: all ``(steps + 1) * N`` interpolated windows go through one forward/backward per
chunk, which is what makes IG cheap enough to serve.

The default baseline of a `SequenceNet` is its training mean (``x_mean`` at every position):
the input the network reads as "nothing unusual". NaN inputs, which the network already reads
as the mean, are replaced by the baseline first, so their attribution is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

IG_STEPS = 50


@dataclass
class IGResult:
    """Integrated-gradients output for ``N`` windows and one output column.

    Attributes:
        attributions: ``(N, L, F)`` per input cell.
        output: ``(N,)`` model output at the inputs.
        baseline_output: ``(N,)`` model output at the baselines.
        delta: ``(N,)`` completeness gap ``attributions.sum() - (output - baseline_output)``.
    """

    attributions: np.ndarray
    output: np.ndarray
    baseline_output: np.ndarray
    delta: np.ndarray

    def by_feature(self) -> np.ndarray:
        """``(N, F)`` attributions summed over the window's time steps."""
        return self.attributions.sum(axis=1)


def default_baseline(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's training mean broadcast to ``x`` (zeros if it has no ``x_mean``)."""
    mean = getattr(model, "x_mean", None)
    if mean is None:
        return torch.zeros_like(x)
    return mean.to(x.dtype).expand_as(x).clone()


def integrated_gradients(
    model: nn.Module,
    x,
    *,
    output_index: int = 0,
    baseline=None,
    steps: int = IG_STEPS,
    chunk_rows: int = 8192,
) -> IGResult:
    """Integrated gradients of ``model(x)[:, output_index]`` with respect to ``x``.

    Args:
        model: maps ``(N, ...)`` float tensors to ``(N, H)`` (e.g. a `SequenceNet`; the
            horizon is chosen with ``output_index``). Put in eval mode here.
        x: inputs ``(N, L, F)`` (array or tensor).
        output_index: output column to explain (horizon index).
        baseline: same shape as ``x``; default `default_baseline`.
        steps: quadrature intervals (``steps + 1`` points, trapezoid weights).
        chunk_rows: interpolated rows per forward/backward pass (memory bound).

    Returns:
        `IGResult`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model.eval()
    dev = next(model.parameters()).device
    xt = torch.as_tensor(np.asarray(x, np.float32) if not torch.is_tensor(x) else x)
    xt = xt.float().to(dev)
    if baseline is None:
        base = default_baseline(model, xt)
    else:
        base = torch.as_tensor(
            np.asarray(baseline, np.float32) if not torch.is_tensor(baseline) else baseline
        )
        base = base.float().to(dev)
    if base.shape != xt.shape:
        raise ValueError(f"baseline shape {tuple(base.shape)} != input shape {tuple(xt.shape)}")
    xt = torch.where(torch.isnan(xt), base, xt)
    n = xt.shape[0]
    alphas = torch.linspace(0.0, 1.0, steps + 1, device=dev)  # (S+1,)
    weights = torch.full((steps + 1,), 1.0 / steps, device=dev)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid rule
    diff = xt - base
    # (S+1, N, ...) path points, flattened to rows
    path = base.unsqueeze(0) + alphas.view(-1, *([1] * xt.dim())) * diff.unsqueeze(0)
    flat = path.reshape(-1, *xt.shape[1:])
    grads = torch.empty_like(flat)
    outs = torch.empty(flat.shape[0], device=dev)
    # cuDNN's RNN backward refuses eval mode; the plain CUDA kernels do not (no-op on CPU)
    with torch.backends.cudnn.flags(enabled=False):
        for i in range(0, flat.shape[0], chunk_rows):
            part = flat[i : i + chunk_rows].detach().requires_grad_(True)
            y = model(part)[:, output_index]
            (g,) = torch.autograd.grad(y.sum(), part)
            grads[i : i + chunk_rows] = g
            outs[i : i + chunk_rows] = y.detach()
    grads = grads.view(steps + 1, n, *xt.shape[1:])
    avg = (weights.view(-1, *([1] * xt.dim())) * grads).sum(dim=0)
    attr = (diff * avg).detach()
    outs = outs.view(steps + 1, n)
    f_x, f_b = outs[-1], outs[0]
    delta = attr.reshape(n, -1).sum(dim=1) - (f_x - f_b)
    return IGResult(
        attributions=attr.cpu().numpy(),
        output=f_x.cpu().numpy(),
        baseline_output=f_b.cpu().numpy(),
        delta=delta.cpu().numpy(),
    )
