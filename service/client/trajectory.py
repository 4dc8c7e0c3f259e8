"""Slot trajectories of a stream, saved as one ``.npz`` file for world models and planners to train on.

Arrays in the file (``T`` results, ``K`` slots of ``D`` floats, ``M`` frames without a result; frames that were
dropped or refused have no row, so ``frame_index`` says which frames the rows are and the ``missing_*`` arrays say
why the others have none; a file without rows still has the stream's ``K`` and ``D``, ``slots`` ``[0, K, D]`` and so
on, and its ``model_version``, so it concatenates with others):

* ``frame_index`` int64 ``[T]``: the frame each row answers (the stream's count of frames sent, from 0).
* ``source_frame`` int64 ``[T]``: which frame of the source each row is: the file's number for a folder of numbered
  files (``00007.jpg`` is 7, so a gap in the numbering shows here), else the frame's place in the source from 0 (a
  video's decoded frames, a camera's reads, a synthetic clip's frames, a folder's files in frame order).
* ``capture_time_ns`` int64 ``[T]``: the capture time sent with the frame (0 when none was sent); see
  ``capture_clock`` for what it counts.
* ``slot_ids`` int64 ``[T, K]``: the stream's slot ids, in the order of ``slots``.
* ``slots`` float32 ``[T, K, D]``: the slot vectors.
* ``areas`` float32 ``[T, K]``: each slot's share of the whole frame's segmentation; pixels outside the model's
  view (255, beside the crop of ``FrameFit.CROP``) belong to no slot, so with a crop a row sums to the crop's share
  of the frame, not to 1.
* ``frame_size`` int64 ``[T, 2]``: ``(height, width)`` of the frame as sent, in pixels (``(0, 0)`` for a row
  recorded without its geometry).
* ``centroids`` float32 ``[T, K, 2]``: ``(row, col)`` of each slot's centre of mass in the frame, in pixel indices
  (the centre of pixel ``(r, c)`` is ``(r, c)``, as in ``scipy.ndimage.center_of_mass`` and OpenCV's camera model);
  NaN for a slot with no pixels.
* ``boxes`` float32 ``[T, K, 4]``: ``(top, left, bottom, right)`` of each slot's bounding box in the frame, as pixel
  edges (row ``r`` spans ``r`` to ``r + 1``): bottom and right are exclusive, so with the segmentation at the frame's
  size they are whole numbers and ``frame[top:bottom, left:right]`` is the box; NaN for a slot with no pixels.
* ``fps`` float64 ``[]``: the source's nominal frame rate (a video's average rate, the rate of a ``frame_rate``
  clock, what a camera reports); NaN when not known.
* ``capture_clock`` str ``[]``: what ``capture_time_ns`` counts (empty when not known):

  * ``presentation`` (video files): the wall-clock time the stream started plus the frame's presentation timestamp
    (relative to the first frame's), so differences between rows are the video's own frame times.
  * ``frame_rate`` (synthetic clips; a folder of frames streamed with ``--fps``): the wall-clock time the stream
    started plus ``(source_frame - first) / fps``, ``first`` the source's first frame's ``source_frame`` (a gap in a
    folder's numbering is a longer step).
  * ``wall_clock`` (cameras; a folder of frames streamed without ``--fps``): the wall-clock time the frame was
    captured (read from the camera or from its file).

  All are ns since the Unix epoch.
* ``model_version`` str ``[]``: the version of the model that made them.
* ``frame_fit`` str ``[]``: how the frames were fitted to the model (``STRETCH``, ``CROP`` or ``PAD``; with
  ``CROP`` the areas sum to the crop's share of the frame); empty when not known.
* ``source`` str ``[]``: the source the frames came from, as it was named (a video's path, a folder, ``camera:0``,
  ``synthetic:60``); empty when not known (and absent from files written before it was added).
* ``end_reason`` str ``[]``: how the source's run ended: ``end`` (the source had no more frames), ``max_frames``
  (``--max-frames`` was reached), ``interrupted`` (Ctrl-C or SIGTERM), ``source_error: <why>`` (a frame could not
  be read, decoded or sent: a corrupt frame, a file cut short), ``server_ended: <why>`` (the server ended the
  stream, or the connection was lost, and it was not continued); empty when not known.
* ``complete`` bool ``[]``: whether every frame asked for was processed (``end_reason`` is ``end`` or
  ``max_frames``); a file that is not complete holds the rows of the frames before the run stopped.
* ``missing_frame_index`` int64 ``[M]``: the frames sent that have no row, in frame order (each frame index is in
  ``frame_index`` or here, never in both nor twice); shape ``[0]`` when every frame sent has a row.
* ``missing_source_frame`` int64 ``[M]``: which frame of the source each is, as ``source_frame`` counts.
* ``missing_reason`` str ``[M]``: why each has no row:

  * ``dropped: <REASON>``: the server answered that it dropped the frame (``FrameDropped``) before it reached the
    model: ``dropped: SUPERSEDED`` (live mode, ``--live``: a newer frame arrived first, so the scene was seen
    again a moment later) or ``dropped: SHUTTING_DOWN`` (the server began shutting down).
  * ``refused: <CODE>``: the server refused the frame (``FrameError``), for example ``refused: UNDECODABLE_IMAGE``
    (a corrupt image), ``refused: IMAGE_TOO_LARGE`` or ``refused: INFERENCE_FAILED`` (outputs that are not
    finite); ``service.extract`` records the frames it refuses so too.
  * ``unanswered``: the frame was sent but no answer came: the run stopped first (``end_reason`` says why), or the
    connection was lost and ``--reconnect`` continued the stream after the frame without sending it again.

  ``<REASON>`` and ``<CODE>`` are the names of the proto's ``DropReason`` and ``ErrorCode`` values without their
  ``DROP_REASON_`` and ``ERROR_CODE_`` prefixes, as the ``--jsonl`` lines' ``reason`` and ``code`` show them
  (``UNSPECIFIED`` for a value this client does not know). A dropped or refused frame never reaches the stream's
  recurrent state (the slots go on from the frames with rows); an unanswered one may have. Frames after the last
  one in ``frame_index`` and ``missing_frame_index`` were not sent (the run stopped: ``end_reason``).

``source_frame``, ``end_reason``, ``complete`` and the ``missing_*`` arrays are absent from files written before
they were added: read ``end_reason`` and ``complete`` with :func:`trajectory_end` (which says "not known" for such a
file), the missing frames with :func:`trajectory_missing` (which gives such a file's gaps in ``frame_index``, with
source frame -1 and an empty reason: not known), and take ``frame_index`` in place of ``source_frame``.

Geometry: ``areas``, ``centroids`` and ``boxes`` come from the frame's segmentation (one slot index per pixel, at
the stream's mask size, covering the whole frame). Pixels outside the model's view (255) belong to no slot. When the
mask size differs from the frame size, a mask pixel ``(i, j)`` stands for the frame's area from row edge
``i * H / h`` to ``(i + 1) * H / h`` (columns alike; ``H, W`` the frame's size, ``h, w`` the mask's), so box edges
are those scaled edges and a centroid is the mean of the mask pixels' centres mapped the same way.

Slots: ``slots[t, k]`` and ``slots[t + 1, k]`` are the same slot, followed by the recurrent model from frame to frame
(the slot ids are fixed per stream, ``0 .. K - 1``). No slot is designated background by the model: the slots
share one decoder and their first queries differ only by how the model starts them (for the default model, a fixed
noise sample per slot), so the first frame decides which one takes the background, although a model may tend to give
it to the same slot. A slot with a large area that stays put is usually the background.

Load it with ``numpy.load(path)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from plugins.files import write_atomically
from service.errors import ErrorCode
from service.types import DropReason, FrameResult

MASK_LONG_SIDE = 640
"""The longest side of the segmentation a trajectory's geometry is measured on (:func:`trajectory_mask_size`)."""

