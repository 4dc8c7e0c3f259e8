"""Bearer-token authentication for every RPC except the health check (Kubernetes probes send no metadata).

Only ``Health/Check`` is exempt: ``Health/Watch`` holds its call open for as long as the client likes, so without a
token anyone who can reach the port could hold thousands of them (measured: 21,550 calls, +400 MB).

A token removed from the token file while calls it authenticated run is taken away from them: each ``Stream`` call
keeps the digest of its token (:func:`call_token_digest`, never the token), and a reload of the file ends the calls
whose digest is no longer among the tokens' (:func:`still_valid`; see ``PerceptionServicer.end_revoked``).

A call is refused as soon as its headers are in, before its request arrives: gRPC runs a handler of a single request
only once the whole request is in, so a refusal of that shape would let a client without a token make the server
hold up to ``--max-message-bytes`` per call, on any number of calls, for as long as it sends all but the last byte
(64 such calls of 16 MiB held about 900 MB). A refusal reads the call's first message only while fewer than
:data:`MAX_DRAINING` refusals do (:class:`RefusalReads`, shared with the call cap's refusals).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from service.errors import ErrorCode
from service.logs import RateLimitedWarning

ERROR_CODE_KEY = "slotstream-error-code"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/Check",)
_FIRST_MESSAGE_WAIT_S = 1.0

MAX_DRAINING = 4
"""Refused calls whose first message is read before the refusal, at once (:class:`RefusalReads`: the client then sees
the refusal's status); each such message may be up to ``--max-message-bytes``, so beyond these few a refusal ends the
call at once, unread (a flood of 40 calls of 12 MB each took 377 MB while every refusal read its message)."""

_log = logging.getLogger(__name__)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requires ``authorization: Bearer <token>`` metadata; other calls end with UNAUTHENTICATED.

    The scheme is matched case-insensitively (``bearer``, ``BEARER``: HTTP auth schemes are, RFC 9110 11.1) and
    may be followed by several spaces; the token is compared in constant time. A value that is not of that form
    (a bare token, another scheme) is refused with a message giving the expected form; the value itself is
    never echoed or logged.

    A call without a valid token is refused as soon as its headers are in, without running the interceptors and
    handler behind this one (the call cap does not count it), whatever the method's shape: a method the server
    does not have is refused for the token too, not ``UNIMPLEMENTED``. Its first message is read before the refusal
    only as :class:`RefusalReads` allows.

    Every refusal is passed to ``on_denied`` (the server counts them in ``slotstream_calls_refused_total``) and
    logged as a warning with the peer's address and method, never the token presented; at most one warning per
    :data:`~service.logs.WARNING_INTERVAL_S`, saying how many refusals it stands for
    (:class:`~service.logs.RateLimitedWarning`, as the server's other refusals).

    Args:
        token: the token clients must present, or a function giving the tokens any of which they may present now
            (:meth:`service.tokens.TokenFile.current`: tokens that rotate).
        exempt_prefixes: method-name prefixes that need no token.
        on_denied: called once per refused call.
        reads: the refusals' first-message reads, shared with the server's other refusals (default: its own).
        hint: added to every refusal's message (which token the calls it guards need).
        misplaced: tokens of another kind (the admin tokens, for the clients' interceptor) and what to say to a
            call that presents one of them instead of a token of this kind.

    Raises:
        ValueError: ``token`` is empty.
    """

    def __init__(
        self,
        token: str | Callable[[], tuple[bytes, ...]],
        exempt_prefixes: tuple[str, ...] = EXEMPT_PREFIXES,
        on_denied: Callable[[], None] | None = None,
        reads: RefusalReads | None = None,
        hint: str = "",
        misplaced: tuple[Callable[[], tuple[bytes, ...]], str] | None = None,
    ) -> None:
        self._hint = hint
        self._misplaced = misplaced
        if isinstance(token, str):
            if not token:
                raise ValueError("an empty bearer token would accept everyone")
            fixed = (token.encode(),)
            self._expected: Callable[[], tuple[bytes, ...]] = lambda: fixed
        else:
            self._expected = token
        self._exempt = exempt_prefixes
        self._on_denied = on_denied
        self._reads = reads or RefusalReads()
        self._log_denial = RateLimitedWarning(_log, "refused a call without a valid bearer token", "refusals")

    def denied(self, peer: str, method: str, why: str) -> None:
        """Count and (rate-limited) log one refused call."""
        if self._on_denied is not None:
            self._on_denied()
        self._log_denial("unauthenticated", peer=peer, method=method, why=why)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass the call on if it is exempt or carries the token; otherwise refuse it with UNAUTHENTICATED, before its
        request arrives."""
        method = handler_call_details.method
        if method.startswith(self._exempt):
            return await continuation(handler_call_details)
        presented = _authorizations(handler_call_details.invocation_metadata)
        if not presented:
            why, message = "no token", "missing 'authorization: Bearer <token>' metadata: this server requires a token"
        elif len(presented) > 1:  # which one counts would depend on their order
            why, message = (
                "several tokens",
                f"the call carries {len(presented)} 'authorization' metadata values: send one, "
                "'authorization: Bearer <token>'",
            )
        elif (token := _bearer_token(presented[0])) is None:
            why, message = (
                "not a bearer token",
                "the 'authorization' metadata is not of the form 'authorization: Bearer <token>' (the scheme "
                "'Bearer', a space, then the token): this server requires a bearer token",
            )
        elif self._misplaced is not None and _matches(token.encode(), self._misplaced[0]()):
            why, message = "token of another kind", self._misplaced[1]
        elif not _matches(token.encode(), self._expected()):
            why, message = "wrong token", "wrong bearer token in the 'authorization' metadata"
        else:
            return await continuation(handler_call_details)
        return refusal_handler(
            grpc.StatusCode.UNAUTHENTICATED,
            ErrorCode.UNAUTHENTICATED,
            message + self._hint,
            lambda context: self.denied(context.peer(), method, why),
            self._reads,
        )


def _matches(presented: bytes, expected: tuple[bytes, ...]) -> bool:
    """Whether ``presented`` is one of ``expected``, each compared in constant time, and all of them always (the
    time taken does not tell which one matched, or how much of one)."""
    matched = False
    for token in expected:
        matched |= hmac.compare_digest(presented, token) and bool(token)
    return matched


def token_digest(token: bytes) -> bytes:
    """The SHA-256 digest of ``token``: what a call keeps of the token that authenticated it, so that it can be
    ended once that token is revoked, without the token itself being held or logged."""
    return hashlib.sha256(token).digest()


def call_token_digest(metadata: Iterable[tuple[str, Any]] | None) -> bytes | None:
    """The :func:`token_digest` of the bearer token in a call's ``metadata`` (its ``authorization: Bearer <token>``),
    or ``None`` when it carries none (or several)."""
    presented = _authorizations(metadata)
    token = _bearer_token(presented[0]) if len(presented) == 1 else None  # several: the call was refused
    return None if token is None else token_digest(token.encode())


def _authorizations(metadata: Iterable[tuple[str, Any]] | None) -> list[str]:
    """The ``authorization`` values of a call's ``metadata``, in order (a client may send the key more than once)."""
    return [str(value) for key, value in metadata or () if key == "authorization"]


def still_valid(digest: bytes, tokens: tuple[bytes, ...]) -> bool:
    """Whether ``digest`` is the :func:`token_digest` of one of ``tokens``, compared in constant time, with all of
    them always (as a call's token is when it starts)."""
    return _matches(digest, tuple(token_digest(token) for token in tokens))


def _bearer_token(value: str) -> str | None:
    """The token of an ``authorization`` value ``Bearer <token>`` (scheme in any case, then one or more spaces),
    or ``None`` when the value is not of that form."""
    scheme, _, token = value.partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def take_first_message(requests: Any) -> None:
    """Read a refused call's first message (waiting at most a second) before aborting it: aborting while the client
    still writes it makes the write fail with a generic INTERNAL error instead of the refusal's status
    (grpc/grpc#36066)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(anext(aiter(requests), None), _FIRST_MESSAGE_WAIT_S)


class RefusalReads:
    """Refused calls whose first message is read before their refusal: at most ``limit`` at once, for every
    interceptor that shares this object (the token's and the call cap's).

    Aborting a call while its client still writes its first message makes that write fail with a generic INTERNAL
    error instead of the refusal's status (grpc/grpc#36066), so a refusal reads the message first (waiting at most
    a second); but each message may be up to ``--max-message-bytes``, so beyond ``limit`` a refusal ends the call at
    once, unread.

    Attributes:
        reading: refusals reading a first message now.
    """

    def __init__(self, limit: int = MAX_DRAINING) -> None:
        self.limit = limit
        self.reading = 0

    async def read_first(self, requests: Any) -> None:
        """Read the first message of ``requests`` (at most a second) if fewer than ``limit`` refusals read theirs;
        return at once otherwise."""
        if self.reading >= self.limit:
            return
        self.reading += 1
        try:
            await take_first_message(requests)
        finally:
            self.reading -= 1


def refusal_handler(
    status: grpc.StatusCode,
    code: ErrorCode,
    message: str,
    record: Callable[[grpc.aio.ServicerContext], None],
    reads: RefusalReads,
) -> grpc.RpcMethodHandler:
    """A handler that refuses its call with ``status``, ``message`` and the ``code`` trailer, whatever the method's
    shape, before the request has arrived.

    It takes a stream of raw requests: gRPC runs a handler of a single request only once the whole request is in,
    which a client may delay for as long as it likes while the server holds what it sent. The refusal is passed to
    ``record`` (with the call's context: count and log it), then the first message is read as ``reads`` allows.
    On the wire a refusal is the same for every shape of call: a status with no message.
    """
    trailer = ((ERROR_CODE_KEY, code.wire_name),)

    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> None:
        record(context)
        await reads.read_first(requests)
        await context.abort(status, message, trailing_metadata=trailer)

    return grpc.stream_stream_rpc_method_handler(refuse)
