"""The client's error: :class:`StreamError`, with the gRPC status, the service's error code and, for a stream the
server ended, its close and hand-off."""

from __future__ import annotations

from typing import Any

import grpc

from service.auth import ERROR_CODE_KEY
from service.errors import ErrorCode
from service.types import (
    CloseReason,
    StateHandoff,
    StreamClosed,
)

_CLOSED_STATUS = {
    CloseReason.SERVER_DRAINING: (grpc.StatusCode.UNAVAILABLE, ErrorCode.SHUTTING_DOWN),
    CloseReason.TAKEN_OVER: (grpc.StatusCode.ABORTED, ErrorCode.TAKEN_OVER),
    CloseReason.TOKEN_REVOKED: (grpc.StatusCode.UNAUTHENTICATED, ErrorCode.UNAUTHENTICATED),
    CloseReason.ENDED_BY_OPERATOR: (grpc.StatusCode.ABORTED, ErrorCode.ENDED_BY_OPERATOR),
}
"""The status and code a call ends with after the server's ``StreamClosed`` of each reason (but ``CLIENT_CLOSED``)."""


class StreamError(Exception):
    """The server ended the stream (or refused the call) with a gRPC status, the connection to it was lost, or the
    stream cannot take the operation asked of it (closed, its call cancelled, its client closed).

    ``str(error)`` is ``STATUS (CODE): message (hint)``, for example ``UNAVAILABLE (SHUTTING_DOWN): ...``; the code
    and the hint only when there are.

    Attributes:
        status: the gRPC status code.
        code: the slotstream :class:`ErrorCode` from the ``slotstream-error-code`` trailer, if any.
        message: the server's explanation (or gRPC's, for a lost connection; or the client's, for an operation it
            refused itself).
        closed: the server's final :class:`StreamClosed` when the server ended the stream itself (for example
            ``SERVER_DRAINING`` on shutdown); ``None`` otherwise.
        handoff: the state to continue the stream from on another server (``StreamClosed.handoff``, or the
            latest state the stream received), when one is known; ``ClientStream.reconnect`` uses it.
        hint: what the client can do about it, when the client knows (for a lost connection: whether
            ``ClientStream.reconnect`` can continue the stream); empty otherwise.
    """

    def __init__(
        self,
        status: grpc.StatusCode,
        code: ErrorCode | None,
        message: str,
        *,
        closed: StreamClosed | None = None,
        handoff: StateHandoff | None = None,
        hint: str = "",
    ) -> None:
        code_text = f" ({code.name})" if code is not None else ""
        super().__init__(f"{status.name}{code_text}: {message}" + (f" ({hint})" if hint else ""))
        self.status = status
        self.code = code
        self.message = message
        self.closed = closed
        self.handoff = handoff
        self.hint = hint

    @property
    def connection_lost(self) -> bool:
        """Whether the connection failed rather than the server ending the stream: status ``UNAVAILABLE`` with no
        slotstream error code and no close from the server (a dropped connection, a server that cannot be
        reached)."""
        return self.status == grpc.StatusCode.UNAVAILABLE and self.code is None and self.closed is None

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> StreamError:
        """Wrap a gRPC error, decoding the error-code trailer."""
        return cls.from_status(error.code(), error.trailing_metadata(), error.details())

    @classmethod
    def from_status(cls, status: grpc.StatusCode, trailing_metadata: Any, details: str | None) -> StreamError:
        """Build from a call's final status, decoding the error-code trailer."""
        code = None
        for key, value in trailing_metadata or ():
            name = str(value).removeprefix("ERROR_CODE_")
            if key == ERROR_CODE_KEY and name in ErrorCode.__members__:
                code = ErrorCode[name]
        return cls(status, code, details or "")

    @classmethod
    def from_closed(cls, closed: StreamClosed, handoff: StateHandoff | None = None) -> StreamError:
        """The error for a stream the server closed itself (any reason but ``CLIENT_CLOSED``), with the status its call
        ends with: ``UNAVAILABLE`` (code ``SHUTTING_DOWN``) for ``SERVER_DRAINING``, ``ABORTED`` (code ``TAKEN_OVER``)
        for ``TAKEN_OVER``, ``UNAUTHENTICATED`` (code ``UNAUTHENTICATED``) for ``TOKEN_REVOKED``, ``ABORTED`` (code
        ``ENDED_BY_OPERATOR``) for ``ENDED_BY_OPERATOR``, ``UNAVAILABLE`` without a code for a reason this client does
        not know; the server's message, and the hand-off (``closed.handoff``, else ``handoff``) to continue the stream
        elsewhere."""
        status, code = _CLOSED_STATUS.get(closed.reason, (grpc.StatusCode.UNAVAILABLE, None))
        message = closed.message or f"the server ended stream {closed.stream_id!r} ({closed.reason.name})"
        return cls(status, code, message, closed=closed, handoff=closed.handoff or handoff)