TRAJECTORY_ARRAYS = (
    "frame_index",
    "capture_time_ns",
    "slot_ids",
    "slots",
    "areas",
    "frame_size",
    "centroids",
    "boxes",
    "fps",
    "capture_clock",
    "model_version",
    "frame_fit",
    "source",
    "source_frame",
    "end_reason",
    "complete",
    "missing_frame_index",
    "missing_source_frame",
    "missing_reason",
)
"""The names of the arrays a trajectory file holds."""


END = "end"
"""``end_reason``: the source had no more frames."""
MAX_FRAMES = "max_frames"
"""``end_reason``: ``--max-frames`` was reached."""
INTERRUPTED = "interrupted"
"""``end_reason``: Ctrl-C or SIGTERM stopped the run."""
COMPLETE_REASONS = (END, MAX_FRAMES)
"""The ``end_reason`` values of a complete file."""


def source_error(error: BaseException) -> str:
    """The ``end_reason`` of a run stopped by a frame that could not be read, decoded or sent: ``source_error: ``
    and why."""
    return f"source_error: {error}"


def server_ended(error: BaseException) -> str:
    """The ``end_reason`` of a stream the server ended (or whose connection was lost) before its source did:
    ``server_ended: `` and why."""
    return f"server_ended: {error}"


UNANSWERED = "unanswered"
"""``missing_reason``: the frame was sent and never answered (the run stopped first, or a reconnect went on past
it)."""


