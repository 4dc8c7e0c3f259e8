"""Slot trajectories of a stream, saved as one ``.npz`` file for world models and planners to train on.

Arrays in the file (``T`` results, ``K`` slots of ``D`` floats; frames that were dropped or refused have no row,
so ``frame_index`` says which frames the rows are):

* ``frame_index`` int64 ``[T]``: the frame each row answers.
* ``capture_time_ns`` int64 ``[T]``: the capture time the client sent with the frame (0 when it sent none).
* ``slot_ids`` int64 ``[T, K]``: the stream's stable slot ids, in the order of ``slots``.
* ``slots`` float32 ``[T, K, D]``: the slot vectors.
* ``areas`` float32 ``[T, K]``: each slot's share of the whole frame's segmentation; pixels outside the model's
  view (255, beside the crop of ``FrameFit.CROP``) belong to no slot, so with a crop a row sums to the crop's share
  of the frame, not to 1.
* ``model_version`` str ``[]``: the version of the model that made them.
* ``frame_fit`` str ``[]``: how the frames were fitted to the model (``STRETCH``, ``CROP`` or ``PAD``; with
  ``CROP`` the areas sum to the crop's share of the frame); empty when not known.

Load it with ``numpy.load(path)``; ``slots[t, k]`` and ``slots[t + 1, k]`` are the same slot, followed by the
recurrent model from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import write_atomically
from service.types import FrameResult

TRAJECTORY_ARRAYS = ("frame_index", "capture_time_ns", "slot_ids", "slots", "areas", "model_version", "frame_fit")
"""The names of the arrays a trajectory file holds."""


@dataclass
class SlotTrajectory:
    """Collects the slots of a stream's results in memory and writes them to ``path`` with :meth:`save` (for 6
    slots of 64: 2.1 kB a frame in memory, measured with ``tracemalloc``, and 1.6 kB in the file).

    Attributes:
        path: the ``.npz`` file to write.
    """

    path: Path
    _frame_index: list[int] = field(default_factory=list, init=False, repr=False)
    _capture_time_ns: list[int] = field(default_factory=list, init=False, repr=False)
    _slot_ids: list[tuple[int, ...]] = field(default_factory=list, init=False, repr=False)
    _slots: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _areas: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _model_version: str = field(default="", init=False, repr=False)
    frame_fit: str = ""
    """The stream's frame fit as ``StreamOpened`` echoed it (``STRETCH``, ``CROP`` or ``PAD``), saved too."""
    saved: bool = field(default=False, init=False)
    """Whether :meth:`save` has written the file."""

    def __len__(self) -> int:
        return len(self._frame_index)

    def add(self, result: FrameResult, areas: np.ndarray) -> None:
        """Record one result.

        Args:
            result: a frame's result with slots (output ``SLOTS``).
            areas: float ``[K]``, each slot's share of the whole frame (pixels outside the model's view in none).

        Raises:
            ValueError: the result carries no slots, or its slot count or width differs from earlier results'.
        """
        if result.slots is None:
            raise ValueError(f"frame {result.frame_index}: the result has no slots (open the stream with SLOTS)")
        if self._slots and result.slots.shape != self._slots[0].shape:
            raise ValueError(
                f"frame {result.frame_index}: slots of shape {result.slots.shape}, earlier frames' were "
                f"{self._slots[0].shape}"
            )
        self._frame_index.append(result.frame_index)
        self._capture_time_ns.append(result.capture_time_ns)
        self._slot_ids.append(result.slot_ids)
        self._slots.append(np.asarray(result.slots, dtype=np.float32))
        self._areas.append(np.asarray(areas, dtype=np.float32))
        self._model_version = self._model_version or result.model_version

    def save(self) -> None:
        """Write the results recorded so far to :attr:`path`, replacing it whole: the file is written under a
        temporary name and renamed (:func:`plugins.files.write_atomically`), so a reader never sees half a file
        and a failed write leaves the old one.

        Raises:
            OSError: the file cannot be written.
        """
        slots = np.stack(self._slots) if self._slots else np.zeros((0, 0, 0), np.float32)  # T x [K, D] -> [T, K, D]
        arrays: dict[str, Any] = {
            "frame_index": np.asarray(self._frame_index, dtype=np.int64),  # [T]
            "capture_time_ns": np.asarray(self._capture_time_ns, dtype=np.int64),  # [T]
            # T x [K] -> [T, K] (also for T = 0)
            "slot_ids": np.asarray(self._slot_ids, dtype=np.int64).reshape(len(self), slots.shape[1]),  # [T, K]
            "slots": slots,
            # T x [K] -> [T, K] (also for T = 0)
            "areas": np.asarray(self._areas, dtype=np.float32).reshape(len(self), slots.shape[1]),  # [T, K]
            "model_version": np.asarray(self._model_version),
            "frame_fit": np.asarray(self.frame_fit),
        }

        def write(temporary: Path) -> None:
            with temporary.open("wb") as file:  # a file object: np.savez would add .npz to a name without it
                np.savez(file, **arrays)

        write_atomically(self.path, write)
        self.saved = True
