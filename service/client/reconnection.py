"""Continuing a stream after a lost connection or a server's shutdown, with a bounded number of tries: what the
command line's ``stream --reconnect N`` and :func:`~service.client.blocking.stream_frames`'s ``reconnect=N`` share.

:func:`reconnect_options` asks for what makes a continuation exact (a resume window, and the ``STATE`` output so the
latest answer's state can be continued from when the stream cannot be resumed), :func:`worth_reconnecting` says
which errors are worth a try, and :func:`continue_stream` makes the tries, waiting longer before each
(:data:`RECONNECT_BACKOFF_S`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from service.client.connection import Client
from service.client.errors import StreamError
from service.client.stream import ClientStream
from service.errors import ErrorCode
from service.types import DEFAULT_OUTPUTS, Output, StreamOpened, StreamOptions

_log = logging.getLogger("service.client")

RECONNECT_BACKOFF_S = (0.25, 4.0)
"""A reconnection waits the first before its first try after a failure, twice as long before each next, at most
the second."""
DEFAULT_RESUME_WINDOW_S = 30.0
"""The resume window a reconnecting stream asks for when it is given none."""
RECONNECT_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", round(RECONNECT_BACKOFF_S[0] * 1e3)),
    ("grpc.min_reconnect_backoff_ms", round(RECONNECT_BACKOFF_S[0] * 1e3)),
    ("grpc.max_reconnect_backoff_ms", round(RECONNECT_BACKOFF_S[1] * 1e3)),
)
"""Channel options of a reconnecting client: the channel's own reconnection waits no longer than the tries do
(gRPC's default backoff grows to 120 s, so a try could find the channel still waiting out its backoff)."""


def reconnect_wait_s(tries: int) -> float:
    """Seconds to wait before try ``tries`` (1 for the first) of a reconnection."""
    return float(min(RECONNECT_BACKOFF_S[0] * 2 ** (tries - 1), RECONNECT_BACKOFF_S[1]))


def reconnect_options(options: StreamOptions, resume_window_s: float | None = None) -> StreamOptions:
    """``options`` for a stream that is to be continued after a failure: a resume window (``resume_window_s``, else
    the one ``options`` has, else :data:`DEFAULT_RESUME_WINDOW_S`; the server caps it), and the ``STATE`` output
    added to those asked for (K x D floats per result, a few kB at most), so the stream can be continued exactly
    from its latest answer when it cannot be resumed (a server that died or restarted, an expired resume window),
    not only after a shutdown's hand-off: an older state would rewind it."""
    window_s = resume_window_s or options.resume_window_s or DEFAULT_RESUME_WINDOW_S
    outputs = options.outputs or DEFAULT_OUTPUTS
    return dataclasses.replace(options, resume_window_s=window_s, outputs=outputs | {Output.STATE})


def worth_reconnecting(error: StreamError, rereads_token: bool = False) -> bool:
    """Whether a reconnection tries to continue a stream after ``error``: the connection was lost, the server is
    shutting down or not ready yet (another server may take over the target, and a drain hands the state over), or
    it took the stream from this client for not reading its replies (the stream waits for a resume); with
    ``rereads_token`` (a token read again before each try), also when the server refused the token: a rotation
    revoked it while the stream ran, and the stream waits for a resume with the next token.

    Not after ``STREAM_EXPIRED`` (no frame came within the idle timeout): a source that stopped delivering frames
    would be continued, and expire, again and again; :func:`~service.client.blocking.stream_frames` makes its own
    exception for a stream that expired while its window waited for the caller."""
    codes = (ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_READY, ErrorCode.CLIENT_NOT_READING)
    revoked = rereads_token and error.code == ErrorCode.UNAUTHENTICATED
    return error.connection_lost or error.code in codes or revoked


class StreamClients:
    """The clients one stream's call goes through: the first, and a new one for each try after a server's shutdown
    (the stream's connection leads to the draining server, which refuses new calls; a new connection may reach
    another replica, as one through a Kubernetes Service does). Those the stream no longer uses are closed once it
    continues on another (:meth:`close_unused`), so a loop that lives through many rolling updates holds one.

    Args:
        make: makes a client (it reads the TLS files, and a token file, again).
        first: the stream's first client, when it is made elsewhere (default: ``make()``).
        warn: where the warning of a client that cannot be made goes (default: logger ``service.client``).
    """

    def __init__(
        self, make: Callable[[], Client], first: Client | None = None, warn: Callable[[str], None] | None = None
    ) -> None:
        self._make = make
        self._warn = warn or (lambda message: _log.warning("%s", message))
        self.clients = [first if first is not None else make()]

    def new(self) -> Client | None:
        """A new client, or ``None`` (the connection in use, with a warning) when one cannot be made now: a token or
        TLS file being rewritten must not end the stream."""
        try:
            client = self._make()
        except (OSError, ValueError) as error:
            self._warn(f"{error}; reconnecting on the connection in use")
            return None
        self.clients.append(client)
        return client

    async def close_unused(self, current: Client) -> None:
        """Close every client but ``current`` (the stream's, after a reconnect); one whose close is interrupted
        stays for :meth:`close`."""
        for client in [client for client in self.clients if client is not current]:
            await client.close()
            self.clients.remove(client)

    async def close(self) -> None:
        """Close every client."""
        for client in self.clients:
            await client.close()
        self.clients = []


@dataclass(frozen=True)
class Continuation:
    """How :func:`continue_stream` went.

    Attributes:
        opened: the continued stream's ``StreamOpened`` (how it continued, after which frame); ``None`` when no try
            succeeded.
        tries: the tries made.
        last_error: the error of the last failure (the one given, when no try was made).
    """

    opened: StreamOpened | None
    tries: int
    last_error: StreamError


async def continue_stream(
    stream: ClientStream,
    error: StreamError,
    max_tries: int,
    *,
    client_for: Callable[[StreamError], Client | None],
    before_try: Callable[[StreamError, int, float], None],
    rereads_token: bool = False,
) -> Continuation:
    """Continue ``stream`` after ``error`` (which the caller found worth it) with up to ``max_tries``
    :meth:`ClientStream.reconnect` tries, each after :func:`reconnect_wait_s`, while each try's failure is
    :func:`worth_reconnecting`.

    Args:
        stream: the stream to continue.
        error: the failure that ended its call.
        max_tries: the most tries to make.
        client_for: the client to reconnect with after a failure (``None``: the stream's own); asked before each try.
        before_try: told each try before its wait: the last failure, the try's number (1 for the first) and the
            seconds it waits.
        rereads_token: passed to :func:`worth_reconnecting`.

    Returns:
        The outcome; the stream's re-sent frames are in :attr:`ClientStream.unanswered`.
    """
    last, tries = error, 0
    while tries < max_tries:
        tries += 1
        wait_s = reconnect_wait_s(tries)
        before_try(last, tries, wait_s)
        await asyncio.sleep(wait_s)
        try:
            opened = await stream.reconnect(client_for(last))
        except StreamError as failure:
            last = failure
            if not worth_reconnecting(last, rereads_token):
                break
            continue
        return Continuation(opened, tries, last)
    return Continuation(None, tries, last)


def interruption(error: StreamError, target: str) -> str:
    """What interrupted a stream to ``target``, in a few words."""
    if error.connection_lost:
        return f"lost the connection to {target} ({error.status.name}: {error.message})"
    if error.code == ErrorCode.SHUTTING_DOWN:
        return f"the server at {target} is shutting down"
    return f"the stream was interrupted ({error})"
