"""Turn a batch of model masks into the per-stream mask outputs (segmentation map and soft masks).

The outputs always cover the whole frame, at the stream's mask size. When the model saw the whole frame (a
stretch) its masks are resized to that size; when it saw a crop or a padded canvas (:class:`MaskRequest.view`)
they are mapped onto the part of the frame it saw, and the rest is :data:`~service.types.OUTSIDE_VIEW`.

Both are one bilinear resampling, and bilinear resampling is separable: along each axis an output pixel mixes two
neighbouring mask pixels, so the resampled masks of ``m`` ``[h, w]`` are ``Wy @ m @ Wx^T``, with a weight matrix per
axis (:func:`axis_weights`, cached by geometry) holding the two weights of each output pixel. The masks are
resampled and segmented a band of rows at a time (:data:`BAND_PIXELS`), which keeps the working set in the cache
and bounds the memory a large segmentation needs beyond its output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from plugins.segmentation import segment_uint8
from service.images import ModelView
from service.types import OUTSIDE_VIEW

SHARED_CALL_MAX_PIXELS = 512 * 512
"""Mask outputs up to this many pixels are made inside the batch's model call; larger ones (a tenth of a second or
more at 4K) are made afterwards for their own stream alone, so they do not hold up the streams batched with it."""

BAND_PIXELS = 32 * 1024
"""Output pixels per band of rows (at least one row): a band's resampled masks, ``G x K x`` 128 KiB in float32 for a
group of G frames, are segmented (and copied into the soft masks) while in the cache, then let go. A segmentation
asked for without soft masks so needs about a byte a pixel (its output) at any size."""

_WHOLE_FRAME: ModelView = (0.0, 0.0, 1.0, 1.0)
"""The view of a stretch: the model saw the whole frame."""


@dataclass(frozen=True)
class MaskRequest:
    """What one stream wants from its frame's masks.

    Attributes:
        size: ``(H, W)`` of the outputs.
        segmentation: compute the uint8 ``[H, W]`` slot-index map.
        soft: compute the ``[K, H, W]`` soft masks.
        soft_uint8: quantize the soft masks to uint8 (probability x 255, rounded).
        view: where the model's input lay in the frame (:attr:`service.images.FittedFrame.view`); ``None``: the
            whole frame.
    """

    size: tuple[int, int]
    segmentation: bool = True
    soft: bool = False
    soft_uint8: bool = False
    view: ModelView | None = None

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

    Each output pixel's centre is mapped into the model's view (the whole frame without a
    :attr:`~MaskRequest.view`) and the masks are sampled there bilinearly, ``align_corners=False``, positions
    clamped to the masks' edge pixels (:func:`axis_weights`). For a stretch this is
    :func:`torch.nn.functional.interpolate`'s bilinear resizing (without antialiasing when it shrinks), the one the
    evaluation uses (:func:`training.metrics.masks.upsample_to_labels`); with a view, it is that resizing to the
    output region the view covers. Both up to float rounding: soft masks within a few 1e-6 of ``interpolate``'s.
    Pixels whose centre lies outside the view (outside a crop) get soft masks 0 and the segmentation
    :data:`~service.types.OUTSIDE_VIEW` (255). The segmentation is :func:`plugins.segmentation.segment` of the
    (in-view) masks (computed as :func:`~plugins.segmentation.segment_uint8`): the argmax over slots, with masks
    within 1e-4 of the largest counted as tied and given to the lowest-numbered slot, so that every backend, batch
    size and thread count gives the same map. Frames asking for the same size and view are processed together,
    and their segmentations and soft masks are made only when one of them asks for them.

    Args:
        masks: float32 ``[B, K, h, w]`` soft masks summing to 1 over K.
        requests: one per frame of the batch.

    Returns:
        One :class:`MaskOutputs` per frame, in order.

    Raises:
        ValueError: ``requests`` and the batch differ in length, ``K`` exceeds 256 (a uint8 segmentation), or a
            request leaves pixels outside the view while ``K`` exceeds 255 (slot 255 would read as outside).
    """
    if len(requests) != masks.shape[0]:
        raise ValueError(f"{len(requests)} mask requests for a batch of {masks.shape[0]}")
    if masks.shape[1] > 256:
        raise ValueError(f"a uint8 segmentation holds at most 256 slots, the model has {masks.shape[1]}")
    outputs = [MaskOutputs(None, None)] * len(requests)
    source = torch.from_numpy(masks)
    by_size: dict[tuple[tuple[int, int], ModelView | None], list[int]] = {}
    for index, request in enumerate(requests):
        if request.segmentation or request.soft:
            by_size.setdefault((request.size, request.view), []).append(index)
    for (size, view), indices in by_size.items():
        soft, segmentation = _resampled(
            source[indices],  # [G, K, h, w]
            size,
            view or _WHOLE_FRAME,
            soft=any(requests[i].soft for i in indices),
            segmentation=any(requests[i].segmentation for i in indices),
        )
        for row, index in enumerate(indices):
            request = requests[index]
            frame_soft = None
            if request.soft:
                assert soft is not None
                frame_soft = soft[row]  # [K, H, W], this frame's alone: quantised in place
                if request.soft_uint8:
                    frame_soft = _quantised(frame_soft)
                elif len(indices) > 1:
                    frame_soft = frame_soft.copy()  # not a view keeping the group's other frames alive
            frame_map = segmentation[row] if request.segmentation and segmentation is not None else None
            outputs[index] = MaskOutputs(frame_map, frame_soft)
    return outputs


