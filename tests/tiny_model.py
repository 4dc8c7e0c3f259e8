"""The tiny model config shared by the plugin and model tests (a plain module: ``conftest`` names are not unique)."""

from __future__ import annotations

from typing import Any

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
