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
* ``complete`` bool ``[]``: whether the run went through every frame asked for (``end_reason`` is ``end`` or
  ``max_frames``): each was sent and has a row or a ``missing_*`` entry saying why not, so a complete file may hold
  few rows or none (every frame dropped as stale, say); a file that is not complete holds the rows of the frames
  before the run stopped.
* ``missing_frame_index`` int64 ``[M]``: the frames sent that have no row, in frame order (each frame index is in
  ``frame_index`` or here, never in both nor twice); shape ``[0]`` when every frame sent has a row.
* ``missing_source_frame`` int64 ``[M]``: which frame of the source each is, as ``source_frame`` counts.
* ``missing_reason`` str ``[M]``: why each has no row:

  * ``dropped: <REASON>``: the server answered that it dropped the frame (``FrameDropped``) before it reached the
    model: ``dropped: SUPERSEDED`` (live mode, ``--live``: a newer frame arrived first, so the scene was seen
    again a moment later), ``dropped: STALE`` (older than the stream's ``max_staleness_s``, ``--max-staleness-s``,
    when it arrived or was to reach the model) or ``dropped: SHUTTING_DOWN`` (the server began shutting down).
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

from typing import Any, NamedTuple

import numpy as np

from service.errors import ErrorCode
from service.types import DropReason

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
