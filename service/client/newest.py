"""``NewestAnswer``: a stream's answers taken as they arrive, for a consumer that wants the freshest one."""

from __future__ import annotations

import asyncio
from types import TracebackType

from service.client.stream import ClientStream
from service.types import FrameDropped, FrameError, FrameResult, StreamClosed


class NewestAnswer:
    """Reads a stream's answers in a task of its own as soon as they arrive and keeps only the newest, for a
    consumer slower than its camera (a control loop, a planner) that wants the latest result, not every result.

    :meth:`ClientStream.receive` returns every answer in order, so a consumer that reads more slowly than frames
    are answered falls further behind with each read: the answers queue in this client, in the network and in the
    server. Live mode does not help there, since it drops frames waiting for the model, not answers waiting for
    the consumer: measured with the default model, a live stream whose consumer paused for 3 s at 50 frames/s had
    over 130 stale answers to read before a fresh one. Here nothing queues, and :meth:`get` returns the newest.

    Use it as an async context manager around the part of the stream's life read this way::

        async with NewestAnswer(stream) as newest:
            answer = await newest.get()

    Inside it, :meth:`ClientStream.send` and :meth:`ClientStream.reconnect` work as usual, but do not call the
    stream's ``receive()``, ``process()`` or ``close()``: this reads the answers. Leaving it stops reading (an
    answer read but not taken by :meth:`get` counts as skipped; later answers wait for ``receive()`` again); the
    stream stays open, to ``close()`` as usual.

    Attributes:
        skipped: results and frame errors dropped because a newer one arrived before :meth:`get` took them.
        dropped: the server's :class:`FrameDropped` notices read (never returned by :meth:`get`).
    """

    def __init__(self, stream: ClientStream) -> None:
        self._stream = stream
        self._task: asyncio.Task[None] | None = None
        self._entered = False
        self._newest: FrameResult | FrameError | None = None
        self._closed: StreamClosed | None = None
        self._closed_returned = False
        self._error: BaseException | None = None
        self._error_call: object = None  # the stream's call the error came from
        self._arrived = asyncio.Event()
        self.skipped = 0
        self.dropped = 0

    async def __aenter__(self) -> NewestAnswer:
        self._entered = True
        self._start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._entered = False
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()  # receive() may be cancelled: the stream stays usable
            await asyncio.wait({task})  # not `await task`: a cancellation of this caller must go through
        if self._newest is not None:  # read, never taken
            self._newest = None
            self.skipped += 1

    async def get(self) -> FrameResult | FrameError | StreamClosed:
        """The newest result or frame error that arrived since the last call, waiting for one when none has.

        Once the stream's :class:`StreamClosed` has arrived (and the newest answer before it was returned), it is
        returned once; later calls raise as :meth:`ClientStream.receive` does then, until
        :meth:`ClientStream.reconnect` continues the stream (after a server's drain), when reading goes on.

        Raises:
            RuntimeError: called outside the ``async with`` block.
            StreamError, EOFError: as :meth:`ClientStream.receive` raises (the connection was lost, the server
                ended the stream). The error is raised once, and not at all when :meth:`ClientStream.reconnect`
                has replaced the call it came from; the next call reads the stream again, so after
                ``await stream.reconnect()`` reading goes on.
        """
        if not self._entered:
            raise RuntimeError("NewestAnswer.get() needs the `async with NewestAnswer(stream) as newest:` block")
        if self._closed is not None and self._stream.closed is None:  # reconnect() continued the stream
            self._closed, self._closed_returned = None, False
        while True:
            if self._newest is not None:
                answer, self._newest = self._newest, None
                return answer
            if self._closed is not None:
                if self._closed_returned:
                    await self._stream.receive()  # raises the stream's closed error
                    raise AssertionError("receive() returned after the stream's StreamClosed")
                self._closed_returned = True
                return self._closed
            if self._error is not None:
                error, self._error = self._error, None
                if self._error_call is self._stream._call:  # else reconnect() has replaced that call since
                    raise error
            if self._task is None or self._task.done():
                self._start()
            self._arrived.clear()
            await self._arrived.wait()

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        call: object = None
        try:
            while True:
                call = self._stream._call  # what a failure of this read concerns (reconnect() replaces it)
                answer = await self._stream.receive()
                if isinstance(answer, StreamClosed):
                    self._closed = answer
                    return
                if isinstance(answer, FrameDropped):
                    self.dropped += 1
                    continue
                if self._newest is not None:
                    self.skipped += 1
                self._newest = answer
                self._arrived.set()
        except Exception as error:  # handed to get(), unless the stream reconnects first
            self._error, self._error_call = error, call
        finally:
            self._arrived.set()
