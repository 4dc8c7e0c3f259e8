"""``PerceptionServicer``: the gRPC face of the service, a thin translation layer.

It converts proto messages to domain requests, hands them to a :class:`StreamConnection` (streams) or the
:class:`SessionManager` (describe), converts the responses back, and maps :class:`StreamAbort` to a gRPC
status with the ``slotstream-error-code`` trailer. No stream logic lives here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import Executor
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service import wire
from service.auth import ERROR_CODE_KEY
from service.connection import RequestsLost, StreamConnection
from service.errors import ErrorCode, StreamAbort
from service.generated import pb_grpc
from service.metrics import Metrics
from service.sessions import SessionManager
from service.types import StreamRequest

_log = logging.getLogger(__name__)

#: The gRPC status of each stream-ending error.
STATUS_OF: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.NOT_OPEN: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ALREADY_OPEN: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.INVALID_OPEN: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_MODEL: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNKNOWN_STREAM: grpc.StatusCode.NOT_FOUND,
    ErrorCode.STREAM_EXPIRED: grpc.StatusCode.NOT_FOUND,
    ErrorCode.STREAM_ID_IN_USE: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.WRONG_RESUME_TOKEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.RESUME_POINT_UNAVAILABLE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.HANDOFF_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.TOO_MANY_STREAMS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.TAKEN_OVER: grpc.StatusCode.ABORTED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.MALFORMED_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
}


class PerceptionServicer(pb_grpc.PerceptionServicer):  # type: ignore[misc]
    """Implements ``slotstream.v1.Perception``.

    Args:
        manager: the session manager.
        decode_executor: where images are decoded.
        metrics: where to count.
        max_image_pixels: largest accepted image.
        max_pending_frames: frames a stream may queue before flow control (non-live mode).
        max_buffered_reply_bytes: bytes of finished replies a stream may hold while its client is not reading.
    """

    def __init__(
        self,
        manager: SessionManager,
        decode_executor: Executor,
        metrics: Metrics,
        *,
        max_image_pixels: int,
        max_pending_frames: int,
        max_buffered_reply_bytes: int,
    ) -> None:
        self._manager = manager
        self._decode_executor = decode_executor
        self._metrics = metrics
        self._max_image_pixels = max_image_pixels
        self._max_pending_frames = max_pending_frames
        self._max_buffered_reply_bytes = max_buffered_reply_bytes
        self.connections: set[StreamConnection] = set()

    async def Stream(
        self, request_iterator: AsyncIterable[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """See ``Perception.Stream`` in the proto."""
        connection = StreamConnection(
            self._manager,
            self._decode_executor,
            self._metrics,
            max_image_pixels=self._max_image_pixels,
            max_pending_frames=self._max_pending_frames,
            max_buffered_reply_bytes=self._max_buffered_reply_bytes,
            peer=context.peer(),
        )
        self.connections.add(connection)
        connection.bind_handler(asyncio.current_task())
        try:
            async for response in connection.run(_domain_requests(request_iterator, context, self._metrics)):
                yield wire.response_to_proto(response)
        except StreamAbort as abort:
            self._count_refusal(abort.code)
            await abort_with(context, abort)
        except RequestsLost:
            return  # the client is gone; its stream was detached or freed
        except Exception as error:
            self._metrics.calls_refused.labels("internal").inc()
            _log.exception("stream failed", extra={"peer": context.peer()})
            await context.abort(grpc.StatusCode.INTERNAL, f"internal server error: {type(error).__name__}: {error}")
        finally:
            self.connections.discard(connection)

    def _count_refusal(self, code: ErrorCode) -> None:
        """Count a call ended with ``code`` in ``slotstream_calls_refused_total``, unless the server ended it on its
        own account (a drain, a takeover)."""
        if code not in ENDED_BY_THE_SERVER:
            self._metrics.calls_refused.labels(code.name.lower()).inc()

    async def Describe(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Perception.Describe`` in the proto."""
        try:
            runner = self._manager.runner(request.model)
        except StreamAbort as abort:
            self._count_refusal(abort.code)
            await abort_with(context, abort)
        default = self._manager.default_model
        available = [default, *sorted(set(self._manager.runners) - {default})]
        return wire.card_to_proto(runner.card, available)


ENDED_BY_THE_SERVER = frozenset({ErrorCode.SHUTTING_DOWN, ErrorCode.TAKEN_OVER})
"""Codes with which the server ends a call on its own account (a drain, a resume elsewhere), not refusals."""


async def abort_with(context: grpc.aio.ServicerContext, abort: StreamAbort) -> None:
    """End the RPC with the status and trailer of ``abort``."""
    status = STATUS_OF.get(abort.code, grpc.StatusCode.INVALID_ARGUMENT)
    await context.abort(status, abort.message, trailing_metadata=((ERROR_CODE_KEY, abort.code.wire_name),))


async def _domain_requests(
    messages: AsyncIterable[Any], context: grpc.aio.ServicerContext, metrics: Metrics
) -> AsyncIterator[StreamRequest]:
    parsed = 0
    try:
        async for message in messages:
            parsed += 1
            try:
                request = wire.request_from_proto(message)
            except StreamAbort as abort:  # a malformed open: counted with the opens the manager refuses
                metrics.open_rejected.labels(abort.code.name.lower()).inc()
                raise
            if request is not None:
                yield request
    except DecodeError as error:  # raised by gRPC's deserializer while it reads the next request
        if parsed == 0:  # the open itself
            metrics.open_rejected.labels(ErrorCode.MALFORMED_REQUEST.name.lower()).inc()
        raise StreamAbort(
            ErrorCode.MALFORMED_REQUEST,
            f"request {parsed + 1} of this call is not a valid slotstream.v1.StreamRequest ({error}); the stream "
            "was closed",
        ) from error
    if context.cancelled():  # the requests ended because the client went away, not because it half-closed
        raise ConnectionError("the client cancelled the call")
