"""Difficulty levels of the synthetic multi-object video worlds.

A level is a frozen, fully documented recipe: everything random in a video is drawn from the ranges given here
with the video's seed. Sizes and speeds are fractions of the frame's shorter side so that a level looks the same
at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")
"""Every shape the generator can draw."""

TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "noise")
"""Object looks: ``flat`` is a single colour, the others modulate the object's colour with a pattern."""

SIZES: dict[str, float] = {"small": 0.16, "medium": 0.23, "large": 0.30}
"""Named object sizes: sprite diameter (bounding-box side) as a fraction of the frame's shorter side."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 230),
    "magenta": (225, 50, 220),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
}
"""Named object colours (sRGB, uint8). Plain backgrounds are drawn darker than all of them; the brightest pixels
of mild backgrounds reach a luminance of about 91 (0.2126 R + 0.7152 G + 0.0722 B), above red's 80 and just
below blue's 92; the hard level's high-contrast textures reach brighter than the darker colours (red, blue,
magenta, green)."""


@dataclass(frozen=True)
class Level:
    """Parameters of one difficulty level.

    Attributes:
        name: Level name, as used in the ``synthetic:<level>`` data spec.
        min_objects: Fewest objects in a video (inclusive).
        max_objects: Most objects in a video (inclusive); at most 254 so ids fit in a uint8 map.
        shapes: Shapes drawn uniformly per object (subset of ``SHAPES``).
        sizes: Named sizes drawn uniformly per object (keys of ``SIZES``).
        textured_fraction: Probability that an object gets a non-flat texture (0 = all flat).
        background: ``"plain"`` (one dark colour), ``"mild"`` (low-contrast texture) or ``"textured"``
            (high-contrast texture).
        min_speed: Slowest initial object speed, in frame-short-sides per frame.
        max_speed: Fastest initial object speed, in frame-short-sides per frame.
        pan_speed: Camera pan speed in frame-short-sides per frame (0 = static camera). The pan scrolls the
            background in a random direction; the object arena is attached to the camera, so objects never
            leave the frame.
        collider_scale: Collision radius as a fraction of an object's half-size. Values below 1 let sprite corners
            overlap so that objects partially occlude each other (by their fixed depth order). Every shape
            collides as this disc, whatever its outline, so thin shapes (diamond, triangle tip, star) can bounce
            off each other a few pixels apart: an object collision event means the discs touched, not the
            outlines (see ``physics.py``).
        default_size: Default (height, width) in pixels.

    Raises:
        ValueError: at construction, for an object count outside ``1 <= min_objects <= max_objects <= 254``, empty
            or unknown shapes or sizes, an unknown background, ``textured_fraction`` outside ``[0, 1]``, speeds
            outside ``0 <= min_speed <= max_speed``, a negative ``pan_speed`` or a non-positive
            ``collider_scale``.
    """

    name: str
    min_objects: int
    max_objects: int
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]
    textured_fraction: float
    background: str
    min_speed: float
    max_speed: float
    pan_speed: float
    collider_scale: float = 0.8
    default_size: tuple[int, int] = (64, 64)

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 254:
            raise ValueError(f"level {self.name!r}: need 1 <= min_objects <= max_objects <= 254")
        unknown = (set(self.shapes) - set(SHAPES)) | (set(self.sizes) - set(SIZES))
        if unknown:
            raise ValueError(f"level {self.name!r}: unknown shapes/sizes {sorted(unknown)}")
        if self.background not in ("plain", "mild", "textured"):
            raise ValueError(f"level {self.name!r}: background must be plain, mild or textured")
        if not self.shapes or not self.sizes:
            raise ValueError(f"level {self.name!r}: shapes and sizes must each name at least one")
        if not 0.0 <= self.textured_fraction <= 1.0:
            raise ValueError(f"level {self.name!r}: textured_fraction must be in [0, 1], got {self.textured_fraction}")
        if not 0.0 <= self.min_speed <= self.max_speed:
            raise ValueError(
                f"level {self.name!r}: need 0 <= min_speed <= max_speed, got {self.min_speed} and {self.max_speed}"
            )
        if self.pan_speed < 0 or self.collider_scale <= 0:
            raise ValueError(
                f"level {self.name!r}: need pan_speed >= 0 and collider_scale > 0, got {self.pan_speed} and "
                f"{self.collider_scale}"
            )


EASY = Level(
    name="easy",
    min_objects=2,
    max_objects=3,
    shapes=("circle", "square", "triangle", "star"),
    sizes=("medium", "large"),
    textured_fraction=0.0,
    background="plain",
    min_speed=0.01,
    max_speed=0.025,
    pan_speed=0.0,
)
"""2-3 flat objects of four shapes on a plain background, static camera."""

MEDIUM = Level(
    name="medium",
    min_objects=3,
    max_objects=5,
    shapes=SHAPES,
    sizes=("small", "medium", "large"),
    textured_fraction=0.4,
    background="mild",
    min_speed=0.01,
    max_speed=0.035,
    pan_speed=0.0,
)
"""3-5 objects of all shapes, about 40 % textured, on a mildly textured background, static camera."""

HARD = Level(
    name="hard",
    min_objects=4,
    max_objects=6,
    shapes=SHAPES,
    sizes=("small", "medium", "large"),
    textured_fraction=0.75,
    background="textured",
    min_speed=0.015,
    max_speed=0.045,
    pan_speed=0.006,
)
"""4-6 objects, mostly textured, on a high-contrast textured background with a slow camera pan."""

LEVELS: dict[str, Level] = {level.name: level for level in (EASY, MEDIUM, HARD)}
"""All built-in levels by name."""


def get_level(name: str) -> Level:
    """Looks up a built-in level.

    Raises:
        ValueError: If ``name`` is not a level; the message lists the known levels.
    """
    try:
        return LEVELS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic level {name!r}; known levels: {', '.join(LEVELS)}") from None
