"""A trajectory file's rows checked for a ROS 2 bag (:mod:`service.client.rosbag`): every array a message needs, of
shapes that agree, with capture times a ROS 2 stamp holds and slot ids a ``uint32`` holds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.client.trajectory import trajectory_missing

SLOT_ARRAY = "slotstream_msgs/msg/SlotArray"
"""The type of the messages written."""
LAST_STAMP_NS = 2**31 * 1_000_000_000
"""The first capture time (ns since the Unix epoch) a ROS 2 stamp cannot hold: its seconds are an int32."""
NEEDED = ("frame_index", "capture_time_ns", "slot_ids", "slots", "areas", "centroids", "boxes")
"""The arrays a trajectory file must hold to be written as a bag."""


class RosbagError(ValueError):
    """The trajectory cannot be written as a bag; the message says why and what to do."""


@dataclass(frozen=True)
class TrajectoryRows:
    """A trajectory file's rows, checked (:func:`trajectory_rows`)."""

    frame_index: np.ndarray  # int64 [T]
    capture_time_ns: np.ndarray  # int64 [T]
    source_frame: np.ndarray  # int64 [T]
    slot_ids: np.ndarray  # int64 [T, K]
    slots: np.ndarray  # float32 [T, K, D]
    areas: np.ndarray  # float32 [T, K]
    centroids: np.ndarray  # float32 [T, K, 2]
    boxes: np.ndarray  # float32 [T, K, 4]
    frame_size: np.ndarray  # int64 [T, 2]
    model_version: str
    missing: int
    """Frames of the trajectory without a row."""

    def messages(self, typestore: Any, frame_id: str) -> Iterator[tuple[int, Any]]:
        """``(capture time ns, SlotArray)`` of each row, in row order."""
        array, slot, header = (
            typestore.types[name] for name in (SLOT_ARRAY, "slotstream_msgs/msg/Slot", "std_msgs/msg/Header")
        )
        time = typestore.types["builtin_interfaces/msg/Time"]
        for row, stamp_ns in enumerate(self.capture_time_ns.tolist()):
            slots = [
                slot(
                    id=int(self.slot_ids[row, k]),
                    vector=self.slots[row, k],
                    area=float(self.areas[row, k]),
                    centroid_row=float(self.centroids[row, k, 0]),
                    centroid_col=float(self.centroids[row, k, 1]),
                    top=float(self.boxes[row, k, 0]),
                    left=float(self.boxes[row, k, 1]),
                    bottom=float(self.boxes[row, k, 2]),
                    right=float(self.boxes[row, k, 3]),
                )
                for k in range(self.slots.shape[1])
            ]
            seconds, nanoseconds = divmod(stamp_ns, 1_000_000_000)
            message = array(
                header=header(stamp=time(sec=seconds, nanosec=nanoseconds), frame_id=frame_id),
                frame_index=int(self.frame_index[row]),
                source_frame=int(self.source_frame[row]),
                frame_height=int(self.frame_size[row, 0]),
                frame_width=int(self.frame_size[row, 1]),
                model_version=self.model_version,
                slots=slots,
            )
            yield stamp_ns, message


def trajectory_rows(trajectory: Mapping[str, Any]) -> TrajectoryRows:
    """The rows of ``trajectory`` (a loaded trajectory file, or a mapping of its arrays), checked.

    Raises:
        RosbagError: an array a message needs is missing, an array cannot be read (a damaged file), the arrays'
            shapes disagree, a row has no capture time (0) or one a ROS 2 stamp cannot hold (:data:`LAST_STAMP_NS`
            on), or a slot id is beyond ``uint32``.
    """
    names = set(getattr(trajectory, "files", trajectory))
    absent = [name for name in NEEDED if name not in names]
    if absent:
        raise RosbagError(
            f"the trajectory lacks {', '.join(absent)}: give a file written by python -m service.client stream "
            "--slots or by python -m service.extract"
        )
    rows = _read(_arrays(trajectory, names), names)
    _check_shapes(rows)
    _check_values(rows)
    return rows


