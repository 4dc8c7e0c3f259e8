"""Folders of video files (decord, falling back to PyAV), with optional per-frame PNG masks.

Layout: ``<dir>/<stem>.mp4`` (also ``.webm``, ``.avi``, ``.mkv``, ``.mov``; not recursive). Masks, when present,
live in a sibling folder named after the video's stem, one PNG per frame numbered from 0 with five digits, in the
DAVIS mask conventions (palette ids or binary grayscale): ``<dir>/<stem>/00000.png``, ``00001.png``, ... A video
without such a folder is unlabelled (``masks=None``). Both splits see every video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from training.datasets.clips import VideoClip
from training.datasets.decoding import Backend, decode_video, frame_count
from training.datasets.errors import DatasetError
from training.datasets.images import check_same_size, read_mask
from training.datasets.transforms import Split, choose_window, frames_to_tensor, masks_to_tensor

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov")
"""File extensions picked up (case-insensitive)."""


def mask_path(video: Path, index: int) -> Path:
    """Where the mask of frame ``index`` of ``video`` lives."""
    return video.parent / video.stem / f"{index:05d}.png"


class VideoFolderDataset(Dataset[VideoClip]):
    """Clips from the video files in a folder; one item per file.

    Args:
        root: Folder of video files (see the module docstring).
        split: ``"train"`` samples a random window per item, ``"val"`` takes the first frames.
        clip_length: Frames per clip; None for whole videos.
        image_size: Output (height, width).
        center_crop: Centre-crop to the aspect ratio of ``image_size`` before resizing.
        backend: ``"auto"`` (decord, then PyAV on failure or when decord is missing), ``"decord"`` or ``"pyav"``.

    Raises:
        DatasetError: At construction when the folder is missing or holds no video, or (train split) when a video's
            header says it is shorter than ``clip_length``; when loading, for an undecodable file, a video shorter
            than ``clip_length``, a missing mask or a mask/frame size mismatch.

    Example:
        >>> dataset = VideoFolderDataset(Path("clips/"), "train", 6, (64, 64))  # doctest: +SKIP
        >>> dataset[0].frames.shape  # doctest: +SKIP
        torch.Size([6, 3, 64, 64])
    """

    def __init__(
        self,
        root: Path,
        split: Split,
        clip_length: int | None,
        image_size: tuple[int, int],
        center_crop: bool = True,
        backend: Backend = "auto",
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: video folder does not exist")
        self.files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.files:
            raise DatasetError(f"{root}: empty folder, no video files ({', '.join(VIDEO_SUFFIXES)})")
        self.split = split
        self.clip_length = clip_length
        self.image_size = image_size
        self.center_crop = center_crop
        self.backend: Backend = backend
        if split == "train" and clip_length is not None:
            # Training samples files at random: a short one would otherwise stop a run at an arbitrary step, and
            # a resumed run at the same step again (its clips depend only on the seed and the step).
            counts = {path: frame_count(path) for path in self.files}
            short = [
                f"{path.name} ({count})" for path, count in counts.items() if count is not None and count < clip_length
            ]
            if short:
                raise DatasetError(
                    f"{root}: {len(short)} video(s) have fewer frames than clip_length={clip_length}: "
                    f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}; remove them or shorten the clips"
                )

    def __len__(self) -> int:
        return len(self.files)

    def has_masks(self, index: int) -> bool:
        """Whether item ``index`` comes with masks (its ``<stem>/`` folder exists); nothing is decoded."""
        path = self.files[index]
        return (path.parent / path.stem).is_dir()

    def __getitem__(self, index: int) -> VideoClip:
        path = self.files[index]
        decoded = decode_video(path, lambda n: choose_window(n, self.clip_length, self.split, str(path)), self.backend)
        masks = None
        if (path.parent / path.stem).is_dir():
            mask_list = []
            for t in decoded.indices:
                mask = read_mask(mask_path(path, t))  # [H, W]
                check_same_size(mask, decoded.frames.shape[1:], mask_path(path, t), f"{path} frame {t}")
                mask_list.append(mask)
            masks = masks_to_tensor(np.stack(mask_list), self.image_size, self.center_crop)  # [T, h, w]
        frames = frames_to_tensor(decoded.frames, self.image_size, self.center_crop)  # [T, 3, h, w]
        return VideoClip(frames=frames, masks=masks, name=path.stem, start=decoded.indices[0])