def _quantised(soft: np.ndarray) -> np.ndarray:
    """``soft`` float32 as uint8, probability x 255 rounded to the nearest (ties to even) and clipped to 0-255;
    ``soft`` is overwritten (with the rounded values, still float32)."""
    np.multiply(soft, 255, out=soft)
    np.rint(soft, out=soft)
    np.clip(soft, 0, 255, out=soft)
    return soft.astype(np.uint8)


def _resampled(
    group: torch.Tensor, size: tuple[int, int], view: ModelView, *, soft: bool, segmentation: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The soft masks float32 ``[G, K, H, W]`` and segmentations uint8 ``[G, H, W]`` of ``group`` ``[G, K, h, w]``
    mapped onto an output of ``size`` whose part ``view`` the model saw (see :func:`mask_outputs`); ``None`` for
    those not asked for. Sampled a band of rows (:data:`BAND_PIXELS`) at a time.

    Raises:
        ValueError: pixels lie outside the view and ``K`` exceeds 255.
    """
    count, slots, height, width = group.shape
    top, left, view_height, view_width = view
    rows, down = axis_weights(height, size[0], top, view_height)  # [R, h]
    cols, across = axis_weights(width, size[1], left, view_width)  # [C, w]
    inside = rows.stop - rows.start, cols.stop - cols.start
    if inside != size and slots > OUTSIDE_VIEW:
        raise ValueError(
            f"pixels outside the model's view are marked {OUTSIDE_VIEW}, a slot index of this {slots}-slot model"
        )
    whole = inside == size  # every output pixel is written below; if not, the others are 0 and OUTSIDE_VIEW
    soft_out: np.ndarray | None = None  # [G, K, H, W]
    map_out: np.ndarray | None = None  # [G, H, W]
    if soft:
        soft_out = (np.empty if whole else np.zeros)((count, slots, *size), dtype=np.float32)
    if segmentation:
        map_out = np.empty((count, *size), np.uint8) if whole else np.full((count, *size), OUTSIDE_VIEW, np.uint8)
    if not (soft or segmentation) or 0 in inside:
        return soft_out, map_out
    vertical = down @ group  # [R, h] @ [G, K, h, w] -> [G, K, R, w]: resampled along y, small (w is the model's)
    band = max(1, BAND_PIXELS // inside[1])
    for start in range(0, inside[0], band):
        stop = min(start + band, inside[0])
        sampled = vertical[:, :, start:stop] @ across.T  # [G, K, band, w] @ [w, C] -> [G, K, band, C]
        frame_rows = slice(rows.start + start, rows.start + stop)
        if soft_out is not None:
            soft_out[:, :, frame_rows, cols] = sampled.numpy()
        if map_out is not None:
            map_out[:, frame_rows, cols] = segment_uint8(sampled)  # [G, K, band, C] -> [G, band, C]
    return soft_out, map_out


@lru_cache(maxsize=256)
def axis_weights(pixels_in: int, pixels_out: int, start: float, extent: float) -> tuple[slice, torch.Tensor]:
    """Bilinear sampling weights along one axis, ``align_corners=False``, for an output axis of ``pixels_out`` covering
    the whole frame of which the model's masks (``pixels_in`` along this axis) saw ``[start, start + extent)``.

    Output pixel ``i`` has its centre at frame fraction ``(i + 0.5) / pixels_out``; it is inside the view when that
    lies in ``[start, start + extent)``, and its position in the view, as a fraction ``v``, is mask coordinate
    ``s = v x pixels_in - 0.5`` (pixel centres at whole numbers), clamped to ``[0, pixels_in - 1]`` (the edge pixels
    extend outwards). Its two weights are ``1 - (s - floor(s))`` on mask pixel ``floor(s)`` and ``s - floor(s)`` on
    the next (added up on the last pixel). For the whole frame (``start`` 0, ``extent`` 1) that is
    :func:`torch.nn.functional.interpolate`'s ``bilinear`` (which clamps at 0 and, through its index clamp, at the
    last pixel); with a view, ``grid_sample``'s ``bilinear`` with border padding at the same positions. Positions
    are computed in float64 (torch's in float32: the weights agree within about 1e-7 relative).

    Cached: the result is shared, and must not be modified. Applied as matrices, the zero weights multiply every mask
    value, so a non-finite one (0 x inf is NaN) reaches its slot's whole output rows and columns, not only its
    neighbours; it stays within its frame and slot, and a frame whose slots are not finite is answered with an error
    anyway (:data:`service.runner.NOT_FINITE`).

    Args:
        pixels_in: the masks' length along the axis.
        pixels_out: the output's length along the axis (any, larger or smaller).
        start: where the view starts in the frame, as a fraction of it (negative for a padded canvas).
        extent: the view's length, as a fraction of the frame (> 0).

    Returns:
        The output pixels inside the view (a contiguous range, possibly empty) and their float32 weights
        ``[inside, pixels_in]``, two non-zero entries a row (one at the clamped edges).
    """
    inside = _inside(pixels_out, start, extent)
    centres = (np.arange(inside.start, inside.stop, dtype=np.float64) + 0.5) / pixels_out  # [inside] frame fractions
    positions = np.clip((centres - start) / extent * pixels_in - 0.5, 0, pixels_in - 1)  # [inside] mask coordinates
    first = np.minimum(np.floor(positions).astype(np.int64), pixels_in - 1)  # [inside]
    second = np.minimum(first + 1, pixels_in - 1)  # [inside]
    fraction = positions - first  # [inside], in [0, 1)
    weights = np.zeros((len(positions), pixels_in), dtype=np.float64)  # [inside, pixels_in]
    out = np.arange(len(positions))
    np.add.at(weights, (out, first), 1 - fraction)
    np.add.at(weights, (out, second), fraction)
    return inside, torch.from_numpy(weights.astype(np.float32))


def _inside(pixels: int, start: float, extent: float) -> slice:
    """The pixels of an axis of ``pixels`` whose centres ``(i + 0.5) / pixels`` lie in ``[start, start + extent)``."""
    centres = (np.arange(pixels, dtype=np.float64) + 0.5) / pixels  # [pixels]
    inside = np.flatnonzero((centres >= start) & (centres < start + extent))
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)