def _arrays(trajectory: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    """Every array of ``trajectory``, read now: a loaded file reads its arrays when they are taken, and a damaged one
    fails then (a checksum, a cut-short member, a broken array header).

    Raises:
        RosbagError: naming the array that cannot be read.
    """
    arrays = {}
    for name in sorted(names):
        try:
            arrays[name] = trajectory[name]
        except Exception as error:  # what a damaged member raises varies: zipfile's, zlib's, NumPy's header checks
            reason = f"{type(error).__name__}: {error}"
            raise RosbagError(f"its array {name!r} cannot be read (the file is damaged): {reason}") from None
    return arrays


def _read(trajectory: Mapping[str, Any], names: set[str]) -> TrajectoryRows:
    """The arrays of ``trajectory`` (whose array names are ``names``) as typed, unchecked rows; older files without
    ``source_frame`` or ``frame_size`` get the frame index and ``(0, 0)``."""
    frame_index = np.asarray(trajectory["frame_index"], np.int64)  # [T]
    count = len(frame_index)
    source_frame = trajectory["source_frame"] if "source_frame" in names else frame_index
    frame_size = trajectory["frame_size"] if "frame_size" in names else np.zeros((count, 2), np.int64)
    return TrajectoryRows(
        frame_index=frame_index,
        capture_time_ns=np.asarray(trajectory["capture_time_ns"], np.int64),
        source_frame=np.asarray(source_frame, np.int64),
        slot_ids=np.asarray(trajectory["slot_ids"], np.int64),
        slots=np.asarray(trajectory["slots"], np.float32),
        areas=np.asarray(trajectory["areas"], np.float32),
        centroids=np.asarray(trajectory["centroids"], np.float32),
        boxes=np.asarray(trajectory["boxes"], np.float32),
        frame_size=np.asarray(frame_size, np.int64),
        model_version=str(trajectory["model_version"]) if "model_version" in names else "",
        missing=_missing_count(trajectory),
    )


def _missing_count(trajectory: Mapping[str, Any]) -> int:
    """How many frames of ``trajectory`` have no row (older files: the gaps in ``frame_index``).

    Raises:
        RosbagError: the file has some of the ``missing_*`` arrays, not all (a damaged member name).
    """
    try:
        return len(trajectory_missing(trajectory).frame_index)
    except KeyError as error:
        raise RosbagError(f"the trajectory has missing_frame_index but not {error}: the file is damaged") from None


def _check_shapes(rows: TrajectoryRows) -> None:
    """Refuse arrays whose shapes disagree with ``slots`` ``[T, K, D]``."""
    count = len(rows.frame_index)
    if rows.slots.ndim != 3 or len(rows.slots) != count:
        raise RosbagError(f"the trajectory's slots have shape {rows.slots.shape}, not [T={count}, K, D]")
    slot_count = rows.slots.shape[1]
    expected = {
        "capture_time_ns": (count,),
        "source_frame": (count,),
        "slot_ids": (count, slot_count),
        "areas": (count, slot_count),
        "centroids": (count, slot_count, 2),
        "boxes": (count, slot_count, 4),
        "frame_size": (count, 2),
    }
    for name, shape in expected.items():
        actual = getattr(rows, name).shape
        if actual != shape:
            raise RosbagError(f"the trajectory's {name} has shape {actual}, not {list(shape)} as its slots imply")


def _check_values(rows: TrajectoryRows) -> None:
    """Refuse capture times a bag cannot stamp with and slot ids a ``Slot`` message cannot hold."""
    count = len(rows.frame_index)
    unstamped = np.flatnonzero(rows.capture_time_ns <= 0)  # [U]
    if unstamped.size:
        raise RosbagError(
            f"{unstamped.size} of the trajectory's {count} rows (frame_index {int(rows.frame_index[unstamped[0]])} "
            "first) have no capture time, which a bag's messages are stamped and ordered with: record the stream "
            "with capture times (python -m service.client stream sends them for every source)"
        )
    too_late = np.flatnonzero(rows.capture_time_ns >= LAST_STAMP_NS)  # [L]
    if too_late.size:
        raise RosbagError(
            f"{too_late.size} of the trajectory's {count} rows (frame_index {int(rows.frame_index[too_late[0]])} "
            "first) have capture times from 2038-01-19 03:14:08 UTC on, which a ROS 2 stamp (int32 seconds) cannot "
            "hold: check the clock the frames were stamped with"
        )
    if rows.slot_ids.size and not 0 <= rows.slot_ids.min() <= rows.slot_ids.max() < 2**32:
        raise RosbagError(
            f"the trajectory's slot_ids run from {rows.slot_ids.min()} to {rows.slot_ids.max()}, beyond the uint32 "
            "ids of a Slot message: a stream's slot ids are 0 .. K - 1"
        )
