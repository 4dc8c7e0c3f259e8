"""Reading one ``Stream`` call's responses in a task of its own, so that cancelling a waiter never ends the call."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import grpc

from service.client.errors import StreamError

SERVER_END_WAIT_S = 1.0
"""How long a client that drops a call the server is ending (it sent the call's ``StreamClosed``) waits for the call's
status first (:meth:`CallReader.let_the_server_end`): a server ends such a call as soon as the client half-closes it,
which this client does on the ``StreamClosed``."""
_WAKE = object()
"""Put in a :class:`CallReader`'s queue once the call has ended, to wake a task waiting for a message."""


class CallReader:
    """Reads the responses of one ``Stream`` call in a task of its own, one message ahead.

    A grpc.aio call cancels itself when a task awaiting its ``read()`` is cancelled; reading here instead lets a
    task waiting for an answer be cancelled (an ``asyncio.wait_for`` timeout) without ending the stream. Only one
    message waits in the queue, so a client that stops reading still holds the server back through gRPC flow
    control.

    Args:
        call: the call to read.
        readers: the client's set of live readers; this one stays in it until its task ends.
        on_cancel: the error to raise once the call was cancelled under the reader (not through :meth:`abort`).
        on_closed: called as the server's ``StreamClosed`` is read, before it is queued (the server sends nothing
            after it).
    """

    def __init__(
        self,
        call: Any,
        readers: set[CallReader],
        on_cancel: Callable[[], BaseException],
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.call = call
        self._on_closed = on_closed
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._end: Callable[[], BaseException] | None = None
        self._on_cancel = on_cancel
        self._closed_read = False  # the server's StreamClosed was read: it ends the call itself, with a status
        self._discarding = False  # see let_the_server_end
        self._readers = readers
        readers.add(self)
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(lambda _: readers.discard(self))

    @property
    def ended(self) -> bool:
        """Whether the call's end is known (every message may not have been taken yet)."""
        return self._end is not None

    async def next(self) -> Any:
        """The next response message, in order.

        Raises:
            StreamError: the call ended (every message before the end was returned first).
            EOFError: the call ended with status OK and no more messages.
        """
        if self._end is not None and self._queue.empty():
            raise self._end()
        item = await self._queue.get()
        if item is _WAKE:
            self._queue.put_nowait(_WAKE)  # for the next waiter, and every later call
            assert self._end is not None
            raise self._end()
        return item

    def abort(self, error: Callable[[], BaseException]) -> None:
        """End reading now (the caller cancelled the call, or is dropping it): messages not yet taken are
        dropped, and waiters and later :meth:`next` calls raise ``error()`` (unless the call had already ended
        before it was being dropped: :meth:`let_the_server_end`)."""
        if self._end is None or self._discarding:
            self._end = error
        self._task.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_WAKE)

    async def let_the_server_end(self) -> None:
        """Before the call is dropped (its client closed, the stream reconnected): when the server is ending the call
        (its ``StreamClosed`` was read) and its status has not come yet, wait for the status, at most
        :data:`SERVER_END_WAIT_S`. Messages not taken are dropped meanwhile, as :meth:`abort` drops them, which
        must follow (it sets what later reads raise). The server then sees the call end with its status rather
        than cancelled: for a drain, that tells it the hand-off was taken (a cancel may come before it knew, and it
        keeps the stream for a resume until the drain ends)."""
        if not self._closed_read or self._task.done():
            return
        self._discarding = True
        while not self._queue.empty():
            self._queue.get_nowait()
        await asyncio.wait([self._task], timeout=SERVER_END_WAIT_S)

    def _finish(self, end: Callable[[], BaseException]) -> None:
        if self._end is None:
            self._end = end
        if not self._queue.full():  # full: nobody waits, and next() sees the end once the queue is empty
            self._queue.put_nowait(_WAKE)

    async def _run(self) -> None:
        call = self.call
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    self._finish(lambda: EOFError("the stream ended without a final message"))
                    return
                if message.WhichOneof("kind") == "closed":
                    self._closed_read = True
                    if self._on_closed is not None:
                        self._on_closed()
                if not self._discarding:
                    await self._queue.put(message)
        except grpc.aio.AioRpcError as error:
            self._finish(functools.partial(StreamError.from_rpc_error, error))
        except grpc.aio.UsageError:
            self._finish(self._on_cancel)  # the channel was closed
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if call.cancelled() and not (task is not None and task.cancelling()):
                self._finish(self._on_cancel)  # the call was cancelled under this read, not this task
                return
            raise
        except Exception as error:  # anything else (a reply that does not parse): end the call, say why
            call.cancel()
            message = f"reading the stream's replies failed: {type(error).__name__}: {error}"
            self._finish(lambda: StreamError(grpc.StatusCode.INTERNAL, None, message))
