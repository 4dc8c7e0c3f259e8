"""Video datasets for training: synthetic multi-object worlds, DAVIS-layout folders and video files.

One entry point turns a data spec into a ``torch.utils.data.Dataset`` of ``VideoClip``:

Example:
    >>> from torch.utils.data import DataLoader
    >>> from training.datasets import build_dataset, collate_clips
    >>> dataset = build_dataset("synthetic:easy", "train", clip_length=6, image_size=(64, 64), seed=0)
    >>> loader = DataLoader(dataset, batch_size=4, collate_fn=collate_clips)
    >>> tuple(next(iter(loader)).frames.shape)
    (4, 6, 3, 64, 64)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from training.datasets.clips import VideoBatch, VideoClip, collate_clips, collate_frames
    from training.datasets.davis import DavisDataset
    from training.datasets.errors import DatasetError
    from training.datasets.specs import SCHEMES, build_dataset
    from training.datasets.synthetic_dataset import SyntheticDataset
    from training.datasets.videos import VideoFolderDataset

# Imported on first use: the package's light modules (the synthetic generator, `python -m training.datasets`) do not
# import torch through it.
_EXPORTS = {
    "SCHEMES": "training.datasets.specs",
    "DatasetError": "training.datasets.errors",
    "DavisDataset": "training.datasets.davis",
    "SyntheticDataset": "training.datasets.synthetic_dataset",
    "VideoBatch": "training.datasets.clips",
    "VideoClip": "training.datasets.clips",
    "VideoFolderDataset": "training.datasets.videos",
    "build_dataset": "training.datasets.specs",
    "collate_clips": "training.datasets.clips",
    "collate_frames": "training.datasets.clips",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "SCHEMES",
    "DatasetError",
    "DavisDataset",
    "SyntheticDataset",
    "VideoBatch",
    "VideoClip",
    "VideoFolderDataset",
    "build_dataset",
    "collate_clips",
    "collate_frames",
]
