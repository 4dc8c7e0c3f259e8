"""Typed samples and batches produced by every dataset, and the DataLoader collate function."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from training.datasets.synthetic.metadata import VideoMetadata


@dataclass
class VideoClip:
    """One clip of consecutive frames.

    Attributes:
        frames: float32 [T, 3, H, W] RGB in [0, 1].
        masks: int64 [T, H, W] instance ids (0 = background, -1 = void: not scored), or None for unlabelled data.
        name: Sequence or file name the clip comes from.
        start: Index of the clip's first frame in the source video.
        metadata: Ground truth of the whole source video (synthetic data only); frame ``t`` of the clip is
            ``metadata.frames[start + t]``.
    """

    frames: torch.Tensor
    masks: torch.Tensor | None
    name: str
    start: int = 0
    metadata: VideoMetadata | None = None


@dataclass
class VideoBatch:
    """A batch of equally long clips.

    Attributes:
        frames: float32 [B, T, 3, H, W] in [0, 1].
        masks: int64 [B, T, H, W] instance ids, or None when the clips are unlabelled.
        names: One name per clip.
        starts: First-frame index of each clip in its source video.
        metadata: Per-clip synthetic metadata (None entries for real data).
    """

    frames: torch.Tensor
    masks: torch.Tensor | None
    names: list[str]
    starts: list[int] = field(default_factory=list)
    metadata: list[VideoMetadata | None] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> VideoBatch:
        """Returns a copy whose tensors live on ``device`` (names and metadata are shared)."""
        masks = None if self.masks is None else self.masks.to(device, non_blocking=non_blocking)
        frames = self.frames.to(device, non_blocking=non_blocking)
        return VideoBatch(frames, masks, self.names, self.starts, self.metadata)

    def pin_memory(self) -> VideoBatch:
        """Pins the tensors in page-locked memory; called by ``DataLoader(pin_memory=True)``."""
        masks = None if self.masks is None else self.masks.pin_memory()
        return VideoBatch(self.frames.pin_memory(), masks, self.names, self.starts, self.metadata)


def collate_clips(clips: Sequence[VideoClip]) -> VideoBatch:
    """Stacks clips into a batch; pass it as ``DataLoader(collate_fn=collate_clips)``.

    Raises:
        ValueError: If the batch is empty, clips differ in shape (e.g. full-length validation videos of different
            lengths: use ``batch_size=1`` or a ``clip_length``), or only some clips have masks.
    """
    if not clips:
        raise ValueError("cannot collate an empty list of clips")
    shapes = {tuple(clip.frames.shape) for clip in clips}
    if len(shapes) > 1:
        detail = ", ".join(f"{clip.name}: {tuple(clip.frames.shape)}" for clip in clips)
        raise ValueError(f"clips differ in shape and cannot be batched ({detail}); use batch_size=1 or clip_length")
    labelled = [clip.masks is not None for clip in clips]
    if any(labelled) and not all(labelled):
        raise ValueError("cannot batch labelled and unlabelled clips together: " + ", ".join(c.name for c in clips))
    frames = torch.stack([clip.frames for clip in clips])  # B x [T, 3, H, W] -> [B, T, 3, H, W]
    # B x [T, H, W] -> [B, T, H, W]
    masks = torch.stack([c.masks for c in clips if c.masks is not None]) if all(labelled) else None  # [B, T, H, W]
    return VideoBatch(
        frames=frames,
        masks=masks,
        names=[clip.name for clip in clips],
        starts=[clip.start for clip in clips],
        metadata=[clip.metadata for clip in clips],
    )


def collate_frames(clips: Sequence[VideoClip]) -> VideoBatch:
    """:func:`collate_clips` without masks, for training (which reads only frames): a ``videos:<dir>`` folder where
    only some videos have masks trains, since its labelled and unlabelled clips can share a batch."""
    return collate_clips([dataclasses.replace(clip, masks=None) for clip in clips])
