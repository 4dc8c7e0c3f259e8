"""Shared fixtures: a registry with the built-in plugins only, and tiny model configs."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from plugins import ComponentRegistry, VideoSlotModel, build_plugin_manager

torch.set_num_threads(1)  # tiny models gain nothing from threads; keeps parallel jobs from oversubscribing the CPU
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start

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


@pytest.fixture(scope="session")
def registry() -> ComponentRegistry:
    """Built-in components only: installed third-party plugins must not change test results."""
    return build_plugin_manager(load_entry_points=False).registry


@pytest.fixture
def tiny_model(registry: ComponentRegistry) -> VideoSlotModel:
    torch.manual_seed(0)
    return VideoSlotModel(**TINY_MODEL, registry=registry)


@pytest.fixture
def video() -> torch.Tensor:
    """``[2, 4, 3, 16, 16]`` random frames in ``[0, 1]``."""
    return torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
