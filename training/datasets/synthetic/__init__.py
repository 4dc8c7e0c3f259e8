"""Synthetic MOVi-like multi-object video worlds rendered with numpy.

Example:
    >>> from training.datasets.synthetic import generate_video
    >>> video = generate_video("medium", seed=3, num_frames=24)
    >>> 3 <= len(video.metadata.objects) <= 5
    True
"""

from __future__ import annotations

from training.datasets.synthetic.generator import SyntheticVideo, generate_video
from training.datasets.synthetic.levels import (
    COLOURS,
    EASY,
    HARD,
    LEVELS,
    MEDIUM,
    SHAPES,
    SIZES,
    TEXTURES,
    Level,
    get_level,
)
from training.datasets.synthetic.metadata import (
    GENERATOR_VERSION,
    CollisionEvent,
    ObjectInfo,
    ObjectState,
    VideoMetadata,
)

__all__ = [
    "COLOURS",
    "EASY",
    "GENERATOR_VERSION",
    "HARD",
    "LEVELS",
    "MEDIUM",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "CollisionEvent",
    "Level",
    "ObjectInfo",
    "ObjectState",
    "SyntheticVideo",
    "VideoMetadata",
    "generate_video",
    "get_level",
]
