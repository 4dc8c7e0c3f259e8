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
from typing import NamedTuple

import numpy as np
import torch

from plugins.segmentation import segment_uint8
from service.images import ModelView
from service.types import OUTSIDE_VIEW

SHARED_CALL_MAX_PIXELS = 512 * 512
"""On a CPU, mask outputs up to this many pixels are made inside the batch's model call; larger ones (a tenth of a
second or more at 4K) are made afterwards for their own stream alone, so they do not hold up the streams batched
with it."""

ACCELERATOR_SHARED_CALL_MAX_PIXELS = 128 * 128
"""The same limit for an engine on another device (a GPU): there the model call takes a few milliseconds for a whole
batch, and making every frame's masks on the one model thread inside it would keep the device idle (at 480 x 480, a
batch of 6 spent 31 ms on masks against 2 ms on the device) and hold up every frame of the batch for all of them.
Larger outputs are made per frame on the decode threads, in parallel with the next model call."""


def shared_call_max_pixels(device: str) -> int:
    """The most mask-output pixels made inside a model call on ``device`` (as :func:`service.engine.normalise_device`
    writes it): :data:`SHARED_CALL_MAX_PIXELS` on a CPU, :data:`ACCELERATOR_SHARED_CALL_MAX_PIXELS` elsewhere."""
    return SHARED_CALL_MAX_PIXELS if device.startswith("cpu") else ACCELERATOR_SHARED_CALL_MAX_PIXELS


BAND_PIXELS = 32 * 1024
"""Output pixels per band of rows (at least one row): a band's resampled masks, ``G x K x`` 128 KiB in float32 for a
group of G frames, are segmented (and copied into the soft masks, quantised first for uint8 ones) while in the
cache, then let go. A segmentation asked for without float32 soft masks so needs little beyond its outputs (a byte
a pixel, and a byte a pixel and slot for uint8 soft masks) at any size."""

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

    def in_shared_call(self, max_pixels: int) -> bool:
        """Whether the outputs are made inside the batch's model call: none are asked for, or they have at most
        ``max_pixels`` pixels (:func:`shared_call_max_pixels` of the engine's device)."""
        wanted = self.segmentation or self.soft
        return not wanted or self.size[0] * self.size[1] <= max_pixels


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
    size and thread count gives the same map. Frames asking for the same size and view are processed together:
    their segmentations are made when one of them asks for one, soft masks only for the frames asking for them.
    uint8 soft masks are those of float32 quantised (probability x 255, rounded to the nearest, ties to even,
    clipped to 0-255), a band of rows at a time, without float32 soft masks of the whole frame.

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
        group = [requests[i] for i in indices]
        floats = [row for row, request in enumerate(group) if request.soft and not request.soft_uint8]
        quantised = [row for row, request in enumerate(group) if request.soft and request.soft_uint8]
        made = _resampled(
            source[indices],  # [G, K, h, w]
            size,
            view or _WHOLE_FRAME,
            float_rows=floats,
            uint8_rows=quantised,
            segmentation=any(request.segmentation for request in group),
        )
        # each frame's place among the frames asking for soft masks of its type
        soft_of = {row: (made.soft, at) for at, row in enumerate(floats)}
        soft_of |= {row: (made.soft_uint8, at) for at, row in enumerate(quantised)}
        for row, index in enumerate(indices):
            frame_soft = None
            if row in soft_of:
                held, at = soft_of[row]
                assert held is not None
                frame_soft = held[at]  # [K, H, W]
                if len(held) > 1:
                    frame_soft = frame_soft.copy()  # not a view keeping the group's other frames alive
            frame_map = (
                made.segmentation[row] if requests[index].segmentation and made.segmentation is not None else None
            )
            outputs[index] = MaskOutputs(frame_map, frame_soft)
    return outputs


class _Resampled(NamedTuple):
    """A group's outputs (see :func:`_resampled`); ``None`` where not asked for."""

    soft: np.ndarray | None
    """float32 ``[F, K, H, W]``: the soft masks of the group's frames asking for float32 ones, in order."""
    soft_uint8: np.ndarray | None
    """uint8 ``[U, K, H, W]``: those of the frames asking for uint8 ones (:func:`_quantise_into`)."""
    segmentation: np.ndarray | None
    """uint8 ``[G, H, W]``: every frame's segmentation."""


def _resampled(
    group: torch.Tensor,
    size: tuple[int, int],
    view: ModelView,
    *,
    float_rows: Sequence[int],
    uint8_rows: Sequence[int],
    segmentation: bool,
) -> _Resampled:
    """The outputs of ``group`` ``[G, K, h, w]`` mapped onto an output of ``size`` whose part ``view`` the model saw
    (see :func:`mask_outputs`): soft masks float32 for the frames (rows of ``group``) in ``float_rows``, uint8 for
    those in ``uint8_rows`` (no frame in both), segmentations of every frame when ``segmentation``. Sampled a band
    of rows (:data:`BAND_PIXELS`) at a time; a band's uint8 soft masks are quantised from its float ones in place,
    so no float32 soft masks are held for frames that asked for uint8 ones, and the values are those of the float32
    soft masks quantised whole (the same elementwise operations).

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
    allocate = np.empty if whole else np.zeros
    soft_out = allocate((len(float_rows), slots, *size), dtype=np.float32) if float_rows else None  # [F, K, H, W]
    uint8_out = allocate((len(uint8_rows), slots, *size), dtype=np.uint8) if uint8_rows else None  # [U, K, H, W]
    map_out: np.ndarray | None = None  # [G, H, W]
    if segmentation:
        map_out = np.empty((count, *size), np.uint8) if whole else np.full((count, *size), OUTSIDE_VIEW, np.uint8)
    made = _Resampled(soft_out, uint8_out, map_out)
    if not (float_rows or uint8_rows or segmentation) or 0 in inside:
        return made
    vertical = down @ group  # [R, h] @ [G, K, h, w] -> [G, K, R, w]: resampled along y, small (w is the model's)
    band = max(1, BAND_PIXELS // inside[1])
    for start in range(0, inside[0], band):
        stop = min(start + band, inside[0])
        sampled = vertical[:, :, start:stop] @ across.T  # [G, K, band, w] @ [w, C] -> [G, K, band, C], its own
        values = sampled.numpy()
        frame_rows = slice(rows.start + start, rows.start + stop)
        if map_out is not None:
            map_out[:, frame_rows, cols] = segment_uint8(sampled)  # [G, K, band, C] -> [G, band, C]
        if soft_out is not None:
            soft_out[:, :, frame_rows, cols] = values if len(float_rows) == count else values[float_rows]
        if uint8_out is not None:  # last: quantised in place, in the band's own memory or a copy of its rows
            _quantise_into(
                uint8_out[:, :, frame_rows, cols], values if len(uint8_rows) == count else values[uint8_rows]
            )
    return made


def _quantise_into(out: np.ndarray, soft: np.ndarray) -> None:
    """Write float32 ``soft`` into uint8 ``out`` of its shape as probability x 255, rounded to the nearest (ties to
    even) and clipped to 0-255; ``soft`` is overwritten (with the rounded values, still float32)."""
    np.multiply(soft, 255, out=soft)
    np.rint(soft, out=soft)
    np.clip(soft, 0, 255, out=soft)
    np.copyto(out, soft, casting="unsafe")  # whole numbers 0-255: exact


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
