"""Deterministic generator of synthetic multi-object videos with per-frame ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.datasets.synthetic.levels import Level, get_level
from training.datasets.synthetic.metadata import CollisionEvent, ObjectInfo, ObjectState, VideoMetadata
from training.datasets.synthetic.physics import Body, step
from training.datasets.synthetic.scene import Sprite, sample_scene

FRAME_BYTES_PER_PIXEL = 4
"""Bytes a pixel of every frame takes in a video: its RGB (3) and its instance id (1), all held until it is
returned."""
CANVAS_BYTES_PER_PIXEL = 60
"""Bytes a background canvas pixel takes while the canvas is drawn: a textured one is blended in float64
(measured at 59 with ``tracemalloc``); the canvas is the frame plus the whole camera pan."""
METADATA_BYTES_PER_OBJECT = 1000
"""Bytes an object's state takes in the metadata, per frame (measured at about 900 with ``tracemalloc``)."""


def video_bytes(level: Level | str, num_frames: int, size: tuple[int, int] | None = None) -> int:
    """About the most memory :func:`generate_video` holds for one video of these arguments, at least what it takes
    (an upper bound, to refuse a video too large to make before making it): its frames and instance ids
    (:data:`FRAME_BYTES_PER_PIXEL`), the metadata of the level's most objects, and the background canvas drawn
    as large as the longest pan the level allows (:data:`CANVAS_BYTES_PER_PIXEL`).

    Raises:
        ValueError: for an unknown level name.
    """
    lvl = get_level(level) if isinstance(level, str) else level
    height, width = (int(side) for side in (size if size is not None else lvl.default_size))
    frames = max(int(num_frames), 1)
    travel = math.ceil(lvl.pan_speed * min(height, width) * (frames - 1)) + 1  # as sample_scene's, on either axis
    canvas = (height + travel) * (width + travel) * CANVAS_BYTES_PER_PIXEL
    per_frame = height * width * FRAME_BYTES_PER_PIXEL + lvl.max_objects * METADATA_BYTES_PER_OBJECT
    return frames * per_frame + canvas


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video.

    Attributes:
        frames: uint8 [T, H, W, 3] RGB frames.
        masks: uint8 [T, H, W] instance ids; 0 = background, k = ``metadata.objects[k - 1]``.
        metadata: Ground truth for every object and frame.
    """

    frames: np.ndarray
    masks: np.ndarray
    metadata: VideoMetadata


def _top_left(body: Body, diameter: int) -> tuple[int, int]:
    """Integer (x0, y0) of the sprite box; always inside the frame because walls keep the body in bounds."""
    return math.floor(body.x - diameter / 2 + 0.5), math.floor(body.y - diameter / 2 + 0.5)


def _measure(
    ids: np.ndarray, info: ObjectInfo, sprite: Sprite, body: Body, origin: tuple[int, int], visible: int
) -> ObjectState:
    """Builds one object's state for the frame whose id map is ``ids`` ([H, W])."""
    height, width = ids.shape
    x0, y0 = origin
    bx0, by0, bx1, by1 = sprite.box
    bbox = (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1)
    if visible == info.area_px:
        visible_bbox: tuple[int, int, int, int] | None = bbox
    elif visible == 0:
        visible_bbox = None
    else:
        d = info.diameter_px
        window = ids[y0 : y0 + d, x0 : x0 + d] == info.object_id  # [d, d]
        rows = np.flatnonzero(window.any(axis=1))
        cols = np.flatnonzero(window.any(axis=0))
        visible_bbox = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
    return ObjectState(
        object_id=info.object_id,
        center_px=(body.x, body.y),
        center_norm=(body.x / width, body.y / height),
        velocity_px=(body.vx, body.vy),
        velocity_norm=(body.vx / width, body.vy / height),
        bbox=bbox,
        bbox_norm=(bbox[0] / width, bbox[1] / height, bbox[2] / width, bbox[3] / height),
        visible_bbox=visible_bbox,
        visible_px=visible,
        visible_fraction=visible / info.area_px,
        fully_occluded=visible == 0,
    )


