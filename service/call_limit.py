"""A cap on the gRPC calls the server holds at once (``--max-calls``), and a separate, smaller one on the health
checks reading their request.

Calls are counted as soon as their headers are in, before their request: gRPC runs a handler of a single request
(``Describe``, ``Health/Watch``) only once the whole request is in, and a client may send all but its last byte and
wait, while the server holds what it sent, up to ``--max-message-bytes`` per call (64 ``Describe`` calls of 16 MiB
held about 900 MB). A counted call is let go when its handler returns, or when the call ends before its handler ran
(its request never completed, its client went away).

gRPC's own cap (``maximum_concurrent_rpcs``) counts every call, so calls that hold no stream would also crowd out
the health checks Kubernetes probes with, and a pod under such a flood would fail its probes and be restarted,
ending every stream on it. ``Health/Check`` is left out of ``--max-calls``; it needs no token, so it has a cap of
its own, :data:`MAX_HEALTH_READS` checks reading their request at once (:class:`HealthReads`). ``Health/Watch``
(which needs the bearer token when one is set, and holds its call for as long as the client likes) is counted as
any other call. ``Admin`` calls, which reach the limiter only with an operator's token, have a cap of their own too,
:data:`MAX_ADMIN_CALLS` at once: an operator must be able to list and end streams when clients hold every place
``--max-calls`` allows, which is when it is most needed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.auth import ERROR_CODE_KEY, RefusalReads, refusal_handler
from service.config import MAX_ADMIN_CALLS
from service.errors import ErrorCode
from service.logs import RateLimitedWarning
from service.open_checks import client_address

_log = logging.getLogger("service.servicer")  # where the server's other refusals are logged

HEALTH_CHECK = "/grpc.health.v1.Health/Check"

MAX_HEALTH_READS = 4
"""Health checks reading their request at once: Kubernetes sends at most three probes (startup, readiness, liveness)
at a time, and a probe's request (a service name) arrives with its headers, so its read ends at once; each read
may hold up to ``--max-message-bytes`` while a client takes its time, so this few keeps them within 32 MiB at the
base's 8 MiB messages."""

HEALTH_STALE_S = 0.25
"""A health check whose request has not arrived this long after its read began gives way to a new one when
:data:`MAX_HEALTH_READS` are reading (a probe's request arrives with its headers)."""


class _Reader:
    """One health check reading its request."""

    __slots__ = ("began", "notice", "peer")

    def __init__(self, peer: str, began: float, notice: asyncio.Future[None]) -> None:
        self.peer = peer
        self.began = began
        self.notice = notice
        """Set when the check must give way to a newer one."""


class HealthReads:
    """The health checks reading their request: at most ``limit`` at once.

    When ``limit`` are reading, a new check takes the place of the oldest one whose request has not arrived within
    ``stale_s``, or of the oldest one of a client address that has at least two more reading than the new check's
    address; without such a one, the new check is refused. So checks whose requests never come cannot keep a
    probe out for long, the less so the more of them come from one address, while memory stays bounded.
    """

    def __init__(self, limit: int = MAX_HEALTH_READS, stale_s: float = HEALTH_STALE_S) -> None:
        self.limit = limit
        self.stale_s = stale_s
        self._readers: list[_Reader] = []  # oldest first

    @property
    def reading(self) -> int:
        """Checks reading their request now."""
        return len(self._readers)

    def admit(self, peer: str) -> _Reader | None:
        """A place for a check from ``peer`` (a client address), or ``None`` when it must be refused; a check that
        gives way to it has its :attr:`_Reader.notice` set."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if len(self._readers) >= self.limit:
            held = Counter(reader.peer for reader in self._readers)
            mine = held[peer]
            for reader in self._readers:
                if now - reader.began >= self.stale_s or held[reader.peer] >= mine + 2:
                    self.leave(reader)
                    reader.notice.set_result(None)
                    break
            else:
                return None
        reader = _Reader(peer, now, loop.create_future())
        self._readers.append(reader)
        return reader

    def leave(self, reader: _Reader) -> None:
        """``reader``'s read is over (read, given way, or its call ended)."""
        if reader in self._readers:
            self._readers.remove(reader)


class CallLimitInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call with ``RESOURCE_EXHAUSTED`` (``TOO_MANY_STREAMS``) while ``limit`` calls other than health
    checks are held, before its request arrives. Each counted call is let go when its handler returns or aborts
    the call (before the status goes out) or, for a call whose handler never ran, when the call ends. Calls whose
    method starts with ``separate_prefix`` (the ``Admin`` service's) are counted apart, under ``separate_limit``, so
    clients holding every place cannot keep an operator out, nor an operator's calls take a client's place.

    ``Health/Check`` is not counted: its request is read by the handler this interceptor gives it, under
    :class:`HealthReads`, and a check that cannot read is refused with the same status.

    Register it after the bearer-token interceptor, which refuses calls without a valid token before they reach
    this one: such calls are not counted, so they cannot lock out the calls of clients that have the token.

    Args:
        limit: the most calls held at once (``--max-calls``).
        on_refused: called once per call refused under ``limit`` or by the health checks' cap (the server counts
            them).
        refusal_log: where refusals are logged, rate-limited per code: the servicer's, so one code's refusals share
            one line per interval whichever limit refused them (default: a limiter of its own).
        reads: the refusals' first-message reads, shared with the server's other refusals (default: its own).
        health: the health checks' reads (default: :data:`MAX_HEALTH_READS` at once).
        separate_prefix: a method-name prefix whose calls are counted under ``separate_limit`` instead of ``limit``
            (``None``: every call counts under ``limit``).
        separate_limit: the most such calls held at once.
        on_separate_refused: called once per call refused under ``separate_limit`` instead of ``on_refused`` (the
            server counts them apart, so that operators' tools at their cap are not taken for clients refused).
    """

    def __init__(
        self,
        limit: int,
        on_refused: Callable[[], None] | None = None,
        refusal_log: RateLimitedWarning | None = None,
        reads: RefusalReads | None = None,
        health: HealthReads | None = None,
        separate_prefix: str | None = None,
        separate_limit: int = MAX_ADMIN_CALLS,
        on_separate_refused: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.active = 0
        """Calls counted under :attr:`limit` and not yet let go."""
        self.separate_prefix = separate_prefix
        self.separate_limit = separate_limit
        self.separate_active = 0
        """Calls counted under :attr:`separate_limit` and not yet let go."""
        self.reads = reads or RefusalReads()
        self.health = health or HealthReads()
        self._on_refused = on_refused
        self._on_separate_refused = on_separate_refused
        self._log_refusal = refusal_log or RateLimitedWarning(_log, "refused a call", "refusals")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Count the call and wrap its handler so that it lets the call go, or refuse it when the cap is reached."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if method == HEALTH_CHECK and not (handler.request_streaming or handler.response_streaming):
            return self._health_check(handler, method)
        separate = self.separate_prefix is not None and method.startswith(self.separate_prefix)
        if separate and self.separate_active >= self.separate_limit:
            message = (
                f"this server holds at most {self.separate_limit} Admin calls at once, and it holds that many: try "
                "again when one of them ends"
            )
        elif not separate and self.active >= self.limit:
            message = (
                f"this server holds at most {self.limit} calls at once (--max-calls), and it holds that many: try "
                "again later, or another server"
            )
        else:
            message = ""
        if message:
            record = self._recorder(method, message, self._on_separate_refused if separate else self._on_refused)
            return refusal_handler(
                grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorCode.TOO_MANY_STREAMS, message, record, self.reads
            )
        release = self._count(separate)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, release), **kwargs)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, release), **kwargs)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, release), **kwargs)
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, release), **kwargs)

    def _count(self, separate: bool) -> Callable[..., None]:
        """Count the call now (its headers are in), under :attr:`separate_limit` when ``separate``, and give the
        function that lets it go, once: from its handler's end, or from the end of gRPC's task for the call, which
        also ends when the call ends before its handler ran (gRPC runs a call's interceptors and handler in one
        task)."""
        if separate:
            self.separate_active += 1
        else:
            self.active += 1
        released = False

        def release(*_: object) -> None:
            nonlocal released
            if not released:
                released = True
                if separate:
                    self.separate_active -= 1
                else:
                    self.active -= 1

        task = asyncio.current_task()
        if task is None:  # pragma: no cover - gRPC's asyncio server always runs interceptors in a task
            raise RuntimeError("the call limit must run in a gRPC asyncio server")
        task.add_done_callback(release)
        return release

    def _recorder(
        self, method: str, message: str, count: Callable[[], None] | None
    ) -> Callable[[grpc.aio.ServicerContext], None]:
        """What a refusal calls with the call's context: ``count`` it and log it, rate-limited, as the server's
        other refusals."""

        def record(context: grpc.aio.ServicerContext) -> None:
            if count is not None:
                count()
            code = ErrorCode.TOO_MANY_STREAMS.name.lower()
            self._log_refusal(code, peer=context.peer(), method=method, code=code, stream_id="", detail=message)

        return record

    def _health_check(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` (a single request, a single reply) as a handler that reads its request itself, under
        :attr:`health`, then runs ``handler``."""
        behaviour = handler.unary_unary
        busy = (
            f"this server reads at most {self.health.limit} health checks at once, and it reads that many: try "
            "again later"
        )
        gave_way = (
            f"this health check's request had not arrived within {self.health.stale_s} s when a newer check "
            "needed its place"
        )
        trailer = ((ERROR_CODE_KEY, ErrorCode.TOO_MANY_STREAMS.wire_name),)

        async def check(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            reader = self.health.admit(client_address(context.peer()))
            if reader is None:
                self._recorder(method, busy, self._on_refused)(context)
                return await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, busy, trailing_metadata=trailer)
            reading = asyncio.ensure_future(anext(aiter(requests), None))
            try:
                await asyncio.wait({reading, reader.notice}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.health.leave(reader)
                unread = not reading.done()
                if unread:
                    reading.cancel()
            if unread:
                self._recorder(method, gave_way, self._on_refused)(context)
                return await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, gave_way, trailing_metadata=trailer)
            request = reading.result()
            if request is None:
                return await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the health check ended without its request"
                )
            return await behaviour(request, context)

        return grpc.stream_unary_rpc_method_handler(
            check,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _ReleasingContext:
    """A call's context whose :meth:`abort` lets the call go before the status goes out: ``abort`` sends the status,
    then raises, so a release where the handler ends would come after the client had its answer, and a client that
    tried again at once could be refused for the place its own ended call still held."""

    def __init__(self, context: grpc.aio.ServicerContext, release: Callable[[], None]) -> None:
        self._context = context
        self._release = release

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, *args: Any, **kwargs: Any) -> Any:
        self._release()
        return await self._context.abort(*args, **kwargs)


def _streaming(behaviour: Any, release: Callable[[], None]) -> Any:
    async def counted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            answers = behaviour(request, _ReleasingContext(context, release))
            if inspect.isasyncgen(answers):
                async for response in answers:
                    yield response
            else:  # a handler that writes with context.write and returns nothing
                await answers
        finally:
            release()

    return counted


def _unary(behaviour: Any, release: Callable[[], None]) -> Any:
    async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behaviour(request, _ReleasingContext(context, release))
        finally:
            release()

    return counted