def frame_dropped(reason: DropReason) -> str:
    """The ``missing_reason`` of a frame the server dropped: ``dropped: `` and the reason's name (``SUPERSEDED``)."""
    return f"dropped: {reason.name}"


def frame_refused(code: ErrorCode) -> str:
    """The ``missing_reason`` of a frame the server refused: ``refused: `` and the error code's name
    (``UNDECODABLE_IMAGE``)."""
    return f"refused: {code.name}"


class MissingFrames(NamedTuple):
    """The frames of a trajectory file that have no row (:func:`trajectory_missing`).

    Attributes:
        frame_index: int64 ``[M]``, in frame order.
        source_frame: int64 ``[M]``; -1 where not known.
        reason: str ``[M]`` (``dropped: ...``, ``refused: ...``, ``unanswered``); empty where not known.
    """

    frame_index: np.ndarray
    source_frame: np.ndarray
    reason: np.ndarray


def trajectory_missing(trajectory: Any) -> MissingFrames:
    """The frames without a row of a loaded trajectory file (``numpy.load``'s ``NpzFile``, or a mapping of its
    arrays): its ``missing_*`` arrays; for a file written before they were recorded, the frames before its last row
    that have none (dropped, refused or unanswered: not told apart), with source frame -1 and reason ``""``."""
    names = getattr(trajectory, "files", trajectory)
    if "missing_frame_index" in names:
        return MissingFrames(
            np.asarray(trajectory["missing_frame_index"], np.int64),
            np.asarray(trajectory["missing_source_frame"], np.int64),
            np.asarray(trajectory["missing_reason"], np.str_),
        )
    rows = np.asarray(trajectory["frame_index"], np.int64)  # [T]
    gaps = np.setdiff1d(np.arange(rows.max() + 1 if rows.size else 0, dtype=np.int64), rows)  # [M], sorted
    return MissingFrames(gaps, np.full(gaps.shape, -1, np.int64), np.full(gaps.shape, "", np.str_))


def trajectory_end(trajectory: Any) -> tuple[bool | None, str]:
    """``(complete, end_reason)`` of a loaded trajectory file (``numpy.load``'s ``NpzFile``, or a mapping of its
    arrays); ``(None, "")`` for a file written before they were recorded."""
    names = getattr(trajectory, "files", trajectory)
    if "complete" not in names:
        return None, ""
    return bool(trajectory["complete"]), str(trajectory["end_reason"])


