"""Views of an evaluation dataset: its labelled videos only, and the first frames of each video."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch.utils.data import Dataset, Subset

from training.datasets.clips import VideoClip
from training.datasets.errors import DatasetError
from training.datasets.specs import build_dataset


class NoLabelledVideos(DatasetError):
    """The data has no video with masks, so there is nothing to score a model on."""


def unlabelled_note(count: int, spec: str) -> str:
    """The note the tools give when ``count`` videos of ``spec`` have no masks and are left out of evaluation."""
    return f"note: {count} video(s) of {spec} have no masks and are left out"


def sparse_note(annotated: int, frames: int, videos: int, spec: str) -> str:
    """The note the tools give when ``videos`` videos of ``spec`` have masks on only ``annotated`` of their
    ``frames`` frames (those evaluated), so the others are not scored."""
    return f"note: {annotated} of {frames} frames of {videos} video(s) of {spec} have masks; the others are not scored"


@runtime_checkable
class CountsAnnotatedFrames(Protocol):
    """A dataset that says which frames of an item have masks without reading them (``davis:`` and ``videos:``)."""

    def annotated_frames(self, index: int) -> tuple[frozenset[int], int] | None:
        """The frames of item ``index`` that have a mask (indices from 0) and its number of frames; None when it is
        unlabelled or its frame count is unknown."""
        ...


def sparse_annotation_note(dataset: Dataset[VideoClip], spec: str, frames: int | None) -> str | None:
    """The note about the videos of ``dataset`` (the evaluated ones, through any ``Subset`` views) that have masks
    on some of their frames only (:func:`sparse_note`), or None when none has: over each video's first ``frames``
    frames (the whole video when ``frames`` is None or more), which are what evaluation scores. A dataset that does
    not say which frames have masks (:class:`CountsAnnotatedFrames`), and a video whose frame count is unknown, add
    nothing to it.

    Raises:
        DatasetError: the data cannot be read.
    """
    annotated = total = videos = 0
    for index in range(len(dataset)):  # type: ignore[arg-type]
        source, item = _source(dataset, index)
        if not isinstance(source, CountsAnnotatedFrames) or (found := source.annotated_frames(item)) is None:
            continue
        masked, count = found
        window = count if frames is None else min(frames, count)
        scored = sum(t < window for t in masked)
        if scored < window:
            annotated, total, videos = annotated + scored, total + window, videos + 1
    return sparse_note(annotated, total, videos, spec) if videos else None


def labelled_indices(dataset: Dataset[VideoClip]) -> list[int]:
    """Indices of the videos that have masks, in order.

    Datasets whose items may lack masks (``videos:`` folders where only some videos are labelled) say which do
    with ``has_masks(index)`` without decoding the video; for the others every item counts as labelled here,
    and one without masks is reported when it is evaluated.
    """
    has_masks = getattr(dataset, "has_masks", None)
    indices = range(len(dataset))  # type: ignore[arg-type]
    return [index for index in indices if has_masks is None or has_masks(index)]


def labelled_videos(dataset: Dataset[VideoClip]) -> tuple[Dataset[VideoClip], int]:
    """The labelled videos of ``dataset`` and how many unlabelled ones were left out."""
    kept = labelled_indices(dataset)
    return Subset(dataset, kept), len(dataset) - len(kept)  # type: ignore[arg-type]


@runtime_checkable
class ReadsFirstFrames(Protocol):
    """A dataset that reads the first frames of an item without reading the rest (``davis:`` and ``videos:``)."""

    def first_frames(self, index: int, count: int) -> VideoClip:
        """Item ``index`` cut to its first ``count`` frames (the whole video when shorter), reading only those."""
        ...


def _source(dataset: Dataset[VideoClip], index: int) -> tuple[Dataset[VideoClip], int]:
    """The dataset under ``Subset`` views of ``dataset`` and the index of item ``index`` of ``dataset`` there."""
    while isinstance(dataset, Subset):
        view: Subset[VideoClip] = dataset
        dataset, index = view.dataset, view.indices[index]
    return dataset, index


class FirstFrames(Dataset[VideoClip]):
    """Each video of ``dataset`` cut to its first ``count`` frames (shorter videos stay whole).

    When the dataset under ``dataset`` (through ``Subset`` views) reads first frames itself
    (:class:`ReadsFirstFrames`), only those frames and their masks are read, whatever clip length it was built with;
    otherwise its item is read and cut.

    Args:
        dataset: whole videos.
        count: frames to keep (at least 1).

    Raises:
        ValueError: ``count`` is below 1.
    """

    def __init__(self, dataset: Dataset[VideoClip], count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.dataset = dataset
        self.count = count

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> VideoClip:
        source, item = _source(self.dataset, index)
        if isinstance(source, ReadsFirstFrames):
            return source.first_frames(item, self.count)
        clip = self.dataset[index]
        masks = None if clip.masks is None else clip.masks[: self.count]  # [T', H, W]
        return dataclasses.replace(clip, frames=clip.frames[: self.count], masks=masks)  # [T', 3, H, W]


def evaluation_videos(
    spec: str,
    image_size: tuple[int, int],
    frames: int | None,
    on_unlabelled: Callable[[str], None] | None = None,
    *,
    center_crop: bool = True,
) -> Dataset[VideoClip]:
    """The labelled validation videos of ``spec``, each cut to its first ``frames`` frames when given (what the
    evaluation tools score: a ``videos:`` folder where only some videos have masks is scored on those, and a video
    with masks on some of its frames on those frames). A cut ``davis:`` or ``videos:`` video reads only its first
    ``frames`` frames and their masks (:class:`FirstFrames`).

    Args:
        spec: data spec.
        image_size: ``(H, W)`` the frames are resized to.
        frames: at most this many frames per video; ``None`` for whole videos.
        on_unlabelled: called with each note about the data: videos without masks left out
            (:func:`unlabelled_note`), frames without masks not scored (:func:`sparse_annotation_note`).
        center_crop: centre-crop real frames to the aspect ratio of ``image_size`` (else stretch whole frames).

    Raises:
        NoLabelledVideos: no video has masks (a :class:`DatasetError`).
        DatasetError: the data cannot be read.
    """
    dataset, unlabelled = labelled_videos(build_dataset(spec, "val", None, image_size, center_crop=center_crop))
    if unlabelled and on_unlabelled is not None:
        on_unlabelled(unlabelled_note(unlabelled, spec))
    if not len(dataset):  # type: ignore[arg-type]
        where = " (a video's masks are read from the folder named after it: <stem>/00000.png, ...)"
        raise NoLabelledVideos(
            f"{spec}: no video has masks to evaluate on{where if spec.startswith('videos:') else ''}"
        )
    if on_unlabelled is not None and (note := sparse_annotation_note(dataset, spec, frames)) is not None:
        on_unlabelled(note)
    return dataset if frames is None else FirstFrames(dataset, frames)
