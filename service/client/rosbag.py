"""Slot trajectories as ROS 2 bags: a trajectory file (``--slots``, ``service.extract``) written as one
``slotstream_msgs/msg/SlotArray`` message per row, for robots that record, replay and inspect everything as bags.

The messages are defined in ``service/client/ros_msgs/slotstream_msgs`` (a ROS 2 interface package: build it in a
colcon workspace to use the messages from ROS nodes); the bag carries their definitions too, so readers that decode
from a bag's own schemas (rosbags, the ``mcap`` library's ROS 2 decoder) need nothing built. Each message is stamped
with its frame's capture time (``header.stamp``, and the bag's log time), so it lines up with the robot's other
topics recorded from the same clock; a frame without a row (dropped, refused, unanswered) has no message.

Written with `rosbags <https://gitlab.com/ternaris/rosbags>`_ (the ``ros`` extra), which needs no ROS install: bag
format version 8 (ROS 2 Iron's), in MCAP (ROS 2's default storage from Iron on) or SQLite 3 storage.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.extras import require_extra
from plugins.files import temporary_prefix
from service.client.bag_rows import SLOT_ARRAY, trajectory_rows
from service.client.bag_rows import RosbagError as RosbagError  # what write_rosbag raises
from service.client.trajectory import trajectory_end

MSG_PACKAGE = Path(__file__).parent / "ros_msgs" / "slotstream_msgs"
"""The ROS 2 interface package of the messages."""
STORAGES = ("mcap", "sqlite3")
"""The bag storages that can be written."""
BAG_VERSION = 8
"""The rosbag2 metadata version written (ROS 2 Iron's)."""
RUN_FIELDS = ("source", "capture_clock", "fps", "model_version", "frame_fit", "end_reason", "complete")
"""The trajectory file's record of its run that a bag keeps in its ``custom_data``, as ``slotstream.<name>``."""


@dataclass(frozen=True)
class BagSummary:
    """What :func:`write_rosbag` wrote.

    Attributes:
        path: the bag's folder.
        messages: messages written, one per trajectory row.
        missing: frames of the trajectory without a row, so without a message.
        topic: the topic they were written on.
        end_reason: how the run that made the trajectory ended (``""``: not recorded).
        complete: whether it went through every frame asked for (``None``: not recorded).
    """

    path: Path
    messages: int
    missing: int
    topic: str
    end_reason: str = ""
    complete: bool | None = None


def message_types() -> dict[str, Any]:
    """The ``slotstream_msgs`` message definitions, parsed by rosbags (its ``Typesdict``)."""
    typesys = _rosbags("rosbags.typesys")
    types: dict[str, Any] = {}
    for path in sorted((MSG_PACKAGE / "msg").glob("*.msg")):
        types.update(typesys.get_types_from_msg(path.read_text(encoding="utf-8"), f"slotstream_msgs/msg/{path.stem}"))
    return types


def write_rosbag(
    trajectory: Mapping[str, Any],
    out: Path,
    topic: str = "/slotstream/slots",
    frame_id: str = "camera",
    storage: str = "mcap",
) -> BagSummary:
    """Write ``trajectory`` (a loaded trajectory file: ``numpy.load``'s ``NpzFile`` or a mapping of its arrays) as
    a ROS 2 bag in the new folder ``out``, one ``SlotArray`` on ``topic`` per row, stamped with the row's capture
    time and ``frame_id``; the bag's ``custom_data`` keeps the file's record of its run (:func:`run_record`).

    The bag is written in a hidden folder beside ``out`` and renamed into place, so an error while writing leaves
    no bag (``out``'s missing parent folders are made first).

    Raises:
        RosbagError: ``out`` exists, ``storage`` is not one of :data:`STORAGES`, ``topic`` is not a ROS 2 topic
            name, ``frame_id`` is empty or has a leading ``/`` or white space, the trajectory lacks an array or one
            cannot be read (a damaged file), its arrays disagree in shape, it has rows without a capture time (0)
            or with one a ROS 2 stamp cannot hold (:data:`LAST_STAMP_NS` on), or slot ids beyond uint32; nothing is
            written then.
        OSError: the bag cannot be written.
        SystemExit: status 2, without the ``ros`` extra (rosbags), after a line naming it.
    """
    check_bag_arguments(out, topic, frame_id, storage)
    rows = trajectory_rows(trajectory)
    rosbag2, typesys = _rosbags("rosbags.rosbag2"), _rosbags("rosbags.typesys")
    typestore = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    typestore.register(message_types())
    plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written in a hidden folder beside ``out`` and moved into place: a failure leaves no half-written bag.
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(out.name), dir=out.parent))
    try:
        bag = staging / out.name  # the storage file is named after its folder: out.mcap, out.db3
        with rosbag2.Writer(bag, version=BAG_VERSION, storage_plugin=plugin) as writer:
            for key, value in run_record(trajectory).items():
                writer.set_custom_data(key, value)
            connection = writer.add_connection(topic, SLOT_ARRAY, typestore=typestore)
            for stamp_ns, message in rows.messages(typestore, frame_id):
                writer.write(connection, stamp_ns, typestore.serialize_cdr(message, SLOT_ARRAY))
                written += 1
        bag.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    complete, end_reason = trajectory_end(trajectory)
    return BagSummary(out, written, rows.missing, topic, end_reason, complete)


