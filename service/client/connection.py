"""The async client's connection: :class:`Client`, which opens and resumes streams (:class:`ClientStream`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import grpc

from service import wire
from service.admin_wire import stats_from_proto
from service.client.errors import StreamError
from service.client.reader import CallReader
from service.client.stream import ClientStream
from service.client.tls import TlsFiles
from service.engine import ModelCard
from service.generated import pb, pb_grpc
from service.grpc_limits import DEFAULT_MAX_MESSAGE_BYTES, MAX_GRPC_MESSAGE_BYTES
from service.stream_stats import StreamStats
from service.types import (
    CLOSE_REASONS_KEY,
    CloseReason,
    OpenRequest,
    ReloadOutcome,
    ResumeRequest,
    StateHandoff,
    StreamOptions,
)

SERVER_LIMIT_TIMEOUT_S = 10.0
"""How long a client waits for the model card it reads the server's request limit from (then goes on without it)."""
SERVER_LIMIT_RETRY_S = 5.0
"""How long after a failed read of the server's request limit (a refused ``Describe``, no answer) a client waits
before it reads it again: the frames meanwhile go sized to its own ``max_message_bytes``, with no call each."""
_TOKEN_CHARACTERS = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}
"""What :func:`check_token` calls the whitespace characters it finds in a token."""


def check_token(token: str) -> None:
    """Check that ``token`` can be sent as a bearer token: gRPC sends it in the ``authorization`` metadata, whose
    value is printable ASCII, and a token (RFC 6750) has no whitespace, so every character must be in ``!`` .. ``~``.

    Raises:
        ValueError: a character outside that range (a line break of a file of two tokens, a space, a non-ASCII
            letter); the message says which and where, never the token itself.
    """
    for position, character in enumerate(token):
        if not "!" <= character <= "~":
            what = _TOKEN_CHARACTERS.get(character, f"the character U+{ord(character):04X}")
            raise ValueError(
                f"the bearer token holds {what} at position {position}: a token is printable ASCII without spaces "
                "or line breaks (gRPC sends it as metadata)"
            )


