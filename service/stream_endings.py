"""What a client is told about a stream that has ended: why a resume of a released stream is refused, and why the
call of a stalled stream (its client stopped reading) was ended."""

from __future__ import annotations

from service.errors import ErrorCode, StreamAbort, quoted
from service.session import Session

_ENDED_BECAUSE = {
    "closed": "its client closed it",
    "drained": "its server shut down; continue it on another replica with the StateHandoff it was sent",
    "lost": "its server shut down while it waited for a resume, so its state was lost; open a new stream",
    "error": "it ended with an error",
    "ended": "an operator ended it (Admin.EndStream)",
    "cancelled": "its connection dropped, and streams opened without a resume window end with it",
    "displaced": (
        "its connection dropped and, while it waited for a resume, a new stream took its place (at the server's "
        "stream limit, or its client address's, a new stream takes the place of a stream waiting for a resume, the "
        "one that has waited longest first)"
    ),
}
"""How a released stream ended, by release reason, for the answer to a resume of it."""


_EXPIRED_BECAUSE = {
    "idle": "it received no frames within its idle timeout",
    "stalled": "its client took no reply within its idle timeout (it stopped reading)",
    "resume_expired": "its connection dropped and it was not resumed within its resume window",
}
"""How an expired stream ended, by release reason."""


def how_it_ended(reason: str) -> str:
    """How a stream released for ``reason`` (a :data:`~service.session.ReleaseReason`) ended, in words."""
    return _EXPIRED_BECAUSE.get(reason) or _ENDED_BECAUSE.get(reason, reason.replace("_", " "))


def stream_gone(stream_id: str, reason: str | None) -> StreamAbort:
    """The refusal of a stream this server no longer holds: ``STREAM_EXPIRED`` when ``reason`` (why it was
    released, ``None`` when it is not known here) is a timeout, else ``UNKNOWN_STREAM``, saying how it ended and
    what to do instead."""
    if reason is None:
        return StreamAbort(
            ErrorCode.UNKNOWN_STREAM,
            f"stream {quoted(stream_id)} is not known to this server; if it ran on another replica, continue it "
            "with its StateHandoff, otherwise open a new stream",
        )
    why = how_it_ended(reason)
    if reason in _EXPIRED_BECAUSE:
        return StreamAbort(
            ErrorCode.STREAM_EXPIRED,
            f"stream {quoted(stream_id)} expired: {why}, so its state was freed; open a new stream",
        )
    return StreamAbort(ErrorCode.UNKNOWN_STREAM, f"stream {quoted(stream_id)} has ended: {why}; open a new stream")


def stalled_message(session: Session, resumable: bool) -> str:
    """What the client of a stalled stream is told: why its call ended and what is left of the stream."""
    stream = f"stream {quoted(session.stream_id)}: its client took no reply for {session.options.idle_timeout_s:g} s "
    stream += "(the idle timeout) while frames waited to be answered: it stopped reading, so the call was ended"
    if resumable:
        return (
            f"{stream}; the stream is kept for its resume window ({session.options.resume_window_s:g} s): resume it "
            "from the last answer received (an OpenStream with its stream_id and a ResumeStream holding its resume "
            "token; the Python client's ClientStream.reconnect() does this) and read the replies as they come (a "
            "resume point more than StreamOpened.resume_history processed frames back, the server's "
            "--resume-history, is refused RESUME_POINT_UNAVAILABLE)"
        )
    return f"{stream} and, without a resume window, the stream's state was freed; open a new stream"
