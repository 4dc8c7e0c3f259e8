"""The segmentation map of a frame: which slot owns each pixel, with near-ties broken the same way by every runtime.

A plain argmax over slots is decided by float rounding wherever two slots' soft masks are nearly equal, and
trained models have such places: two slots that both hold part of the background give masks that differ by
1e-7-1e-6 over whole regions (1-6 % of the pixels of the default model's streams). Two runtimes of one model
(PyTorch and ONNX Runtime, or one runtime at two batch sizes or thread counts) differ by about 1e-6 in their
soft masks, so a plain argmax gives them different segmentations there: 100-frame streams of the default
model served by both disagreed on 0.7-3.8 % of their pixels (README.md, engine benchmark).

:func:`segment` gives a pixel to the lowest-numbered slot whose mask is within ``tie_tolerance`` of the
largest. The default tolerance is the export's parity bound on soft masks (1e-4): a gap below it is numerical
noise by that contract, and the segmentation no longer depends on it. Pixels decided by the rule are ones where
the model itself does not prefer a slot. The service, the client's overlays and the training samples use it; the
evaluation metrics keep the papers' plain argmax (``training.metrics.masks``), which sends an exact tie to the
lowest slot too but decides near-ties by rounding, so the two can differ only where masks are within 1e-4 (about
2 % of the pixels of the default model's streams, README.md, engine benchmark).
"""

from __future__ import annotations

import numpy as np
import torch

SEGMENTATION_TIE_TOLERANCE = 1e-4
"""Soft masks within this of a pixel's largest one count as tied (the export's soft-mask parity bound)."""


def segment(masks: torch.Tensor, tie_tolerance: float = SEGMENTATION_TIE_TOLERANCE) -> torch.Tensor:
    """Per-pixel slot index: the lowest-numbered slot whose mask is within ``tie_tolerance`` of the largest.

    Args:
        masks: ``[..., K, H, W]`` soft masks (any float dtype).
        tie_tolerance: ``>= 0``; 0 gives the first maximal slot, like ``argmax``.

    Returns:
        int64 ``[..., H, W]``.

    Raises:
        ValueError: ``tie_tolerance`` is negative.
    """
    if tie_tolerance < 0:
        raise ValueError(f"tie_tolerance must be >= 0, got {tie_tolerance}")
    largest = masks.amax(dim=-3, keepdim=True)  # [..., 1, H, W]
    # max(...).indices over booleans: the first slot within the tolerance (faster on CPU than argmax).
    return (masks >= largest - tie_tolerance).max(dim=-3).indices  # [..., K, H, W] -> [..., H, W]


def segment_uint8(masks: torch.Tensor, tie_tolerance: float = SEGMENTATION_TIE_TOLERANCE) -> np.ndarray:
    """:func:`segment` of CPU float masks as a uint8 numpy array: the same map, about twice as fast for a frame's
    masks (the service's path). It marks the slots from the last to the first, so each pixel ends with the lowest
    slot within ``tie_tolerance`` of its largest mask, and slot 0 where none is (a NaN column), as :func:`segment`.

    Args:
        masks: ``[..., K, H, W]`` soft masks on the CPU, ``K <= 256``.
        tie_tolerance: as in :func:`segment`.

    Returns:
        uint8 ``[..., H, W]``.

    Raises:
        ValueError: ``tie_tolerance`` is negative, or more than 256 slots.
    """
    if tie_tolerance < 0:
        raise ValueError(f"tie_tolerance must be >= 0, got {tie_tolerance}")
    slots = masks.shape[-3]
    if slots > 256:
        raise ValueError(f"a uint8 segmentation holds at most 256 slots, got {slots}")
    threshold = (masks.amax(dim=-3) - tie_tolerance).numpy()  # [..., H, W], computed as segment() computes it
    values = masks.numpy()  # [..., K, H, W]
    labels = np.zeros(threshold.shape, dtype=np.uint8)  # [..., H, W]
    within = np.empty(threshold.shape, dtype=bool)
    for slot in range(slots - 1, -1, -1):
        np.greater_equal(values[..., slot, :, :], threshold, out=within)
        np.copyto(labels, np.uint8(slot), where=within)
    return labels


def near_ties(masks: torch.Tensor, tie_tolerance: float = SEGMENTATION_TIE_TOLERANCE) -> torch.Tensor:
    """Pixels the tie rule of :func:`segment` decides: the two largest masks are within ``tie_tolerance``.

    Args:
        masks: ``[..., K, H, W]`` soft masks.
        tie_tolerance: as in :func:`segment`.

    Returns:
        bool ``[..., H, W]`` (all False when ``K == 1``).
    """
    if masks.shape[-3] < 2:
        return torch.zeros(masks.shape[:-3] + masks.shape[-2:], dtype=torch.bool, device=masks.device)
    top2 = masks.topk(2, dim=-3).values  # [..., 2, H, W]
    return top2.select(-3, 0) - top2.select(-3, 1) <= tie_tolerance  # [..., H, W]
