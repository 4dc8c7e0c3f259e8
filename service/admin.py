"""The ``slotstream.v1.Admin`` service: operators list the streams a server holds and read each one's statistics.

Access is separate from the clients': :class:`AdminAccessInterceptor` lets an ``Admin`` call through only with one
of ``--admin-token-file``'s tokens, and refuses every ``Admin`` call with ``PERMISSION_DENIED``
(``ADMIN_API_OFF``) when that flag is unset; the client token interceptor leaves ``Admin`` calls to it (see
:data:`ADMIN_METHODS`), so a client token does not grant them. Both refuse as soon as the call's headers are in,
like the client token's refusals (:func:`service.auth.refusal_handler`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.admin_wire import stats_to_proto
from service.auth import BearerTokenInterceptor, RefusalReads, refusal_handler
from service.errors import ENDED_BY_THE_SERVER, ErrorCode, StreamAbort, quoted
from service.generated import pb, pb_grpc
from service.logs import RateLimitedWarning
from service.open_checks import loggable_stream_id
from service.servicer import PerceptionServicer, abort_with
from service.session import Session
from service.sessions import SessionManager
from service.stream_endings import how_it_ended
from service.stream_stats import stream_stats
from service.types import ReloadOutcome

ADMIN_METHODS = "/slotstream.v1.Admin/"
"""The method-name prefix of the ``Admin`` service's calls."""
MAX_END_REASON_CHARS = 200
"""The most characters of an ``EndStream`` reason kept (told to the client, logged)."""
ADMIN_TOKEN_HINT = (
    " (Admin calls need an admin token, one of the server's --admin-token-file; a client's token does not grant them)"
)
"""Added to the refusal of an ``Admin`` call without a valid admin token."""
ADMIN_TOKEN_MISPLACED = (
    "the bearer token in the 'authorization' metadata is an admin token (the server's --admin-token-file), which "
    "grants the Admin service alone: streams and the other calls need a client token (its --auth-token-file)"
)
"""What a call other than an ``Admin`` one is told when it presents an admin token."""
ADMIN_API_OFF_MESSAGE = (
    "this server's Admin service is off: start the server with --admin-token-file (SLOTSTREAM_ADMIN_TOKEN_FILE), a "
    "file of operators' tokens, and present one of them as 'authorization: Bearer <token>'"
)


