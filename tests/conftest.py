"""Shared fixtures: a registry with the built-in plugins only, and tiny model configs."""

from __future__ import annotations

import os

import pytest
import torch
from tiny_model import TINY_MODEL

from plugins import ComponentRegistry, VideoSlotModel, build_plugin_manager

torch.set_num_threads(1)  # tiny models gain nothing from threads; keeps parallel jobs from oversubscribing the CPU
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start


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
