"""Turning model masks and ground-truth id maps into label maps at the evaluation resolution.

The evaluation resolution is always the ground-truth resolution: soft predicted masks are upsampled to it
(bilinear, then argmax over slots, as in Genera1Z ``interpolat_argmax_attent``, videosaur ``Resizer`` and OCLF
``resize_patches_to_image``), and ground truth is only resized when the caller asks for a different size
(``nearest-exact``, as in Genera1Z), so that ids are never blended.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from training.metrics.contingency import check_no_raw_void

__all__ = ["MASK_UPSAMPLING", "resize_gt_ids", "upsample_to_labels"]

MASK_UPSAMPLING = "bilinear(align_corners=False) to GT size, argmax over slots; GT resized nearest-exact"
"""Human-readable description of the mask pipeline, recorded in every metrics report."""


def upsample_to_labels(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Upsample soft slot masks and take the per-pixel argmax over slots.

    Args:
        masks: Soft masks ``[..., K, h, w]`` (any floating dtype; computed in float32). Scores need not be
            normalised: only their per-pixel order after interpolation matters.
        size: Target ``(H, W)``, normally the ground-truth resolution.

    Returns:
        Hard labels ``[..., H, W]``, int64 in ``[0, K)``. Ties go to the lowest slot index.

    Raises:
        ValueError: ``masks`` has fewer than 3 dimensions.
    """
    if masks.dim() < 3:
        raise ValueError(f"masks must have shape [..., K, h, w], got {tuple(masks.shape)}")
    *lead, num_slots, height, width = masks.shape
    flat = masks.detach().reshape(-1, num_slots, height, width).float()  # [..., K, h, w] -> [N, K, h, w]
    # channels-last (slots innermost) makes both the interpolation and the argmax over K several times faster on CPU
    flat = flat.contiguous(memory_format=torch.channels_last)  # [N, K, h, w], strides of [N, h, w, K]
    if (height, width) != tuple(size):
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)  # [N, K, H, W]
    labels = flat.argmax(dim=1)  # [N, H, W]
    return labels.reshape(*lead, *size)  # [N, H, W] -> [..., H, W]


def resize_gt_ids(ids: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize an integer id map with ``nearest-exact`` interpolation (ids are copied, never mixed).

    Args:
        ids: Integer ids ``[..., h, w]``; values must be exactly representable in float64 (``|id| < 2**53``).
        size: Target ``(H, W)``.

    Returns:
        Ids ``[..., H, W]`` as int64.

    Raises:
        ValueError: ``ids`` has fewer than 2 dimensions, or is ``uint8`` holding 255 (an undecoded DAVIS void,
            which the int64 result would turn into an object: :func:`~training.metrics.contingency.check_no_raw_void`).
        TypeError: ``ids`` is a floating-point tensor.
    """
    if ids.dim() < 2:
        raise ValueError(f"ids must have shape [..., h, w], got {tuple(ids.shape)}")
    if ids.is_floating_point():
        raise TypeError(f"ids must be an integer tensor, got {ids.dtype}")
    check_no_raw_void(ids)
    *lead, height, width = ids.shape
    if (height, width) == tuple(size):
        return ids.long()
    flat = ids.reshape(-1, 1, height, width).double()  # [..., h, w] -> [N, 1, h, w]
    resized = F.interpolate(flat, size=size, mode="nearest-exact")  # [N, 1, H, W]
    return resized.long().reshape(*lead, *size)  # [N, 1, H, W] -> [..., H, W]
