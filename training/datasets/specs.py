"""The ``build_dataset`` entry point: data specs ``<scheme>:<argument>`` to datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from training.datasets.clips import VideoClip
from training.datasets.davis import DavisDataset, has_split_lists
from training.datasets.errors import DatasetError
from training.datasets.synthetic import get_level
from training.datasets.synthetic_dataset import SyntheticDataset
from training.datasets.transforms import Split
from training.datasets.videos import VideoFolderDataset

_Builder = Callable[[str, Split, int | None, tuple[int, int], int, bool], Dataset[VideoClip]]


def _synthetic(
    arg: str, split: Split, clip: int | None, size: tuple[int, int], seed: int, crop: bool
) -> SyntheticDataset:
    return SyntheticDataset(get_level(arg), split, clip, size, seed)


def _davis(arg: str, split: Split, clip: int | None, size: tuple[int, int], seed: int, crop: bool) -> DavisDataset:
    return DavisDataset(Path(arg).expanduser(), split, clip, size, crop)


def _videos(
    arg: str, split: Split, clip: int | None, size: tuple[int, int], seed: int, crop: bool
) -> VideoFolderDataset:
    return VideoFolderDataset(Path(arg).expanduser(), split, clip, size, crop)


SCHEMES: dict[str, _Builder] = {"synthetic": _synthetic, "davis": _davis, "videos": _videos}
"""Known spec schemes and their builders."""


def build_dataset(
    spec: str,
    split: Split,
    clip_length: int | None,
    image_size: tuple[int, int],
    seed: int = 0,
    *,
    center_crop: bool = True,
) -> Dataset[VideoClip]:
    """Builds a dataset of ``VideoClip`` from a data spec.

    Specs:
        ``synthetic:<level>``: generated videos of level ``easy``, ``medium`` or ``hard`` (see
        ``training.datasets.synthetic_dataset`` for seeds and sizes). ``davis:<root>``: a DAVIS 2016/2017-layout
        folder (see ``training.datasets.davis``). ``videos:<dir>``: a folder of video files with optional PNG masks
        (see ``training.datasets.videos``).

    Args:
        spec: ``<scheme>:<argument>``.
        split: ``"train"``: a random window of ``clip_length`` frames per item (torch RNG); ``"val"``: the first
            ``clip_length`` frames, or the whole video when ``clip_length`` is None.
        clip_length: Frames per clip, or None for whole videos.
        image_size: Output (height, width).
        seed: Seed of the synthetic train videos (other datasets ignore it).
        center_crop: Centre-crop real frames to the aspect ratio of ``image_size`` before resizing (synthetic videos
            are rendered at ``image_size`` directly).

    Raises:
        DatasetError: For an unknown scheme (the message lists the known ones) or unusable data.
        ValueError: For an unknown synthetic level (the message lists the levels) or bad arguments.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from training.datasets import collate_clips
        >>> dataset = build_dataset("synthetic:easy", "train", clip_length=6, image_size=(64, 64))
        >>> batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_clips)))  # doctest: +SKIP
        >>> tuple(batch.frames.shape)  # doctest: +SKIP
        (2, 6, 3, 64, 64)
    """
    scheme, arg = _scheme_and_argument(spec)
    if scheme != "synthetic" and not arg:
        raise DatasetError(f"data spec {spec!r} names no folder: write {scheme}:<folder>")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if clip_length is not None and clip_length < 1:
        raise ValueError(f"clip_length must be positive or None, got {clip_length}")
    size = (int(image_size[0]), int(image_size[1]))
    return SCHEMES[scheme](arg, split, clip_length, size, seed, center_crop)


def held_out_split(spec: str) -> bool:
    """Whether the "val" split of ``spec`` holds only videos its "train" split never reads: synthetic validation
    videos have seeds of their own, and a ``davis:`` folder with an ``ImageSets`` list splits its sequences; a
    ``videos:`` folder, and a ``davis:`` one without lists, give every video to both splits.

    Raises:
        DatasetError: an unknown scheme, or a ``davis:`` folder that cannot be read.
    """
    scheme, arg = _scheme_and_argument(spec)
    if scheme == "davis":
        return has_split_lists(Path(arg).expanduser())
    return scheme == "synthetic"  # videos: every video in both splits


def _scheme_and_argument(spec: str) -> tuple[str, str]:
    """``(scheme, argument)`` of a data spec ``<scheme>:<argument>``.

    Raises:
        DatasetError: no scheme, or one not in :data:`SCHEMES` (the message lists them, and for a folder given
            bare, how to name its kind).
    """
    scheme, sep, arg = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        known = ", ".join(f"{s}:" for s in SCHEMES)
        is_folder = Path(spec).expanduser().is_dir()
        hint = f" (for a folder, name its kind: davis:{spec} or videos:{spec})" if is_folder else ""
        raise DatasetError(f"unknown data spec {spec!r}; known schemes: {known}{hint}")
    return scheme, arg
