"""Turn a batch of model masks into the per-stream mask outputs (segmentation map and soft masks).

The outputs always cover the whole frame, at the stream's mask size. When the model saw the whole frame (a
stretch) its masks are resized to that size; when it saw a crop or a padded canvas (:class:`MaskRequest.view`)
they are mapped onto the part of the frame it saw, and the rest is :data:`~service.types.OUTSIDE_VIEW`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plugins.segmentation import segment_uint8
from service.images import ModelView
from service.types import OUTSIDE_VIEW

SHARED_CALL_MAX_PIXELS = 512 * 512
"""Mask outputs up to this many pixels are made inside the batch's model call; larger ones (up to seconds
at 4K) are made afterwards for their own stream alone, so they do not hold up the streams batched with it."""

BANDED_MIN_PIXELS = 1024 * 1024
"""Segmentations of a stretch of at least this many pixels, asked for without soft masks, are sampled in bands of
rows (:func:`_banded_segmentation`): a band's soft masks are made, segmented and let go, so making the map needs
about one byte a pixel instead of about (4 K + 10) (570 MiB for 6 slots at 4096 x 4096). Those of a crop or a padded
canvas are sampled so at any size: their sampler treats each pixel alone, so bands give the very same map."""

BAND_PIXELS = 256 * 1024
"""Output pixels per band of :func:`_banded_segmentation` (its soft masks: K x 1 MiB for float32)."""

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

    Without a :attr:`~MaskRequest.view` masks are upsampled bilinearly (``align_corners=False``) to the output
    size. With one, each output pixel's centre is mapped into the model's view (:func:`view_grid`) and the masks
    are sampled there bilinearly (``grid_sample``, ``align_corners=False``, border padding): on an output region
    of whole pixels this equals upsampling the masks to that region; pixels whose centre lies outside the view
    (outside a crop) get soft masks 0 and the segmentation :data:`~service.types.OUTSIDE_VIEW` (255). The
    segmentation is :func:`plugins.segmentation.segment` of the (in-view) masks (computed as
    :func:`~plugins.segmentation.segment_uint8`): the argmax over slots, with masks
    within 1e-4 of the largest counted as tied and given to the lowest-numbered slot, so that every backend,
    batch size and thread count gives the same map. Frames asking for the same size and view are processed
    together.

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
    outputs: list[MaskOutputs | None] = [None] * len(requests)
    source = torch.from_numpy(masks)
    by_size: dict[tuple[tuple[int, int], ModelView | None], list[int]] = {}
    for index, request in enumerate(requests):
        if request.segmentation or request.soft:
            by_size.setdefault((request.size, request.view), []).append(index)
        else:
            outputs[index] = MaskOutputs(None, None)
    for (size, view), indices in by_size.items():
        group = source[indices]  # [G, K, h, w]
        soft_wanted = any(requests[i].soft for i in indices)
        if not soft_wanted and (view is not None or size[0] * size[1] >= BANDED_MIN_PIXELS):
            segmentation = _banded_segmentation(group, size, view or _WHOLE_FRAME)  # [G, H, W]
            for row, index in enumerate(indices):
                outputs[index] = MaskOutputs(segmentation[row], None)
            continue
        if view is None:
            if tuple(group.shape[-2:]) != size:
                group = F.interpolate(group, size=size, mode="bilinear", align_corners=False)  # [G, K, H, W]
            segmentation = segment_uint8(group)  # [G, K, H, W] -> [G, H, W]
        else:
            group, segmentation = _in_view(group, size, view)
        for row, index in enumerate(indices):
            request = requests[index]
            soft = None
            if request.soft:
                soft = group[row].numpy()  # [K, H, W]
                soft = np.rint(soft * 255).clip(0, 255).astype(np.uint8) if request.soft_uint8 else soft.copy()
            seg = segmentation[row] if request.segmentation else None
            outputs[index] = MaskOutputs(seg, soft)
    return [out if out is not None else MaskOutputs(None, None) for out in outputs]


def _banded_segmentation(group: torch.Tensor, size: tuple[int, int], view: ModelView) -> np.ndarray:
    """Segmentations uint8 ``[G, H, W]`` of ``group`` ``[G, K, h, w]`` over an output of ``size``, sampled in
    bands of rows as :func:`_in_view` samples the whole view at once (the same grid coordinates, so the same map
    for a crop or a padded canvas; for a stretch, ``view`` covers the whole frame and the sampler agrees with
    :func:`torch.nn.functional.interpolate`'s bilinear upsampling up to float rounding, far below the
    segmentation's tie tolerance). Pixels outside the view are :data:`~service.types.OUTSIDE_VIEW`.

    Raises:
        ValueError: pixels lie outside the view and ``K`` exceeds 255.
    """
    count, slots = group.shape[0], group.shape[1]
    top, left, height, width = view
    rows, cols = _inside(size[0], top, height), _inside(size[1], left, width)  # the output pixels inside the view
    segmentation = np.full((count, *size), OUTSIDE_VIEW, dtype=np.uint8)  # [G, H, W]
    if (rows.stop - rows.start, cols.stop - cols.start) != size and slots > OUTSIDE_VIEW:
        raise ValueError(
            f"pixels outside the model's view are marked {OUTSIDE_VIEW}, a slot index of this {slots}-slot model"
        )
    band = max(1, BAND_PIXELS // max(1, cols.stop - cols.start))
    for start in range(rows.start, rows.stop, band):
        stop = min(start + band, rows.stop)
        grid = _band_grid(size, view, slice(start, stop), cols)  # [1, band, cols, 2]
        sampled = F.grid_sample(
            group, grid.expand(count, -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
        )  # [G, K, band, cols]
        segmentation[:, start:stop, cols] = segment_uint8(sampled)  # [G, K, band, cols] -> [G, band, cols]
    return segmentation


def _band_grid(size: tuple[int, int], view: ModelView, rows: slice, cols: slice) -> torch.Tensor:
    """The float32 grid ``[1, rows, cols, 2]`` of :func:`view_grid`, for the given rows and columns only."""
    top, left, height, width = view
    ys = ((np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) / size[0] - top) / height * 2 - 1  # [rows]
    xs = ((np.arange(cols.start, cols.stop, dtype=np.float64) + 0.5) / size[1] - left) / width * 2 - 1  # [cols]
    grid = np.empty((1, len(ys), len(xs), 2), dtype=np.float32)  # [1, rows, cols, (x, y)]
    grid[..., 0] = xs[None, None, :]  # [cols] -> [1, 1, cols], broadcast over the rows
    grid[..., 1] = ys[None, :, None]  # [rows] -> [1, rows, 1], broadcast over the columns
    return torch.from_numpy(grid)


def view_grid(size: tuple[int, int], view: ModelView) -> tuple[slice, slice, torch.Tensor]:
    """Where the output pixels inside the model's view sample the model's masks.

    The output ``size = (H, W)`` covers the whole frame, so output pixel ``(y, x)`` has its centre at frame
    fraction ``((y + 0.5) / H, (x + 0.5) / W)``; it is inside the view when that lies in ``[top, top + height)``
    and ``[left, left + width)``, and its position in the view, as a fraction ``v``, is grid coordinate
    ``2 v - 1`` (``grid_sample``'s ``align_corners=False`` convention, where -1 and 1 are the outer edges of the
    masks' first and last pixels). Computed in float64, returned as float32.

    Args:
        size: the output ``(H, W)``.
        view: the model's view in the frame (see :data:`service.images.ModelView`).

    Returns:
        The rows and columns inside the view (contiguous ranges, possibly empty) and the float32 grid
        ``[1, rows, cols, 2]`` of their ``(x, y)`` sampling positions.
    """
    top, left, height, width = view
    rows = _inside(size[0], top, height)
    cols = _inside(size[1], left, width)
    return rows, cols, _band_grid(size, view, rows, cols)


def _inside(pixels: int, start: float, extent: float) -> slice:
    """The pixels of an axis of ``pixels`` whose centres ``(i + 0.5) / pixels`` lie in ``[start, start + extent)``."""
    centres = (np.arange(pixels, dtype=np.float64) + 0.5) / pixels  # [pixels]
    inside = np.flatnonzero((centres >= start) & (centres < start + extent))
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)


def _in_view(group: torch.Tensor, size: tuple[int, int], view: ModelView) -> tuple[torch.Tensor, np.ndarray]:
    """Soft masks ``[G, K, H, W]`` and segmentations uint8 ``[G, H, W]`` of ``group`` ``[G, K, h, w]`` mapped onto
    the part of an output of ``size`` that the model's ``view`` covers (see :func:`mask_outputs`; a group that asks
    for no soft masks is segmented by :func:`_banded_segmentation`, which samples the same grid).

    Raises:
        ValueError: pixels lie outside the view and ``K`` exceeds 255.
    """
    count, slots = group.shape[0], group.shape[1]
    rows, cols, grid = view_grid(size, view)
    soft = group.new_zeros((count, slots, *size))  # [G, K, H, W]
    segmentation = np.full((count, *size), OUTSIDE_VIEW, dtype=np.uint8)  # [G, H, W]
    inside_all = (rows.stop - rows.start, cols.stop - cols.start) == size
    if not inside_all and slots > OUTSIDE_VIEW:
        raise ValueError(
            f"pixels outside the model's view are marked {OUTSIDE_VIEW}, a slot index of this {slots}-slot model"
        )
    if rows.stop > rows.start and cols.stop > cols.start:
        # grid [1, rows, cols, 2] -> [G, rows, cols, 2]: one view for the whole group
        sampled = F.grid_sample(
            group, grid.expand(count, -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
        )  # [G, K, rows, cols]
        soft[:, :, rows, cols] = sampled
        segmentation[:, rows, cols] = segment_uint8(sampled)  # [G, K, rows, cols] -> [G, rows, cols]
    return soft, segmentation
