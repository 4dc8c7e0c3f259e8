"""Training windows for a dynamics head from trajectory files (``.npz`` of ``python -m service.extract`` or
``python -m service.client stream --slots``): runs of consecutive frames cut into windows of ``history + rollout``
frames (:func:`trajectory_windows`), and the files split into training and held-out ones by file
(:func:`split_files`), so a score is measured on videos the head never saw."""

from __future__ import annotations

import itertools
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TrajectoryError(ValueError):
    """A trajectory file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Windows:
    """Windows of consecutive frames' slots.

    Attributes:
        slots: float32 ``[N, F, K, D]``: ``N`` windows of ``F`` frames.
        files: how many files gave at least one window.
        skipped: files without ``F`` consecutive frames (too short, or too many frames missing).
        slot_shape: ``(K, D)`` of every file's slots, and the first file, which set it (``None`` without files).
    """

    slots: np.ndarray
    files: int
    skipped: list[Path]
    slot_shape: tuple[tuple[int, int], Path] | None = None

    def check_same_model(self, other: Windows) -> None:
        """Refuse ``other``'s windows when their files' slots are of another shape than these (another model's).

        Raises:
            TrajectoryError: naming a file of each.
        """
        if self.slot_shape is None or other.slot_shape is None or self.slot_shape[0] == other.slot_shape[0]:
            return
        raise _another_model(other.slot_shape, self.slot_shape)


def _another_model(found: tuple[tuple[int, int], Path], expected: tuple[tuple[int, int], Path]) -> TrajectoryError:
    """The refusal of the file of ``found`` (its slots' ``(K, D)`` and path), whose slots are not of the shape of
    ``expected``'s file."""
    ((count, width), path), ((expected_count, expected_width), first) = found, expected
    return TrajectoryError(
        f"{path}: slots of {count} x {width}, but {first} has {expected_count} x {expected_width}: the files come "
        "from different models; use one model's trajectories"
    )


def trajectory_files(folder: Path) -> list[Path]:
    """The ``.npz`` files directly in ``folder``, sorted by name.

    Raises:
        TrajectoryError: ``folder`` is not a folder or holds no ``.npz`` file.
    """
    if not folder.is_dir():
        raise TrajectoryError(f"{folder}: not a folder of trajectory files (.npz)")
    files = sorted(path for path in folder.iterdir() if path.suffix == ".npz" and path.is_file())
    if not files:
        raise TrajectoryError(
            f"{folder} holds no .npz trajectory file: write some with python -m service.extract SOURCE... --out "
            f"{folder}"
        )
    return files


def split_files(files: Sequence[Path], held_out: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``files`` shuffled with ``seed`` and split into training files and the ``held_out`` fraction of them (at
    least one of each when there are two files or more; none held out for a single file).

    Raises:
        ValueError: ``held_out`` is not in ``[0, 1)``.
    """
    if not 0 <= held_out < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {held_out}")
    shuffled = list(files)
    random.Random(seed).shuffle(shuffled)
    count = 0
    if held_out > 0 and len(shuffled) >= 2:
        count = min(max(round(held_out * len(shuffled)), 1), len(shuffled) - 1)
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def read_slots(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``slots`` float32 ``[T, K, D]`` and ``frame_index`` int64 ``[T]`` of the trajectory file ``path``.

    Raises:
        TrajectoryError: the file cannot be read, is not a trajectory, or its arrays disagree.
    """
    try:
        with np.load(path, allow_pickle=False) as trajectory:
            if "slots" not in trajectory or "frame_index" not in trajectory:
                raise TrajectoryError(f"{path}: not a trajectory file (it has no slots and frame_index arrays)")
            slots, frame_index = trajectory["slots"], trajectory["frame_index"]
    except TrajectoryError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise TrajectoryError(f"{path}: cannot be read as a trajectory file ({error})") from error
    if slots.ndim != 3 or frame_index.shape != (slots.shape[0],) or not np.issubdtype(frame_index.dtype, np.integer):
        raise TrajectoryError(
            f"{path}: slots must be [T, K, D] with one integer frame_index per row, got slots {list(slots.shape)} "
            f"and frame_index {list(frame_index.shape)} of {frame_index.dtype}"
        )
    if not np.isfinite(slots).all():
        raise TrajectoryError(f"{path}: its slots hold NaN or infinite values")
    return slots.astype(np.float32), frame_index.astype(np.int64)


def consecutive_runs(frame_index: np.ndarray) -> list[slice]:
    """The row ranges of ``frame_index`` ``[T]`` whose frames follow each other (each index one more than the row
    before): a missing frame, or an index out of order, starts a new run."""
    breaks = np.flatnonzero(np.diff(frame_index) != 1) + 1  # rows that do not follow the row before
    edges = [0, *breaks.tolist(), len(frame_index)]
    return [slice(start, stop) for start, stop in itertools.pairwise(edges) if stop > start]


def trajectory_windows(files: Sequence[Path], frames: int, stride: int = 1) -> Windows:
    """Every window of ``frames`` consecutive frames of ``files``, starting every ``stride`` frames within each
    run of consecutive frames.

    Raises:
        TrajectoryError: a file cannot be read (:func:`read_slots`), or its slots are not of the shape the first
            file's are (another model), naming both.
        ValueError: ``frames`` or ``stride`` is below 1.
    """
    if frames < 1 or stride < 1:
        raise ValueError(f"windows need frames >= 1 and stride >= 1, got {frames} and {stride}")
    windows: list[np.ndarray] = []
    slot_shape: tuple[tuple[int, int], Path] | None = None  # the first file's (K, D), and that file
    used, skipped = 0, []
    for path in files:
        slots, frame_index = read_slots(path)
        shape = (slots.shape[1], slots.shape[2])
        if slot_shape is None:
            slot_shape = (shape, path)
        elif shape != slot_shape[0] and len(slots):
            raise _another_model((shape, path), slot_shape)
        found = [
            slots[start : start + frames]  # [F, K, D]
            for run in consecutive_runs(frame_index)
            for start in range(run.start, run.stop - frames + 1, stride)
        ]
        if found:
            windows.extend(found)
            used += 1
        else:
            skipped.append(path)
    k, d = slot_shape[0] if slot_shape is not None else (0, 0)
    # N x [F, K, D] -> [N, F, K, D]
    stacked = np.stack(windows) if windows else np.zeros((0, frames, k, d), np.float32)
    return Windows(stacked, used, skipped, slot_shape)


__all__ = [
    "TrajectoryError",
    "Windows",
    "consecutive_runs",
    "read_slots",
    "split_files",
    "trajectory_files",
    "trajectory_windows",
]
