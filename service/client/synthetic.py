"""A generated clip of moving coloured shapes, for demos and benchmarks (no dataset needed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def synthetic_clip(
    frames: int, size: tuple[int, int] = (128, 128), objects: int = 4, seed: int = 0
) -> list[np.ndarray]:
    """:func:`synthetic_frames` as a list."""
    return list(synthetic_frames(frames, size, objects, seed))


def synthetic_frames(
    frames: int, size: tuple[int, int] = (128, 128), objects: int = 4, seed: int = 0
) -> Iterator[np.ndarray]:
    """``frames`` uint8 ``[H, W, 3]`` frames, made one at a time as they are taken (a long clip costs no memory):
    ``objects`` discs and squares bouncing over a soft gradient.

    Args:
        frames: number of frames.
        size: ``(H, W)``.
        objects: number of moving shapes.
        seed: makes the clip reproducible.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack(
        [40 + 40 * ys / height, 50 + 30 * xs / width, np.full((height, width), 70.0)], axis=-1
    )  # 3 x [H, W] -> [H, W, 3]
    radius = rng.uniform(0.08, 0.16, objects) * min(height, width)
    position = rng.uniform(radius[:, None], np.array([height, width]) - radius[:, None])  # [N] -> [N, 1]; [N, 2]
    velocity = rng.uniform(-0.03, 0.03, (objects, 2)) * np.array([height, width])
    colours = rng.uniform(90, 255, (objects, 3))
    square = rng.random(objects) < 0.5
    for _ in range(frames):
        frame = background.copy()
        for i in range(objects):
            dy, dx = ys - position[i, 0], xs - position[i, 1]
            inside = np.maximum(abs(dy), abs(dx)) < radius[i] if square[i] else dy**2 + dx**2 < radius[i] ** 2
            frame[inside] = colours[i]
        yield frame.clip(0, 255).astype(np.uint8)
        position += velocity
        for axis, limit in ((0, height), (1, width)):
            low, high = position[:, axis] < radius, position[:, axis] > limit - radius
            velocity[low | high, axis] *= -1
            position[:, axis] = position[:, axis].clip(radius, limit - radius)
