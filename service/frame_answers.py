"""What a stream answers for a frame that gets no result (a ``FrameError`` or a ``FrameDropped``), and the checks
a frame must pass before it is decoded (:func:`admission_problem`)."""

from __future__ import annotations

from service.errors import ErrorCode, FrameRejected
from service.sessions import Session
from service.staleness import stale_message
from service.types import DropReason, FrameDropped, FrameError, FrameRequest

MAX_CAMERA_FRAME_ID_BYTES = 256
"""Longest accepted ``camera_frame_id`` (UTF-8 bytes): replies echo it, within their size allowance."""


def admission_problem(request: FrameRequest, last_accepted_index: int | None) -> FrameRejected | None:
    """Why ``request`` is refused before it is decoded, else ``None``: a ``camera_frame_id`` longer than
    :data:`MAX_CAMERA_FRAME_ID_BYTES`, or a frame index not above ``last_accepted_index`` (the stream's last
    accepted frame; ``None`` before its first)."""
    id_bytes = len(request.camera_frame_id.encode())
    if id_bytes > MAX_CAMERA_FRAME_ID_BYTES:
        return FrameRejected(
            ErrorCode.CAMERA_FRAME_ID_TOO_LONG,
            f"camera_frame_id is {id_bytes} bytes; at most {MAX_CAMERA_FRAME_ID_BYTES} are accepted (it is echoed in "
            "every result)",
        )
    if last_accepted_index is not None and request.frame_index <= last_accepted_index:
        return FrameRejected(
            ErrorCode.FRAME_INDEX_NOT_INCREASING,
            f"frame index {request.frame_index} is not larger than that of the last frame this stream accepted "
            f"({last_accepted_index}); a frame answered with a FrameError other than INFERENCE_FAILED does not count",
        )
    return None


def frame_error(session: Session | None, request: FrameRequest, rejected: FrameRejected) -> FrameError:
    """The ``FrameError`` answering ``request`` on ``session`` (``None``: not open yet): the frame's own ids and
    capture time, and the session's stream id and model version. An id too long to echo was the problem: the error
    leaves it out."""
    camera_frame_id = "" if rejected.code == ErrorCode.CAMERA_FRAME_ID_TOO_LONG else request.camera_frame_id
    return FrameError(
        _stream_id(session),
        request.frame_index,
        rejected.code,
        rejected.message,
        request.capture_time_ns,
        camera_frame_id,
        _model_version(session),
    )


def frame_dropped(session: Session | None, request: FrameRequest, reason: DropReason, message: str) -> FrameDropped:
    """The ``FrameDropped`` answering ``request`` on ``session``, for ``reason``."""
    return FrameDropped(
        _stream_id(session),
        request.frame_index,
        request.capture_time_ns,
        reason,
        message,
        request.camera_frame_id,
        _model_version(session),
    )


def stale_drop(session: Session | None, request: FrameRequest, when: str) -> FrameDropped:
    """``request`` dropped as older than the stream's ``max_staleness_s``; ``when`` says at which point (``"when it
    arrived"``)."""
    limit = session.options.max_staleness_s if session is not None else 0.0
    return frame_dropped(session, request, DropReason.STALE, stale_message(request.capture_time_ns, limit, when))


def shutdown_drop(session: Session | None, request: FrameRequest) -> FrameDropped:
    """``request`` dropped because the server began shutting down before it reached the model."""
    message = "the server began shutting down before this frame reached the model"
    return frame_dropped(session, request, DropReason.SHUTTING_DOWN, message)


def _stream_id(session: Session | None) -> str:
    return session.stream_id if session is not None else ""


def _model_version(session: Session | None) -> str:
    return session.model_version if session is not None else ""


__all__ = [
    "MAX_CAMERA_FRAME_ID_BYTES",
    "admission_problem",
    "frame_dropped",
    "frame_error",
    "shutdown_drop",
    "stale_drop",
]
