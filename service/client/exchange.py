"""Running a stream's sender and receiver together: :func:`send_while_receiving`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from service.client.errors import StreamError

_T = TypeVar("_T")


async def send_while_receiving(
    send: Coroutine[Any, Any, None], receive: Coroutine[Any, Any, _T], *, settle_s: float = 5.0
) -> _T:
    """Run a stream's sending loop and its receiving loop together, so that neither fails unnoticed.

    ``receive`` decides when the exchange is over: its result (or exception) is the outcome, and a sender
    still running then (for example waiting for a window slot after the server closed the stream) is
    cancelled. If ``send`` raises while ``receive`` is still running, ``receive`` is cancelled at once and
    the sender's exception is raised: a failing frame source (a corrupt image, an iterable that raises)
    never sends the close, so without this the receiver would wait for the server's idle timeout and end
    with ``STREAM_EXPIRED``, losing the real error. A :class:`StreamError` from ``send`` (the call ended under
    a write) is the exception: ``receive`` then gets up to ``settle_s`` seconds to read the server's last
    messages, and its outcome wins, since it says why the call ended (a server that shuts down sends its
    :class:`StreamClosed` and the state to continue from before ending the call; when that came right after the
    last answer, ``receive`` may return normally).

    Args:
        send: writes the frames (and usually the close); runs as its own task.
        receive: reads the answers; runs as its own task.
        settle_s: how long ``receive`` may still run after ``send`` raised a :class:`StreamError`.

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
            raise error
        return await receiver
    finally:
        sender.cancel()
        receiver.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


__all__ = ["send_while_receiving"]
