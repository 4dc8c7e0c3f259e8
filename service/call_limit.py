"""A cap on the gRPC calls the server holds at once, health checks left out (``--max-calls``).

gRPC's own cap (``maximum_concurrent_rpcs``) counts every call, so calls that hold no stream would also crowd out
the health checks Kubernetes probes with, and a pod under such a flood would fail its probes and be restarted,
ending every stream on it. This interceptor counts the other calls only; ``Health/Check`` and ``Health/Watch``
(which needs the bearer token when one is set) always pass.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.auth import ERROR_CODE_KEY, take_first_message
from service.errors import ErrorCode
from service.logs import RateLimitedWarning

_log = logging.getLogger("service.servicer")  # where the server's other refusals are logged

UNCOUNTED_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods the cap leaves out: the health service's."""

MAX_DRAINING = 4
"""Refused stream calls whose first message is read before the refusal, at once
(:func:`service.auth.take_first_message`: the client then sees the refusal's status); each such message may be up to
``--max-message-bytes``, so beyond these few a refusal ends the call at once (a flood of 40 calls of 12 MB each took
377 MB while every refusal read its message)."""


class CallLimitInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call with ``RESOURCE_EXHAUSTED`` (``TOO_MANY_STREAMS``) while ``limit`` calls other than health
    checks are held; each counted call is let go when its handler returns, however it ends.

    Args:
        limit: the most calls held at once (``--max-calls``).
        on_refused: called once per refused call (the server counts them).
        refusal_log: where refusals are logged, rate-limited per code: the servicer's, so one code's refusals share
            one line per interval whichever limit refused them (default: a limiter of its own).
    """

    def __init__(
        self,
        limit: int,
        on_refused: Callable[[], None] | None = None,
        refusal_log: RateLimitedWarning | None = None,
    ) -> None:
        self.limit = limit
        self.active = 0
        """Calls counted and not yet ended."""
        self.draining = 0
        """Refused calls whose first message is being read (at most :data:`MAX_DRAINING`)."""
        self._on_refused = on_refused
        self._log_refusal = refusal_log or RateLimitedWarning(_log, "refused a call", "refusals")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the call's handler so that it is counted, or refused when the cap is reached."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNCOUNTED_PREFIXES):
            return handler
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, method), **kwargs)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method), **kwargs)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, method, False), **kwargs)
        return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method), **kwargs)

    def _message(self) -> str:
        return (
            f"this server holds at most {self.limit} calls at once (--max-calls), and it holds that many: try again "
            "later, or another server"
        )

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Count, log (rate-limited, as the server's other refusals) and end the call with the cap's status."""
        if self._on_refused is not None:
            self._on_refused()
        code = ErrorCode.TOO_MANY_STREAMS.name.lower()
        self._log_refusal(code, peer=context.peer(), method=method, code=code, stream_id="", detail=self._message())
        trailer = ((ERROR_CODE_KEY, ErrorCode.TOO_MANY_STREAMS.wire_name),)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._message(), trailing_metadata=trailer)

    def _streaming(self, behaviour: Any, method: str, request_streaming: bool = True) -> Any:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if self.active >= self.limit:
                if request_streaming and self.draining < MAX_DRAINING:  # read the first message (see MAX_DRAINING)
                    self.draining += 1
                    try:
                        await take_first_message(request)
                    finally:
                        self.draining -= 1
                await self._refuse(context, method)
            self.active += 1
            try:
                answers = behaviour(request, context)
                if inspect.isasyncgen(answers):
                    async for response in answers:
                        yield response
                else:  # a handler that writes with context.write and returns nothing
                    await answers
            finally:
                self.active -= 1

        return limited

    def _unary(self, behaviour: Any, method: str) -> Any:
        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if self.active >= self.limit:
                await self._refuse(context, method)
            self.active += 1
            try:
                return await behaviour(request, context)
            finally:
                self.active -= 1

        return limited
