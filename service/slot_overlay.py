"""Slots drawn over a frame: each pixel's slot colour blended over it, slot boundaries darkened (the client's
overlays and the training samples draw it alike). Imports neither gRPC nor torch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from plugins.palette import slot_colours
from service.types import OUTSIDE_VIEW


def render_overlay(
    frame: np.ndarray, segmentation: np.ndarray, slot_ids: tuple[int, ...], alpha: float = 0.5
) -> np.ndarray:
    """Blend each pixel's slot colour (:func:`plugins.palette.slot_colours` of its id) over ``frame`` and darken slot
    boundaries.

    Pixels outside the model's view (:data:`~service.types.OUTSIDE_VIEW`, 255, beside the crop of
    ``FrameFit.CROP``) keep the frame's own colours, as long as fewer than 256 slots make 255 no slot index.

    Args:
        frame: uint8 ``[H, W, 3]``.
        segmentation: uint8 ``[h, w]`` slot indices (resized to the frame with nearest-neighbour).
        slot_ids: the id of each slot index.
        alpha: weight of the slot colour.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    height, width = frame.shape[:2]
    if segmentation.shape != (height, width):
        resized = Image.fromarray(segmentation).resize((width, height), Image.Resampling.NEAREST)
        segmentation = np.asarray(resized)
    marks_outside = len(slot_ids) <= OUTSIDE_VIEW  # with 256 slots 255 is a slot's index
    _check_indices(segmentation, len(slot_ids), marks_outside)
    # Lookup tables instead of per-pixel arithmetic on fancy-indexed arrays (about twice as fast at 640x480):
    # (1 - alpha) x each 8-bit value [256], and alpha x each slot index's colour [256, 3], both float32.
    colours = np.zeros((256, 3), dtype=np.float32)
    ids = np.asarray(slot_ids, dtype=np.int64)
    colours[: len(ids)] = slot_colours(ids).astype(np.float32) * np.float32(alpha)  # [N, 3], as in every picture
    shades = np.arange(256, dtype=np.float32) * np.float32(1 - alpha)
    blended = np.take(shades, frame)  # [H, W, 3]
    blended += np.take(colours, segmentation, axis=0)  # [H, W] -> [H, W, 3]
    edges = np.zeros((height, width), dtype=bool)
    edges[1:] |= segmentation[1:] != segmentation[:-1]
    edges[:, 1:] |= segmentation[:, 1:] != segmentation[:, :-1]
    np.multiply(blended, np.float32(0.4), out=blended, where=edges[:, :, None])  # [H, W, 1] over the channels
    result: np.ndarray = blended.clip(0, 255).astype(np.uint8)
    if marks_outside:
        outside = segmentation == OUTSIDE_VIEW  # [H, W]
        result[outside] = frame[outside]  # uncoloured, and no boundary drawn over them
    return result


def _check_indices(segmentation: np.ndarray, slots: int, marks_outside: bool) -> None:
    """Refuse slot indices beyond ``slots`` (255 stands for outside the view when ``marks_outside``).

    Raises:
        ValueError: naming the first such index.
    """
    counts = np.bincount(segmentation.ravel(), minlength=256)  # [256] pixels per index
    beyond = np.flatnonzero(counts[slots : OUTSIDE_VIEW if marks_outside else 256]) + slots
    if beyond.size:
        raise ValueError(f"the segmentation holds slot index {int(beyond[0])}, but there are {slots} slot ids")
