"""Ground-truth metadata of a synthetic video, as typed dataclasses with a JSON round trip.

Conventions used by every field: pixel coordinates have x to the right and y down, with the origin at the top-left
corner of the top-left pixel (so pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` and its centre is at
``(j + 0.5, i + 0.5)``). "Normalised" values divide x by the frame width and y by the frame height. Object ids are
1..N, equal to the values in the instance id map, and stable for the whole video; 0 is the background.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

GENERATOR_VERSION = 3
"""Version of the generator's output. Videos of one seed, level, size and length are identical within a version.
2: contacts are resolved until colliders no longer overlap, and wall events mean a bounce (1 resolved each contact
once per step, which left objects overlapping and later moving without an event in some videos).
3: objects bounce at their exact time of impact within a frame (2 tested for contacts at the end of each frame,
so two fast objects could meet and part, or cross, within a frame without a bounce, and colliding objects bounced
from where their discs had come to overlap)."""

_VAL_SEED_BASE = 1 << 62
"""Seed of validation video 0 of ``synthetic:<level>``; seeds below it are train videos (``dataset seed * 2**32 +
index``). The scheme is ``training.datasets.synthetic_dataset``'s, repeated here for :meth:`VideoMetadata.seed_parts`
without importing torch."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Static attributes of one object (constant over the video).

    Attributes:
        object_id: Id in the instance map, 1..N.
        shape: One of ``SHAPES`` (e.g. ``"star"``).
        colour: Colour name, a key of ``COLOURS``.
        rgb: The named colour's sRGB value (textured objects also contain darker shades of it).
        size: Size name, a key of ``SIZES``.
        diameter_px: Side of the sprite's square box in pixels.
        texture: One of ``TEXTURES`` (``"flat"`` = single colour).
        area_px: Number of pixels in the sprite mask (the object's area when fully visible).
        mass: Mass used by the physics; equal to ``area_px``.
        depth: Fixed depth rank; 0 is nearest to the camera and occludes every other object.
    """

    object_id: int
    shape: str
    colour: str
    rgb: tuple[int, int, int]
    size: str
    diameter_px: int
    texture: str
    area_px: int
    mass: float
    depth: int


@dataclass(frozen=True, slots=True)
class ObjectState:
    """Per-frame state of one object.

    Attributes:
        object_id: Id in the instance map (links to ``ObjectInfo.object_id``).
        center_px: Centre (x, y) in pixels (sub-pixel physics position; the sprite is drawn at the nearest pixel).
            It is the centre of the sprite's square box, not of its pixels: a triangle's area centroid lies
            about 0.14 of its side below it.
        center_norm: ``center_px`` normalised by (width, height), in [0, 1].
        velocity_px: Velocity (vx, vy) in pixels per frame, in effect from this frame to the next. The next
            centre is this one plus the velocity unless a collision event is recorded for the next frame (the
            object bounced at some moment within the frame), or the physics' safety net separated objects
            without an event (only objects placed overlapping on frames too small to hold them apart, and jams;
            see ``physics.py``).
        velocity_norm: ``velocity_px`` normalised by (width, height).
        bbox: Amodal box (x0, y0, x1, y1) of the whole sprite mask in pixels, half-open: x0 <= x < x1.
        bbox_norm: ``bbox`` normalised by (width, height).
        visible_bbox: Box of the object's visible pixels in the id map (same convention); None when fully
            occluded.
        visible_px: Number of pixels with this object's id in the id map.
        visible_fraction: ``visible_px / area_px``; 1 when unoccluded (objects never leave the frame).
        fully_occluded: True when ``visible_px == 0``.
    """

    object_id: int
    center_px: tuple[float, float]
    center_norm: tuple[float, float]
    velocity_px: tuple[float, float]
    velocity_norm: tuple[float, float]
    bbox: tuple[int, int, int, int]
    bbox_norm: tuple[float, float, float, float]
    visible_bbox: tuple[int, int, int, int] | None
    visible_px: int
    visible_fraction: float
    fully_occluded: bool


@dataclass(frozen=True, slots=True)
class CollisionEvent:
    """One collision.

    Attributes:
        frame: First frame index whose state reflects the bounce (the collision happened between
            ``frame - 1`` and ``frame``).
        kind: ``"wall"`` (an object's square sprite box reached a frame border; the outline inside the box may stop
            short of it, a diamond's or a star's by about an eighth of its box) or ``"object"`` (two objects'
            collision discs touched).
        object_ids: The object ids involved: one for a wall, two (ascending) for an object pair.
        wall: For wall events the border hit (``"left"``, ``"right"``, ``"top"``, ``"bottom"``); else None.
    """

    frame: int
    kind: str
    object_ids: tuple[int, ...]
    wall: str | None


@dataclass(frozen=True, slots=True)
class VideoMetadata:
    """Everything known about one synthetic video.

    Attributes:
        level: Difficulty level name.
        seed: The integer seed the video was generated from (same seed, level, size and length: same video).
            Validation seeds are ``2**62 + index`` and train seeds ``dataset seed * 2**32 + index``, beyond the
            2**53 that JSON readers using doubles (jq, JavaScript) hold exactly; the JSON therefore also holds
            :meth:`seed_parts`, which they read exactly.
        height: Frame height in pixels.
        width: Frame width in pixels.
        num_frames: Number of frames.
        background: Background pattern: ``"plain"``, ``"stripes"``, ``"checker"`` or ``"noise"``.
        camera_velocity: Camera pan (vx, vy) in pixels per frame; the background scrolls by minus this.
        objects: Static object attributes, ordered by object id.
        frames: Per-frame object states: ``frames[t][k]`` is the state of object id ``k + 1`` at frame t.
        collisions: All collision events in frame order.
        generator_version: :data:`GENERATOR_VERSION` of the generator that made the video (1 for metadata
            written before versions were recorded).
        camera_offsets_px: Per frame, the whole-pixel (x, y) shift of the view over the background since frame
            0: the background pixel at (x, y) in frame t is the one at (x + dx_t, y + dy_t) in frame 0's
            coordinates. The view moves by ``floor`` of the pan travelled from a start point, so the shifts are not
            ``round(t * camera_velocity)``; ``(0, 0)`` throughout for a static camera (and in metadata written
            before this field existed, where it is empty).
    """

    level: str
    seed: int
    height: int
    width: int
    num_frames: int
    background: str
    camera_velocity: tuple[float, float]
    objects: tuple[ObjectInfo, ...]
    frames: tuple[tuple[ObjectState, ...], ...]
    collisions: tuple[CollisionEvent, ...]
    generator_version: int = GENERATOR_VERSION
    camera_offsets_px: tuple[tuple[int, int], ...] = ()

    def seed_parts(self) -> dict[str, Any]:
        """The video ``seed`` identifies, in ``synthetic:<level>``'s terms, as small numbers: ``split``
        (``"train"`` or ``"val"``), ``dataset_seed`` (the train split's dataset seed, the ``--seed`` of
        ``generate``; None for ``"val"``, whose videos are fixed) and ``video_index`` (the video's index in its
        split). Every seed has them: a seed below ``2**62`` is train video ``seed % 2**32`` of dataset seed
        ``seed // 2**32``, any other validation video ``seed - 2**62``.
        """
        if self.seed >= _VAL_SEED_BASE:
            return {"split": "val", "dataset_seed": None, "video_index": self.seed - _VAL_SEED_BASE}
        return {"split": "train", "dataset_seed": self.seed >> 32, "video_index": self.seed & 0xFFFFFFFF}

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-compatible dict (tuples become lists), with :meth:`seed_parts` after ``seed``."""
        fields = asdict(self)
        at = list(fields).index("seed") + 1
        items = list(fields.items())
        return dict(items[:at] + list(self.seed_parts().items()) + items[at:])

    def to_json(self, indent: int | None = None) -> str:
        """Serialises to a JSON string that ``from_json`` reads back into an equal object."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> VideoMetadata:
        """Parses the output of ``to_json`` (the :meth:`seed_parts` in it are derived from ``seed``, so not read).

        Fields this version does not know (a newer generator's additions, per object or per frame state) are
        ignored; ``generator_version`` says which generator wrote the file."""
        raw = json.loads(text)
        return cls(
            level=raw["level"],
            seed=raw["seed"],
            height=raw["height"],
            width=raw["width"],
            num_frames=raw["num_frames"],
            background=raw["background"],
            camera_velocity=_tup(raw["camera_velocity"]),
            objects=tuple(ObjectInfo(**{**_known(ObjectInfo, o), "rgb": _tup(o["rgb"])}) for o in raw["objects"]),
            frames=tuple(tuple(_state(s) for s in frame) for frame in raw["frames"]),
            collisions=tuple(
                CollisionEvent(e["frame"], e["kind"], _tup(e["object_ids"]), e["wall"]) for e in raw["collisions"]
            ),
            generator_version=raw.get("generator_version", 1),
            camera_offsets_px=tuple(_tup(offset) for offset in raw.get("camera_offsets_px", ())),
        )


def _tup(values: list[Any]) -> Any:
    return tuple(values)


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """The items of ``raw`` that are fields of the dataclass ``cls`` (a newer generator may write more)."""
    names = {field.name for field in fields(cls)}
    return {key: value for key, value in raw.items() if key in names}


def _state(raw: dict[str, Any]) -> ObjectState:
    tuples = ("center_px", "center_norm", "velocity_px", "velocity_norm", "bbox", "bbox_norm")
    values = {k: (_tup(v) if k in tuples else v) for k, v in _known(ObjectState, raw).items()}
    if values["visible_bbox"] is not None:
        values["visible_bbox"] = _tup(values["visible_bbox"])
    return ObjectState(**values)
