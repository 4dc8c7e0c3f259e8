"""The CPU-sized CNN model shared by ``smoothsa_cnn``, its ablations and ``savi_cnn``.

64x64 frames; a SAVi-S-like CNN with two stride-2 convolutions, so Slot Attention works on a 16x16 grid;
6 slots of 64; a spatial broadcast decoder from 8x8 to 16x16 pixels (masks are upsampled to 64x64 for
evaluation). These sizes keep one training step of 8 clips x 6 frames around half a second on a 2-core CPU.

The preheat loss never reaches the encoder here (``detach_fraction=1.0``). In SmoothSA the encoder is a
frozen DINOv2 and the preheat loss (weight 100) only reaches the small projection MLP after the first 10 % of
steps; with a CNN trained from scratch the same loss would reach the whole encoder and, at weight 100, swamp
the reconstruction signal. A run with the paper's schedule stopped improving its reconstruction as soon as
the detach phase ended (step 400 of 4,000) and its masks stayed uniform over slots (training/README.md).
"""

from __future__ import annotations

from typing import Any

IMAGE_SIZE = [64, 64]


PREHEAT: dict[str, Any] = {
    "name": "smoothsa_preheat",
    "kwargs": {"detach_fraction": 1.0, "query_eval_noise": "fixed"},
}
"""SmoothSA's preheater with its features detached for the whole run (see the module docstring)."""


def cnn_model(
    initializer: str | dict[str, Any] = PREHEAT,
    transition: dict[str, Any] | None = None,
    first_iters: int = 3,
    later_iters: int = 1,
    truncation: str = "bi_level",
    slot_attention: dict[str, Any] | None = None,
    decoder_size: int = 16,
    decoder_kernel: int = 5,
    num_slots: int = 6,
    encoder_strides: tuple[int, int, int, int] = (2, 1, 2, 1),
) -> dict[str, Any]:
    """``VideoSlotModel`` kwargs for the CNN family.

    ``slot_attention`` adds keyword arguments of the ``slot_attention`` aggregator to ``truncation``;
    ``decoder_size`` is the side of the reconstruction and masks; ``encoder_strides`` set the Slot Attention grid
    (64 divided by their product on each side).
    """
    return {
        "encoder": {"name": "small_cnn", "kwargs": {"channels": [32, 32, 32, 32], "strides": list(encoder_strides)}},
        "initializer": initializer,
        "aggregator": {"name": "slot_attention", "kwargs": {"truncation": truncation, **(slot_attention or {})}},
        "transition": transition or {"name": "randsfq", "kwargs": {"window": 6}},
        "decoder": {
            "name": "broadcast",
            "kwargs": {
                "output_size": [decoder_size, decoder_size],
                "broadcast_size": 8,
                "channels": 32,
                "kernel_size": decoder_kernel,
            },
        },
        "num_slots": num_slots,
        "slot_dim": 64,
        "image_size": IMAGE_SIZE,
        "first_iters": first_iters,
        "later_iters": later_iters,
    }
