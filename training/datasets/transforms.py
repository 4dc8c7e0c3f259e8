"""Clip-window sampling and spatial preprocessing shared by all datasets."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from plugins.frame_fit import crop_box
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
    """What to do about a video of ``shortest`` frames that is shorter than a clip: train on shorter clips
    (``--clip-length``), or evaluate on fewer frames (``--val-frames``) or not at all (``--val-videos 0``)."""
    if split == "train":
        return f"remove the video or train on shorter clips (--clip-length {shortest} or less)"
    return (
        f"evaluate on fewer frames (--val-frames {shortest} or less, or --val-frames all for whole videos), or "
        "train without evaluating (--val-videos 0)"
    )


def frames_to_tensor(frames: np.ndarray, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """Converts uint8 [T, H, W, 3] frames to float32 [T, 3, h, w] in [0, 1].

    Optionally centre-crops to the aspect ratio of ``size`` first (so nothing is stretched), by
    :func:`plugins.frame_fit.crop_box`, the box the service's ``FRAME_FIT_CROP`` uses too, then resizes with
    antialiased bilinear interpolation.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, H, W, 3] -> [T, 3, H, W]
    if center_crop:
        top, left, h, w = crop_box(video.shape[2], video.shape[3], size)
        video = video[:, :, top : top + h, left : left + w]  # [T, 3, h', w']
    out = video.float().div_(255.0)
    if tuple(out.shape[2:]) != size:
        out = F.interpolate(out, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)
    return out.contiguous()


def masks_to_tensor(masks: np.ndarray, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """Converts integer [T, H, W] id maps to int64 [T, h, w] with the same crop as ``frames_to_tensor``.

    Resizing uses nearest-exact sampling (:func:`training.metrics.masks.resize_gt_ids`, as evaluation resizes
    ground truth), so no new ids appear.
    """
    ids = torch.from_numpy(np.ascontiguousarray(masks)).long()  # [T, H, W]
    if center_crop:
        top, left, h, w = crop_box(ids.shape[1], ids.shape[2], size)
        ids = ids[:, top : top + h, left : left + w]  # [T, h', w']
    return resize_gt_ids(ids, size).contiguous()
