"""A dynamics head's settings (:class:`DynamicsConfig`): the ``slotformer`` head's shape and how it is trained."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DynamicsConfig:
    """How a ``slotformer`` head is built and trained (methods.md, section 10: SlotFormer's CLEVRER recipe is
    history 6, rollout 10, width 256, 4 layers of 8 heads, feed-forward 1024, batch 128, Adam at 2e-4 with 5 %
    warm-up then cosine decay, no weight decay, no gradient clipping, about 450k steps). The defaults here are
    sized for a CPU: width 64, 2 layers of 4 heads, feed-forward 256 (a step of 32 windows took 0.22 s on one core
    of the development machine, against 1.2 s at the reference's shape with width 128), 1,500 steps at a peak
    learning rate of 1e-3.

    Attributes:
        history: observed frames a prediction reads.
        rollout: frames predicted from them, each from the predictions before (no teacher forcing), all in the loss.
        model_dim: the Transformer's width.
        layers: Transformer encoder layers.
        heads: attention heads.
        ffn_dim: feed-forward width.
        residual: predict each frame as a change from the one before, where the reference predicts the slots
            themselves; on 1,024 ``synthetic:medium`` videos the change halved the held-out rollout error of a
            CPU-sized run (README, Slot dynamics).
        steps: optimiser steps.
        batch_size: windows per step.
        lr: peak learning rate (Adam).
        warmup_fraction: of the steps, the linear warm-up before the cosine decay to 0.
        held_out: fraction of the trajectory files kept out of training and scored at the end.
        stride: frames between the starts of two training windows of one file.
        seed: the weights', the file split's and the batches' seed.
    """

    history: int = 6
    rollout: int = 10
    model_dim: int = 64
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    residual: bool = True
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup_fraction: float = 0.05
    held_out: float = 0.2
    stride: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("history", "rollout", "model_dim", "layers", "heads", "ffn_dim", "steps", "batch_size", "stride")
        problems = [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        if self.model_dim % self.heads:
            problems.append(f"model_dim {self.model_dim} must be a multiple of heads {self.heads}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.held_out < 1:
            problems.append(f"held_out must be in [0, 1), got {self.held_out}")
        if problems:
            raise ValueError("invalid dynamics config: " + "; ".join(problems))

    @property
    def window(self) -> int:
        """Frames in a training window: ``history + rollout``."""
        return self.history + self.rollout

    def head_kwargs(self, slot_dim: int) -> dict[str, Any]:
        """The ``slotformer`` head's constructor arguments for slots of ``slot_dim``."""
        names = ("history", "rollout", "model_dim", "layers", "heads", "ffn_dim", "residual")
        return {"slot_dim": slot_dim, **{name: getattr(self, name) for name in names}}

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object."""
        return dataclasses.asdict(self)


__all__ = ["DynamicsConfig"]