class AdminServicer(pb_grpc.AdminServicer):  # type: ignore[misc]
    """Implements ``slotstream.v1.Admin`` (see the proto) over the session manager's streams.

    Args:
        manager: the session manager, whose streams are listed (read on the event loop, as it runs).
        perception: the perception servicer, whose refusal counting and logging ``Admin`` refusals share.
        reload: loads the model's folder again (``Server.reload_model``).
    """

    def __init__(
        self,
        manager: SessionManager,
        perception: PerceptionServicer,
        reload: Callable[[str], Awaitable[ReloadOutcome]],
    ) -> None:
        self._manager = manager
        self._perception = perception
        self._reload = reload

    async def ListStreams(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Admin.ListStreams`` in the proto. A ``model`` this server does not serve is refused with
        ``NOT_FOUND`` (``UNKNOWN_MODEL``) rather than answered with no streams."""
        if request.model:
            try:
                self._manager.runner(request.model)
            except StreamAbort as abort:
                await self._refuse(abort, context, "ListStreams", "")
        now = self._manager.clock()
        sessions = sorted(self._manager.sessions.values(), key=lambda session: session.opened_at)
        chosen = [s for s in sessions if not request.model or s.model == request.model]
        return pb.ListStreamsResponse(
            streams=[stats_to_proto(stream_stats(session, now)) for session in chosen], server_time_ns=time.time_ns()
        )

    async def GetStreamStats(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Admin.GetStreamStats`` in the proto."""
        session = await self._session(request.stream_id, context, "GetStreamStats")
        return stats_to_proto(stream_stats(session, self._manager.clock()))

    async def ReloadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Admin.ReloadModel`` in the proto."""
        try:
            outcome = await self._reload(request.model)
        except StreamAbort as abort:
            await self._refuse(abort, context, "ReloadModel", "")
            raise  # not reached: the refusal ended the call
        return pb.ReloadModelResponse(
            model=outcome.model,
            previous_version=outcome.previous_version,
            version=outcome.version,
            changed=outcome.changed,
            streams_on_previous=outcome.streams_on_previous,
            load_s=outcome.load_s,
            warm_up_s=outcome.warm_up_s,
        )

    async def EndStream(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See ``Admin.EndStream`` in the proto. The reason is cut to :data:`MAX_END_REASON_CHARS` characters."""
        session = await self._session(request.stream_id, context, "EndStream")
        stats = stats_to_proto(stream_stats(session, self._manager.clock()))
        reason = " ".join(request.reason.split())[:MAX_END_REASON_CHARS]  # one line, as logs and statuses show it
        self._manager.end(session, reason)
        return pb.EndStreamResponse(stats=stats)

    async def _session(self, stream_id: str, context: grpc.aio.ServicerContext, method: str) -> Session:
        """The session of ``stream_id``; a stream this server does not hold ends the call with ``NOT_FOUND``."""
        session = self._manager.sessions.get(stream_id)
        if session is None:
            reason = self._manager.release_reason(stream_id)  # how it ended, if this server held it
            why = "it was never opened here" if reason is None else f"it has ended: {how_it_ended(reason)}"
            abort = StreamAbort(
                ErrorCode.UNKNOWN_STREAM,
                f"this server holds no stream {quoted(stream_id)}: {why} (python -m service.client streams lists "
                "those it holds)",
            )
            await self._refuse(abort, context, method, loggable_stream_id(stream_id))
        assert session is not None  # the refusal ended the call
        return session

    async def _refuse(
        self, abort: StreamAbort, context: grpc.aio.ServicerContext, method: str, stream_id: str
    ) -> None:
        """Count, log and end the call with ``abort`` (never returns); a reload cut short by a shutdown is the
        server's own end, not a refusal (:data:`~service.errors.ENDED_BY_THE_SERVER`), and is neither."""
        if abort.code not in ENDED_BY_THE_SERVER:
            self._perception.refused(abort, context.peer(), f"{ADMIN_METHODS}{method}", stream_id)
        await abort_with(context, abort)


class AdminAccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Guards the ``Admin`` service; passes every other call on untouched.

    Args:
        tokens: the admin tokens a call may present now (:meth:`service.tokens.TokenFile.current`), or ``None``: the
            Admin service is off, and its calls are refused with ``PERMISSION_DENIED`` (``ADMIN_API_OFF``).
        on_denied: called with the error code of each refused call (the server counts them).
        refusal_log: logs a refusal for the Admin service being off (the peer, the method, the code).
        reads: the refusals' first-message reads, shared with the server's other refusals.
    """

    def __init__(
        self,
        tokens: Callable[[], tuple[bytes, ...]] | None,
        on_denied: Callable[[ErrorCode], None],
        refusal_log: RateLimitedWarning,
        reads: RefusalReads,
    ) -> None:
        self._on_denied = on_denied
        self._refusal_log = refusal_log
        self._reads = reads
        self._tokens: BearerTokenInterceptor | None = None
        if tokens is not None:
            self._tokens = BearerTokenInterceptor(
                tokens,
                exempt_prefixes=(),
                on_denied=lambda: on_denied(ErrorCode.UNAUTHENTICATED),
                reads=reads,
                hint=ADMIN_TOKEN_HINT,
            )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass on a call that is not an ``Admin`` call, or one with an admin token; refuse the other ``Admin``
        calls before their request arrives."""
        method = handler_call_details.method
        if not method.startswith(ADMIN_METHODS):
            return await continuation(handler_call_details)
        if self._tokens is not None:
            return await self._tokens.intercept_service(continuation, handler_call_details)
        code = ErrorCode.ADMIN_API_OFF

        def record(context: grpc.aio.ServicerContext) -> None:
            self._on_denied(code)
            name = code.name.lower()
            self._refusal_log(name, peer=context.peer(), method=method, code=name, stream_id="", detail="")

        return refusal_handler(grpc.StatusCode.PERMISSION_DENIED, code, ADMIN_API_OFF_MESSAGE, record, self._reads)
