"""Clip-window sampling and spatial preprocessing shared by all datasets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F

from plugins.frame_fit import crop_box
from training.config import MIN_TRANSITION_CLIP
from training.datasets.errors import DatasetError
from training.metrics.masks import resize_gt_ids

Split = Literal["train", "val"]


def choose_window(num_frames: int, clip_length: int | None, split: Split, source: str) -> range:
    """Chooses which frames of a video form the clip.

    A train clip with a ``clip_length`` L is one of the video's non-overlapping chunks of L frames (frames ``[kL,
    (k+1)L)``; frames past the last whole chunk are never drawn), chosen uniformly with torch's global RNG (so
    ``torch.manual_seed`` and DataLoader worker seeding make sampling reproducible). This is the strided random slice
    of the SmoothSA / RandSF.Q training code (Genera1Z/SmoothSA ``config-smoothsa``). Validation clips, or any clip
    with ``clip_length=None``, start at frame 0 and hold the first ``clip_length`` frames or the whole video.

    Args:
        num_frames: Frames in the video.
        clip_length: Frames per clip, or None for the full video.
        split: ``"train"`` or ``"val"``.
        source: File or folder named in errors.

    Raises:
        DatasetError: If the video is empty or shorter than ``clip_length``.
    """
    if num_frames < 1:
        raise DatasetError(f"{source}: video has no frames")
    if clip_length is None:
        return range(num_frames)
    if clip_length > num_frames:
        raise DatasetError(
            f"{source}: video has {num_frames} frames, fewer than {clip_length_setting(split, clip_length)}; "
            f"{shorter_clips_hint(split, num_frames)}"
        )
    start = 0
    if split == "train":
        start = clip_length * int(torch.randint(0, num_frames // clip_length, (1,)).item())
    return range(start, start + clip_length)


def clip_length_setting(split: Split, clip_length: int) -> str:
    """How errors name a clip length: ``clip_length=L`` for train clips and ``val_frames=L`` for val clips, the
    names of the two settings in the training configuration."""
    return f"{'clip_length' if split == 'train' else 'val_frames'}={clip_length}"


def shorter_clips_hint(split: Split, shortest: int) -> str:
    """What to do about a video of ``shortest`` frames that is shorter than a clip: remove it or train on shorter
    clips (``--clip-length``, while they keep :data:`~training.config.MIN_TRANSITION_CLIP` frames), or evaluate on
    fewer frames (``--val-frames``) or not at all (``--val-videos 0``)."""
    if split == "train":
        learns = f"the model's transition learns only from clips of {MIN_TRANSITION_CLIP} frames or more"
        if shortest < MIN_TRANSITION_CLIP:
            return f"remove the video; shorter clips are no way round it: {learns}"
        lengths = (
            f"{shortest}" if shortest == MIN_TRANSITION_CLIP else f"{shortest} or less, down to {MIN_TRANSITION_CLIP}"
        )
        return f"remove the video or train on shorter clips (--clip-length {lengths}: {learns})"
    return (
        f"evaluate on fewer frames (--val-frames {shortest} or less, or --val-frames all for whole videos), or "
        "train without evaluating (--val-videos 0)"
    )


def first_window(num_frames: int, count: int, source: str) -> range:
    """The first ``count`` frames of a video of ``num_frames``, or all of them when it is shorter (what
    evaluation cut to ``--frames`` / ``--val-frames`` reads, so the frames past them are never decoded).

    Raises:
        ValueError: ``count`` is below 1.
        DatasetError: the video is empty (the message names ``source``).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if num_frames < 1:
        raise DatasetError(f"{source}: video has no frames")
    return range(min(count, num_frames))


Frames: TypeAlias = np.ndarray | Sequence[np.ndarray]
"""Frames or masks of one clip: one array ``[T, ...]``, or ``T`` arrays of one shape (as read, not yet stacked)."""

CHUNK_VALUES = 1 << 24
"""Input values (frames x channels x pixels) widened to float at a time by :func:`frames_to_tensor` and
:func:`masks_to_tensor`: the float copies of full-size frames stay below 64 MiB (float32; masks' float64 below 128
MiB), however long the clip; the result is the same as converting every frame at once."""


def _chunks(count: int, values_per_frame: int) -> Iterator[slice]:
    """Consecutive slices of ``range(count)`` of at most :data:`CHUNK_VALUES` values each (one frame at least)."""
    step = max(1, CHUNK_VALUES // max(1, values_per_frame))
    return (slice(start, min(start + step, count)) for start in range(0, count, step))


def _stacked(frames: Frames, part: slice) -> np.ndarray:
    """``frames[part]`` as one C-contiguous array ``[t, ...]`` (a view when ``frames`` is already one array)."""
    chunk = frames[part]
    return np.ascontiguousarray(chunk) if isinstance(chunk, np.ndarray) else np.stack(chunk)  # t x [...] -> [t, ...]


def frames_to_tensor(frames: Frames, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """Converts uint8 [T, H, W, 3] frames (one array, or T arrays [H, W, 3] of one size) to float32 [T, 3, h, w]
    in [0, 1].

    Optionally centre-crops to the aspect ratio of ``size`` first (so nothing is stretched), by
    :func:`plugins.frame_fit.crop_box`, the box the service's ``FRAME_FIT_CROP`` uses too, then resizes with
    antialiased bilinear interpolation. Frames are converted a chunk at a time (:data:`CHUNK_VALUES`), so the
    memory used beyond the input and the result stays bounded for a long clip of large frames.
    """
    out = torch.empty((len(frames), 3, *size), dtype=torch.float32)  # [T, 3, h, w]
    if len(frames) == 0:
        return out
    height, width = frames[0].shape[:2]
    top, left, h, w = crop_box(height, width, size) if center_crop else (0, 0, height, width)
    for part in _chunks(len(frames), 3 * h * w):
        video = torch.from_numpy(_stacked(frames, part)).permute(0, 3, 1, 2)  # [t, H, W, 3] -> [t, 3, H, W]
        video = video[:, :, top : top + h, left : left + w]  # [t, 3, h', w']
        chunk = video.float().div_(255.0)
        if tuple(chunk.shape[2:]) != size:
            chunk = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
            chunk.clamp_(0.0, 1.0)  # [t, 3, h, w]
        out[part] = chunk
    return out


def masks_to_tensor(masks: Frames, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """Converts integer [T, H, W] id maps (one array, or T arrays [H, W] of one size) to int64 [T, h, w] with the
    same crop as ``frames_to_tensor``.

    Resizing uses nearest-exact sampling (:func:`training.metrics.masks.resize_gt_ids`, as evaluation resizes
    ground truth), so no new ids appear. Ids are cropped before they are widened, and converted a chunk at a time
    (:data:`CHUNK_VALUES`), so full-size int64 or float64 copies of a long clip are never made.
    """
    out = torch.empty((len(masks), *size), dtype=torch.int64)  # [T, h, w]
    if len(masks) == 0:
        return out
    height, width = masks[0].shape[:2]
    top, left, h, w = crop_box(height, width, size) if center_crop else (0, 0, height, width)
    for part in _chunks(len(masks), h * w):
        ids = torch.from_numpy(_stacked(masks, part))  # [t, H, W]
        out[part] = resize_gt_ids(ids[:, top : top + h, left : left + w], size)  # [t, h', w'] -> [t, h, w]
    return out
