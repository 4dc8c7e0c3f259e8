"""Learned Gaussian query initializers (Locatello et al., "Object-Centric Learning with Slot Attention", 2020).

Noise at inference: a shared Gaussian gives every slot the same mean, so noise is what tells slots apart.
Sampling fresh noise at inference (as the papers' code does) would make a stream's output depend on the
random state of the server. We instead draw one noise sample per slot when the model is created and keep it
as a buffer (``eval_noise="fixed"``, the default): inference is a pure function of the frames and the
weights, which state hand-off between replicas and export parity rely on. ``eval_noise="sample"`` restores
the papers' behaviour.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from plugins.interfaces import Initializer
from plugins.types import Features, InitializerOutput, Slots

EvalNoise = Literal["fixed", "sample"]


def standard_noise(initializer: nn.Module, batch: int, like: torch.Tensor, eval_noise: EvalNoise) -> torch.Tensor:
    """``[B, K, D]`` standard normal noise: fresh in training (or with ``sample``), else the fixed buffer."""
    fixed: torch.Tensor = initializer.get_buffer("fixed_noise")
    if initializer.training or eval_noise == "sample":
        return torch.randn((batch, *fixed.shape), device=like.device, dtype=like.dtype)
    return fixed.to(like.dtype).unsqueeze(0).expand(batch, -1, -1)  # [K, D] -> [B, K, D]


class GaussianShared(Initializer):
    """One learned mean and log-std shared by all slots: ``q = mu + exp(log_sigma) * eps``.

    Args:
        num_slots: wired by the model.
        slot_dim: wired by the model.
        eval_noise: ``"fixed"`` (deterministic inference, default) or ``"sample"``; see the module docstring.
    """

    name = "gaussian_shared"

    def __init__(self, num_slots: int, slot_dim: int, eval_noise: EvalNoise = "fixed") -> None:
        super().__init__()
        self.eval_noise: EvalNoise = eval_noise
        self.mean = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
        self.log_std = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
        self.register_buffer("fixed_noise", torch.randn(num_slots, slot_dim))

    def forward(self, features: Features) -> InitializerOutput:
        """Queries ``[B, K, D]``; ``features`` only give the batch size and device."""
        noise = standard_noise(self, features.shape[0], features, self.eval_noise)
        return InitializerOutput(queries=self.mean + self.log_std.exp() * noise)


class GaussianPerSlot(Initializer):
    """A learned mean and log-std per slot; noise only during training (the mean at inference).

    Args:
        num_slots: wired by the model.
        slot_dim: wired by the model.
    """

    name = "gaussian_per_slot"

    def __init__(self, num_slots: int, slot_dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.empty(1, num_slots, slot_dim))
        nn.init.xavier_uniform_(self.mean.data[0])  # fans K and D of the [K, D] matrix, as the reference does
        self.log_std = nn.Parameter(torch.full((1, num_slots, slot_dim), math.log(slot_dim**-0.5)))

    def forward(self, features: Features) -> InitializerOutput:
        """Queries ``[B, K, D]``."""
        batch = features.shape[0]
        mean: Slots = self.mean.expand(batch, -1, -1)  # [1, K, D] -> [B, K, D]
        if not self.training:
            return InitializerOutput(queries=mean)
        return InitializerOutput(queries=mean + self.log_std.exp() * torch.randn_like(mean))
