"""Running a stream's sender and receiver together (:func:`send_while_receiving`), and marking a background
future's outcome as seen (:func:`mark_seen`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from service.client.errors import StreamError

_T = TypeVar("_T")


async def send_while_receiving(
    send: Coroutine[Any, Any, None],
    receive: Coroutine[Any, Any, _T],
    *,
    settle_s: float = 5.0,
    close: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> _T:
    """Run a stream's sending loop and its receiving loop together, so that neither fails unnoticed.

    ``receive`` decides when the exchange is over: its result (or exception) is the outcome, and a sender
    still running then (for example waiting for a window slot after the server closed the stream) is
    cancelled. If ``send`` raises while ``receive`` is still running, the sender's exception is raised: a failing
    frame source (a corrupt image, an iterable that raises) never sends the close, so without this the receiver
    would wait for the server's idle timeout and end with ``STREAM_EXPIRED``, losing the real error.

    * An exception that is not a :class:`StreamError` (the source failed, the stream is fine): with ``close``,
      the stream is closed the normal way (``await close()``) and ``receive`` gets up to ``settle_s`` seconds to
      read the answers to the frames already sent (the server processed them) and the close's reply; then the
      sender's exception is raised, whatever ``receive`` did. Without ``close``, ``receive`` is cancelled at once.
    * A :class:`StreamError` (the call ended under a write): ``receive`` gets up to ``settle_s`` seconds to read
      the server's last messages, and its outcome wins, since it says why the call ended (a server that shuts
      down sends its :class:`StreamClosed` and the state to continue from before ending the call; when that came
      right after the last answer, ``receive`` may return normally).

    Args:
        send: writes the frames (and usually the close); runs as its own task.
        receive: reads the answers; runs as its own task.
        settle_s: how long ``receive`` may still run after ``send`` raised.
        close: sends the stream's close (for example :meth:`ClientStream.close_writing`), called when ``send``
            raised an exception that is not a :class:`StreamError`; an exception of its own skips the wait.

    Returns:
        What ``receive`` returns.

    Raises:
        Exception: what ``receive`` raises; or what ``send`` raised while ``receive`` was still running, unless
            that was a :class:`StreamError` and ``receive`` ended within ``settle_s`` (its outcome then wins).
    """
    sender = asyncio.ensure_future(send)
    receiver = asyncio.ensure_future(receive)
    try:
        await asyncio.wait((sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        if not receiver.done() and not sender.cancelled() and (error := sender.exception()) is not None:
            if isinstance(error, StreamError):
                await asyncio.wait((receiver,), timeout=settle_s)
                if receiver.done() and not receiver.cancelled():
                    # The receiver read how the stream ended: its error, or its result when that end was fine
                    # (a drain right after the last answer, which the sender's close then met).
                    return await receiver
            elif close is not None:
                await _collect_answers(close, receiver, settle_s)
            raise error
        return await receiver
    finally:
        sender.cancel()
        receiver.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


async def _collect_answers(
    close: Callable[[], Coroutine[Any, Any, None]], receiver: asyncio.Future[Any], settle_s: float
) -> None:
    """Close the stream after its sender failed, and give ``receiver`` up to ``settle_s`` seconds to read the
    answers still to come; its outcome is left in it (the caller raises the sender's error)."""
    try:
        await close()
    except Exception:  # the stream cannot be closed (the call ended meanwhile): no answer is coming
        return
    await asyncio.wait((receiver,), timeout=settle_s)


__all__ = ["send_while_receiving"]


def mark_seen(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s outcome as seen (a done callback): asyncio would otherwise log an exception nobody took
    from a background future (a write, a read left behind when the caller stopped); whoever awaits it still gets
    the exception."""
    if not future.cancelled():
        future.exception()
