"""The data a run trains and evaluates on: the training clips and their DataLoader, the validation videos, and
data errors of DataLoader workers cut back to their own message."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from training.batches import SeededItems, StepBatchSampler
from training.config import TrainConfig
from training.datasets import DatasetError, VideoClip, build_dataset, collate_frames
from training.datasets.augment import augmented
from training.datasets.selection import labelled_indices, unlabelled_note
from training.distributed import ProcessGroup
from training.run_state import Run


def train_clips(config: TrainConfig) -> Dataset[VideoClip]:
    """The training clips of ``config.data`` (its ``train`` split), at the model's input size."""
    data = config.data
    size = _image_size(config)
    return build_dataset(data.spec, "train", data.clip_length, size, config.seed, center_crop=data.center_crop)


def train_loader(
    config: TrainConfig, run: Run, group: ProcessGroup, clips: Dataset[VideoClip]
) -> DataLoader[VideoClip]:
    """The batches this process trains on from ``run.step`` on: ``clips`` with the configured augmentation, each
    step's clips drawn from the run seed, the step and the process rank (:mod:`training.batches`)."""
    data = config.data
    dataset = SeededItems(augmented(clips, data.augment))
    sampler = StepBatchSampler(dataset, data.batch_size, config.seed, run.step, config.steps, group.rank)
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=sampler,  # type: ignore[arg-type]
        collate_fn=collate_frames,
        num_workers=data.num_workers,
        persistent_workers=False,
    )


def val_dataset(config: TrainConfig) -> tuple[Dataset[VideoClip] | None, Dataset[VideoClip] | None]:
    """The evaluation videos and the videos whose sample pictures the evaluations draw.

    The first are the first ``val_videos`` labelled videos of the validation data, each loaded once here so that a
    bad file fails the run at its start, not at its first evaluation; the second the same videos. When the
    training data (no ``--val-data`` given) has no labelled video, there is nothing to evaluate on (None, with a
    note), and the samples show its first video.

    Raises:
        DatasetError: ``--val-data`` has no labelled video, or a video cannot be loaded (the message names the
            file).
    """
    data = config.data
    spec = data.val_spec or data.spec
    size = _image_size(config)
    dataset = build_dataset(spec, "val", data.val_frames, size, config.seed, center_crop=data.center_crop)
    labelled = labelled_indices(dataset)
    validation = Subset(dataset, labelled[: data.val_videos])
    for index in range(len(validation)):
        if validation[index].masks is None:
            raise DatasetError(
                f"{spec}: {validation[index].name} has no masks, so the run cannot be evaluated on it; pass "
                "--val-data with labelled videos"
            )
    unlabelled = len(dataset) - len(labelled)  # type: ignore[arg-type]
    if labelled and unlabelled:  # a folder labelled in part: say so, as training.evaluate does
        tqdm.write(f"{unlabelled_note(unlabelled, spec)} of the evaluations during training")
    if not len(validation):
        if data.val_spec is None:  # unlabelled training videos (a camera's recordings): train without evaluating
            tqdm.write(
                f"note: no video of {spec} has masks, so this run is not evaluated: no best/ (model/ is the result), "
                "and samples/ show its first video; pass --val-data with labelled videos to evaluate, or "
                "--val-videos 0 to silence this note"
            )
            return None, Subset(dataset, [0])
        raise DatasetError(f"{spec}: no video has masks to evaluate on; pass --val-data with labelled videos")
    return validation, validation  # type: ignore[return-value]


def reported(batches: Iterator[VideoClip]) -> Iterator[VideoClip]:
    """``batches``, with a data error raised in a worker process cut back to its own message (the DataLoader
    prefixes the worker's whole traceback)."""
    try:
        yield from batches
    except DatasetError as error:
        text = str(error)
        marker = f"{type(error).__name__}: "
        if "Original Traceback" in text and marker in text:
            raise DatasetError(text.rsplit(marker, 1)[1].strip()) from None
        raise


def _image_size(config: TrainConfig) -> tuple[int, int]:
    size = config.model.get("image_size", (64, 64))
    return int(size[0]), int(size[1])
