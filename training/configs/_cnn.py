"""The CPU-sized CNN model shared by ``smoothsa_cnn``, its ablations and ``savi_cnn``.

64x64 frames; a SAVi-S-like CNN with two stride-2 convolutions, so Slot Attention works on a 16x16 grid;
6 slots of 64; a spatial broadcast decoder from 8x8 to 16x16 pixels (masks are upsampled to 64x64 for
evaluation). These sizes keep one training step of 8 clips x 6 frames around half a second on a 2-core CPU.
"""

from __future__ import annotations

from typing import Any

IMAGE_SIZE = [64, 64]


def cnn_model(
    initializer: str = "smoothsa_preheat",
    transition: dict[str, Any] | None = None,
    first_iters: int = 3,
    later_iters: int = 1,
    truncation: str = "bi_level",
) -> dict[str, Any]:
    """``VideoSlotModel`` kwargs for the CNN family."""
    return {
        "encoder": {"name": "small_cnn", "kwargs": {"channels": [32, 32, 32, 32], "strides": [2, 1, 2, 1]}},
        "initializer": initializer,
        "aggregator": {"name": "slot_attention", "kwargs": {"truncation": truncation}},
        "transition": transition or {"name": "randsfq", "kwargs": {"window": 6}},
        "decoder": {"name": "broadcast", "kwargs": {"output_size": [16, 16], "broadcast_size": 8, "channels": 32}},
        "num_slots": 6,
        "slot_dim": 64,
        "image_size": IMAGE_SIZE,
        "first_iters": first_iters,
        "later_iters": later_iters,
    }
