"""Training-time clip augmentation: SmoothSA's random crop and horizontal flip (Genera1Z/SmoothSA ``config-smoothsa``).

One crop and one flip are drawn per clip and applied to every frame (and to the masks, when present), so the
objects keep their motion. The crop keeps a random fraction of the frame's area, drawn uniformly from
``area_range``, at a random aspect ratio between 3/4 and 4/3 of the frame's own (log-uniform), at a random
position, and is resized back to the clip's size (bilinear with antialiasing for frames, nearest for masks). The
reference draws the ratio as an absolute width / height, for its square inputs, where the two are the same; on a
16:9 input an absolute ratio of at most 4/3 would almost never fit (the crop would fall back to the whole frame)
and, resized back, would only ever widen the objects. Randomness comes from torch's
global RNG, which :class:`training.batches.SeededItems` seeds per item, so augmented runs resume exactly.

One departure from the reference code: it crops the native-resolution frame (the area measured against the
largest square that fits) and resizes the crop; here the crop is taken from the clip as loaded, which the
datasets have already centre-cropped to the model's aspect ratio and resized. On a 16:9 video the strips the
centre crop removes (about 22 % of the width on each side for a square model input) are never seen in
training, and each crop is upsampled by up to 1/sqrt(0.75), about 1.15x, from the loaded frame.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from training.datasets.clips import VideoClip

AUGMENTATIONS = ("none", "crop_flip")
"""Names accepted by ``DataConfig.augment``."""


@dataclasses.dataclass(frozen=True)
class CropFlip:
    """A random area crop resized back to the clip's size, then a horizontal flip with probability ``flip_p``.

    Attributes:
        area_range: the fraction of the frame's area the crop keeps, drawn uniformly ((0.75, 1) in SmoothSA).
        ratio_range: the crop's width / height over the frame's, drawn log-uniformly.
        flip_p: probability of a horizontal flip.
    """

    area_range: tuple[float, float] = (0.75, 1.0)
    ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5

    def __call__(self, clip: VideoClip) -> VideoClip:
        """The augmented clip (the input is not modified). A cropped or flipped clip carries no synthetic metadata:
        its boxes, centres, velocities and wall names describe the frames before the crop and the flip."""
        height, width = clip.frames.shape[-2:]
        top, left, crop_height, crop_width = self.crop_box(height, width)
        frames = clip.frames[..., top : top + crop_height, left : left + crop_width]  # [T, 3, h, w]
        frames = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        masks = clip.masks
        if masks is not None:
            # [T, H, W] -> [T, 1, h, w]
            cropped = masks[:, None, top : top + crop_height, left : left + crop_width].float()  # [T, 1, h, w]
            # resized [T, 1, H, W] -> [T, H, W]
            masks = F.interpolate(cropped, size=(height, width), mode="nearest-exact")[:, 0].long()  # [T, H, W]
        flipped = torch.rand(()).item() < self.flip_p
        if flipped:
            frames = frames.flip(-1)
            masks = masks.flip(-1) if masks is not None else None
        unchanged = (top, left, crop_height, crop_width) == (0, 0, height, width) and not flipped
        metadata = clip.metadata if unchanged else None  # its boxes, centres and velocities are the source's
        return dataclasses.replace(clip, frames=frames.clamp(0.0, 1.0), masks=masks, metadata=metadata)

    def crop_box(self, height: int, width: int, attempts: int = 10) -> tuple[int, int, int, int]:
        """``(top, left, crop_height, crop_width)`` of a random crop inside a ``height x width`` frame.

        An area and an aspect ratio (relative to the frame's) are drawn until the crop fits in the frame (at most
        ``attempts`` times, as torchvision's ``RandomResizedCrop`` does); if none fits, the whole frame is kept.
        """
        log_low, log_high = math.log(self.ratio_range[0]), math.log(self.ratio_range[1])
        for _ in range(attempts):
            area = height * width * float(torch.empty(()).uniform_(*self.area_range))
            ratio = width / height * math.exp(float(torch.empty(()).uniform_(log_low, log_high)))  # width / height
            crop_width, crop_height = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = int(torch.randint(0, height - crop_height + 1, ()).item())
                left = int(torch.randint(0, width - crop_width + 1, ()).item())
                return top, left, crop_height, crop_width
        return 0, 0, height, width


class AugmentedClips(Dataset[VideoClip]):
    """``dataset`` with ``augmentation`` applied to every clip it returns."""

    def __init__(self, dataset: Dataset[VideoClip], augmentation: CropFlip) -> None:
        self.dataset = dataset
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> VideoClip:
        return self.augmentation(self.dataset[index])


def augmented(dataset: Dataset[VideoClip], name: str) -> Dataset[VideoClip]:
    """``dataset`` with the named augmentation (``"none"`` returns it unchanged).

    Raises:
        ValueError: an unknown name.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return dataset if name == "none" else AugmentedClips(dataset, CropFlip())
