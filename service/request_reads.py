"""Reading one ``Stream`` call's requests so that giving up a wait does not give up the read:
:class:`RequestReads`.

A drain stops reading a stream's frames by cancelling the task that waits for the next request. Cancelling the
read itself would close the request iterator, and with it any chance of reading the client's half-close. The
server must read that half-close before it ends the call: a client write that races the end of the call makes
grpc.aio report the call as ``INTERNAL`` in place of the status and final message the server sent
(grpc/grpc#36066).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class RequestReads(Generic[_T]):
    """The requests of one call, read one at a time by one task at a time (the connection's reader, then, once it
    is cancelled, the task that reads what is left: :meth:`discard_until_end`).

    A cancelled :meth:`next` leaves its read running: the next call of :meth:`next` (or
    :meth:`discard_until_end`) takes the request that read gets, so no request is lost and the iterator stays
    usable.

    Args:
        requests: the call's requests.
    """

    def __init__(self, requests: AsyncIterable[_T]) -> None:
        self._iterator = aiter(requests)
        self._read: asyncio.Future[_T] | None = None

    async def next(self) -> _T:
        """The next request.

        Raises:
            StopAsyncIteration: the client ended its requests (half-closed).
            asyncio.CancelledError: the waiting task was cancelled; the read goes on.
            Exception: what reading the requests raised.
        """
        read = self._read
        if read is None:
            read = asyncio.ensure_future(anext(self._iterator))
            read.add_done_callback(_retrieve)
            self._read = read
        try:
            request = await asyncio.shield(read)
        except asyncio.CancelledError:
            raise  # the read goes on: its request is the next one
        except BaseException:
            self._read = None
            raise
        self._read = None
        return request

    async def discard_until_end(self, quiet_s: float, longest_s: float) -> int:
        """Read and drop requests until the client ends them (half-closes), reading fails, no request comes for
        ``quiet_s`` seconds, or ``longest_s`` seconds pass in all. Returns how many were dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + longest_s
        dropped = 0
        try:
            while True:
                async with asyncio.timeout_at(min(deadline, loop.time() + quiet_s)):
                    await self.next()
                dropped += 1
        except StopAsyncIteration:
            pass
        except Exception:  # timed out, the transport failed, or a request did not parse: the call ends all the same
            self.cancel()
        return dropped

    def cancel(self) -> None:
        """Stop the read still running, if any (the call is ending)."""
        if self._read is not None and not self._read.done():
            self._read.cancel()
        self._read = None


def _retrieve(read: asyncio.Future[Any]) -> None:
    """Mark a read's outcome as seen: a read abandoned by a cancel must not log its error as never retrieved."""
    if not read.cancelled():
        read.exception()


__all__ = ["RequestReads"]
