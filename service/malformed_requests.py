"""Requests whose bytes do not parse: refused like the server's other refusals, on every method.

gRPC decodes a call's request before any handler runs; a request that does not parse would otherwise end the call
with UNKNOWN, no ``slotstream-error-code`` trailer and an error logged with its traceback each time, from clients
that need no token (the health check) as from any other. :class:`MalformedRequestInterceptor` turns them into
INVALID_ARGUMENT with ``ERROR_CODE_MALFORMED_REQUEST``, counted and logged at a bounded rate.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.errors import ErrorCode, StreamAbort
from service.logs import RateLimitedWarning
from service.servicer import abort_with


class UnparsedRequest(DecodeError):
    """A request of a stream of requests whose bytes do not parse, raised where its handler reads it (as gRPC's own
    deserializer raises ``DecodeError``); its message is the parser's."""


class _Unparsed:
    """What :class:`MalformedRequestInterceptor`'s deserializers return for bytes that do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: DecodeError) -> None:
        self.error = error


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Ends a call whose request bytes do not parse with INVALID_ARGUMENT and the ``MALFORMED_REQUEST`` trailer,
    counted (``on_refused``) and logged, rate-limited, with the server's other refusals (``refusal_log``).

    gRPC decodes a call's request before any handler runs, and a request that does not parse (a string field that
    is not UTF-8) would otherwise end the call with UNKNOWN, no trailer, and an error logged with its traceback for
    every such call, from clients that need no token (``Health/Check``) as from any other. Every handler gets a
    deserializer that returns a marker instead of raising:

    - a single request (``Describe``, the health service's) that does not parse is refused before its handler runs;
    - in a stream of requests, reading the one that does not parse raises :class:`UnparsedRequest` (a
      ``DecodeError``) in the handler, which may answer it itself (``Perception.Stream`` names the request's
      position in the call); when it does not, the call is refused here as a single request is. A handler that
      reads with ``context.read()`` instead of iterating would get the marker itself: none here does.

    Register it after the interceptors that refuse calls for other reasons (bearer token, call limit): those refuse
    a call whatever its request holds.

    Args:
        on_refused: called once per refused call.
        refusal_log: where refusals are logged, rate-limited per code (the servicer's).
    """

    def __init__(self, on_refused: Callable[[], None], refusal_log: RateLimitedWarning) -> None:
        self._on_refused = on_refused
        self._log_refusal = refusal_log

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The call's handler, with a deserializer that does not raise and behaviour that refuses what it marks."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        parse = handler.request_deserializer
        kwargs = {"request_deserializer": _tolerant(parse), "response_serializer": handler.response_serializer}
        what = _message_name(parse)
        if handler.request_streaming and handler.response_streaming:
            behaviour = self._stream_in_stream_out(handler.stream_stream, method, what)
            return grpc.stream_stream_rpc_method_handler(behaviour, **kwargs)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._stream_in(handler.stream_unary, method, what), **kwargs)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._stream_out(handler.unary_stream, method, what), **kwargs)
        return grpc.unary_unary_rpc_method_handler(self._single(handler.unary_unary, method, what), **kwargs)

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str, message: str) -> None:
        """Count, log (rate-limited) and end the call with INVALID_ARGUMENT and the ``MALFORMED_REQUEST`` trailer."""
        self._on_refused()
        code = ErrorCode.MALFORMED_REQUEST.name.lower()
        self._log_refusal(code, peer=context.peer(), method=method, code=code, stream_id="", detail=message)
        await abort_with(context, StreamAbort(ErrorCode.MALFORMED_REQUEST, message))

    def _single(self, behaviour: Any, method: str, what: str) -> Any:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Unparsed):
                await self._refuse(context, method, _single_refusal(what, request.error))
            return await behaviour(request, context)

        return checked

    def _stream_out(self, behaviour: Any, method: str, what: str) -> Any:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, _Unparsed):
                await self._refuse(context, method, _single_refusal(what, request.error))
            async with contextlib.aclosing(_responses(behaviour(request, context))) as responses:
                async for response in responses:
                    yield response

        return checked

    def _stream_in(self, behaviour: Any, method: str, what: str) -> Any:
        async def checked(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behaviour(_parsed(requests), context)
            except UnparsedRequest as error:
                await self._refuse(context, method, f"a request of this call is not a valid {what} ({error})")

        return checked

    def _stream_in_stream_out(self, behaviour: Any, method: str, what: str) -> Any:
        async def checked(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async with contextlib.aclosing(_responses(behaviour(_parsed(requests), context))) as responses:
                    async for response in responses:
                        yield response
            except UnparsedRequest as error:
                await self._refuse(context, method, f"a request of this call is not a valid {what} ({error})")

        return checked


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``parse``, returning an :class:`_Unparsed` marker where it raises ``DecodeError``."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return _Unparsed(error)

    return deserialize


def _message_name(parse: Callable[[bytes], Any]) -> str:
    """The full name of the message ``parse`` (a message class's ``FromString``) reads, else ``request``."""
    descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) else "request"


def _single_refusal(what: str, error: DecodeError) -> str:
    return f"the request is not a valid {what} ({error}); the call was refused"


async def _parsed(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """``requests``, raising :class:`UnparsedRequest` at the first one that did not parse."""
    async for request in requests:
        if isinstance(request, _Unparsed):
            raise UnparsedRequest(str(request.error)) from request.error
        yield request


async def _responses(answers: Any) -> AsyncGenerator[Any, None]:
    """The responses of a response-streaming handler's call: an async generator's, or none from a handler that
    writes with ``context.write`` and returns nothing (the health service's ``Watch``)."""
    if inspect.isasyncgen(answers):
        async with contextlib.aclosing(answers):
            async for response in answers:
                yield response
    else:
        await answers
