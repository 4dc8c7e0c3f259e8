"""The slotstream client library.

Async::

    async with Client("127.0.0.1:50051") as client:
        stream = await client.open(StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION})))
        result = await stream.process(frame)          # frame: uint8 [H, W, 3] RGB
        await stream.close()

Blocking::

    for response in stream_frames("127.0.0.1:50051", frames):
        ...

``frames`` may give each frame with its capture time, as an ``(image, capture_time_ns)`` pair (:data:`TimedFrame`).
Frames are sized to the server's message limit (its ``--max-message-bytes``, when lower than the client's): an array
whose raw pixels do not fit one message is sent as PNG, lossless.

A client on the server's host may send raw frames through shared memory (a server started with ``--shared-memory``;
``ModelCard.shared_memory``): ``stream.send(ring.put(frame))`` with a :class:`SharedFrameRing`, whose
:class:`SharedMemoryRef` the frame's :class:`EncodedImage` then carries; ``stream_frames(..., shared_memory=True)``
does so for a blocking loop.

A consumer slower than its camera that wants the freshest answer, not every answer in order, reads through
:class:`NewestAnswer` (async) or passes ``newest_only=True`` to :func:`stream_frames`.

``StreamOptions(frame_fit=FrameFit.CROP)`` (or ``STRETCH``, ``PAD``; unset: the server's default) chooses how the
server fits the stream's frames to the model's input; with ``CROP`` the segmentation holds ``OUTSIDE_VIEW`` (255)
beside the crop.

Every type the API takes or returns is exported here: :class:`StreamOpened` (``ClientStream.opened``, the
result of ``ClientStream.reconnect``; its ``resume_token`` feeds ``Client.resume``), :class:`ModelCard`
(``Client.describe``), :class:`StreamStats`, :class:`StreamStatus` and :class:`ReloadOutcome` (``Client.list_streams``,
``Client.stream_stats`` and ``Client.reload_model``, for operators holding an admin token), :class:`EncodedImage` (a
frame already encoded, as :func:`encode_image` makes it) and the fields of the answers (:class:`LatencyBreakdown`,
:class:`DropReason`, ...).

Command line: ``python -m service.client stream SOURCE --target HOST:PORT --out overlay.gif --jsonl out.jsonl``.

Slot trajectories (``--slots``, or ``python -m service.extract`` without a server) are ``.npz`` files of the arrays
:data:`TRAJECTORY_ARRAYS` (:mod:`service.client.trajectory` documents each); :class:`SlotTrajectory` writes them
(:meth:`SlotTrajectory.record` takes the answers of :func:`stream_frames` or a stream), :func:`slot_geometry`
measures a segmentation's slots the way they do, and :func:`trajectory_mask_size` is the mask size they measure on.
"""

from __future__ import annotations

from service.client.blocking import TimedFrame, stream_frames
from service.client.connection import Client
from service.client.encoding import encode_image
from service.client.errors import StreamError
from service.client.newest import NewestAnswer
from service.client.segmentation_geometry import SlotGeometry, slot_geometry, trajectory_mask_size
from service.client.shared_frames import SharedFrameRing
from service.client.stream import ClientStream
from service.client.tls import TlsBytes, TlsFiles
from service.client.trajectory import TRAJECTORY_ARRAYS
from service.client.trajectory_writer import SlotTrajectory
from service.engine import ModelCard
from service.errors import ErrorCode
from service.stream_stats import StreamStats, StreamStatus
from service.types import (
    OUTSIDE_VIEW,
    CloseReason,
    DropReason,
    EncodedImage,
    FrameDropped,
    FrameError,
    FrameFit,
    FrameResponse,
    FrameResult,
    ImageEncoding,
    LatencyBreakdown,
    OpenKind,
    Output,
    ReloadOutcome,
    SharedMemoryRef,
    StateHandoff,
    StreamClosed,
    StreamOpened,
    StreamOptions,
)

__all__ = [
    "OUTSIDE_VIEW",
    "TRAJECTORY_ARRAYS",
    "Client",
    "ClientStream",
    "CloseReason",
    "DropReason",
    "EncodedImage",
    "ErrorCode",
    "FrameDropped",
    "FrameError",
    "FrameFit",
    "FrameResponse",
    "FrameResult",
    "ImageEncoding",
    "LatencyBreakdown",
    "ModelCard",
    "NewestAnswer",
    "OpenKind",
    "Output",
    "ReloadOutcome",
    "SharedFrameRing",
    "SharedMemoryRef",
    "SlotGeometry",
    "SlotTrajectory",
    "StateHandoff",
    "StreamClosed",
    "StreamError",
    "StreamOpened",
    "StreamOptions",
    "StreamStats",
    "StreamStatus",
    "TimedFrame",
    "TlsBytes",
    "TlsFiles",
    "encode_image",
    "slot_geometry",
    "stream_frames",
    "trajectory_mask_size",
]
