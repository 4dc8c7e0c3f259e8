"""Bearer-token authentication for every RPC except health checks (Kubernetes probes send no metadata)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.errors import ErrorCode

ERROR_CODE_KEY = "slotstream-error-code"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
_FIRST_MESSAGE_WAIT_S = 1.0


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requires ``authorization: Bearer <token>`` metadata; other calls end with UNAUTHENTICATED.

    Args:
        token: the token clients must present.
        exempt_prefixes: method-name prefixes that need no token.
    """

    def __init__(self, token: str, exempt_prefixes: tuple[str, ...] = EXEMPT_PREFIXES) -> None:
        if not token:
            raise ValueError("an empty bearer token would accept everyone")
        self._expected = f"Bearer {token}".encode()
        self._exempt = exempt_prefixes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass the call on if it is exempt or carries the token; otherwise answer UNAUTHENTICATED."""
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(self._exempt):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get("authorization")
        if presented is None:
            return _deny(handler, "missing 'authorization: Bearer <token>' metadata: this server requires a token")
        if not hmac.compare_digest(str(presented).encode(), self._expected):
            return _deny(handler, "wrong bearer token in the 'authorization' metadata")
        return handler


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    trailer = ((ERROR_CODE_KEY, ErrorCode.UNAUTHENTICATED.wire_name),)

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, trailing_metadata=trailer)

    async def abort_streaming(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # Take the client's first message before refusing: aborting while the client is still writing it
        # makes its write fail with a generic INTERNAL error instead of this status (grpc/grpc#36066).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(anext(aiter(requests), None), _FIRST_MESSAGE_WAIT_S)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, trailing_metadata=trailer)
        yield  # pragma: no cover - abort raises; the yield makes this a response stream

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_streaming, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
