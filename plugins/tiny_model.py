"""The tiny model the contract checks run components in (:mod:`plugins.testing`): its configuration, a seeded build,
a seeded clip, and the losses that should reach every trainable parameter."""

from __future__ import annotations

import copy
from typing import Any

import torch

from plugins.model import VideoSlotModel
from plugins.registry import ComponentRegistry
from plugins.types import VideoOutput

TINY_MODEL: dict[str, Any] = {
    "encoder": {"name": "small_cnn", "kwargs": {"channels": [8, 8], "strides": [2, 2], "out_dim": 16}},
    "initializer": "smoothsa_preheat",
    "aggregator": {"name": "slot_attention", "kwargs": {"truncation": "bi_level"}},
    "transition": {"name": "randsfq", "kwargs": {"window": 3}},
    "decoder": {"name": "broadcast", "kwargs": {"broadcast_size": 4, "channels": 8, "output_size": [16, 16]}},
    "num_slots": 3,
    "slot_dim": 16,
    "image_size": [16, 16],
    "first_iters": 3,
    "later_iters": 1,
}
"""A model small enough to run in milliseconds: 16x16 frames, 3 slots of 16."""


def tiny_model_config(**roles: Any) -> dict[str, Any]:
    """:data:`TINY_MODEL` with some roles (or sizes) replaced, e.g. ``transition={"name": "damped"}``."""
    config = copy.deepcopy(TINY_MODEL)
    config.update(copy.deepcopy(roles))
    return config


def build_tiny(config: dict[str, Any], registry: ComponentRegistry | None = None, seed: int = 0) -> VideoSlotModel:
    """The model of ``config``, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return VideoSlotModel(**config, registry=registry)


def tiny_video(model: VideoSlotModel, batch: int = 2, length: int = 4) -> torch.Tensor:
    """``[batch, length, 3, H, W]`` random frames in ``[0, 1]`` at the model's input size (fixed seed)."""
    height, width = model.image_size
    return torch.rand(batch, length, 3, height, width, generator=torch.Generator().manual_seed(3))


def default_losses(output: VideoOutput, registry: ComponentRegistry | None = None) -> torch.Tensor:
    """Every loss the model's outputs support: what should reach every trainable parameter."""
    from plugins.manager import default_registry

    registry = default_registry() if registry is None else registry
    loss: torch.Tensor = registry.build("losses", "reconstruction_mse", {})(output, 0.5)
    if output.preheated is not None:
        loss = loss + registry.build("losses", "preheat_mse", {})(output, 0.5)
    return loss
