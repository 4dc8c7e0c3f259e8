"""Where a frame's slots are, measured on its segmentation: each slot's share of the frame (:func:`slot_areas`),
its centroid and bounding box (:func:`slot_geometry`), and the segmentation size a trajectory measures them on
(:func:`trajectory_mask_size`). The conventions (pixel centres, box edges, a mask smaller than the frame) are those
of the trajectory file's ``areas``, ``centroids`` and ``boxes``: :mod:`service.client.trajectory` states them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASK_LONG_SIDE = 640
"""The longest side of the segmentation a trajectory's geometry is measured on (:func:`trajectory_mask_size`)."""


def trajectory_mask_size(frame_size: tuple[int, ...]) -> tuple[int, int]:
    """The segmentation size a trajectory's geometry is measured on, for frames of ``frame_size`` ``(H, W, ...)``:
    the frame's own size, scaled down to :data:`MASK_LONG_SIDE` pixels on its longer side when larger."""
    height, width = frame_size[0], frame_size[1]
    scale = min(1.0, MASK_LONG_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def slot_areas(segmentation: np.ndarray, slots: int) -> np.ndarray:
    """Each slot's share of the whole frame: its pixels in ``segmentation`` over all of them.

    Pixels outside the model's view (:data:`~service.types.OUTSIDE_VIEW`, 255, when ``slots`` <= 255) count in
    the frame but belong to no slot, so with ``FrameFit.CROP`` the shares sum to the crop's share of the frame.

    Args:
        segmentation: uint8 ``[H, W]`` slot indices.
        slots: K.

    Returns:
        float64 ``[K]``.
    """
    counts = np.bincount(segmentation.ravel(), minlength=slots)  # [H, W] -> [H*W]; counts [>= K]
    return counts[:slots] / segmentation.size  # index 255 is beyond the K <= 255 slots: never an area


@dataclass(frozen=True)
class SlotGeometry:
    """Where a frame's slots are, in the frame's pixels (see :mod:`service.client.trajectory` for the
    conventions).

    Attributes:
        frame_size: ``(height, width)`` of the frame as sent.
        centroids: float32 ``[K, 2]`` ``(row, col)`` pixel indices; NaN for a slot with no pixels.
        boxes: float32 ``[K, 4]`` ``(top, left, bottom, right)`` pixel edges, bottom and right exclusive; NaN for
            a slot with no pixels.
        areas: float64 ``[K]``, each slot's share of the whole frame: :func:`slot_areas` of the same segmentation,
            from the pixel counts the centroids are computed with.
    """

    frame_size: tuple[int, int]
    centroids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray


def slot_geometry(segmentation: np.ndarray, slots: int, frame_size: tuple[int, int]) -> SlotGeometry:
    """Each slot's centroid and bounding box in a frame of ``frame_size``, from the frame's ``segmentation``.

    Counts the pixels :func:`slot_areas` counts: pixels outside the model's view (255, when ``slots`` <= 255)
    belong to no slot. A segmentation of another size than the frame covers the whole frame: its coordinates are
    scaled to the frame's (see :mod:`service.client.trajectory`).

    Args:
        segmentation: uint8 ``[h, w]`` slot indices.
        slots: K.
        frame_size: ``(H, W)`` of the frame as sent.

    Returns:
        The frame's :class:`SlotGeometry`.

    Raises:
        ValueError: ``segmentation`` is not a non-empty 2-D array, or ``frame_size`` is not two sizes >= 1.
    """
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise ValueError(f"the segmentation must be a non-empty [h, w] array, got shape {segmentation.shape}")
    height, width = (int(size) for size in frame_size)
    if height < 1 or width < 1:
        raise ValueError(f"frame_size must be (height, width) >= 1, got {tuple(frame_size)}")
    mask_height, mask_width = segmentation.shape
    labels = segmentation.astype(np.intp)
    bins = max(slots, int(labels.max()) + 1)
    rows, cols = np.indices(segmentation.shape)  # 2 x [h, w]
    # One bincount per axis: the pixels of each slot in each mask row and in each mask column.
    per_row = np.bincount((labels * mask_height + rows).ravel(), minlength=bins * mask_height)  # [bins * h]
    per_row = per_row.reshape(bins, mask_height)[:slots]  # [K, h]; index 255 is beyond K <= 255 slots
    per_col = np.bincount((labels * mask_width + cols).ravel(), minlength=bins * mask_width)  # [bins * w]
    per_col = per_col.reshape(bins, mask_width)[:slots]  # [K, w]
    counts = per_row.sum(axis=1)  # [K]
    empty = counts == 0
    sums = np.stack([per_row @ np.arange(mask_height), per_col @ np.arange(mask_width)], axis=1)  # [K, 2]
    scale = np.array([height / mask_height, width / mask_width])  # [2] frame pixels per mask pixel
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]  # [K, 2] mask pixel indices; NaN for an empty slot
    centroids = (mean + 0.5) * scale - 0.5  # [K, 2] a mask pixel's centre, in frame pixel indices
    hit_rows, hit_cols = per_row > 0, per_col > 0  # [K, h], [K, w]
    top, left = hit_rows.argmax(axis=1), hit_cols.argmax(axis=1)  # [K] each
    bottom = mask_height - hit_rows[:, ::-1].argmax(axis=1)  # [K] exclusive
    right = mask_width - hit_cols[:, ::-1].argmax(axis=1)  # [K] exclusive
    boxes = np.stack([top, left, bottom, right], axis=1) * np.tile(scale, 2)  # [K, 4] frame pixel edges
    boxes[empty] = np.nan
    areas = counts / segmentation.size  # [K], as slot_areas counts them
    return SlotGeometry((height, width), centroids.astype(np.float32), boxes.astype(np.float32), areas)
