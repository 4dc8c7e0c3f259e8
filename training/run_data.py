"""The data a run trains and evaluates on: the training clips and their DataLoader (its worker processes set up to
leave signals to the run), and the validation videos with the video the sample pictures show, read when the run
starts. The record of the local files they come from is :mod:`training.data_files`; a data error met mid-run is
reported by :mod:`training.data_errors`."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from plugins.signals import sigint_held
from training.batches import SeededItems, StepBatchSampler
from training.config import DataConfig, TrainConfig, spec_folder
from training.datasets import DatasetError, VideoClip, build_dataset, collate_frames
from training.datasets.augment import augmented
from training.datasets.selection import FirstFrames, labelled_indices, sparse_annotation_note, unlabelled_note
from training.datasets.specs import held_out_split
from training.distributed import ProcessGroup
from training.evaluation import object_count
from training.run_state import Run


def train_clips(config: TrainConfig) -> Dataset[VideoClip]:
    """The training clips of ``config.data`` (its ``train`` split), at the model's input size.

    Raises:
        DatasetError: the data cannot be read; a missing folder is named with where it was resolved from
            (:func:`check_data_folder`).
    """
    data = config.data
    size = config.image_size
    check_data_folder(data.spec, data)
    return build_dataset(data.spec, "train", data.clip_length, size, config.seed, center_crop=data.center_crop)


def check_data_folder(spec: str, data: DataConfig) -> None:
    """Check that the folder of a ``davis:`` or ``videos:`` ``spec`` of ``data`` exists (other specs pass).

    Raises:
        DatasetError: it does not; the message names the folder and, when it lies in ``data.workdir``, says that a
            relative folder is resolved from there: the directory the run was started in, or, for a
            ``train_config.json`` that records none (folders kept as typed), the current one.
    """
    folder = spec_folder(spec)
    if folder is None or folder.exists():
        return
    message = f"{spec}: the folder {folder} does not exist"
    if data.workdir is not None and folder.is_relative_to(data.workdir):
        message += (
            f" (a relative data folder is resolved from {data.workdir}: the working directory the run was started "
            "in, or the current one when its train_config.json records none and keeps the folder as typed, so "
            "resume such a run from the directory it was started in)"
        )
    raise DatasetError(message)


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
        worker_init_fn=_prepare_data_worker,
    )


def start_batches(
    config: TrainConfig, run: Run, group: ProcessGroup, clips: Dataset[VideoClip]
) -> Iterator[VideoClip]:
    """The iterator over :func:`train_loader`'s batches, its worker processes started with Ctrl-C held back.

    SIGINT is blocked in the calling thread while the workers start, so each worker begins with it blocked and
    ignores it before unblocking it (:func:`_ignore_ctrl_c`): a Ctrl-C during the start-up
    would otherwise end a worker that had not reached that point yet (the run then failed 5 s later with "DataLoader
    worker exited unexpectedly"). In the main thread a Ctrl-C that came meanwhile (another thread of the process
    may take it) is held back until the iterator is built (:func:`plugins.signals.sigint_held`), so a
    ``KeyboardInterrupt`` never leaves it half made. Creating the iterator draws a worker seed, kept off the run's
    random generator.
    """
    with torch.random.fork_rng(devices=[]), _sigint_blocked(), sigint_held():
        return iter(train_loader(config, run, group, clips))


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in the calling thread for the context (nothing where signal masks do not exist)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _prepare_data_worker(worker_id: int) -> None:
    """A DataLoader worker's set-up: it leaves signals meant for the run to the main process, which stops the run
    at a step boundary (:mod:`training.stop_request`), and ends when the main process does."""
    _ignore_ctrl_c()
    _leave_the_process_group()
    _end_with_parent()


def _ignore_ctrl_c() -> None:
    """Ignore SIGINT, then unblock it (the worker starts with it blocked: :func:`start_batches`; a Ctrl-C pending
    since then is discarded when it is ignored).

    A worker that took the KeyboardInterrupt itself left its loop before the main process asked it to, with batches
    still queued for a main process that no longer read them; it then could not exit, and the DataLoader's shutdown
    waited 5 s for each such worker before killing it (20 s with 4 workers, 70 s with 14). SIGTERM is left as it is:
    it is how the DataLoader and Python's exit handlers end workers that are still running.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _leave_the_process_group() -> None:
    """Move to a process group of this worker's own (POSIX; nothing elsewhere), so signals sent to the run's group
    reach its main process alone: ``torchrun`` stops a process with SIGTERM to its whole group, which ended the
    workers at once, and the main process, stopping at a step boundary, then failed on their death while it wrote
    its checkpoint. Out of the terminal's foreground group, the worker would be stopped by its first write to a
    terminal set to ``tostop`` (SIGTTOU) or by a read from it (SIGTTIN): it ignores both (the write goes through,
    the read fails)."""
    if not hasattr(os, "setpgid"):
        return
    os.setpgid(0, 0)
    for number in (signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(number, signal.SIG_IGN)


_PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal a process gets when the thread that created it ends."""


def _end_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent ends (Linux; nothing elsewhere).

    A main process ended by a signal's default action (a second SIGTERM, SIGKILL) runs no clean-up, and its
    workers, blocked on a full queue nobody reads, would stay alive for good, holding the run's stdout and stderr
    open (a ``| tee log`` never ended). With the ``fork`` start method (Linux's default up to Python 3.13) the
    workers' parent is the main process's main thread, which lives as long as the process, so the signal comes
    exactly when the process ends; with ``forkserver`` it is the fork server, which ends with the main process.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # no C library to load: keep the worker as it is
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


SAMPLE_FRAMES = 8
"""Frames of the first evaluation video (or of the first video, in a run without evaluation) that the sample
pictures show, at most."""


@dataclass(frozen=True)
class ValidationData:
    """What the evaluations during training use, read once when the run starts.

    Attributes:
        videos: the evaluation videos (None: the run is not evaluated).
        preview: the video the sample pictures show first (:data:`SAMPLE_FRAMES` of it at most; None: no samples).
        most_objects: the most ground-truth objects any evaluation video has over its evaluated frames
            (:func:`training.evaluation.object_count`); 0 without evaluation videos, or without masks.
        by_loss: the evaluation videos have no masks: the evaluations compute the run's held-out losses on them
            (:mod:`training.loss_evaluation`) instead of scoring them, and the lowest chooses ``best/``.
    """

    videos: Dataset[VideoClip] | None
    preview: Dataset[VideoClip] | None
    most_objects: int = 0
    by_loss: bool = False


class LoadedClips(Dataset[VideoClip]):
    """Clips already loaded, held in memory (a sample picture's frames, read once when the run starts)."""

    def __init__(self, clips: list[VideoClip]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> VideoClip:
        return self.clips[index]


def val_dataset(config: TrainConfig) -> tuple[Dataset[VideoClip] | None, Dataset[VideoClip] | None]:
    """The evaluation videos and the videos whose sample pictures the evaluations draw: the first two fields of
    :func:`validation_data` (whose errors it raises)."""
    data = validation_data(config)
    return data.videos, data.preview


def validation_data(config: TrainConfig) -> ValidationData:
    """The evaluation videos, the video the sample pictures show and how many objects the evaluation videos have.

    The evaluation videos are the first ``val_videos`` labelled videos of the validation data, each loaded once
    here so that a bad file fails the run at its start, not at its first evaluation; the samples show the first
    of them. When ``--val-data`` has no labelled video (held-out recordings without masks), they are its first
    ``val_videos`` videos, loaded here alike, and the evaluations compute the run's losses on them (``by_loss``),
    with a note. When the training data (no ``--val-data`` given) has no labelled video, there is nothing to
    evaluate on (no videos, with a note: its "val" split would be the first frames of the videos it trains on,
    not held out), and the samples show the first :data:`SAMPLE_FRAMES` frames of its first video, also loaded
    here (a video shorter than that is shown whole).

    Raises:
        DatasetError: ``--val-data`` has no video, or a video cannot be loaded (the message names the file).
    """
    data = config.data
    spec = data.val_spec or data.spec
    size = config.image_size
    check_data_folder(spec, data)
    dataset = build_dataset(spec, "val", data.val_frames, size, config.seed, center_crop=data.center_crop)
    labelled = labelled_indices(dataset)
    if not labelled and data.val_spec is not None:
        return _held_out_recordings(dataset, config)
    validation = Subset(dataset, labelled[: data.val_videos])
    most_objects = 0
    for index in range(len(validation)):
        masks = validation[index].masks
        if masks is None:
            raise DatasetError(
                f"{spec}: {validation[index].name} has no masks, so the run cannot be evaluated on it; pass "
                "--val-data with labelled videos"
            )
        most_objects = max(most_objects, object_count(masks))
    unlabelled = len(dataset) - len(labelled)  # type: ignore[arg-type]
    if labelled and unlabelled:  # a folder labelled in part: say so, as training.evaluate does
        tqdm.write(f"{unlabelled_note(unlabelled, spec)} of the evaluations during training")
    if (sparse := sparse_annotation_note(validation, spec, data.val_frames)) is not None:
        tqdm.write(f"{sparse} in the evaluations during training")
    if len(validation) and spec == data.spec and not held_out_split(spec):
        tqdm.write(
            f"note: {spec} has no held-out split (videos: folders, and davis: folders without ImageSets lists, give "
            "every video to both): the evaluation videos are the first frames of videos the run trains on, so best/ "
            "follows the fit to the training videos; pass --val-data with labelled videos the run does not train on"
        )
    if not len(validation):
        if data.val_spec is None:  # unlabelled training videos (a camera's recordings): train without evaluating
            tqdm.write(
                f"note: no video of {spec} has masks, so this run is not evaluated: no best/ (model/ is the result), "
                "and samples/ show its first video; pass --val-data with held-out recordings (videos the run does "
                "not train on) to evaluate: labelled ones are scored, and on unlabelled ones each evaluation computes "
                "the run's losses (val_loss), the lowest choosing best/; or --val-videos 0 to silence this note (and "
                "draw no samples/ either)"
            )
            return ValidationData(None, LoadedClips([_first_frames(dataset, config)]))
        raise DatasetError(f"{spec}: no video has masks to evaluate on; pass --val-data with labelled videos")
    return ValidationData(validation, validation, most_objects)  # type: ignore[arg-type]


def _held_out_recordings(dataset: Dataset[VideoClip], config: TrainConfig) -> ValidationData:
    """The evaluation of a run whose ``--val-data`` (``dataset``, its "val" split) has no labelled video: its first
    ``val_videos`` videos, each loaded once here (a bad file fails the run at its start), evaluated by the run's
    held-out losses (``by_loss``), with a note that says so; a second note when ``--val-data`` is the training data
    itself, whose "val" videos are the first frames of videos the run trains on, so their losses are not held out.

    Raises:
        DatasetError: ``dataset`` has no video, or a video cannot be loaded (the message names the file).
    """
    data = config.data
    spec = data.val_spec or data.spec
    videos = Subset(dataset, range(min(data.val_videos, len(dataset))))  # type: ignore[arg-type]
    if not len(videos):
        raise DatasetError(f"{spec}: no video to evaluate on")
    for index in range(len(videos)):
        videos[index]  # loaded once: a bad file fails the run at its start
    count = f"{len(videos)} video{'' if len(videos) == 1 else 's'}"
    tqdm.write(
        f"note: no video of {spec} has masks, so the evaluations compute the run's own weighted losses on its first "
        f"{count} (val_loss in metrics.jsonl, lower is better) and best/ keeps the model with the lowest val_loss"
    )
    if data.val_spec == data.spec:
        tqdm.write(
            f"note: --val-data {spec} is the training data: its evaluation videos are the first frames of videos the "
            "run trains on, so their losses are not held out and best/ follows the fit to the training videos; "
            "pass --val-data with recordings the run does not train on"
        )
    return ValidationData(videos, videos, by_loss=True)


def _first_frames(dataset: Dataset[VideoClip], config: TrainConfig) -> VideoClip:
    """The first video of ``dataset`` (the validation split of the run's data), cut to the frames a sample picture
    shows: the first :data:`SAMPLE_FRAMES` (no more than ``val_frames``), or the whole video when it is shorter.

    Only those frames are read (:class:`training.datasets.selection.FirstFrames`: ``davis:`` and ``videos:``
    datasets read the first frames themselves, whatever clip length they were built with), so a long video is not
    decoded whole for its first frames.

    Raises:
        DatasetError: the video cannot be loaded (the message names the file).
    """
    data = config.data
    return FirstFrames(dataset, min(SAMPLE_FRAMES, data.val_frames or SAMPLE_FRAMES))[0]
