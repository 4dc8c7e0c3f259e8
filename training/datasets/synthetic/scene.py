"""Sampling of a scene (objects, sprites, background, camera) from a level and a random generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.datasets.synthetic.levels import COLOURS, SIZES, TEXTURES, Level
from training.datasets.synthetic.metadata import ObjectInfo
from training.datasets.synthetic.physics import Body
from training.datasets.synthetic.sprites import background_canvas, shape_mask, sprite_colours

_PLACEMENT_TRIES = 200


@dataclass(frozen=True)
class Sprite:
    """A rasterised object.

    Attributes:
        mask: bool [d, d] shape mask.
        rgb: uint8 [d, d, 3] colours (only meaningful inside ``mask``).
        box: Tight (x0, y0, x1, y1) box of ``mask`` inside the sprite, half-open.
    """

    mask: np.ndarray
    rgb: np.ndarray
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """Everything drawn once per video before simulation.

    Attributes:
        infos: Static object attributes, ordered by object id.
        sprites: One sprite per object, same order.
        bodies: Initial physics state per object, same order (mutated by the simulation).
        canvas: uint8 [Hc, Wc, 3] background, at least as large as the frame plus the whole pan.
        background: Background pattern name.
        camera_velocity: Pan (vx, vy) in pixels per frame.
        camera_origin: Top-left canvas pixel (x, y) seen at frame 0.
    """

    infos: tuple[ObjectInfo, ...]
    sprites: tuple[Sprite, ...]
    bodies: list[Body]
    canvas: np.ndarray
    background: str
    camera_velocity: tuple[float, float]
    camera_origin: tuple[float, float]


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _place(
    bodies: list[Body], half: float, collider: float, rng: np.random.Generator, height: int, width: int
) -> tuple[float, float]:
    """Draws a centre whose collider overlaps no earlier body (gives up after a fixed number of tries)."""
    x = y = 0.0
    for _ in range(_PLACEMENT_TRIES):
        x = float(rng.uniform(half, width - half))
        y = float(rng.uniform(half, height - half))
        if all((b.x - x) ** 2 + (b.y - y) ** 2 >= (b.collider + collider) ** 2 for b in bodies):
            break
    return x, y


def sample_scene(level: Level, rng: np.random.Generator, height: int, width: int, num_frames: int) -> Scene:
    """Draws objects, sprites, initial motion, background and camera pan for one video."""
    short = min(height, width)
    count = int(rng.integers(level.min_objects, level.max_objects + 1))
    depths = rng.permutation(count)
    colour_names = list(COLOURS)
    infos: list[ObjectInfo] = []
    sprites: list[Sprite] = []
    bodies: list[Body] = []
    for index in range(count):
        shape = str(rng.choice(level.shapes))
        size = str(rng.choice(level.sizes))
        colour = str(rng.choice(colour_names))
        textured = rng.random() < level.textured_fraction
        texture = str(rng.choice(TEXTURES[1:])) if textured else "flat"
        diameter = int(min(short, max(3, round(SIZES[size] * short))))
        mask = shape_mask(shape, diameter)
        sprite = Sprite(mask, sprite_colours(mask, COLOURS[colour], texture, rng), _tight_box(mask))
        area = int(mask.sum())
        half = diameter / 2
        collider = half * level.collider_scale
        x, y = _place(bodies, half, collider, rng, height, width)
        speed = float(rng.uniform(level.min_speed, level.max_speed)) * short
        angle = float(rng.uniform(0.0, 2 * math.pi))
        bodies.append(Body(x, y, speed * math.cos(angle), speed * math.sin(angle), half, collider, float(area)))
        sprites.append(sprite)
        infos.append(
            ObjectInfo(
                object_id=index + 1,
                shape=shape,
                colour=colour,
                rgb=COLOURS[colour],
                size=size,
                diameter_px=diameter,
                texture=texture,
                area_px=area,
                mass=float(area),
                depth=int(depths[index]),
            )
        )
    pan = level.pan_speed * short
    pan_angle = float(rng.uniform(0.0, 2 * math.pi))
    cam_v = (pan * math.cos(pan_angle), pan * math.sin(pan_angle))
    travel_x = math.ceil(abs(cam_v[0]) * max(num_frames - 1, 0)) + 1
    travel_y = math.ceil(abs(cam_v[1]) * max(num_frames - 1, 0)) + 1
    canvas, background = background_canvas(level.background, height + travel_y, width + travel_x, rng, short / 6)
    origin = (float(travel_x - 1) if cam_v[0] < 0 else 0.0, float(travel_y - 1) if cam_v[1] < 0 else 0.0)
    return Scene(tuple(infos), tuple(sprites), bodies, canvas, background, cam_v, origin)
