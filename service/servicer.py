"""``PerceptionServicer``: the gRPC face of the service, a thin translation layer.

It converts proto messages to domain requests, hands them to a :class:`StreamConnection` (streams) or the
:class:`SessionManager` (describe), converts the responses back, and maps :class:`StreamAbort` to a gRPC
status with the ``slotstream-error-code`` trailer. No stream logic lives here.

Every call it ends with an error status is counted in ``slotstream_calls_refused_total`` and logged as a warning
(``refused a call``, with the peer, method, error code, stream id where known and the message the client got), at
most one line per :data:`~service.logs.WARNING_INTERVAL_S` for each code, saying how many refusals it stands for;
the ends the server chooses itself (see :func:`ended_by_the_server`) are neither, and a call that fails inside
the server is counted as ``internal`` and logged as an error with its traceback (``stream failed``), each time.
A call whose bearer token a reload of the token file revoked is ended by the server (:meth:`end_revoked`), yet
counted as ``unauthenticated``, with one warning per reload for every call it ended.
Frame errors of accepted streams are logged like refusals, per code (``frame rejected``, see
:class:`StreamConnection`). A request whose bytes do not parse is such a refusal, on every method, the health
check's included (:class:`~service.malformed_requests.MalformedRequestInterceptor`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service import wire
from service.auth import ERROR_CODE_KEY, call_token_digest, still_valid, take_first_message
from service.connection import RequestsLost, StreamConnection
from service.errors import ENDED_BY_THE_SERVER, ErrorCode, StreamAbort
from service.generated import pb_grpc
from service.logs import RateLimitedWarning
from service.metrics import Metrics
from service.sessions import SessionManager
from service.shared_memory import is_local_peer
from service.tracing import FrameTracing
from service.types import CLOSE_REASONS_KEY, CloseReason, StreamRequest

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
    ErrorCode.CLIENT_NOT_READING: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.ADMIN_API_OFF: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.MODEL_LOAD_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ENDED_BY_OPERATOR: grpc.StatusCode.ABORTED,
}


class PerceptionServicer(pb_grpc.PerceptionServicer):  # type: ignore[misc]
    """Implements ``slotstream.v1.Perception``.

    Args:
        manager: the session manager.
        decode_executor: where images are decoded.
        metrics: where to count.
        max_image_pixels: largest accepted image (also told in ``Describe``'s card).
        check_jpeg_data: refuse JPEG frames whose image data libjpeg finds damaged (``--jpeg-damage-check``).
        max_pending_frames: frames a stream may queue before flow control (non-live mode).
        max_buffered_reply_bytes: bytes of finished replies a stream may hold while its client is not reading.
        max_request_bytes: the largest request message the gRPC server accepts (``--max-message-bytes``), told in
            ``Describe``'s card; 0: not told.
        tracing: records answered frames as spans (``--otlp-endpoint``); ``None``: off.
        shared_memory: read frames from shared memory for calls from this host (``--shared-memory``).
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
        max_request_bytes: int = 0,
        check_jpeg_data: bool = True,
        tracing: FrameTracing | None = None,
        shared_memory: bool = False,
    ) -> None:
        self._manager = manager
        self._tracing = tracing
        self._shared_memory = shared_memory
        self._check_jpeg_data = check_jpeg_data
        self._decode_executor = decode_executor
        self._metrics = metrics
        self._max_image_pixels = max_image_pixels
        self._max_pending_frames = max_pending_frames
        self._max_buffered_reply_bytes = max_buffered_reply_bytes
        self._max_request_bytes = max_request_bytes
        self.connections: set[StreamConnection] = set()
        self._token_digests: dict[StreamConnection, bytes] = {}  # of the bearer token each call presented
        self.token_source: Callable[[], tuple[bytes, ...]] | None = None
        """The tokens the server takes now, when they can change (``--auth-token-file``): the source the check of a
        call's headers uses, set by the server (see :meth:`Stream`)."""
        self.refusal_log = RateLimitedWarning(_log, "refused a call", "refusals")
        """Warns about refused calls, at most once per interval for each code."""
        self.frame_error_log = RateLimitedWarning(logging.getLogger("service.connection"), "frame rejected", "frames")
        """Warns about frame errors, at most once per interval for each code, for every connection together."""

    async def Stream(
        self, request_iterator: AsyncIterable[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """See ``Perception.Stream`` in the proto."""
        metadata = context.invocation_metadata()
        digest = call_token_digest(metadata)
        if digest is not None and self.token_source is not None and not still_valid(digest, self.token_source()):
            # Revoked after the call's headers were checked, before this handler ran: end_revoked did not see it.
            self._metrics.calls_refused.labels(ErrorCode.UNAUTHENTICATED.name.lower()).inc()
            await take_first_message(request_iterator)  # as the token check's refusals do
            await abort_with(context, StreamAbort(ErrorCode.UNAUTHENTICATED, _REVOKED))
            return  # not reached: the abort ends the call
        connection = StreamConnection(
            self._manager,
            self._decode_executor,
            self._metrics,
            max_image_pixels=self._max_image_pixels,
            check_jpeg_data=self._check_jpeg_data,
            max_pending_frames=self._max_pending_frames,
            max_buffered_reply_bytes=self._max_buffered_reply_bytes,
            peer=context.peer(),
            newest_close_reason=_newest_close_reason(metadata),
            frame_error_log=self.frame_error_log,
            tracing=self._tracing,
            shared_memory=self._shared_memory,
        )
        self.connections.add(connection)
        if digest is not None:
            self._token_digests[connection] = digest  # see end_revoked
        connection.bind_handler(asyncio.current_task())
        try:
            async for response in connection.run(_domain_requests(request_iterator, context, self._metrics)):
                yield wire.response_to_proto(response)
        except StreamAbort as abort:
            if not ended_by_the_server(abort, connection):
                self.refused(abort, context.peer(), _STREAM_METHOD, connection.stream_id)
            await abort_with(context, abort)
        except RequestsLost:
            return  # the client is gone; its stream was detached or freed
        except Exception as error:
            self._metrics.calls_refused.labels("internal").inc()
            _log.exception("stream failed", extra={"peer": context.peer(), "stream_id": connection.stream_id})
            await context.abort(grpc.StatusCode.INTERNAL, f"internal server error: {type(error).__name__}: {error}")
        finally:
            self.connections.discard(connection)
            self._token_digests.pop(connection, None)

    def end_revoked(self, tokens: tuple[bytes, ...]) -> int:
        """End every ``Stream`` call whose bearer token is not among ``tokens`` (the token file was reloaded without
        it): with ``UNAUTHENTICATED``, a message saying the token was revoked, and the stream detached for its
        resume window (:meth:`StreamConnection.end_detached`), so its client can resume it with a valid token.
        Each call keeps the digest of its token alone, compared in constant time (:func:`service.auth.still_valid`).

        Each call ended is counted in ``slotstream_calls_refused_total{code="unauthenticated"}``; one warning says
        how many (never a token). A call whose handler starts after the reload (its headers were checked before) is
        refused by that handler (:attr:`token_source`). Returns how many calls were ended.
        """
        revoked = [
            connection
            for connection, digest in self._token_digests.items()
            if connection.eviction is None and not still_valid(digest, tokens)
        ]
        for connection in revoked:
            connection.end_detached(ErrorCode.UNAUTHENTICATED, _REVOKED)
        if revoked:
            self._metrics.calls_refused.labels(ErrorCode.UNAUTHENTICATED.name.lower()).inc(len(revoked))
            _log.warning(
                "ended %d stream call(s) whose bearer token was revoked (removed from the token file)",
                len(revoked),
                extra={"calls": len(revoked)},
            )
        return len(revoked)

    def refused(self, abort: StreamAbort, peer: str, method: str, stream_id: str) -> None:
        """Count a call refused with ``abort`` in ``slotstream_calls_refused_total`` and log it (rate-limited per
        code): the peer, the method, the code, the stream id (empty when not known) and the message the client got.
        """
        code = abort.code.name.lower()
        self._metrics.calls_refused.labels(code).inc()
        self.refusal_log(code, peer=peer, method=method, code=code, stream_id=stream_id, detail=abort.message)

    async def Describe(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Perception.Describe`` in the proto. The card's ``default_frame_fit`` is the fit a stream of this
        model that sets no ``frame_fit`` gets (``SessionLimits.frame_fit_for``); its ``preprocessing`` ends with it
        in words; ``max_request_bytes`` and ``max_image_pixels`` are this server's limits, and ``max_batch_size`` the
        largest batch its model calls take (``--max-batch-size``, at most ``--max-streams`` and the engine's limit);
        ``shared_memory`` says whether frames of this caller may come in shared memory."""
        try:
            runner = self._manager.runner(request.model)
        except StreamAbort as abort:
            self.refused(abort, context.peer(), _DESCRIBE_METHOD, "")
            await abort_with(context, abort)
        default = self._manager.default_model
        available = [default, *sorted(set(self._manager.runners) - {default})]
        fit = self._manager.limits.frame_fit_for(runner.card)
        card = replace(
            runner.card,
            preprocessing=f"{runner.card.preprocessing}; this server's default frame_fit: {fit.fit_name}",
            default_frame_fit=fit.fit_name,
            max_request_bytes=self._max_request_bytes,
            max_image_pixels=self._max_image_pixels,
            max_batch_size=runner.max_batch_size,
            shared_memory=self._shared_memory and is_local_peer(context.peer()),
        )
        return wire.card_to_proto(card, available)


_STREAM_METHOD = "/slotstream.v1.Perception/Stream"
_REVOKED = (
    "the bearer token this call was authenticated with was revoked (it is no longer among the server's tokens): "
    "continue with a valid token"
)
_DESCRIBE_METHOD = "/slotstream.v1.Perception/Describe"


def ended_by_the_server(abort: StreamAbort, connection: StreamConnection) -> bool:
    """Whether ``abort`` ends ``connection``'s call on the server's own account, which is not a refusal: a code of
    :data:`ENDED_BY_THE_SERVER`, or the server taking the stream away from the call (an idle reclaim, which ends
    it with ``STREAM_EXPIRED``; a resume on another connection). A resume *refused* because its stream expired is
    a refusal."""
    return abort.code in ENDED_BY_THE_SERVER or abort is connection.eviction


def _newest_close_reason(metadata: Any) -> int:
    """The highest ``CloseReason`` a call's client knows, from its :data:`~service.types.CLOSE_REASONS_KEY`
    metadata; ``TAKEN_OVER`` without it (or with a value that is not a number)."""
    value = dict(metadata or ()).get(CLOSE_REASONS_KEY)
    try:
        return int(str(value)) if value is not None else CloseReason.TAKEN_OVER
    except ValueError:
        return CloseReason.TAKEN_OVER


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
        ending = (
            "no stream was opened"
            if parsed == 0
            else "the call was ended, and its stream (if the call opened one) detached as on a lost connection: a "
            "stream opened with a resume window can be resumed from another call"
        )
        raise StreamAbort(
            ErrorCode.MALFORMED_REQUEST,
            f"request {parsed + 1} of this call is not a valid slotstream.v1.StreamRequest ({error}); {ending}",
        ) from error
    if context.cancelled():  # the requests ended because the client went away, not because it half-closed
        raise ConnectionError("the client cancelled the call")
