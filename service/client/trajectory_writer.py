"""Writing a stream's slot trajectory: :class:`SlotTrajectory` collects the slots of its results, and the frames
without a result, and saves them as one ``.npz`` file in the format :mod:`service.client.trajectory` documents."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import write_atomically
from service.client.segmentation_geometry import SlotGeometry, slot_geometry
from service.client.trajectory import COMPLETE_REASONS, frame_dropped, frame_refused
from service.types import FrameDropped, FrameError, FrameResult

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
"""The capture times a file's ``capture_time_ns`` (int64) holds."""


@dataclass
class SlotTrajectory:
    """Collects the slots of a stream's results in memory and writes them to ``path`` with :meth:`save` (for 6
    slots of 64 with their geometry: 2.4 kB a frame in memory, measured with ``tracemalloc``, and 1.8 kB in the
    file), and the frames without a result (:meth:`add_missing`).

    Each frame index is recorded once: a row (:meth:`add`) replaces a missing entry of the same frame; a second row,
    or a missing entry of a frame recorded before (with a row or as missing), is ignored. So a frame answered twice
    (an error for a frame sent again with an index already used, an answer repeated after a reconnect) keeps one
    record: its row when it had a result, else its first missing entry.

    Attributes:
        path: the ``.npz`` file to write.
    """

    path: Path
    _frame_index: list[int] = field(default_factory=list, init=False, repr=False)
    _capture_time_ns: list[int] = field(default_factory=list, init=False, repr=False)
    _slot_ids: list[tuple[int, ...]] = field(default_factory=list, init=False, repr=False)
    _slots: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _areas: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _frame_size: list[tuple[int, int]] = field(default_factory=list, init=False, repr=False)
    _centroids: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _boxes: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _source_frame: list[int] = field(default_factory=list, init=False, repr=False)
    _rows: set[int] = field(default_factory=set, init=False, repr=False)
    _missing: dict[int, tuple[int, str]] = field(default_factory=dict, init=False, repr=False)
    slot_count: int = 0
    """K as the stream's open or the model's card says it (0: not known), for a file without rows: its arrays are
    then ``[0, K, ...]`` (``slots`` ``[0, K, D]``), so it concatenates with others. Rows give K themselves."""
    slot_width: int = 0
    """D likewise (0: not known)."""
    model_version: str = ""
    """The version of the model that made the slots, saved as ``model_version``; when empty, the first row's."""
    frame_fit: str = ""
    """The stream's frame fit as ``StreamOpened`` echoed it (``STRETCH``, ``CROP`` or ``PAD``), saved too."""
    fps: float = math.nan
    """The source's nominal frame rate, saved as ``fps`` (NaN: not known)."""
    capture_clock: str = ""
    """What the capture times count (``presentation``, ``frame_rate`` or ``wall_clock``), saved too."""
    source: str = ""
    """Where the frames came from, as named (a path, ``camera:0``, ``synthetic:60``), saved too."""
    end_reason: str = ""
    """How the run ended (:mod:`service.client.trajectory`'s :data:`~service.client.trajectory.END`,
    :data:`~service.client.trajectory.MAX_FRAMES`, :data:`~service.client.trajectory.INTERRUPTED`,
    :func:`~service.client.trajectory.source_error`, :func:`~service.client.trajectory.server_ended`; empty: not
    known), saved as ``end_reason``, and ``complete`` from it."""
    source_frames: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    """Frame index -> source frame of frames sent and not yet answered: :meth:`add` and :meth:`add_missing` take a
    frame's ``source_frame`` from here when not given it (its frame index when not here either); the sender removes
    what is never added."""
    saved: bool = field(default=False, init=False)
    """Whether :meth:`save` has written the file."""

    def __len__(self) -> int:
        return len(self._frame_index)

    def add(
        self,
        result: FrameResult,
        areas: np.ndarray,
        geometry: SlotGeometry | None = None,
        source_frame: int | None = None,
    ) -> None:
        """Record one result; not when the frame has a row already (a frame recorded as missing gets this row
        instead).

        Args:
            result: a frame's result with slots (output ``SLOTS``).
            areas: float ``[K]``, each slot's share of the whole frame (pixels outside the model's view in none).
            geometry: the slots' places in the frame (:func:`~service.client.segmentation_geometry.slot_geometry`);
                ``None`` records frame size ``(0, 0)`` and NaN centroids and boxes.
            source_frame: which frame of the source it is (``SourceFrame.source_frame``); ``None``: taken (and
                removed) from :attr:`source_frames`, else the frame index.

        Raises:
            ValueError: the result carries no slots, its slot count or width differs from earlier results',
                ``areas`` or ``geometry`` is not for its ``K`` slots, or its capture time is beyond the int64 the
                file stores (:meth:`save` could then write none of the rows).
        """
        if result.slots is None:
            raise ValueError(f"frame {result.frame_index}: the result has no slots (open the stream with SLOTS)")
        if not _INT64_MIN <= result.capture_time_ns <= _INT64_MAX:
            raise ValueError(
                f"frame {result.frame_index}: its capture time, {result.capture_time_ns} ns, is beyond the int64 "
                "nanoseconds a trajectory file stores"
            )
        if self._slots and result.slots.shape != self._slots[0].shape:
            raise ValueError(
                f"frame {result.frame_index}: slots of shape {result.slots.shape}, earlier frames' were "
                f"{self._slots[0].shape}"
            )
        slots = result.slots.shape[0]
        if np.shape(areas) != (slots,):
            raise ValueError(f"frame {result.frame_index}: areas of shape {np.shape(areas)} for {slots} slots")
        if geometry is None:
            geometry = SlotGeometry(
                (0, 0), np.full((slots, 2), np.nan, np.float32), np.full((slots, 4), np.nan), areas
            )
        if geometry.centroids.shape != (slots, 2) or geometry.boxes.shape != (slots, 4):
            raise ValueError(
                f"frame {result.frame_index}: centroids of shape {geometry.centroids.shape} and boxes of shape "
                f"{geometry.boxes.shape} for {slots} slots (expected ({slots}, 2) and ({slots}, 4))"
            )
        if source_frame is None:
            source_frame = self.source_frames.pop(result.frame_index, result.frame_index)
        if result.frame_index in self._rows:
            return
        self._rows.add(result.frame_index)
        self._missing.pop(result.frame_index, None)
        self._frame_index.append(result.frame_index)
        self._source_frame.append(source_frame)
        self._capture_time_ns.append(result.capture_time_ns)
        self._slot_ids.append(result.slot_ids)
        self._slots.append(np.asarray(result.slots, dtype=np.float32))
        self._areas.append(np.asarray(areas, dtype=np.float32))
        self._frame_size.append(geometry.frame_size)
        self._centroids.append(np.asarray(geometry.centroids, dtype=np.float32))
        self._boxes.append(np.asarray(geometry.boxes, dtype=np.float32))
        self.model_version = self.model_version or result.model_version

    def record(self, answer: FrameResult | FrameDropped | FrameError, frame_size: tuple[int, ...]) -> None:
        """Record an answer as the command-line client does: a result as a row, its areas and geometry measured on
        its segmentation for a frame of ``frame_size`` (``(H, W, ...)``, the frame as sent: ``frame.shape``), and a
        drop or a refusal as a missing frame with its reason. For code that streams with
        :func:`~service.client.stream_frames` or the async client and wants the same file.

        The geometry is as fine as the segmentation: ask for masks of
        :func:`~service.client.segmentation_geometry.trajectory_mask_size` (``StreamOptions.mask_size``), as the
        command line does. The model version is taken from the first answer that carries one (a drop or a refusal
        too). What else the file says of the run (:attr:`fps`, :attr:`frame_fit`, :attr:`capture_clock`,
        :attr:`source`, :attr:`end_reason`, and :attr:`slot_count` and :attr:`slot_width`, which a file without
        rows needs to have ``slots`` of ``[0, K, D]``) is the caller's to set. A loop of
        ``stream_frames(..., newest_only=True)`` never sees the answers it skips, so their frames are in neither
        ``frame_index`` nor ``missing_frame_index``: record them with :meth:`add_missing` (the gaps in the indices
        recorded) when the file must account for every frame sent.

        Raises:
            ValueError: a result without slots or segmentation (open the stream with both outputs), or as
                :meth:`add`.
        """
        if isinstance(answer, FrameDropped | FrameError):
            self.model_version = self.model_version or answer.model_version
        if isinstance(answer, FrameDropped):
            self.add_missing(answer.frame_index, frame_dropped(answer.reason))
        elif isinstance(answer, FrameError):
            self.add_missing(answer.frame_index, frame_refused(answer.code))
        else:
            if answer.segmentation is None:
                raise ValueError(
                    f"frame {answer.frame_index}: the result has no segmentation, which a row's areas and geometry "
                    "are measured on (open the stream with SEGMENTATION)"
                )
            geometry = slot_geometry(answer.segmentation, len(answer.slot_ids), (frame_size[0], frame_size[1]))
            self.add(answer, geometry.areas, geometry)

    def add_missing(self, frame_index: int, reason: str, source_frame: int | None = None) -> None:
        """Record that frame ``frame_index`` was sent and has no row, and why; ignored when the frame is recorded
        already (with a row, or as missing).

        Args:
            frame_index: the frame's index in the stream.
            reason: ``missing_reason`` (:func:`~service.client.trajectory.frame_dropped`,
                :func:`~service.client.trajectory.frame_refused`, :data:`~service.client.trajectory.UNANSWERED`).
            source_frame: which frame of the source it is; ``None``: taken (and removed) from
                :attr:`source_frames`, else the frame index.
        """
        if source_frame is None:
            source_frame = self.source_frames.pop(frame_index, frame_index)
        if frame_index not in self._rows:
            self._missing.setdefault(frame_index, (source_frame, reason))

    def save(self) -> None:
        """Write the results and missing frames recorded so far to :attr:`path`, replacing it whole: the file is
        written under a temporary name and renamed (:func:`plugins.files.write_atomically`), so a reader never sees
        half a file and a failed write leaves the old one.

        Raises:
            OSError: the file cannot be written.
        """
        slots = np.stack(self._slots) if self._slots else self._no_slots()  # T x [K, D] -> [T, K, D]
        count, k = len(self), slots.shape[1]
        missing = sorted(self._missing.items())  # M x (frame index, (source frame, reason)), in frame order
        arrays: dict[str, Any] = {
            "frame_index": np.asarray(self._frame_index, dtype=np.int64),  # [T]
            "capture_time_ns": np.asarray(self._capture_time_ns, dtype=np.int64),  # [T]
            # T x [K] -> [T, K] (also for T = 0)
            "slot_ids": np.asarray(self._slot_ids, dtype=np.int64).reshape(count, k),  # [T, K]
            "slots": slots,
            # T x [K] -> [T, K] (also for T = 0)
            "areas": np.asarray(self._areas, dtype=np.float32).reshape(count, k),  # [T, K]
            "frame_size": np.asarray(self._frame_size, dtype=np.int64).reshape(count, 2),  # [T, 2]
            # T x [K, 2] -> [T, K, 2] (also for T = 0)
            "centroids": np.asarray(self._centroids, dtype=np.float32).reshape(count, k, 2),  # [T, K, 2]
            # T x [K, 4] -> [T, K, 4] (also for T = 0)
            "boxes": np.asarray(self._boxes, dtype=np.float32).reshape(count, k, 4),  # [T, K, 4]
            "fps": np.asarray(self.fps, dtype=np.float64),
            "capture_clock": np.asarray(self.capture_clock),
            "model_version": np.asarray(self.model_version),
            "frame_fit": np.asarray(self.frame_fit),
            "source": np.asarray(self.source),
            "source_frame": np.asarray(self._source_frame, dtype=np.int64),  # [T]
            "end_reason": np.asarray(self.end_reason),
            "complete": np.asarray(self.end_reason in COMPLETE_REASONS),
            "missing_frame_index": np.asarray([index for index, _ in missing], dtype=np.int64),  # [M]
            "missing_source_frame": np.asarray([entry[0] for _, entry in missing], dtype=np.int64),  # [M]
            "missing_reason": np.asarray([entry[1] for _, entry in missing], dtype=np.str_),  # [M]
        }

        def write(temporary: Path) -> None:
            with temporary.open("wb") as file:  # a file object: np.savez would add .npz to a name without it
                np.savez(file, **arrays)

        write_atomically(self.path, write, through_links=True)  # a link to elsewhere stays a link
        self.saved = True

    def _no_slots(self) -> np.ndarray:
        """The ``slots`` of a file without rows: float32 ``[0, K, D]`` with :attr:`slot_count` and
        :attr:`slot_width` (0 where not known)."""
        return np.zeros((0, self.slot_count, self.slot_width), np.float32)
