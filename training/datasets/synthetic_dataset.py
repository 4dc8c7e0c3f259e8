"""Synthetic videos generated on the fly, as a torch dataset.

Seeds: train video ``i`` of a dataset built with ``seed`` uses video seed ``seed * 2**32 + i`` (so ``seed`` must be
below 2**30); validation video ``i`` uses ``VAL_SEED_BASE + i`` whatever ``seed`` is. The two ranges are
disjoint, and the validation set is the same fixed ``VAL_VIDEOS`` x ``VAL_FRAMES`` videos on every machine.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from training.datasets.clips import VideoClip
from training.datasets.synthetic import Level, generate_video, get_level
from training.datasets.transforms import Split, choose_window

TRAIN_VIDEOS = 10_000
"""Train videos per epoch (indices 0..TRAIN_VIDEOS-1)."""
TRAIN_FRAMES = 24
"""Length of each generated train video; a clip is a random one of its non-overlapping chunks (MOVi's
videos have 24 frames too)."""
VAL_VIDEOS = 64
"""Number of fixed validation videos."""
VAL_FRAMES = 24
"""Length of each validation video."""
VAL_SEED_BASE = 1 << 62
"""Video seed of validation video 0."""


def train_video_seed(seed: int, index: int) -> int:
    """Video seed of train video ``index`` for dataset seed ``seed`` (disjoint from all validation seeds).

    Raises:
        ValueError: If ``seed`` is outside [0, 2**30) or ``index`` outside [0, 2**32).
    """
    if not (0 <= seed < 1 << 30 and 0 <= index < 1 << 32):
        raise ValueError(f"need 0 <= seed < 2**30 and 0 <= index < 2**32, got seed={seed}, index={index}")
    return (seed << 32) + index


class SyntheticDataset(Dataset[VideoClip]):
    """Videos of a synthetic level, rendered directly at ``image_size`` (no resizing).

    Args:
        level: Level name or ``Level``.
        split: ``"train"``: ``num_videos`` seeded videos with a random chunk per item; ``"val"``: the fixed
            validation set (first ``clip_length`` frames, or all ``VAL_FRAMES``).
        clip_length: Frames per clip; None for whole videos.
        image_size: (height, width) to render at.
        seed: Dataset seed for the train split (ignored for ``"val"``).
        num_videos: Videos per epoch; defaults to ``TRAIN_VIDEOS`` (train) or ``VAL_VIDEOS`` (val).
        num_frames: Frames per generated video; defaults to 24.

    Raises:
        ValueError: ``clip_length`` exceeds the frames per generated video.

    Example:
        >>> dataset = SyntheticDataset("easy", "train", clip_length=6, image_size=(64, 64))
        >>> tuple(dataset[0].frames.shape)
        (6, 3, 64, 64)
    """

    def __init__(
        self,
        level: str | Level,
        split: Split,
        clip_length: int | None,
        image_size: tuple[int, int],
        seed: int = 0,
        num_videos: int | None = None,
        num_frames: int | None = None,
    ) -> None:
        self.level = get_level(level) if isinstance(level, str) else level
        self.split = split
        self.clip_length = clip_length
        self.image_size = image_size
        self.seed = seed
        self.num_videos = num_videos or (TRAIN_VIDEOS if split == "train" else VAL_VIDEOS)
        self.num_frames = num_frames or (TRAIN_FRAMES if split == "train" else VAL_FRAMES)
        if clip_length is not None and clip_length > self.num_frames:
            raise ValueError(
                f"clips of {clip_length} frames asked for, but the {split} videos of synthetic data have "
                f"{self.num_frames} frames (--clip-length sets training clips, --val-frames evaluation videos)"
            )
        train_video_seed(seed, self.num_videos - 1)  # validates the seed range once

    def video_seed(self, index: int) -> int:
        """The generator seed of item ``index``."""
        return train_video_seed(self.seed, index) if self.split == "train" else VAL_SEED_BASE + index

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> VideoClip:
        """The clip of video ``index``: frames ``[T, 3, H, W]`` in ``[0, 1]`` and id masks ``[T, H, W]``.

        Raises:
            IndexError: ``index`` is outside ``[0, num_videos)``.
        """
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        video = generate_video(self.level, self.video_seed(index), self.num_frames, self.image_size)
        name = f"{self.level.name}-{self.split}-{index:05d}"
        window = choose_window(self.num_frames, self.clip_length, self.split, name)
        clip = slice(window.start, window.stop)
        # [T, H, W, 3] -> [T, 3, H, W]
        frames = torch.from_numpy(video.frames[clip]).permute(0, 3, 1, 2).float().div_(255.0)  # [T, 3, H, W]
        masks = torch.from_numpy(video.masks[clip]).long()  # [T, H, W]
        return VideoClip(frames.contiguous(), masks, name, window.start, video.metadata)