def run_record(trajectory: Mapping[str, Any]) -> dict[str, str]:
    """What the trajectory file says of its run, as the bag's ``custom_data`` (metadata.yaml) keeps it: each of
    :data:`RUN_FIELDS` the file holds, under ``slotstream.<name>``, as text (``complete`` as ``true``/``false``)."""
    names = set(getattr(trajectory, "files", trajectory))
    record = {}
    for name in RUN_FIELDS:
        if name in names:
            value = np.asarray(trajectory[name]).item()
            record[f"slotstream.{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return record


def check_bag_arguments(out: Path, topic: str, frame_id: str, storage: str) -> None:
    """Refuse what :func:`write_rosbag` could not write, before a trajectory is read.

    Raises:
        RosbagError: ``storage`` is not one of :data:`STORAGES`, ``topic`` is not a ROS 2 topic name, ``frame_id``
            is empty or has a leading ``/`` or white space, ``out`` exists, or its parent exists and is not a folder.
    """
    if storage not in STORAGES:
        raise RosbagError(f"storage {storage!r}: choose one of {', '.join(STORAGES)}")
    _check_topic(topic)
    _check_frame_id(frame_id)
    if out.exists() or out.is_symlink():
        raise RosbagError(f"{out} exists: a bag is written to a new folder; remove it or name another")
    parent = next((folder for folder in out.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RosbagError(f"{out}: {parent} is not a folder, so the bag's folder cannot be made in it")


def _rosbags(module: str) -> Any:
    """Import ``module`` of rosbags; without the ``ros`` extra, exit with status 2 after a line naming it."""
    require_extra("ros", "python -m service.client to-rosbag")
    return importlib.import_module(module)


def _check_frame_id(frame_id: str) -> None:
    """Refuse a frame id tf2 would not find: empty, with a leading ``/`` (tf2 refuses those) or with white space."""
    if not frame_id or frame_id.startswith("/") or any(character.isspace() for character in frame_id):
        raise RosbagError(
            f"frame id {frame_id!r}: name the camera's tf2 frame, not empty, without a leading '/' or white space "
            "(e.g. camera_front_optical_frame)"
        )


def _check_topic(topic: str) -> None:
    """Refuse a name ROS 2 would refuse as a topic: absolute, of ``/``-separated tokens of letters, digits and
    underscores, none starting with a digit."""
    tokens = topic.split("/")[1:]
    if (
        not topic.startswith("/")
        or not all(tokens)
        or any(not token.replace("_", "a").isascii() or not token.replace("_", "a").isalnum() for token in tokens)
        or any(token[0].isdigit() for token in tokens)
        or "__" in topic
    ):
        raise RosbagError(
            f"topic {topic!r}: a ROS 2 topic name starts with '/' and is made of '/'-separated names of ASCII "
            "letters, digits and single underscores, none starting with a digit (e.g. /camera_front/slots)"
        )
