"""Turn a batch of model masks into the per-stream mask outputs (segmentation map and soft masks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plugins.segmentation import segment

SHARED_CALL_MAX_PIXELS = 512 * 512
"""Mask outputs up to this many pixels are made inside the batch's model call; larger ones (up to seconds
at 4K) are made afterwards for their own stream alone, so they do not hold up the streams batched with it."""


@dataclass(frozen=True)
class MaskRequest:
    """What one stream wants from its frame's masks.

    Attributes:
        size: ``(H, W)`` of the outputs.
        segmentation: compute the uint8 ``[H, W]`` slot-index map.
        soft: compute the ``[K, H, W]`` soft masks.
        soft_uint8: quantize the soft masks to uint8 (probability x 255, rounded).
    """

    size: tuple[int, int]
    segmentation: bool = True
    soft: bool = False
    soft_uint8: bool = False

    @property
    def in_shared_call(self) -> bool:
        """Whether the outputs are made inside the batch's model call (see :data:`SHARED_CALL_MAX_PIXELS`)."""
        wanted = self.segmentation or self.soft
        return not wanted or self.size[0] * self.size[1] <= SHARED_CALL_MAX_PIXELS


@dataclass(frozen=True)
class MaskOutputs:
    """One frame's mask outputs; ``None`` where not requested."""

    segmentation: np.ndarray | None
    soft_masks: np.ndarray | None


def mask_outputs(masks: np.ndarray, requests: Sequence[MaskRequest]) -> list[MaskOutputs]:
    """Resize soft masks to each request's size and derive the outputs it asks for.

    Masks are upsampled bilinearly (``align_corners=False``) and the segmentation is
    :func:`plugins.segmentation.segment` of the upsampled masks: the argmax over slots, with masks within
    1e-4 of the largest counted as tied and given to the lowest-numbered slot, so that every backend, batch
    size and thread count gives the same map. Frames asking for the same size are processed together.

    Args:
        masks: float32 ``[B, K, h, w]`` soft masks summing to 1 over K.
        requests: one per frame of the batch.

    Returns:
        One :class:`MaskOutputs` per frame, in order.

    Raises:
        ValueError: ``requests`` and the batch differ in length, or ``K`` exceeds 256 (a uint8 segmentation).
    """
    if len(requests) != masks.shape[0]:
        raise ValueError(f"{len(requests)} mask requests for a batch of {masks.shape[0]}")
    if masks.shape[1] > 256:
        raise ValueError(f"a uint8 segmentation holds at most 256 slots, the model has {masks.shape[1]}")
    outputs: list[MaskOutputs | None] = [None] * len(requests)
    source = torch.from_numpy(masks)
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, request in enumerate(requests):
        if request.segmentation or request.soft:
            by_size.setdefault(request.size, []).append(index)
        else:
            outputs[index] = MaskOutputs(None, None)
    for size, indices in by_size.items():
        group = source[indices]  # [G, K, h, w]
        if tuple(group.shape[-2:]) != size:
            group = F.interpolate(group, size=size, mode="bilinear", align_corners=False)  # [G, K, H, W]
        segmentation = segment(group).to(torch.uint8).numpy()  # [G, K, H, W] -> [G, H, W]
        for row, index in enumerate(indices):
            request = requests[index]
            soft = None
            if request.soft:
                soft = group[row].numpy()  # [K, H, W]
                soft = np.rint(soft * 255).clip(0, 255).astype(np.uint8) if request.soft_uint8 else soft.copy()
            seg = segmentation[row] if request.segmentation else None
            outputs[index] = MaskOutputs(seg, soft)
    return [out if out is not None else MaskOutputs(None, None) for out in outputs]
