"""The sequence networks and their checkpoint format: all serving needs to rebuild one.

``SequenceNet`` maps raw feature windows ``(B, L, F)`` to forward log returns ``(B, H)``,
standardisation included (its scalers are buffers), so the same module is trained, exported
to ONNX and explained with integrated gradients. A bundle's ``state.pt`` (`save_state`) holds
the weights, the `SequenceConfig` and the input width; `net_from_state` rebuilds the net from
it. Only torch here: no training loop, no Ray, no other ``training`` module.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

# Standardised inputs are clipped here: a 10-sigma print (a split the adjuster missed, a
# halted ticker's first bar) should not swing a small network's hidden state.
INPUT_CLIP = 5.0


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



@dataclass
class EpochState:
    """What a checkpoint holds: the epoch just finished and the run so far."""

    epoch: int
    history: list[dict[str, float]] = field(default_factory=list)



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

