"""What a :class:`ClientStream` says when an operation fails: the :class:`StreamError` for a closed or closing
stream, a cancelled call, a lost connection, an open whose replies this client cannot receive, a :meth:`process`
that cannot start, or a reconnect that cannot continue exactly, with what the caller can do about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from service.client.errors import StreamError
from service.errors import ErrorCode
from service.types import CloseReason, StateHandoff, StreamClosed, StreamOpened

if TYPE_CHECKING:
    from service.client.connection import Client


def stream_name(opened: StreamOpened | None) -> str:
    """The stream's id as messages quote it, or ``(not open yet)``."""
    return repr(opened.stream_id) if opened is not None else "(not open yet)"


def closed_error(closed: StreamClosed, handoff: StateHandoff | None) -> StreamError:
    """The error for an operation on a stream whose :class:`StreamClosed` arrived (``handoff``: the stream's latest
    state)."""
    if closed.reason == CloseReason.CLIENT_CLOSED:
        return StreamError(
            grpc.StatusCode.FAILED_PRECONDITION,
            None,
            f"stream {closed.stream_id!r} is closed (close() ended it; reason CLIENT_CLOSED): open a new stream",
            closed=closed,
            handoff=handoff,
        )
    return StreamError.from_closed(closed, handoff)


def cancelled_error(client: Client, opened: StreamOpened | None) -> StreamError:
    """The error for an operation on a call that was cancelled on this side (``client``: the stream's client now,
    ``opened``: its latest open)."""
    if client.closed:
        return client._closed_error()
    return StreamError(
        grpc.StatusCode.CANCELLED,
        None,
        f"stream {stream_name(opened)}: the call it was using was cancelled (by cancel(), or by a reconnect() that "
        "replaced it while this waited, or that was itself cancelled): after a reconnect() that succeeded, "
        "simply try again; otherwise reconnect() continues the stream (within its resume_window_s, or from a "
        "hand-off), or open a new stream",
    )


def closing_error(opened: StreamOpened | None) -> StreamError:
    """The error for a frame sent on a stream whose close request was sent (``opened``: its latest open)."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        None,
        f"stream {stream_name(opened)} is closing (close() or close_writing() was called): it takes no "
        "more frames; receive() its last answers, or open a new stream",
    )


def reply_too_large_error(opened: StreamOpened, max_message_bytes: int) -> StreamError:
    """The error for an open whose frame replies can exceed the client's ``max_message_bytes`` (the stream was
    closed again)."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorCode.INVALID_OPEN,
        f"stream {opened.stream_id!r}: a frame reply can be {opened.max_reply_bytes:,} bytes, more than "
        f"this client receives (max_message_bytes {max_message_bytes:,}); raise "
        "max_message_bytes, or ask for a smaller mask size, uint8 soft masks or fewer outputs. The stream "
        "was closed",
    )


def staleness_ignored_error(opened: StreamOpened, asked_s: float) -> StreamError:
    """The error for an open that asked for ``max_staleness_s`` from a server that does not apply it (one older than
    the option echoes 0; the stream was closed again)."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorCode.INVALID_OPEN,
        f"stream {opened.stream_id!r}: the open asked for max_staleness_s {asked_s:g}, and the server does not apply "
        "it (its StreamOpened.options has none: a server older than the option), so old frames would reach the "
        "model; upgrade the server, or open without max_staleness_s. The stream was closed",
    )


def process_running_error() -> StreamError:
    """The error for a :meth:`ClientStream.process` while another task is in one on the same stream."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        None,
        "process() is already running on this stream in another task; one process() at a time per stream "
        "(answers come in order): await it first, use one stream per task, or send() and receive()",
    )