class Client:
    """A connection to a slotstream server.

    Example:
        >>> async with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
        ...     stream = await client.open(StreamOptions(live=True))
        ...     result = await stream.process(frame)  # frame: uint8 [H, W, 3]
        ...     await stream.close()

    Args:
        target: ``host:port``.
        token: bearer token, for servers that require one (printable ASCII without whitespace:
            :func:`check_token`).
        tls: TLS files; ``None`` for a plaintext connection.
        max_message_bytes: largest message sent or received. Frames are sized to the server's own limit too
            (:attr:`server_max_request_bytes`) when it is lower.
        channel_options: more gRPC channel options, applied after this client's own (so they can override
            them); for example ``[("grpc.lb_policy_name", "round_robin")]`` with a ``dns:///`` target of a
            headless Service spreads the streams of one client over every pod behind it.

    Raises:
        RuntimeError: no event loop is running; a gRPC channel belongs to the loop it was made in, so create the
            client inside the coroutine that uses it (see :func:`service.client.stream_frames` for blocking use).
        ValueError: ``max_message_bytes`` outside 1 .. 2**31 - 1, or a ``token`` that cannot be sent
            (:func:`check_token`: whitespace, a line break, a character outside printable ASCII).
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsFiles | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if not 1 <= max_message_bytes <= MAX_GRPC_MESSAGE_BYTES:
            raise ValueError(
                f"max_message_bytes must be between 1 and 2**31 - 1 (gRPC's limit), got {max_message_bytes}"
            )
        self.use_token(token)
        self.target = target
        self.max_message_bytes = max_message_bytes
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "create the Client inside the async function that uses it: its gRPC channel belongs to the running "
                "event loop (for blocking code use service.client.stream_frames)"
            ) from None
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A frozen server (or a half-open connection) is found in about 15 s, so --reconnect starts then:
            # gRPC acts on an unanswered ping only after its own ping timeout (60 s by default).
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.http2.ping_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # A channel of its own: gRPC otherwise shares one connection among every channel of the process to the
            # same target with the same options, so a new Client made to reconnect after a server's shutdown would
            # go out on the old connection, to the draining server, instead of reaching another replica.
            ("grpc.use_local_subchannel_pool", 1),
            *channel_options,
        ]
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            root_ca, key, cert = tls.read()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_ca, private_key=key, certificate_chain=cert
            )
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.PerceptionStub(self._channel)
        self._admin = pb_grpc.AdminStub(self._channel)
        self._closed = False
        self._readers: set[CallReader] = set()  # strong references: the event loop keeps only weak ones
        self._server_request_bytes: int | None = None
        self._server_limit_read: asyncio.Future[int | None] | None = None
        self._server_limit_retry_at = 0.0  # time.monotonic() before which a failed read is not tried again

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def server_max_request_bytes(self) -> int | None:
        """The largest request message the server takes (its model card's ``max_request_bytes``: its
        ``--max-message-bytes``), as far as this client knows: ``None`` until read (or while its card could not be
        read), 0 when the server does not report it.

        A stream reads it (one ``Describe`` call, once per client) when a frame request is larger than 1 MiB, the
        smallest limit a server has, so a client whose frames are all smaller never asks; :meth:`describe` updates
        it too. A read that fails (the call refused, say by a server at its ``--max-calls``, or unanswered) is tried
        again for a later such frame, at most once every :data:`SERVER_LIMIT_RETRY_S`. While it is below
        :attr:`max_message_bytes`, frames are sized to it (:meth:`ClientStream.send`)."""
        return self._server_request_bytes

    def request_limit(self) -> tuple[int, bool]:
        """The largest frame request to send as far as this client knows, and whether that is the server's limit.

        Returns:
            ``(limit, server_limit)``: :attr:`server_max_request_bytes` with ``True`` when it is known and lower
            than :attr:`max_message_bytes`, else :attr:`max_message_bytes` with ``False`` (the server's limit not
            read yet, not reported, or not lower). Makes no call: :meth:`read_server_limit` reads the server's.
        """
        server = self._server_request_bytes or 0
        if 0 < server < self.max_message_bytes:
            return server, True
        return self.max_message_bytes, False

    async def read_server_limit(self) -> int | None:
        """:attr:`server_max_request_bytes`, read from the server's model card when it is not known yet.

        One ``Describe`` call is shared by every task that asks meanwhile; a task cancelled while it waits leaves the
        read going for the others. A card that cannot be read (a refused call, no answer within
        :data:`SERVER_LIMIT_TIMEOUT_S`, a closed client) raises nothing: the limit stays ``None``, and the card is
        not asked for again until :data:`SERVER_LIMIT_RETRY_S` have passed (time.monotonic); an ask meanwhile
        returns ``None`` at once, so frames go sized to :attr:`max_message_bytes`, as without a limit
        (:meth:`request_limit`).

        Returns:
            The server's limit (0 when the server does not report one), or ``None`` when it could not be read.
        """
        if self._server_request_bytes is not None:
            return self._server_request_bytes
        if self._server_limit_read is None:
            if time.monotonic() < self._server_limit_retry_at:
                return None
            self._server_limit_read = asyncio.ensure_future(self._describe_limit())
        return await asyncio.shield(self._server_limit_read)

    async def _describe_limit(self) -> int | None:
        try:
            with contextlib.suppress(StreamError, TimeoutError):  # the card's limit is kept by describe()
                await asyncio.wait_for(self.describe(), SERVER_LIMIT_TIMEOUT_S)
        finally:
            self._server_limit_read = None  # done: a later read starts a new call
            if self._server_request_bytes is None:
                self._server_limit_retry_at = time.monotonic() + SERVER_LIMIT_RETRY_S
        return self._server_request_bytes

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; a closed client makes no more calls."""
        return self._closed

    async def close(self) -> None:
        """Close the connection: its open streams end (their next operation raises :class:`StreamError` saying
        the client was closed). A call the server is ending (a drain's hand-off, a takeover) gets up to
        :data:`~service.client.reader.SERVER_END_WAIT_S` to end with its status first, so that the server knows it
        was read. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        readers = list(self._readers)  # a reader leaves the set as its call ends: those ending now are aborted too
        try:
            await asyncio.gather(*(reader.let_the_server_end() for reader in readers))
        finally:  # also when this close is cancelled during that wait
            try:
                await self._channel.close()
            finally:
                for reader in dict.fromkeys([*readers, *self._readers]):
                    reader.abort(self._closed_error)

    def _closed_error(self) -> StreamError:
        return StreamError(
            grpc.StatusCode.FAILED_PRECONDITION,
            None,
            f"the Client for {self.target} is closed (Client.close() or the end of its `async with`), and its "
            "streams with it: make a new Client",
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the server reports SERVING on its health service.

        Raises:
            TimeoutError: not serving within ``timeout_s``; the message carries the last status seen (a
                server still loading its model, or why the connection fails: refused, a TLS handshake that
                does not complete...). Health checks need no bearer token, so a missing or wrong token is not
                found here: the first :meth:`open` reports it (``UNAUTHENTICATED``).
            StreamError: the client is closed.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._check_open()
        stub = health_pb2_grpc.HealthStub(self._channel)
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            except grpc.aio.AioRpcError as error:
                last = f"{error.code().name}: {error.details()}"
            except grpc.aio.UsageError as error:  # closed by another task meanwhile
                raise self._closed_error() from error
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.target} is not serving after {timeout_s} s (last: {last})")
            await asyncio.sleep(0.1)

    def use_token(self, token: str | None) -> None:
        """Send ``token`` (None: no token) with the calls this client starts from now on, for a token rotated
        while it runs; calls already running keep theirs (the server checks a token when a call starts, and ends
        the calls of a token it no longer has: ``reconnect()`` a stream to move it to the new token).

        Raises:
            ValueError: a ``token`` that cannot be sent (:func:`check_token`).
        """
        if token:
            check_token(token)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def describe(self, model: str = "") -> ModelCard:
        """The model card of ``model`` (``""``: the server's default). Its ``max_request_bytes`` updates
        :attr:`server_max_request_bytes`.

        Raises:
            StreamError: unknown model, missing token, ..., or the client is closed.
        """
        self._check_open()
        try:
            reply = await self._stub.Describe(pb.DescribeRequest(model=model), metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise StreamError.from_rpc_error(error) from error
        except grpc.aio.UsageError as error:
            raise self._closed_error() from error
        card = wire.card_from_proto(reply)
        self._server_request_bytes = card.max_request_bytes
        return card

    async def list_streams(self, model: str = "") -> list[StreamStats]:
        """The streams the server holds (of ``model`` alone, when given), the oldest first: the ``Admin`` service,
        for which this client's token must be one of the server's ``--admin-token-file``.

        Raises:
            StreamError: the server's Admin service is off (``ADMIN_API_OFF``), a missing or wrong admin token
                (``UNAUTHENTICATED``), a model it does not serve (``UNKNOWN_MODEL``), ..., or the client is closed.
        """
        reply = await self._admin_call(self._admin.ListStreams, pb.ListStreamsRequest(model=model))
        return [stats_from_proto(stats) for stats in reply.streams]

    async def stream_stats(self, stream_id: str) -> StreamStats:
        """The statistics of the server's stream ``stream_id`` (the ``Admin`` service; see :meth:`list_streams`).

        Raises:
            StreamError: as :meth:`list_streams`, and ``UNKNOWN_STREAM`` for a stream the server does not hold.
        """
        reply = await self._admin_call(self._admin.GetStreamStats, pb.GetStreamStatsRequest(stream_id=stream_id))
        return stats_from_proto(reply)

    async def end_stream(self, stream_id: str, reason: str = "") -> StreamStats:
        """End the server's stream ``stream_id`` and free its state (the ``Admin`` service; see :meth:`list_streams`):
        its client's call ends with ``ABORTED`` (``ENDED_BY_OPERATOR``) and ``reason``. Returns the stream as it
        stood when it was ended.

        Raises:
            StreamError: as :meth:`stream_stats`.
        """
        reply = await self._admin_call(self._admin.EndStream, pb.EndStreamRequest(stream_id=stream_id, reason=reason))
        return stats_from_proto(reply.stats)

    async def reload_model(self, model: str = "") -> ReloadOutcome:
        """Have the server load ``model`` (``""``: its default) again from its ``--model-dir`` (the ``Admin``
        service; see :meth:`list_streams`): new streams then get the new version, streams already open keep theirs.
        Returns when the new version serves (or was found unchanged).

        Raises:
            StreamError: as :meth:`list_streams`, and ``MODEL_LOAD_FAILED`` (the folder did not load or warm up; the
                server serves on with the version it had), ``NOT_READY`` or ``SHUTTING_DOWN``.
        """
        reply = await self._admin_call(self._admin.ReloadModel, pb.ReloadModelRequest(model=model))
        return ReloadOutcome(
            reply.model,
            reply.previous_version,
            reply.version,
            reply.changed,
            reply.streams_on_previous,
            reply.load_s,
            reply.warm_up_s,
        )

    async def _admin_call(self, method: Any, request: Any) -> Any:
        """Call the ``Admin`` service's ``method`` with ``request`` and this client's token; errors as
        :class:`StreamError`."""
        self._check_open()
        try:
            return await method(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise StreamError.from_rpc_error(error) from error
        except grpc.aio.UsageError as error:
            raise self._closed_error() from error

    async def open(
        self,
        options: StreamOptions | None = None,
        *,
        model: str = "",
        stream_id: str = "",
        handoff: StateHandoff | None = None,
    ) -> ClientStream:
        """Open a stream (or continue one from a ``handoff``) and wait for the server to accept it.

        Raises:
            StreamError: the server refused the stream, or its replies could exceed this client's
                ``max_message_bytes`` (``INVALID_OPEN``; the stream is closed again), or the client is closed.
        """
        request = OpenRequest(stream_id=stream_id, model=model, options=options or StreamOptions(), handoff=handoff)
        stream = ClientStream(self)
        await stream._start(request)
        return stream

    async def resume(
        self, stream_id: str, resume_token: str, last_frame_index: int | None, *, model: str = ""
    ) -> ClientStream:
        """Resume a stream of this server from its id and token (for example after the client restarted).

        The stream keeps the options it was opened with; the returned stream's ``opened.options`` reports them.

        Args:
            stream_id: the stream's id.
            resume_token: its token (``StreamOpened.resume_token``).
            last_frame_index: the last frame whose answer the client received (``None``: none).
            model: the stream's model name.

        Raises:
            StreamError: unknown or expired stream, wrong token, resume point too old, ..., or the client is
                closed.
        """
        request = OpenRequest(stream_id, model, StreamOptions(), ResumeRequest(resume_token, last_frame_index))
        stream = ClientStream(self)
        stream.last_answered_index = last_frame_index
        await stream._start(request)
        return stream

    def _call(self) -> Any:
        self._check_open()
        try:
            return self._stub.Stream(metadata=(*self._metadata, (CLOSE_REASONS_KEY, str(max(CloseReason)))))
        except grpc.aio.UsageError as error:
            raise self._closed_error() from error


__all__ = ["SERVER_LIMIT_RETRY_S", "SERVER_LIMIT_TIMEOUT_S", "Client", "check_token"]
