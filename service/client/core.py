"""The async client: :class:`Client` (a connection) and :class:`ClientStream` (one camera stream)."""

from __future__ import annotations

import asyncio
import io
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from service import wire
from service.auth import ERROR_CODE_KEY
from service.config import MAX_GRPC_MESSAGE_BYTES
from service.engine import ModelCard
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.types import (
    CloseRequest,
    EncodedImage,
    FrameDropped,
    FrameError,
    FrameRequest,
    FrameResponse,
    FrameResult,
    ImageEncoding,
    OpenRequest,
    ResumeRequest,
    StateHandoff,
    StreamClosed,
    StreamOpened,
    StreamOptions,
)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
FRAME_FIELDS_BYTES = 256
"""Room a frame request needs besides its image bytes and ``camera_frame_id`` (indices, times, sizes, tags)."""
ImageLike = np.ndarray | bytes | bytearray | memoryview | EncodedImage
_T = TypeVar("_T")


class StreamError(Exception):
    """The server ended the stream (or refused the call) with a gRPC status.

    Attributes:
        status: the gRPC status code.
        code: the slotstream :class:`ErrorCode` from the ``slotstream-error-code`` trailer, if any.
        message: the server's explanation.
    """

    def __init__(self, status: grpc.StatusCode, code: ErrorCode | None, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.code = code
        self.message = message

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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS connection.

    Attributes:
        root_ca: CA that signed the server certificate (``None``: the system roots).
        cert: client certificate, for servers that require mutual TLS.
        key: the client certificate's private key.
        server_name: overrides the name checked against the server certificate.
    """

    root_ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise ValueError(f"TLS: a client {given} needs its {missing} too (mutual TLS takes both), or neither")


class Client:
    """A connection to a slotstream server.

    Example:
        >>> async with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
        ...     stream = await client.open(StreamOptions(live=True))
        ...     result = await stream.process(frame)  # frame: uint8 [H, W, 3]
        ...     await stream.close()

    Args:
        target: ``host:port``.
        token: bearer token, for servers that require one.
        tls: TLS files; ``None`` for a plaintext connection.
        max_message_bytes: largest message sent or received.
        channel_options: more gRPC channel options, applied after this client's own (so they can override
            them); for example ``[("grpc.lb_policy_name", "round_robin")]`` with a ``dns:///`` target of a
            headless Service spreads the streams of one client over every pod behind it.

    Raises:
        RuntimeError: no event loop is running; a gRPC channel belongs to the loop it was made in, so create the
            client inside the coroutine that uses it (see :func:`service.client.stream_frames` for blocking use).
        ValueError: ``max_message_bytes`` outside 1 .. 2**31 - 1.
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
        self.target = target
        self.max_message_bytes = max_message_bytes
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "create the Client inside the async function that uses it: its gRPC channel belongs to the running "
                "event loop (for blocking code use service.client.stream_frames)"
            ) from None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            *channel_options,
        ]
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.root_ca.read_bytes() if tls.root_ca else None,
                private_key=tls.key.read_bytes() if tls.key else None,
                certificate_chain=tls.cert.read_bytes() if tls.cert else None,
            )
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.PerceptionStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (open streams end)."""
        await self._channel.close()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the server reports SERVING on its health service.

        Raises:
            TimeoutError: not serving within ``timeout_s``; the message carries the last status seen (a
                server still loading its model, or why the connection fails: refused, a TLS handshake that
                does not complete, a missing token...).
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

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
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.target} is not serving after {timeout_s} s (last: {last})")
            await asyncio.sleep(0.1)

    async def describe(self, model: str = "") -> ModelCard:
        """The model card of ``model`` (``""``: the server's default).

        Raises:
            StreamError: unknown model, missing token, ...
        """
        try:
            reply = await self._stub.Describe(pb.DescribeRequest(model=model), metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise StreamError.from_rpc_error(error) from error
        return wire.card_from_proto(reply)

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
                ``max_message_bytes`` (``INVALID_OPEN``; the stream is closed again).
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
            StreamError: unknown or expired stream, wrong token, resume point too old, ...
        """
        request = OpenRequest(stream_id, model, StreamOptions(), ResumeRequest(resume_token, last_frame_index))
        stream = ClientStream(self)
        stream.last_answered_index = last_frame_index
        await stream._start(request)
        return stream

    def _call(self) -> Any:
        return self._stub.Stream(metadata=self._metadata)


class ClientStream:
    """One open stream. Send frames with :meth:`send`, read answers with :meth:`receive` (one per frame, in
    order), or do both with :meth:`process`. The stream remembers what it needs to :meth:`reconnect`.

    Attributes:
        opened: the server's answer to the latest open.
        handoff: the latest state the server exported (results with output STATE, or a close/drain).
        last_answered_index: the highest index of a frame that got an answer (where :meth:`reconnect` resumes;
            an answer to a frame sent with a lower index, such as its ``FRAME_INDEX_NOT_INCREASING`` error,
            does not lower it).
        closed: the server's final message, once received.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._call: Any = None
        self._request: OpenRequest | None = None
        self._unanswered: OrderedDict[int, FrameRequest] = OrderedDict()
        self._next_index = 0
        self.opened: StreamOpened | None = None
        self.handoff: StateHandoff | None = None
        self.last_answered_index: int | None = None
        self.closed: StreamClosed | None = None

    @property
    def stream_id(self) -> str:
        """The stream's id."""
        assert self.opened is not None
        return self.opened.stream_id

    @property
    def next_frame_index(self) -> int:
        """The index :meth:`send` gives the next frame when none is passed."""
        return self._next_index

    @property
    def unanswered(self) -> list[int]:
        """Indices of frames sent and not yet answered."""
        return list(self._unanswered)

    async def _start(self, request: OpenRequest) -> None:
        self._call = self._client._call()
        self._request = request
        await self._write(request)
        message = await self._read()
        if not isinstance(message, StreamOpened):
            raise StreamError(grpc.StatusCode.INTERNAL, None, f"expected StreamOpened, got {message!r}")
        if message.max_reply_bytes > self._client.max_message_bytes:
            await self._close_unread()
            raise StreamError(
                grpc.StatusCode.FAILED_PRECONDITION,
                ErrorCode.INVALID_OPEN,
                f"stream {message.stream_id!r}: a frame reply can be {message.max_reply_bytes:,} bytes, more than "
                f"this client receives (max_message_bytes {self._client.max_message_bytes:,}); raise "
                "max_message_bytes, or ask for a smaller mask size, uint8 soft masks or fewer outputs. The stream "
                "was closed",
            )
        self.opened = message
        if request.handoff is not None and self.handoff is None:
            self.handoff = request.handoff  # the state this stream continues from, until the server exports one
        self._request = OpenRequest(message.stream_id, message.model, message.options)
        if message.last_frame_index is not None:
            self._next_index = max(self._next_index, message.last_frame_index + 1)

    async def send(
        self,
        image: ImageLike,
        *,
        frame_index: int | None = None,
        capture_time_ns: int | None = None,
        camera_frame_id: str = "",
        jpeg_quality: int | None = None,
    ) -> int:
        """Send one frame; returns its index.

        Args:
            image: uint8 ``[H, W, 3]`` RGB (sent raw, or as JPEG when ``jpeg_quality`` is set), JPEG/PNG file
                bytes, or an :class:`EncodedImage`.
            frame_index: defaults to one more than the previous frame's.
            capture_time_ns: defaults to now.
            camera_frame_id: echoed in the answer.
            jpeg_quality: encode arrays as JPEG at this quality (1-95).

        Raises:
            ValueError: the encoded image does not fit one message of the client's ``max_message_bytes`` (gRPC
                would otherwise fail the whole stream with ``RESOURCE_EXHAUSTED``); nothing is sent.
        """
        index = self._next_index if frame_index is None else frame_index
        encoded = encode_image(image, jpeg_quality)
        limit = self._client.max_message_bytes - FRAME_FIELDS_BYTES - len(camera_frame_id.encode())
        if len(encoded.data) > limit:
            size = f" {encoded.width}x{encoded.height}" if encoded.width else ""
            encoding = ImageEncoding(encoded.encoding).name
            raise ValueError(
                f"frame {index}: the {encoding}{size} image is {len(encoded.data):,} bytes, more "
                f"than one message carries (max_message_bytes "
                f"{self._client.max_message_bytes:,}); send it as JPEG (jpeg_quality=...) or raise "
                "max_message_bytes here and --max-message-bytes on the server"
            )
        request = FrameRequest(
            frame_index=index,
            image=encoded,
            capture_time_ns=time.time_ns() if capture_time_ns is None else capture_time_ns,
            camera_frame_id=camera_frame_id,
        )
        self._unanswered[index] = request
        self._next_index = max(self._next_index, index + 1)  # an explicit lower index never moves it back
        await self._write(request)
        return index

    async def receive(self) -> FrameResponse | StreamClosed:
        """The next answer: a frame's result, drop notice or error, or the final :class:`StreamClosed`.

        Raises:
            StreamError: the stream ended with an error status (for example UNAVAILABLE while the server
                shuts down; :attr:`handoff` then holds the state to continue elsewhere).
            EOFError: the stream ended without a final message.
        """
        message = await self._read()
        if isinstance(message, FrameResult | FrameDropped | FrameError):
            self._unanswered.pop(message.frame_index, None)
            # Never backwards: an error for a frame sent with a stale index must not move the resume point.
            if self.last_answered_index is None or message.frame_index > self.last_answered_index:
                self.last_answered_index = message.frame_index
            if isinstance(message, FrameResult) and message.state is not None:
                self.handoff = message.state
            return message
        if isinstance(message, StreamClosed):
            self.closed = message
            if message.handoff is not None:
                self.handoff = message.handoff
            return message
        raise StreamError(grpc.StatusCode.INTERNAL, None, f"unexpected message {message!r}")

    async def process(self, image: ImageLike, **kwargs: Any) -> FrameResponse:
        """Send one frame and wait for its answer (no other frame may be outstanding)."""
        index = await self.send(image, **kwargs)
        response = await self.receive()
        if isinstance(response, StreamClosed) or response.frame_index != index:
            got = "the stream's close" if isinstance(response, StreamClosed) else f"frame {response.frame_index}'s"
            raise StreamError(
                grpc.StatusCode.INTERNAL,
                None,
                f"expected the answer to frame {index}, got {got} answer: process() needs every earlier frame "
                "answered first (use send() and receive() to keep several frames in flight)",
            )
        return response

    async def close(self, return_state: bool = False) -> list[FrameResponse | StreamClosed]:
        """Close the stream: the server answers every frame sent, then sends :class:`StreamClosed`.

        Returns:
            The answers that were still to come, ending with the :class:`StreamClosed`.
        """
        await self.close_writing(return_state)
        remaining: list[FrameResponse | StreamClosed] = []
        while self.closed is None:
            remaining.append(await self.receive())
        return remaining

    async def close_writing(self, return_state: bool = False) -> None:
        """Send the close request without waiting; keep calling :meth:`receive` until :class:`StreamClosed`."""
        await self._write(CloseRequest(return_state=return_state))
        await self._call.done_writing()

    def cancel(self) -> None:
        """Drop the connection without closing the stream (as a network failure would)."""
        if self._call is not None:
            self._call.cancel()

    async def reconnect(self, client: Client | None = None) -> StreamOpened:
        """Continue the stream on a new call, then re-send the frames that were never answered.

        First tries to resume (same server, within the stream's resume window); if that server does not
        know the stream and a :attr:`handoff` state is known, continues from it instead (any server with
        the same model version).

        Args:
            client: where to reconnect (default: the same client).

        Raises:
            StreamError: neither resume nor hand-off is possible.
        """
        assert self.opened is not None and self._request is not None
        self._client = client or self._client
        self.cancel()
        self.closed = None
        resume = ResumeRequest(self.opened.resume_token, self.last_answered_index)
        base = self._request
        try:
            await self._start(OpenRequest(base.stream_id, base.model, base.options, resume=resume))
        except StreamError as error:
            gone = (ErrorCode.UNKNOWN_STREAM, ErrorCode.STREAM_EXPIRED, ErrorCode.SHUTTING_DOWN, ErrorCode.TAKEN_OVER)
            if self.handoff is None or error.code not in gone:
                raise
            await self._start(OpenRequest(base.stream_id, base.model, base.options, handoff=self.handoff))
        assert self.opened is not None
        start = self.opened.last_frame_index
        pending = [request for index, request in self._unanswered.items() if start is None or index > start]
        self._unanswered.clear()
        for request in pending:
            self._unanswered[request.frame_index] = request
            await self._write(request)
        return self.opened

    async def _write(self, request: OpenRequest | FrameRequest | CloseRequest) -> None:
        try:
            await self._call.write(wire.request_to_proto(request))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
            # A write fails when the call has already ended: report the call's own status, not the write's.
            await self._raise_status()
            if isinstance(error, grpc.aio.AioRpcError):
                raise StreamError.from_rpc_error(error) from error
            raise StreamError(grpc.StatusCode.CANCELLED, None, "the stream has already ended") from error

    async def _close_unread(self, timeout_s: float = 5.0) -> None:
        """Close the stream and end the call without decoding what the server still sends (best effort: on a
        timeout or error the call is cancelled and the server treats the stream as disconnected)."""

        async def drain() -> None:
            await self.close_writing()
            while await self._call.read() is not grpc.aio.EOF:
                pass

        try:
            await asyncio.wait_for(drain(), timeout_s)
        except (TimeoutError, StreamError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        finally:
            self._call.cancel()

    async def _read(self) -> Any:
        call = self._call
        while True:
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as error:
                raise StreamError.from_rpc_error(error) from error
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if call.cancelled() and not (task is not None and task.cancelling()):
                    # The call was cancelled under this read (cancel() or reconnect()), not the reading task.
                    raise StreamError(
                        grpc.StatusCode.CANCELLED,
                        None,
                        "the call this read waited on was cancelled (cancel() or "
                        "reconnect()); receive again after reconnect() to read the stream's new call",
                    ) from None
                raise
            if message is grpc.aio.EOF:
                await self._raise_status()
                raise EOFError("the stream ended without a final message")
            response = wire.response_from_proto(message)
            if response is not None:
                return response

    async def _raise_status(self) -> None:
        code = await self._call.code()
        if code != grpc.StatusCode.OK:
            metadata = await self._call.trailing_metadata()
            raise StreamError.from_status(code, metadata, await self._call.details())


async def send_while_receiving(send: Coroutine[Any, Any, None], receive: Coroutine[Any, Any, _T]) -> _T:
    """Run a stream's sending loop and its receiving loop together, so that neither fails unnoticed.

    ``receive`` decides when the exchange is over: its result (or exception) is the outcome, and a sender
    still running then (for example waiting for a window slot after the server closed the stream) is
    cancelled. If ``send`` raises while ``receive`` is still running, ``receive`` is cancelled at once and
    the sender's exception is raised: a failing frame source (a corrupt image, an iterable that raises)
    never sends the close, so without this the receiver would wait for the server's idle timeout and end
    with ``STREAM_EXPIRED``, losing the real error.

    Args:
        send: writes the frames (and usually the close); runs as its own task.
        receive: reads the answers; runs as its own task.

    Returns:
        What ``receive`` returns.
    """
    sender = asyncio.ensure_future(send)
    receiver = asyncio.ensure_future(receive)
    try:
        await asyncio.wait((sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        if not receiver.done() and not sender.cancelled() and (error := sender.exception()) is not None:
            raise error
        return await receiver
    finally:
        sender.cancel()
        receiver.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


def check_jpeg_quality(quality: int, name: str = "jpeg_quality") -> None:
    """Raise ``ValueError`` (naming ``name``) unless ``quality`` is a JPEG quality Pillow honours (1-95; it clamps
    others silently)."""
    if not 1 <= quality <= 95:
        raise ValueError(f"{name} must be between 1 and 95, got {quality}")


def encode_image(image: ImageLike, jpeg_quality: int | None = None) -> EncodedImage:
    """An image as sent on the wire (see :meth:`ClientStream.send`).

    Raises:
        ValueError: an array that is not uint8 ``[H, W, 3]``, bytes that are neither JPEG nor PNG, or a
            ``jpeg_quality`` outside 1-95 (Pillow would clamp it silently).
    """
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)
    if isinstance(image, EncodedImage):
        return image
    if isinstance(image, bytearray | memoryview):
        image = bytes(image)
    if isinstance(image, bytes):
        if image.startswith(b"\xff\xd8"):
            return EncodedImage(ImageEncoding.JPEG, image)
        if image.startswith(b"\x89PNG"):
            return EncodedImage(ImageEncoding.PNG, image)
        raise ValueError("image bytes must be a JPEG or PNG file; send arrays for raw pixels")
    if not isinstance(image, np.ndarray):
        raise ValueError(
            "a frame must be a uint8 [H, W, 3] array, JPEG or PNG bytes, or an EncodedImage, got "
            f"{type(image).__name__}"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frames must be uint8 [H, W, 3] RGB arrays, got {image.dtype} {image.shape}")
    if jpeg_quality is not None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=jpeg_quality)
        return EncodedImage(ImageEncoding.JPEG, buffer.getvalue())
    height, width, _ = image.shape
    return EncodedImage(ImageEncoding.RAW_RGB8, np.ascontiguousarray(image).tobytes(), height, width, 3)


__all__ = ["Client", "ClientStream", "StreamError", "TlsFiles", "encode_image", "send_while_receiving"]
