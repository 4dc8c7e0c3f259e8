"""One camera stream of the async client: :class:`ClientStream` (sending, answers in order, close, reconnect).

The plumbing is beside it: the call it uses in :mod:`service.client.stream_call` (its ordered writes in
:mod:`service.client.writes` and its reading in :mod:`service.client.reader`), its account of the frames sent in
:mod:`service.client.frame_ledger`, checked requests in :mod:`service.client.requests` sized to the message limits
by :mod:`service.client.frame_sizing`, and the errors' explanations in :mod:`service.client.explain`."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import grpc

from service.client.encoding import ImageLike
from service.client.errors import StreamError
from service.client.explain import (
    closed_error,
    closing_error,
    process_running_error,
    reply_too_large_error,
    stale_handoff_error,
    staleness_ignored_error,
    unanswered_error,
    unkept_stream_error,
)
from service.client.frame_ledger import FrameLedger
from service.client.frame_sizing import sized_frame_request
from service.client.requests import check_open_request
from service.client.shared_frames import refuses_shared_memory, with_bytes
from service.client.stream_call import StreamCall
from service.errors import ErrorCode
from service.types import (
    CloseReason,
    CloseRequest,
    FrameDropped,
    FrameError,
    FrameRequest,
    FrameResponse,
    FrameResult,
    OpenRequest,
    ResumeRequest,
    StreamClosed,
    StreamOpened,
)

if TYPE_CHECKING:
    from service.client.connection import Client


_NOT_RESUMABLE = (ErrorCode.UNKNOWN_STREAM, ErrorCode.STREAM_EXPIRED, ErrorCode.SHUTTING_DOWN, ErrorCode.TAKEN_OVER)
"""The codes of a resume refused because the server does not keep the stream for this call:
:meth:`ClientStream.reconnect` then continues it another way."""


class ClientStream(StreamCall):
    """One open stream. Send frames with :meth:`send`, read answers with :meth:`receive` (one per frame, in
    order), or do both with :meth:`process`. The stream remembers what it needs to :meth:`reconnect`.

    Cancelling a task that waits in :meth:`receive` or :meth:`process` (for example an ``asyncio.wait_for``
    timeout) leaves the stream usable: a frame already handed to :meth:`send` is still sent and answered, and the
    answer to a frame whose :meth:`process` was cancelled is skipped when it arrives. One :meth:`process` at a
    time per stream.

    What counts as sent after the call ends (a shutdown, a dropped connection): every frame :meth:`send` took
    (even when ``send()`` then raised), and the frame of a cancelled :meth:`process`, which :meth:`reconnect`
    re-sends; but not the frame of a :meth:`process` that raised because the call ended before its answer came:
    that frame is withdrawn, so retrying ``process()`` with it after :meth:`reconnect` sends it once, under its
    own index, and the stream continues exactly as if it had not been interrupted.

    The server may end a stream itself: on shutdown it answers the frames it accepted and sends a
    :class:`StreamClosed` with reason ``SERVER_DRAINING`` and the stream's state. :meth:`receive` returns that
    message (as it returns every answer), and from then on every operation but :meth:`close` raises
    :class:`StreamError` with status ``UNAVAILABLE`` (code ``SHUTTING_DOWN``), the server's message and the state
    in ``error.handoff`` (also in :attr:`handoff`); :meth:`process` raises that error at once. :meth:`close`
    returns normally when every frame was answered, and raises it otherwise. :meth:`reconnect` continues the
    stream on another server.

    Attributes:
        opened: the server's answer to the latest open.
        handoff: the latest state the server exported (results with output STATE, or a close/drain), or the one
            the stream was opened with. Without the STATE output it falls behind once later frames are answered;
            :meth:`reconnect` then refuses to continue from it rather than rewind the stream.
        last_answered_index: the highest index of a frame that got an answer (where :meth:`reconnect` resumes;
            an answer to a frame sent with a lower index, such as its ``FRAME_INDEX_NOT_INCREASING`` error,
            does not lower it).
        closed: the server's final message, once received (reason ``CLIENT_CLOSED`` after :meth:`close`,
            ``SERVER_DRAINING`` when the server shut down first).
    """

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._prepare_lock = asyncio.Lock()  # frames are checked and recorded one at a time, in the order sent
        self._request: OpenRequest | None = None
        self._frames = FrameLedger()
        self._closing = False  # the close request was sent
        self._processing = False  # a process() is running
        self.last_answered_index: int | None = None

    @property
    def client(self) -> Client:
        """The client whose connection the stream's call uses (the latest :meth:`reconnect`'s, when it was given
        one)."""
        return self._client

    @property
    def stream_id(self) -> str:
        """The stream's id."""
        assert self.opened is not None
        return self.opened.stream_id

    @property
    def next_frame_index(self) -> int:
        """The index :meth:`send` gives the next frame when none is passed."""
        return self._frames.next_index

    @property
    def unanswered(self) -> list[int]:
        """Indices of frames sent whose answers :meth:`receive` has still to return (without the frames of a
        :meth:`process` that was cancelled, whose answers it skips)."""
        return self._frames.waiting

    async def _start(self, request: OpenRequest) -> None:
        check_open_request(request)  # options that cannot be sent fail here, before a call is made
        self._new_call()
        self._request = request
        self.closed = None
        self._closing = False
        try:
            await self._write(request)
            message = await self._read()
        except asyncio.CancelledError:
            self.cancel()  # an open given up half-way: end its call now rather than when the channel closes
            raise
        if not isinstance(message, StreamOpened):
            raise StreamError(grpc.StatusCode.INTERNAL, None, f"expected StreamOpened, got {message!r}")
        if message.max_reply_bytes > self._client.max_message_bytes:
            await self._close_unread()
            raise reply_too_large_error(message, self._client.max_message_bytes)
        asked_staleness_s = request.options.max_staleness_s if request.resume is None else 0.0  # resumes keep theirs
        if asked_staleness_s > 0 and message.options.max_staleness_s <= 0:
            await self._close_unread()
            raise staleness_ignored_error(message, asked_staleness_s)
        self.opened = message
        self._handed_off = False
        self._frames.note_folded(message.last_frame_index)
        if request.handoff is not None and self.handoff is None:
            self.handoff = request.handoff  # the state this stream continues from, until the server exports one
        self._request = OpenRequest(message.stream_id, message.model, message.options)
        if message.last_frame_index is not None:
            self._frames.next_index = max(self._frames.next_index, message.last_frame_index + 1)

    async def send(
        self,
        image: ImageLike,
        *,
        frame_index: int | None = None,
        capture_time_ns: int | None = None,
        camera_frame_id: str = "",
        jpeg_quality: int | None = None,
        traceparent: str = "",
        tracestate: str = "",
    ) -> int:
        """Send one frame; returns its index.

        Every argument is checked before anything is sent or recorded, so a refused frame leaves the stream as
        it was. Once checked, the frame counts as sent: it is sent even if the task awaiting this call is
        cancelled, and if the call has ended (the error below) :meth:`reconnect` re-sends it. Frames go in the
        order their ``send()`` calls began, even from several tasks.

        Frames are sized to one message of the client's ``max_message_bytes`` or, when it is lower, of the
        server's ``--max-message-bytes`` (:attr:`Client.server_max_request_bytes`, read once per client when the
        first frame request larger than 1 MiB comes: a server takes at least that much; after a failed read, again
        at most every :data:`~service.client.connection.SERVER_LIMIT_RETRY_S`). An array whose raw pixels
        do not fit is sent as PNG, lossless (the server decodes the same pixels, so the answers are those of raw),
        encoded in a worker thread (about 0.7 s for 3840x2160); JPEG or PNG bytes and an :class:`EncodedImage` go
        as they are. A ``send()`` cancelled while the server's limit is read or its frame encoded sends nothing.

        Args:
            image: uint8 ``[H, W, 3]`` RGB (sent raw, as PNG when raw does not fit one message, or as JPEG when
                ``jpeg_quality`` is set), JPEG/PNG file bytes, or an :class:`EncodedImage`.
            frame_index: an integer in the int64 range; defaults to one more than the previous frame's.
            capture_time_ns: an integer in the int64 range; defaults to now.
            camera_frame_id: text (UTF-8 encodable), echoed in the answer.
            jpeg_quality: encode arrays as JPEG at this quality (1-95).
            traceparent, tracestate: the frame's W3C trace context (empty: none), for a server that exports traces
                to record the frame in the caller's trace (the proto's ``Frame.traceparent``). With
                OpenTelemetry, ``TraceContextTextMapPropagator().inject(carrier)`` fills a dict with both.

        Raises:
            TypeError: ``frame_index`` or ``capture_time_ns`` is not an integer, or ``camera_frame_id``,
                ``traceparent`` or ``tracestate`` not a str.
            ValueError: an argument out of range (int64, JPEG quality), a ``frame_index`` of a frame still in
                flight (sent, not answered yet), a ``camera_frame_id`` UTF-8 cannot encode, a trace context that is
                not ASCII or longer than a server reads, an image that is not a frame (the message starts ``frame
                N:``), or an image that does not fit one message of the client's ``max_message_bytes`` or the
                server's ``--max-message-bytes`` (raw and as PNG, for an array; the message says which limit and what
                to change; gRPC would otherwise fail the whole stream with ``RESOURCE_EXHAUSTED``); nothing is sent.
            StreamError: the stream is closed or closing, the server ended it (``UNAVAILABLE`` after a drain), or
                its call ended or was cancelled.
        """
        async with self._prepare_lock:
            request = await self._prepare(
                image, frame_index, capture_time_ns, camera_frame_id, jpeg_quality, traceparent, tracestate
            )
            self._frames.record(request)
        await self._write(request)
        return request.frame_index

    async def receive(self) -> FrameResponse | StreamClosed:
        """The next answer: a frame's result, drop notice or error, or the final :class:`StreamClosed`.

        The :class:`StreamClosed` is returned whoever closed the stream: check its ``reason``, or call again,
        which raises. A server that shuts down sends it with reason ``SERVER_DRAINING`` and the state to continue
        from (also kept in :attr:`handoff`).

        Raises:
            StreamError: the stream ended with an error status, or the :class:`StreamClosed` was already
                returned: status ``UNAVAILABLE`` (code ``SHUTTING_DOWN``) with the server's message and
                ``error.handoff`` when the server ended the stream (:meth:`reconnect` continues it elsewhere),
                ``FAILED_PRECONDITION`` after this client's own :meth:`close`; or its call was cancelled
                (:meth:`cancel`, :meth:`reconnect` while this waited) or its client closed.
            EOFError: the stream ended without a final message.
        """
        if self.closed is not None:
            raise closed_error(self.closed, self.handoff)
        while True:
            message = await self._read()
            if isinstance(message, FrameResult | FrameDropped | FrameError):
                skipped = self._frames.answered(message)
                # Never backwards: an error for a frame sent with a stale index must not move the resume point.
                if self.last_answered_index is None or message.frame_index > self.last_answered_index:
                    self.last_answered_index = message.frame_index
                if isinstance(message, FrameResult) and message.state is not None:
                    self.handoff = message.state
                if skipped:
                    continue  # its process() was cancelled: nobody waits
                return message
            if isinstance(message, StreamClosed):
                self.closed = message
                if message.handoff is not None:
                    self.handoff = message.handoff
                    self._handed_off = True  # the server released the stream: no resume window keeps it there
                return message
            raise StreamError(grpc.StatusCode.INTERNAL, None, f"unexpected message {message!r}")

    async def process(self, image: ImageLike, **kwargs: Any) -> FrameResponse:
        """Send one frame and wait for its answer (no other frame may be outstanding, and one ``process()`` at a
        time per stream). Takes :meth:`send`'s keyword arguments.

        Either the frame's answer is returned, or, when this raises :class:`StreamError` because the stream's
        call ended before the answer came (a server shutdown, a dropped connection, a cancel), the frame does not
        count as sent: :meth:`reconnect` does not re-send it, :attr:`next_frame_index` is its index again, and
        the state the stream continues from never includes it (a resume rewinds to the last answered frame; a
        hand-off holds the state after it). So the natural retry, ``await stream.reconnect(other)`` then
        ``process()`` with the same frame, continues the stream exactly as if it had not been interrupted
        (skipping the frame instead is just as safe).

        Cancelling the task awaiting this (an ``asyncio.wait_for`` timeout) keeps the stream usable: the frame is
        still sent, so it counts as sent (:meth:`reconnect` re-sends it if its answer never came), and its answer
        is skipped when it comes, so the next ``process()`` gets its own. The same holds for a frame still in
        flight on a live call when ``process()`` raised (an answer to another frame in its place). A cancel that
        comes while the frame is still being prepared (encoded as PNG, or the server's limit read: see
        :meth:`send`) sends nothing.

        Raises:
            StreamError: ``UNAVAILABLE`` (code ``SHUTTING_DOWN``, ``error.handoff`` set) when the server ended
                the stream, for example on shutdown; ``FAILED_PRECONDITION`` when another task is in
                ``process()`` on this stream, or frames sent earlier still await answers (:meth:`receive` them
                first; :meth:`reconnect` re-sends unanswered frames), and nothing is sent then; or as
                :meth:`send` and :meth:`receive` raise.
            TypeError, ValueError: as :meth:`send` raises; nothing is sent.
        """
        if self._processing:
            raise process_running_error()
        frame_index = kwargs.pop("frame_index", None)
        capture_time_ns = kwargs.pop("capture_time_ns", None)
        camera_frame_id = kwargs.pop("camera_frame_id", "")
        jpeg_quality = kwargs.pop("jpeg_quality", None)
        traceparent, tracestate = kwargs.pop("traceparent", ""), kwargs.pop("tracestate", "")
        if kwargs:
            raise TypeError(f"process() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        self._processing = True
        try:
            async with self._prepare_lock:
                self._check_sendable()
                self._check_none_waiting()  # here: a send() this lock held back may have left a frame unanswered
                request = await self._prepare(
                    image, frame_index, capture_time_ns, camera_frame_id, jpeg_quality, traceparent, tracestate
                )
                index = request.frame_index
                next_index = self._frames.next_index
                self._frames.record(request)
        except BaseException:
            self._processing = False
            raise
        try:
            try:
                await self._write(request)
            except StreamError as error:
                # The call ended under the write: the server's last messages tell why (a drain's StreamClosed).
                final = await self._final_error(error, index)
                if not isinstance(final, StreamError):
                    return final  # the server took the frame and answered it before ending the call
                if final is error:
                    raise
                raise final from error
            response = await self.receive()
            if isinstance(response, StreamClosed):
                raise closed_error(response, self.handoff)
            if response.frame_index != index:
                raise StreamError(
                    grpc.StatusCode.INTERNAL,
                    None,
                    f"expected the answer to frame {index}, got frame {response.frame_index}'s answer: process() "
                    "needs every earlier frame answered first (use send() and receive() to keep several frames in "
                    "flight)",
                )
        except (StreamError, EOFError):
            if index in self._frames.unanswered:
                if self._call_ended():
                    self._frames.withdraw(index, next_index)
                else:
                    self._frames.abandoned.add(index)  # still in flight on a live call: it is answered, and skipped
            raise
        except BaseException:
            # Cancelled (a wait_for timeout): nobody waits for this frame's answer any more, but the frame goes
            # out all the same, so it counts as sent (reconnect() re-sends it, for the recurrent state) and its
            # answer is skipped.
            if index in self._frames.unanswered:
                self._frames.abandoned.add(index)
            raise
        finally:
            self._processing = False
        return response

    async def close(self, return_state: bool = False) -> list[FrameResponse | StreamClosed]:
        """Close the stream: the server answers every frame sent, then sends :class:`StreamClosed`.

        Closing a closed stream sends nothing and returns ``[stream.closed]``.

        Returns:
            The answers that were still to come, ending with the :class:`StreamClosed` (reason
            ``SERVER_DRAINING`` if the server shut down first, having answered every frame).

        Raises:
            StreamError: the server ended the stream before answering every frame sent (``UNAVAILABLE``,
                ``error.handoff`` set; :attr:`unanswered` names the frames, :meth:`reconnect` re-sends them), or
                its call ended or was cancelled.
        """
        if self.closed is not None:
            if self.closed.reason != CloseReason.CLIENT_CLOSED and self.unanswered:
                raise closed_error(self.closed, self.handoff)
            return [self.closed]
        if not self._closing:
            try:
                await self.close_writing(return_state)
            except StreamError:
                if self._call.cancelled() or self._client.closed:
                    raise
                # The call ended under the write: what the server sent before ending it says why (a drain's
                # StreamClosed, after the last answers); without it, receive() raises the call's status.
        remaining: list[FrameResponse | StreamClosed] = []
        while self.closed is None:
            remaining.append(await self.receive())
        if self.closed.reason != CloseReason.CLIENT_CLOSED and self.unanswered:
            raise closed_error(self.closed, self.handoff)
        return remaining

    async def close_writing(self, return_state: bool = False) -> None:
        """Send the close request without waiting; keep calling :meth:`receive` until :class:`StreamClosed`.

        Does nothing when the close was already sent.

        Raises:
            StreamError: the server ended the stream, or its call ended or was cancelled.
        """
        if self._closing:
            return
        self._check_sendable()
        self._closing = True
        try:
            await self._write(CloseRequest(return_state=return_state), done_writing=True)
        except StreamError:
            self._closing = False  # the close did not go out: later operations report the call's own end
            raise

    def cancel(self) -> None:
        """Drop the connection without closing the stream (as a network failure would). The stream's next
        operations raise :class:`StreamError` until :meth:`reconnect`."""
        if self._call is not None:
            self._call.cancel()
            self._drop_writes()
        if self._reader is not None:
            self._reader.abort(self._cancelled_error)

    async def reconnect(self, client: Client | None = None) -> StreamOpened:
        """Continue the stream on a new call, then re-send the frames that were sent but never answered.

        First tries to resume (same server, within the stream's resume window; not tried when the server granted
        no window or released the stream with its state); if that server does not
        know the stream and a :attr:`handoff` state is known, continues from it instead (any server with
        the same model version); if no frame has reached the stream's state yet (a shutdown before its first
        result), opens it anew with the same id and options, which is exact as there is no state to lose. A
        :attr:`handoff` older than the newest result is not used: this client does not keep the frames answered
        since, so continuing from it would silently rewind the recurrent state; ask for the ``STATE`` output to keep
        it current. The answers to the re-sent frames come first: :meth:`receive` them (while
        :attr:`unanswered` is not empty) before :meth:`process` takes new frames; the answers to frames of a
        cancelled :meth:`process` are skipped. A frame whose :meth:`process` raised because the call ended is
        not re-sent (it never counted as sent): retry it with :meth:`process`. A frame sent through shared memory
        (:class:`~service.client.shared_frames.SharedFrameRing`) is re-sent with its pixels in the request when the
        server the stream continued on does not read shared memory. Every frame thus reaches the
        recurrent state exactly once, in order, and the results equal an uninterrupted stream's. A call the server
        was ending (its :class:`StreamClosed` received) first gets up to
        :data:`~service.client.reader.SERVER_END_WAIT_S` to end with its status, so that the server knows its
        hand-off was read.

        Args:
            client: where to reconnect (default: the same client).

        Raises:
            StreamError: neither resume, hand-off nor a new start is possible: the resume's own error, or
                ``FAILED_PRECONDITION`` (code ``RESUME_POINT_UNAVAILABLE``) when the only state known is older than
                the newest result, naming both frames.
        """
        assert self.opened is not None and self._request is not None
        if self._reader is not None:  # first: a reconnect cancelled during this wait leaves the stream as it was
            await self._reader.let_the_server_end()
        self._client = client or self._client
        self.cancel()
        base = self._request
        not_kept = unkept_stream_error(self.opened, handed_off=self._handed_off)
        if not_kept is None:
            resume = ResumeRequest(self.opened.resume_token, self.last_answered_index)
            try:
                await self._start(OpenRequest(base.stream_id, base.model, base.options, resume=resume))
            except StreamError as error:
                if error.code not in _NOT_RESUMABLE:
                    raise
                not_kept = error
        if not_kept is not None:
            await self._continue_without_resume(base, not_kept)
        assert self.opened is not None
        pending = self._frames.keep_after(self.opened.last_frame_index)  # unanswered until answered
        if any(request.image.shared_memory is not None for request in pending):
            pending = await self._unshared_unless_read(pending)
        for request in pending:
            await self._write(request)
        return self.opened

    # -- internals ------------------------------------------------------------------------------------------

    async def _unshared_unless_read(self, pending: list[FrameRequest]) -> list[FrameRequest]:
        """For :meth:`reconnect`: ``pending``, the frames to send again, with the pixels of those in shared memory
        put in their requests when the server the stream continued on does not read shared memory for this client
        (its model card says; one that cannot be read changes nothing), so that it answers them as the first
        server would have rather than refusing them (:func:`~service.client.shared_frames.with_bytes`)."""
        if not await refuses_shared_memory(self):
            return pending
        pending = [dataclasses.replace(request, image=with_bytes(request.image)) for request in pending]
        for request in pending:
            self._frames.replace(request)
        return pending

    async def _continue_without_resume(self, base: OpenRequest, not_kept: StreamError) -> None:
        """For :meth:`reconnect`, where the server does not keep the stream (``not_kept`` says why): continue it
        from its hand-off, or open it anew when no frame reached its state yet; else raise ``not_kept``."""
        assert self.opened is not None
        folded = self._frames.folded_index
        if self.handoff is None and folded is None:
            # Nothing reached the state yet: a new stream starts from the same (initial) state.
            await self._start(OpenRequest(base.stream_id, base.model, base.options))
        elif self.handoff is None:
            raise not_kept
        elif folded is not None and folded > self.handoff.last_frame_index:
            raise stale_handoff_error(self.opened, not_kept, self.handoff, folded) from not_kept
        else:
            await self._start(OpenRequest(base.stream_id, base.model, base.options, handoff=self.handoff))

    async def _prepare(
        self,
        image: ImageLike,
        frame_index: int | None,
        capture_time_ns: int | None,
        camera_frame_id: str,
        jpeg_quality: int | None,
        traceparent: str,
        tracestate: str,
    ) -> FrameRequest:
        """The checked request for a frame (see :meth:`send`), sized to the client's limit or the server's when it
        is lower (:func:`~service.client.frame_sizing.sized_frame_request`); called with ``_prepare_lock`` held,
        so no other frame is recorded meanwhile."""
        return await sized_frame_request(
            lambda: self._client,
            self._frames,
            self._check_sendable,
            image,
            frame_index,
            capture_time_ns,
            camera_frame_id,
            jpeg_quality,
            traceparent,
            tracestate,
        )

    def _check_none_waiting(self) -> None:
        """Raise unless every frame sent was answered (:meth:`process` needs that)."""
        waiting = self.unanswered
        if waiting:
            raise unanswered_error(waiting)

    def _check_sendable(self) -> None:
        """Raise the reason the stream takes no more requests, if there is one."""
        if self.closed is not None:
            raise closed_error(self.closed, self.handoff)
        if self._closing:
            raise closing_error(self.opened)

    async def _final_error(self, error: StreamError, index: int) -> StreamError | FrameResponse:
        """After the write of frame ``index`` failed because the call ended: the answer to that frame if the
        server still sent one (it took the frame just before ending the call), else the server's own close (a
        drain's StreamClosed, with its state) when it sent one before ending the call, else ``error``. Reads what
        is left of the call, so it is only for :meth:`process`, which has no other answers to wait for."""
        if self._reader is None or self.closed is not None:
            return error
        answer: FrameResponse | None = None
        try:
            while self.closed is None:
                response = await asyncio.wait_for(self.receive(), 5.0)
                if not isinstance(response, StreamClosed) and response.frame_index == index:
                    answer = response
        except (StreamError, EOFError, TimeoutError):
            pass
        if answer is not None:
            return answer
        if self.closed is None or self.closed.reason == CloseReason.CLIENT_CLOSED:
            return error
        return closed_error(self.closed, self.handoff)

    async def _close_unread(self, timeout_s: float = 5.0) -> None:
        """Close the stream and end the call without decoding what the server still sends (best effort: on a
        timeout or error the call is cancelled and the server treats the stream as disconnected)."""
        reader = self._reader
        assert reader is not None

        async def drain() -> None:
            await self.close_writing()
            while True:
                await reader.next()

        try:
            await asyncio.wait_for(drain(), timeout_s)
        except (TimeoutError, StreamError, EOFError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        finally:
            self.cancel()


__all__ = ["ClientStream"]