def unanswered_error(waiting: list[int]) -> StreamError:
    """The error for a :meth:`ClientStream.process` while the frames ``waiting`` (indices) still await answers;
    nothing was sent."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        None,
        f"process() needs every earlier frame answered first, and {frames_text(waiting)} "
        f"{'is' if len(waiting) == 1 else 'are'} still unanswered (sent with send(), or re-sent by "
        "reconnect()): receive() the answers first, or use send() and receive() to keep several frames in "
        "flight; nothing was sent",
    )


def unkept_stream_error(opened: StreamOpened, *, handed_off: bool) -> StreamError | None:
    """Why :meth:`ClientStream.reconnect` need not ask the server to resume the stream ``opened``, as it is known
    not to keep it: the server granted no resume window, or released the stream with its state (``handed_off``: a
    drain's :class:`StreamClosed` since that open). ``None`` when a resume may succeed. Skipping the resume saves
    a round trip and a refusal the server would count."""
    if handed_off:
        why = "the server released it with its state when it closed it"
    elif opened.options.resume_window_s <= 0:
        why = "the server granted it no resume window (resume_window_s 0), so it freed it when the call ended"
    else:
        return None
    return StreamError(
        grpc.StatusCode.NOT_FOUND, ErrorCode.UNKNOWN_STREAM, f"stream {opened.stream_id!r} cannot be resumed: {why}"
    )


def stale_handoff_error(
    opened: StreamOpened | None, error: StreamError, handoff: StateHandoff, newest: int
) -> StreamError:
    """Why :meth:`ClientStream.reconnect` cannot continue from ``handoff`` when the stream cannot be resumed
    (``error`` says why): frames up to ``newest`` were answered after the state it holds, and they are not kept to be
    sent again."""
    return StreamError(
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorCode.RESUME_POINT_UNAVAILABLE,
        f"stream {stream_name(opened)} cannot be continued exactly: it cannot be resumed ({error}), and the "
        f"only state this client holds is the one after frame {handoff.last_frame_index}, while frames up to "
        f"{newest} were answered since; continuing from it would silently undo them (this client does not keep "
        "answered frames to send them again). Ask for the STATE output (StreamOptions(outputs=...)) to keep the "
        "saved state current with every result, or open a new stream",
    )


_CORE_WRITE_ERROR = "Internal error from Core"
"""What grpc.aio says, as an INTERNAL status, for a write that met a connection already gone."""


def explained(
    error: StreamError,
    channel: Any,
    opened: StreamOpened | None,
    handoff: StateHandoff | None,
    *,
    handed_off: bool = False,
) -> StreamError:
    """``error`` with a hint when it says the connection of this open stream was lost: whether
    :meth:`ClientStream.reconnect` can continue the stream (within its resume window, or from a hand-off) or it is
    lost (the stream's ``opened.options.resume_window_s`` is the window the server granted).

    Args:
        error: what an operation of the stream raised.
        channel: the gRPC channel of the stream's client.
        opened: the stream's latest open, ``None`` while it is being opened (no hint then).
        handoff: the stream's latest state hand-off, if any.
        handed_off: the server closed the stream with ``handoff`` (a drain) since its latest open, so it keeps it
            no longer, whatever the resume window.
    """
    if (
        error.status == grpc.StatusCode.INTERNAL
        and error.code is None
        and error.closed is None
        and (_CORE_WRITE_ERROR in error.message or channel.get_state() != grpc.ChannelConnectivity.READY)
    ):
        # grpc.aio reports a write that meets a connection already gone as INTERNAL ("Internal error from
        # Core", grpc/grpc#36066), in place of the call's UNAVAILABLE, at times before the channel's state has
        # left READY; a server's own INTERNAL has its own message and leaves the connection up.
        error = StreamError(grpc.StatusCode.UNAVAILABLE, None, f"the connection closed under a write (gRPC: {error})")
    if not error.connection_lost or error.hint or opened is None:
        return error
    window_s = opened.options.resume_window_s
    if handed_off and handoff is not None:
        hint = (
            f"the connection was lost; the server that held stream {opened.stream_id!r} shut down and handed it off "
            "(it keeps it no longer): `await stream.reconnect(Client(...))` with a server of the same model version "
            f"continues it from that state{_RECONNECTING}"
        )
    elif window_s > 0:
        hint = (
            f"the connection was lost; the server keeps stream {opened.stream_id!r} for {window_s:g} s "
            "(its resume_window_s): `await stream.reconnect()` continues it where it stopped, re-sending the "
            f"frames still unanswered{_RECONNECTING}"
        )
    elif handoff is not None:
        hint = (
            "the connection was lost, and the stream with it on the server (it was opened without a "
            "resume_window_s), but `await stream.reconnect()` can continue it from its latest state hand-off"
            f"{_RECONNECTING}"
        )
    else:
        hint = (
            "the connection was lost, and the stream with it: it was opened without a resume window; open "
            "streams with StreamOptions(resume_window_s=...) so that `await stream.reconnect()` can continue them"
            f"{_RECONNECTING}"
        )
    return StreamError(error.status, error.code, error.message, handoff=handoff, hint=hint)


_RECONNECTING = (
    "; that is the async Client's ClientStream: on the command line `stream --reconnect N`, and in "
    "`stream_frames(..., reconnect=N)`, the stream is opened with a resume window and continued the same way"
)
"""Where each API stands on reconnecting, after a hint that names the async client's call: the hint reaches the
command line's and ``stream_frames``' users too."""


def frames_text(indices: list[int]) -> str:
    """``frame 3`` or ``frames 3, 4, 5`` (at most five listed)."""
    if len(indices) == 1:
        return f"frame {indices[0]}"
    shown = ", ".join(str(index) for index in indices[:5])
    return f"frames {shown}" + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")


__all__ = [
    "cancelled_error",
    "closed_error",
    "closing_error",
    "explained",
    "frames_text",
    "process_running_error",
    "reply_too_large_error",
    "stale_handoff_error",
    "stream_name",
    "unanswered_error",
    "unkept_stream_error",
]
