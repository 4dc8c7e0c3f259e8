"""The videos a model card is about: the labelled videos it scores the model on (or, for a run whose own data has
no labels, none and why), the first video its sample picture shows when there are none, and the most objects one
video has (which decides the card's note on single-object data)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from training.cli_checks import print_note
from training.datasets.clips import VideoClip
from training.datasets.selection import FirstFrames, NoLabelledVideos, evaluation_videos
from training.datasets.specs import build_dataset
from training.run_data import SAMPLE_FRAMES


def most_objects(videos: Dataset[VideoClip]) -> int:
    """The largest number of distinct foreground ids (non-zero) in one video of ``videos`` (labelled videos)."""
    counts = [0]
    for index in range(len(videos)):  # type: ignore[arg-type]
        masks = videos[index].masks
        if masks is not None:
            counts.append(int((torch.unique(masks) > 0).sum()))  # neither background (0) nor void (-1)
    return max(counts)


def scoring_videos(
    spec: str, image_size: tuple[int, int], center_crop: bool, *, given: bool
) -> tuple[Dataset[VideoClip] | None, str | None]:
    """The labelled videos of ``spec`` to score the model on (as ``training.evaluate`` scores them: a note says
    how many unlabelled ones were left out), and None; or, when none is labelled and ``spec`` is the run's own
    data (not ``given`` with ``--data``), no videos and why the model is not scored (``"no video has masks"``),
    with a note on stderr that says how to score it.

    Raises:
        NoLabelledVideos: ``spec`` was ``given`` and has no labelled video.
        DatasetError: the data cannot be read.
    """
    notes: list[str] = []
    try:
        videos = evaluation_videos(spec, image_size, None, on_unlabelled=notes.append, center_crop=center_crop)
    except NoLabelledVideos:
        if given:
            raise
        print_note(
            f"note: no video of {spec} (the run's data) has masks: the model is published without scores, and its "
            "card says so; to score it, pass --data SPEC with labelled videos (a few annotated clips of the same "
            "scene, say) or --davis ROOT"
        )
        return None, "no video has masks"
    for note in notes:
        print_note(note)
    return videos, None


def first_video(spec: str, image_size: tuple[int, int], center_crop: bool) -> VideoClip:
    """The first :data:`~training.run_data.SAMPLE_FRAMES` frames of the first video of ``spec`` (the whole video
    when shorter), fitted as in training: what the sample picture of an unscored model shows, as the run's own
    samples do.

    Raises:
        DatasetError: the video cannot be read.
    """
    videos = build_dataset(spec, "val", None, image_size, center_crop=center_crop)
    return FirstFrames(videos, SAMPLE_FRAMES)[0]
