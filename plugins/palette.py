"""The colour of each slot in every picture the project draws (training samples, model cards, the client's
overlays), so that slot ``k`` looks the same in all of them."""

from __future__ import annotations

import colorsys

import numpy as np

FIXED_COLOURS = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
        (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
        (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
        (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.uint8,
)  # fmt: skip
"""``[20, 3]`` uint8: the colours of slots 0-19, chosen to be told apart at a glance."""

_GOLDEN_RATIO_FRACTION = 0.61803398875


def slot_colours(slot_ids: np.ndarray | list[int] | range) -> np.ndarray:
    """The colour of each of ``slot_ids`` (non-negative integers, any shape): :data:`FIXED_COLOURS` for ids below
    20, past them hues spaced by the golden ratio (no two ids share a colour, however many slots a model has).

    Returns:
        ``[*shape, 3]`` uint8 for ids of ``shape``.

    Raises:
        ValueError: an id is negative.
    """
    shape = np.shape(slot_ids)
    ids = np.asarray(slot_ids, dtype=np.int64).reshape(-1)  # [*shape] -> [N]
    if ids.size and int(ids.min()) < 0:
        raise ValueError(f"slot ids must be >= 0, got {int(ids.min())}")
    colours = np.empty((ids.size, 3), dtype=np.uint8)
    fixed = ids < len(FIXED_COLOURS)
    colours[fixed] = FIXED_COLOURS[ids[fixed]]
    for row in np.flatnonzero(~fixed):
        hue = (_GOLDEN_RATIO_FRACTION * int(ids[row])) % 1.0
        colours[row] = np.round(np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.95)) * 255)
    return colours.reshape(*shape, 3)  # [N, 3] -> [*shape, 3]