def generate_video(
    level: Level | str, seed: int, num_frames: int = 24, size: tuple[int, int] | None = None
) -> SyntheticVideo:
    """Generates one video; the output depends only on the arguments (and the numpy version's PCG64 streams).

    Args:
        level: A ``Level`` or the name of a built-in one (``"easy"``, ``"medium"``, ``"hard"``).
        seed: Non-negative integer seed.
        num_frames: Number of frames T (at least 1). Objects, masks and metadata of a shorter video are the
            first frames of a longer one with the same other arguments; under a camera pan (the ``hard`` level)
            the background is not, since its canvas is drawn as large as the whole pan.
        size: (height, width) in pixels; defaults to ``level.default_size``. Below about 32 pixels sprites are a
            few pixels wide, so shapes and named sizes become hard to tell apart, and crowded levels may start
            with objects overlapping when the frame has no room to place them apart (the first steps separate
            them: at 8x8 some are still apart only from the second step on). Integers of any kind (numpy's too)
            are taken; the metadata holds Python ints.

    Returns:
        Frames, instance id maps and metadata.

    Raises:
        ValueError: For an unknown level name, ``num_frames < 1`` or a size below 8 pixels.

    Example:
        >>> video = generate_video("easy", seed=0, num_frames=6)
        >>> video.frames.shape, video.masks.shape
        ((6, 64, 64, 3), (6, 64, 64))
    """
    lvl = get_level(level) if isinstance(level, str) else level
    height, width = (int(side) for side in (size if size is not None else lvl.default_size))
    num_frames = int(num_frames)  # a numpy integer would make the metadata unwritable as JSON
    if num_frames < 1 or min(height, width) < 8:
        raise ValueError(f"need num_frames >= 1 and a size of at least 8x8, got {num_frames} and {height}x{width}")
    rng = np.random.default_rng(seed)
    scene = sample_scene(lvl, rng, height, width, num_frames)
    count = len(scene.infos)
    order = sorted(range(count), key=lambda k: -scene.infos[k].depth)  # back to front
    masks3 = [sprite.mask[:, :, None] for sprite in scene.sprites]  # each [d, d] -> [d, d, 1]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)  # [T, H, W, 3]
    masks = np.zeros((num_frames, height, width), dtype=np.uint8)  # [T, H, W]
    states: list[tuple[ObjectState, ...]] = []
    events: list[CollisionEvent] = []
    origin_x, origin_y = scene.camera_origin
    velocity_x, velocity_y = scene.camera_velocity
    views = [(math.floor(origin_x + t * velocity_x), math.floor(origin_y + t * velocity_y)) for t in range(num_frames)]
    for t in range(num_frames):
        if t > 0:
            for contact in step(scene.bodies, float(width), float(height)):
                ids = tuple(i + 1 for i in contact.bodies)
                events.append(CollisionEvent(t, contact.kind, ids, contact.wall))
        cx, cy = views[t]  # top-left of the view on the background canvas
        frame, idmap = frames[t], masks[t]
        frame[...] = scene.canvas[cy : cy + height, cx : cx + width]
        corners = [_top_left(body, info.diameter_px) for body, info in zip(scene.bodies, scene.infos, strict=True)]
        for k in order:
            x0, y0 = corners[k]
            d = scene.infos[k].diameter_px
            np.copyto(frame[y0 : y0 + d, x0 : x0 + d], scene.sprites[k].rgb, where=masks3[k])
            idmap[y0 : y0 + d, x0 : x0 + d][scene.sprites[k].mask] = k + 1
        visible = np.bincount(idmap.ravel(), minlength=count + 1).tolist()  # [H, W] -> [H*W]; [count + 1] pixel counts
        states.append(
            tuple(
                _measure(idmap, scene.infos[k], scene.sprites[k], scene.bodies[k], corners[k], visible[k + 1])
                for k in range(count)
            )
        )
    metadata = VideoMetadata(
        level=lvl.name,
        seed=int(seed),
        height=height,
        width=width,
        num_frames=num_frames,
        background=scene.background,
        camera_velocity=scene.camera_velocity,
        objects=scene.infos,
        frames=tuple(states),
        collisions=tuple(events),
        camera_offsets_px=tuple((x - views[0][0], y - views[0][1]) for x, y in views),
    )
    return SyntheticVideo(frames=frames, masks=masks, metadata=metadata)
