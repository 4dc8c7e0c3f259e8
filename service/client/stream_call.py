"""The gRPC call under a stream: :class:`StreamCall`, the base of :class:`~service.client.stream.ClientStream` that
holds the stream's current ``Stream`` call, writes requests on it in order (:mod:`service.client.writes`), reads the
responses this client understands (:mod:`service.client.reader`), and turns a failed call into the stream's
:class:`StreamError`, explained (:mod:`service.client.explain`)."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import grpc

from service import wire
from service.client.errors import StreamError
from service.client.explain import cancelled_error, explained
from service.client.reader import CallReader
from service.client.writes import end_writing_in_order, write_in_order
from service.types import CloseRequest, FrameRequest, OpenRequest, StateHandoff, StreamClosed, StreamOpened

if TYPE_CHECKING:
    from service.client.connection import Client


class StreamCall:
    """One stream's gRPC ``Stream`` call, one at a time: :meth:`_new_call` replaces it (an open, a reconnect), and
    requests go out on it one write at a time in the order they were given, even when their sender is cancelled.

    Its public attributes are the stream's (:class:`~service.client.stream.ClientStream` documents them); its
    errors are explained with them.

    Args:
        client: the client whose connection the calls use.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._call: Any = None
        self._reader: CallReader | None = None
        # Writes go out one at a time, in order, even when their sender is cancelled; each call has its own lock, so
        # that a write stuck on a call given up (grpc.aio never ends one on a call cancelled before its first
        # message) cannot hold the next call's writes.
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Future[None]] = set()  # the current call's writes not ended yet
        self.opened: StreamOpened | None = None
        self.handoff: StateHandoff | None = None
        self._handed_off = False  # the server closed the stream with its state (a drain) since the latest open
        self.closed: StreamClosed | None = None
        self._half_closes: set[asyncio.Future[None]] = set()

    def _new_call(self) -> None:
        """Start a call on the client's connection in place of the current one (left as it is), with its reader.

        Raises:
            StreamError: the client is closed.
        """
        call = self._client._call()
        if self._call is not None and self._call.cancelled():
            self._drop_writes()  # the call given up: its writes would never end
        self._call = call
        self._write_lock, self._writes = asyncio.Lock(), set()
        self._reader = CallReader(
            call,
            self._client._readers,
            self._cancelled_error,
            functools.partial(self._end_writing_soon, call, self._write_lock),
        )

    def _drop_writes(self) -> None:
        """Cancel the writes of the current call that have not ended: only for a call cancelled on this side,
        whose writes have nowhere to go (their senders get the stream's cancelled error)."""
        for write in list(self._writes):
            write.cancel()

    def _end_writing_soon(self, call: Any, lock: asyncio.Lock) -> None:
        """The server's ``StreamClosed`` arrived on ``call``: half-close it once the writes already given go out.
        A server that ends the call itself (a drain, a takeover) waits for that, so that no write of this client
        races the call's end (grpc.aio would report such a call as ``INTERNAL`` and drop the ``StreamClosed``:
        grpc/grpc#36066)."""
        half_close = asyncio.ensure_future(end_writing_in_order(call, lock))
        self._half_closes.add(half_close)
        half_close.add_done_callback(self._half_closes.discard)

    def _call_ended(self) -> bool:
        """Whether the current call is over: the server's final :class:`StreamClosed` arrived, or the call
        finished (a status, a cancel, a closed client)."""
        return self.closed is not None or self._call is None or bool(self._call.done())

    async def _write(self, request: OpenRequest | FrameRequest | CloseRequest, done_writing: bool = False) -> None:
        call = self._call
        if call.cancelled():
            raise self._cancelled_error()
        message = wire.request_to_proto(request)
        try:
            await write_in_order(call, self._write_lock, message, done_writing, self._writes)
        except asyncio.CancelledError as cancelled:
            # grpc.aio raises CancelledError from a write on a call cancelled on this side (cancel(), a closed
            # client, a reconnect): that ends the stream's call, not the sender's task, which a task group or
            # gather would otherwise take for a cancellation of its own.
            current = asyncio.current_task()
            if (self._client.closed or call.cancelled()) and (current is None or current.cancelling() == 0):
                raise self._cancelled_error() from cancelled
            raise
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
            # A write fails when the call has already ended: report the call's own status, not the write's.
            if self._client.closed or call.cancelled():
                raise self._cancelled_error() from error
            await self._raise_status(call)
            if isinstance(error, grpc.aio.AioRpcError):
                raise self._explained(StreamError.from_rpc_error(error)) from error
            raise StreamError(grpc.StatusCode.CANCELLED, None, "the stream has already ended") from error

    async def _read(self) -> Any:
        """The next response of the current call that this client understands."""
        reader = self._reader
        assert reader is not None
        while True:
            try:
                message = await reader.next()
            except StreamError as error:
                explained = self._explained(error)
                if explained is error:
                    raise
                raise explained from error
            response = wire.response_from_proto(message)
            if response is not None:
                return response

    async def _raise_status(self, call: Any) -> None:
        code = await call.code()
        if code != grpc.StatusCode.OK:
            metadata = await call.trailing_metadata()
            raise self._explained(StreamError.from_status(code, metadata, await call.details()))

    def _cancelled_error(self) -> StreamError:
        """The error for an operation on a call that was cancelled on this side (the reader's ``on_cancel``)."""
        return cancelled_error(self._client, self.opened)

    def _explained(self, error: StreamError) -> StreamError:
        """``error`` with a hint when it says the connection was lost (:func:`~service.client.explain.explained`)."""
        return explained(error, self._client._channel, self.opened, self.handoff, handed_off=self._handed_off)


__all__ = ["StreamCall"]