def trajectory_mask_size(frame_size: tuple[int, ...]) -> tuple[int, int]:
    """The segmentation size a trajectory's geometry is measured on, for frames of ``frame_size`` ``(H, W, ...)``:
    the frame's own size, scaled down to :data:`MASK_LONG_SIDE` pixels on its longer side when larger."""
    height, width = frame_size[0], frame_size[1]
    scale = min(1.0, MASK_LONG_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def slot_areas(segmentation: np.ndarray, slots: int) -> np.ndarray:
    """Each slot's share of the whole frame: its pixels in ``segmentation`` over all of them.

    Pixels outside the model's view (:data:`~service.types.OUTSIDE_VIEW`, 255, when ``slots`` <= 255) count in
    the frame but belong to no slot, so with ``FrameFit.CROP`` the shares sum to the crop's share of the frame.

    Args:
        segmentation: uint8 ``[H, W]`` slot indices.
        slots: K.

    Returns:
        float64 ``[K]``.
    """
    counts = np.bincount(segmentation.ravel(), minlength=slots)  # [H, W] -> [H*W]; counts [>= K]
    return counts[:slots] / segmentation.size  # index 255 is beyond the K <= 255 slots: never an area


@dataclass(frozen=True)
class SlotGeometry:
    """Where a frame's slots are, in the frame's pixels (see the module docstring for the conventions).

    Attributes:
        frame_size: ``(height, width)`` of the frame as sent.
        centroids: float32 ``[K, 2]`` ``(row, col)`` pixel indices; NaN for a slot with no pixels.
        boxes: float32 ``[K, 4]`` ``(top, left, bottom, right)`` pixel edges, bottom and right exclusive; NaN for
            a slot with no pixels.
        areas: float64 ``[K]``, each slot's share of the whole frame: :func:`slot_areas` of the same segmentation,
            from the pixel counts the centroids are computed with.
    """

    frame_size: tuple[int, int]
    centroids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray


def slot_geometry(segmentation: np.ndarray, slots: int, frame_size: tuple[int, int]) -> SlotGeometry:
    """Each slot's centroid and bounding box in a frame of ``frame_size``, from the frame's ``segmentation``.

    Counts the pixels :func:`slot_areas` counts: pixels outside the model's view (255, when ``slots`` <= 255)
    belong to no slot. A segmentation of another size than the frame covers the whole frame: its coordinates are
    scaled to the frame's (see the module docstring).

    Args:
        segmentation: uint8 ``[h, w]`` slot indices.
        slots: K.
        frame_size: ``(H, W)`` of the frame as sent.

    Returns:
        The frame's :class:`SlotGeometry`.

    Raises:
        ValueError: ``segmentation`` is not a non-empty 2-D array, or ``frame_size`` is not two sizes >= 1.
    """
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise ValueError(f"the segmentation must be a non-empty [h, w] array, got shape {segmentation.shape}")
    height, width = (int(size) for size in frame_size)
    if height < 1 or width < 1:
        raise ValueError(f"frame_size must be (height, width) >= 1, got {tuple(frame_size)}")
    mask_height, mask_width = segmentation.shape
    labels = segmentation.astype(np.intp)
    bins = max(slots, int(labels.max()) + 1)
    rows, cols = np.indices(segmentation.shape)  # 2 x [h, w]
    # One bincount per axis: the pixels of each slot in each mask row and in each mask column.
    per_row = np.bincount((labels * mask_height + rows).ravel(), minlength=bins * mask_height)  # [bins * h]
    per_row = per_row.reshape(bins, mask_height)[:slots]  # [K, h]; index 255 is beyond K <= 255 slots
    per_col = np.bincount((labels * mask_width + cols).ravel(), minlength=bins * mask_width)  # [bins * w]
    per_col = per_col.reshape(bins, mask_width)[:slots]  # [K, w]
    counts = per_row.sum(axis=1)  # [K]
    empty = counts == 0
    sums = np.stack([per_row @ np.arange(mask_height), per_col @ np.arange(mask_width)], axis=1)  # [K, 2]
    scale = np.array([height / mask_height, width / mask_width])  # [2] frame pixels per mask pixel
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]  # [K, 2] mask pixel indices; NaN for an empty slot
    centroids = (mean + 0.5) * scale - 0.5  # [K, 2] a mask pixel's centre, in frame pixel indices
    hit_rows, hit_cols = per_row > 0, per_col > 0  # [K, h], [K, w]
    top, left = hit_rows.argmax(axis=1), hit_cols.argmax(axis=1)  # [K] each
    bottom = mask_height - hit_rows[:, ::-1].argmax(axis=1)  # [K] exclusive
    right = mask_width - hit_cols[:, ::-1].argmax(axis=1)  # [K] exclusive
    boxes = np.stack([top, left, bottom, right], axis=1) * np.tile(scale, 2)  # [K, 4] frame pixel edges
    boxes[empty] = np.nan
    areas = counts / segmentation.size  # [K], as slot_areas counts them
    return SlotGeometry((height, width), centroids.astype(np.float32), boxes.astype(np.float32), areas)


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
    """How the run ended (:data:`END`, :data:`MAX_FRAMES`, :data:`INTERRUPTED`, :func:`source_error`,
    :func:`server_ended`; empty: not known), saved as ``end_reason``, and ``complete`` from it."""
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
            geometry: the slots' places in the frame (:func:`slot_geometry`); ``None`` records frame size
                ``(0, 0)`` and NaN centroids and boxes.
            source_frame: which frame of the source it is (``SourceFrame.source_frame``); ``None``: taken (and
                removed) from :attr:`source_frames`, else the frame index.

        Raises:
            ValueError: the result carries no slots, its slot count or width differs from earlier results', or
                ``areas`` or ``geometry`` is not for its ``K`` slots.
        """
        if result.slots is None:
            raise ValueError(f"frame {result.frame_index}: the result has no slots (open the stream with SLOTS)")
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

    def add_missing(self, frame_index: int, reason: str, source_frame: int | None = None) -> None:
        """Record that frame ``frame_index`` was sent and has no row, and why; ignored when the frame is recorded
        already (with a row, or as missing).

        Args:
            frame_index: the frame's index in the stream.
            reason: ``missing_reason`` (:func:`frame_dropped`, :func:`frame_refused`, :data:`UNANSWERED`).
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

        write_atomically(self.path, write)
        self.saved = True

    def _no_slots(self) -> np.ndarray:
        """The ``slots`` of a file without rows: float32 ``[0, K, D]`` with :attr:`slot_count` and
        :attr:`slot_width` (0 where not known)."""
        return np.zeros((0, self.slot_count, self.slot_width), np.float32)
