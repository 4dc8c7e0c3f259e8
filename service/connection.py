"""``StreamConnection``: one ``Stream`` RPC, from domain requests to domain responses, in frame order.

Three cooperating tasks:

- the *reader* takes requests (:class:`~service.request_reads.RequestReads`, whose read outlives a cancelled
  reader, so that a drain or a takeover can still read the client's half-close): ``open`` goes to the
  :class:`SessionManager`; each frame gets a response slot in the output queue (so responses leave in frame order
  whatever finishes first), is checked and decoded (on the event loop or the decode pool:
  :mod:`service.decode_scheduling`), and waits in the stream's :class:`PendingFrames`;
- the *pump* feeds pending frames one at a time (a frame needs the state its predecessor produced) to the
  model runner, which batches them with other streams' frames, and folds each result into the session
  (:func:`~service.frame_processing.process_frame`);
- the *writer* (the :meth:`StreamConnection.run` generator itself) yields responses as their slots resolve.

Errors that concern one frame resolve its slot with a ``FrameError``; errors that end the stream raise
:class:`StreamAbort` from :meth:`StreamConnection.run` after every earlier response has been yielded. A failed
read of the requests (the client is gone) raises :class:`RequestsLost` and keeps the stream resumable; any
other exception is a server bug, raised as is (the stream's state is freed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service.batcher import BatcherClosed, DeadlinePassed
from service.decode_scheduling import cheap_to_decode, run_timed
from service.errors import ErrorCode, FrameRejected, StreamAbort
from service.frame_answers import admission_problem, frame_dropped, frame_error, shutdown_drop, stale_drop
from service.frame_processing import process_frame
from service.images import ModelView, fit_frame
from service.logs import RateLimitedWarning
from service.metrics import Metrics
from service.open_checks import loggable_stream_id
from service.pending import PendingFrames
from service.reply_budget import REPLIES_IN_TRANSIT, ReplyBudget
from service.request_reads import RequestReads
from service.session import ReleaseReason
from service.sessions import Session, SessionManager
from service.shared_memory import SharedMemoryFrames, fit_shared_frame
from service.staleness import frame_deadline, is_past
from service.tracing import FrameTraceStart, FrameTracing
from service.types import (
    CloseReason,
    CloseRequest,
    DropReason,
    EncodedImage,
    FrameDropped,
    FrameError,
    FrameRequest,
    FrameResponse,
    FrameResult,
    ImageEncoding,
    OpenRequest,
    StreamClosed,
    StreamRequest,
    StreamResponse,
)

_log = logging.getLogger(__name__)
_MAX_UNANSWERED = 64
HALF_CLOSE_QUIET_S = 2.0
"""A call the server ends itself while its client may still write (a drain, a takeover, a revoked token), and a
call whose client sent a close (requests after it are not acted on), ends once the client has ended its requests
(the slotstream client does as it reads the call's ``StreamClosed``, and with its close), or once no request has
come for this long: ending it while the client still writes makes grpc.aio clients report ``INTERNAL``
and lose the final message and status (grpc/grpc#36066). A client that goes on writing has not read the
``StreamClosed`` yet (it waits behind the replies its application has not taken), so the wait goes on, for
:data:`HALF_CLOSE_LONGEST_S` at most. Frames sent meanwhile are dropped unanswered."""
HALF_CLOSE_LONGEST_S = 30.0
"""Longest such a call waits for its client to end its requests (see :data:`HALF_CLOSE_QUIET_S`)."""
_CLOSE_REASONS = {
    ErrorCode.TAKEN_OVER: CloseReason.TAKEN_OVER,
    ErrorCode.UNAUTHENTICATED: CloseReason.TOKEN_REVOKED,
    ErrorCode.ENDED_BY_OPERATOR: CloseReason.ENDED_BY_OPERATOR,
}
"""For each code that ends a call that may still be writing: the reason of the ``StreamClosed`` sent before the
status."""
_ENDED_WHILE_WRITING = frozenset(_CLOSE_REASONS)
"""The codes with which :meth:`StreamConnection.evict` takes a stream from a client that may still be writing (a resume
elsewhere, a revoked token, an operator's ``Admin.EndStream``), so that its status waits for the client's half-close
(:data:`HALF_CLOSE_QUIET_S`); the other evictions are of clients that stopped reading or sending."""


class RequestsLost(ConnectionError):
    """Reading the stream's requests failed: the client is gone. Its stream was detached (resumable) or freed."""


class _Evicted:
    """Resolves response slots of a connection whose stream was taken away."""


class _Abandoned:
    """Resolves the response slot of a frame that a server bug interrupted: it gets no answer, the stream ends."""


_DECODED = EncodedImage(ImageEncoding.UNSPECIFIED, b"")
"""The image a frame request keeps once its pixels are decoded (see ``StreamConnection._accept``)."""
_EVICTED = _Evicted()
_ABANDONED = _Abandoned()
_END = object()
_DETACH = object()
"""Queued by a call whose requests ended without a close, after its last answers: the writer detaches (or frees) the
stream once gRPC has taken them, so they count as answered (:meth:`StreamConnection.run`)."""


@dataclass(frozen=True)
class _Lost:
    """The request side failed (the client vanished): end like a disconnect, keeping resumable state."""

    error: Exception


class _ReadFailed(Exception):
    """Raised by the reader when the request iterator itself failed (the transport, not the server's code)."""


Slot = asyncio.Future[StreamResponse | _Evicted | _Abandoned]


@dataclass
class _Pending:
    request: FrameRequest
    frame: np.ndarray
    view: ModelView | None  # where the model's input lies in the frame (None: all of it), for the mask outputs
    slot: Slot
    received_ns: int
    received: float
    decode_s: float  # decoding and fitting the image, without any wait for a decode thread
    deadline: float | None  # perf_counter time after which it must not reach the model (max_staleness_s)


def _unparsed(error: Exception) -> bool:
    """Whether ``error`` ended the call because a request's bytes did not parse: the call ends with it, but the
    stream is detached as on a lost connection (the client's next call may resume it), not freed, since the
    frames before it were good."""
    return isinstance(error, StreamAbort) and error.code == ErrorCode.MALFORMED_REQUEST


class StreamConnection:
    """One ``Stream`` RPC.

    Args:
        manager: the session manager.
        decode_executor: where images are decoded.
        metrics: where to count.
        max_image_pixels: largest accepted image.
        check_jpeg_data: refuse JPEG frames whose image data libjpeg finds damaged (``--jpeg-damage-check``).
        max_pending_frames: frames a stream may queue before flow control applies (non-live mode).
        max_buffered_reply_bytes: bound on the finished replies the stream holds while its client is not reading:
            the stream takes at most ``max(1, min(64, this // reply-size bound, --resume-history))`` frames ahead
            of the replies the client has taken, and no more than the server-wide reply budget has room for
            (:meth:`SessionManager.reserve_replies`, at least one); further frames wait (gRPC flow control then
            slows the client).
        peer: the client's address, for logs.
        newest_close_reason: the highest ``CloseReason`` the client knows (:data:`service.types.CLOSE_REASONS_KEY`):
            a call it would have to end with a later one ends with its status alone.
        frame_error_log: warns about the frames answered with a ``FrameError`` (shared by every connection, so one
            bad camera or many cannot flood the log); ``None``: a warning per code at most every
            :data:`~service.logs.WARNING_INTERVAL_S`, for this connection alone.
        tracing: records each answered frame as a span (``--otlp-endpoint``); ``None``: tracing is off.
        shared_memory: read frames from shared memory when the call comes from this host (``--shared-memory``).
    """

    def __init__(
        self,
        manager: SessionManager,
        decode_executor: Executor,
        metrics: Metrics,
        *,
        max_image_pixels: int,
        max_pending_frames: int,
        max_buffered_reply_bytes: int,
        check_jpeg_data: bool = True,
        peer: str = "",
        newest_close_reason: int = CloseReason.TAKEN_OVER,
        frame_error_log: RateLimitedWarning | None = None,
        tracing: FrameTracing | None = None,
        shared_memory: bool = False,
    ) -> None:
        self._manager = manager
        self._tracing = tracing
        self._shared_frames = SharedMemoryFrames(shared_memory, peer, 3 * max_image_pixels)
        self._trace_starts: dict[Slot, FrameTraceStart] = {}  # frames accepted and not yet answered, when tracing
        self._decode_executor = decode_executor
        self._metrics = metrics
        self._max_image_pixels = max_image_pixels
        self._check_jpeg_data = check_jpeg_data
        self._max_pending_frames = max_pending_frames
        self._max_buffered_reply_bytes = max_buffered_reply_bytes
        self._peer = peer
        self._newest_close_reason = newest_close_reason
        self._closed_sent = False  # a StreamClosed is the call's last message: at most one is sent
        self._frame_error_log = frame_error_log or RateLimitedWarning(_log, "frame rejected", "frames")
        self._requested_stream_id = ""
        self._out: asyncio.Queue[Slot | Exception | object] = asyncio.Queue()
        self._window = asyncio.Semaphore(_MAX_UNANSWERED)  # replaced at open, sized to the replies
        self._reserved_reply_bytes = 0  # of the server's reply budget, from the open to the end of the call
        self._reply_bound = 0
        self._slots: set[Slot] = set()
        self._session: Session | None = None
        self._pending: PendingFrames[_Pending] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._requests: RequestReads[StreamRequest] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._current: tuple[Slot, FrameRequest] | None = None
        self._awaiting_request = False
        self._draining = False
        self._eviction: StreamAbort | None = None
        self._handler: asyncio.Task[object] | None = None
        self._ending: asyncio.Future[None] | None = None  # see evict
        self._replying = False
        self.finished = asyncio.Event()

    @property
    def stream_id(self) -> str:
        """The stream's id once it is open, else the id its open asked for as :func:`loggable_stream_id` shows it
        (empty before an open, or when the open asked for none)."""
        return self._session.stream_id if self._session is not None else self._requested_stream_id

    @property
    def eviction(self) -> StreamAbort | None:
        """The abort with which the server took the stream away from this call (an idle reclaim, a resume on
        another connection), once it did; :meth:`run` raises it."""
        return self._eviction

    def bind_handler(self, task: asyncio.Task[object] | None) -> None:
        """The task of the RPC handler that iterates :meth:`run`: :meth:`drain` cancels it when the stream was
        evicted and the client is not reading."""
        self._handler = task

    # -- writer -------------------------------------------------------------------------------------------

    async def run(self, requests: AsyncIterable[StreamRequest]) -> AsyncIterator[StreamResponse]:
        """Serve the stream: consume ``requests``, yield responses.

        Args:
            requests: the client's requests; a failure of the iterator other than :class:`StreamAbort` (a
                malformed request) counts as the transport failing.

        Raises:
            StreamAbort: the stream ended with an error (after every earlier response was yielded).
            RequestsLost: reading the requests failed; the stream was detached or freed like on a disconnect.
            Exception: a bug in the server (the stream's state was freed).
        """
        self._requests = RequestReads(requests)
        self._reader = asyncio.create_task(self._read(self._requests), name="stream-reader")
        completed = unparsed = False
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _Lost):
                    raise RequestsLost("the request stream failed") from item.error
                if isinstance(item, Exception):
                    completed = True
                    raise item
                if item is _END:
                    completed = True
                    return
                if item is _DETACH:
                    if self._session is not None:
                        self._manager.disconnect(self._session, self)
                    continue
                assert isinstance(item, asyncio.Future)
                response = await item
                self._slots.discard(item)
                trace_start = self._trace_starts.pop(item, None)
                if isinstance(response, _Evicted):
                    continue  # what ends the call follows in the queue (see evict)
                if isinstance(response, _Abandoned):
                    continue  # the server error that interrupted it follows in the queue
                if isinstance(response, FrameResult | FrameDropped | FrameError):
                    self._answered(response)
                session = self._session if self._session is not None and self._session.owner is self else None
                if session is not None:  # gRPC takes the reply once the client reads (flow control); see reclaim
                    session.reply_waiting_since = self._manager.clock()
                self._replying = True
                yield response
                self._replying = False
                if trace_start is not None and isinstance(response, FrameResult | FrameDropped | FrameError):
                    self._trace(trace_start, response)
                if session is not None and session.owner is self:
                    session.reply_waiting_since = None
                    if session.handing_off and isinstance(response, StreamClosed):
                        self._manager.release(session, "drained")  # gRPC took the hand-off
        except StreamAbort as abort:
            unparsed = _unparsed(abort)
            completed = not unparsed  # a request that did not parse detaches the stream, released as "error"
            raise
        finally:
            self._cleanup(completed, "error" if unparsed else "cancelled")

    def _answered(self, response: FrameResponse) -> None:
        self._window.release()
        session = self._session
        if session is not None:
            if session.owner is self:  # after a takeover the new connection counts the stream's frames
                session.inflight = max(0, session.inflight - 1)
                session.activity.answered(response, self._manager.clock(), time.time_ns())
                self._manager.touch(session)
            model = session.model
        else:  # pragma: no cover - frames are only accepted after open
            model = ""
        metrics = self._metrics
        if isinstance(response, FrameResult):
            metrics.frames.labels(model, "result").inc()
            latency = response.latency
            metrics.decode_seconds.labels(model).observe(latency.decode_ms / 1e3)
            metrics.queue_seconds.labels(model).observe(latency.queue_ms / 1e3)
            metrics.inference_seconds.labels(model).observe(latency.inference_ms / 1e3)
            metrics.postprocess_seconds.labels(model).observe(latency.postprocess_ms / 1e3)
            metrics.e2e_seconds.labels(model).observe(latency.total_ms / 1e3)
        elif isinstance(response, FrameDropped):
            metrics.frames.labels(model, "dropped").inc()
            metrics.frames_dropped.labels(response.reason.name.lower()).inc()
        else:
            code = response.code.name.lower()
            metrics.frames.labels(model, "error").inc()
            metrics.frame_errors.labels(code).inc()
            self._frame_error_log(
                code,
                peer=self._peer,
                stream_id=response.stream_id,
                frame_index=response.frame_index,
                code=code,
                detail=response.message,
            )

    def _trace(self, start: FrameTraceStart, response: FrameResponse) -> None:
        """Record a frame gRPC just took the answer of (tracing is on: ``start`` exists)."""
        if self._tracing is not None:
            model = self._session.model if self._session is not None else ""
            self._tracing.record(start, response, model, time.time_ns())

    def _cleanup(self, completed: bool, detached_reason: ReleaseReason = "cancelled") -> None:
        for task in (self._reader, self._pump, self._ending):
            if task is not None and not task.done():
                task.cancel()
        if self._requests is not None:
            self._requests.cancel()
        self._manager.release_replies(self._reserved_reply_bytes)
        self._reserved_reply_bytes = 0
        session = self._session
        if session is not None and session.released is None and session.owner is self:
            if completed:
                self._manager.release(session, "error")
            else:  # a request that did not parse ends as "error" where a lost connection ends as "cancelled"
                self._manager.disconnect(session, self, detached_reason)
        self.finished.set()

    # -- control from the server --------------------------------------------------------------------------

    def evict(self, abort: StreamAbort) -> None:
        """End this stream now with ``abort`` (its session was taken over or reclaimed)."""
        if self._eviction is not None:
            return
        self._eviction = abort
        for task in (self._reader, self._pump):
            if task is not None and not task.done():
                task.cancel()
        if self._draining and self._replying and self._handler is not None:
            # Taken over while the drain waited for this client to read (its hand-off, a resume collected it on
            # another connection): as in drain, the parked send would hold the shutdown for its grace period.
            self._handler.cancel()
        for slot in list(self._slots):
            if not slot.done():
                slot.set_result(_EVICTED)
        # Drop the replies still queued: a stream is evicted when its client stopped reading (gRPC flow control
        # holds the reply being sent, and every finished reply would wait behind it in memory for as long as the
        # call stays open) or resumed it elsewhere. The abort goes next, after the reply gRPC already holds.
        while not self._out.empty():
            self._out.get_nowait()
        self._slots.clear()
        self._trace_starts.clear()
        if abort.code in _ENDED_WHILE_WRITING and self._requests is not None:
            # Said in the call too, before its status, which a write of the client racing the call's end would lose
            # (grpc.aio then reports INTERNAL): a takeover taken for a lost connection, a reconnect would take the
            # stream back; and a client that reads it stops sending, so the call ends at once, not once its frames
            # pause (a camera's never do: see HALF_CLOSE_LONGEST_S). Not to a client that does not know the reason
            # (it would take it for another), nor after the StreamClosed of a drain.
            reason = _CLOSE_REASONS[abort.code]
            if reason <= self._newest_close_reason and not self._closed_sent:
                self._emit(StreamClosed(self.stream_id, reason, None, abort.message))
            # The status follows once the client has stopped writing, as in a drain (see HALF_CLOSE_QUIET_S).
            self._ending = asyncio.ensure_future(self._end_after_half_close(abort, self._requests))
        else:  # its client stopped reading or sending: nothing races the status
            self._out.put_nowait(abort)
        # The dropped replies' room goes back to the server at once; what gRPC still holds stays reserved until the
        # call ends (a client that answers keepalive pings without reading keeps it open).
        in_transit = min(self._reserved_reply_bytes, REPLIES_IN_TRANSIT * self._reply_bound)
        self._manager.release_replies(self._reserved_reply_bytes - in_transit)
        self._reserved_reply_bytes = in_transit

    async def _end_after_half_close(self, abort: StreamAbort, requests: RequestReads[StreamRequest]) -> None:
        """End the call with ``abort`` once the client has ended its requests (see :data:`HALF_CLOSE_QUIET_S`)."""
        await requests.discard_until_end(HALF_CLOSE_QUIET_S, HALF_CLOSE_LONGEST_S)
        self._out.put_nowait(abort)

    def end_detached(self, code: ErrorCode, why: str) -> None:
        """End this call now with ``code`` (the server took the call's right to the stream away, such as its revoked
        bearer token) and a message of ``why`` followed by what became of the stream: detached, as on a lost
        connection, so that its client can resume it on another call within its resume window; freed (``error``)
        when it has none. Through :meth:`evict`; does nothing once the stream was taken from this call."""
        if self._eviction is not None:
            return
        session, message = self._session, why
        if session is not None and session.released is None and session.owner is self:
            self._manager.disconnect(session, self, "error")
            if session.detached_at is not None:
                window = session.options.resume_window_s
                message += (
                    f"; stream {session.stream_id!r} is detached: resume it on a new call within its resume window "
                    f"({window:g} s)"
                )
            else:
                message += f"; stream {session.stream_id!r} had no resume window, so its state is freed"
        self.evict(StreamAbort(code, message))

    async def drain(self) -> None:
        """Stop reading frames, answer every accepted frame, send the hand-off state and end with UNAVAILABLE
        once the client has ended its requests (see :data:`HALF_CLOSE_QUIET_S`).

        A frame being decoded when the drain starts still counts as accepted. Returns when the stream ended.
        """
        self._draining = True
        if self._eviction is not None and self._replying and self._handler is not None:
            # Its stream is gone and its client is not reading: nothing is left to answer, and the parked send
            # would hold the shutdown for its whole grace period.
            self._handler.cancel()
            return
        self.end_unopened()
        await self.finished.wait()

    def _may_collect_handoff(self) -> bool:
        """While draining: whether this call, not opened yet, may still be a client resuming a detached stream to
        collect its hand-off (its open is then read; a fresh open is refused)."""
        return self._session is None and self._manager.phase == "draining" and self._manager.collectable_count() > 0

    def end_unopened(self) -> None:
        """While draining: end this call if it has not opened and no stream is left for it to collect."""
        if self._draining and not self._may_collect_handoff() and self._awaiting_request and self._reader is not None:
            self._reader.cancel()

    # -- reader -------------------------------------------------------------------------------------------

    async def _read(self, requests: RequestReads[StreamRequest]) -> None:
        end: CloseRequest | None = None
        try:
            end = await self._read_requests(requests)
        except asyncio.CancelledError:
            if not self._draining or self._eviction is not None:
                raise
            if self._current is not None and not self._current[0].done():
                self._current[0].set_result(shutdown_drop(self._session, self._current[1]))
        except StreamAbort as abort:
            await self._stop_pump()
            self._out.put_nowait(abort)
            return
        except _ReadFailed as failed:  # the transport failed: end as a disconnect instead of hanging
            error = failed.__cause__ if isinstance(failed.__cause__, Exception) else failed
            _log.warning("request stream failed: %r", error, extra={"peer": self._peer})
            self._out.put_nowait(_Lost(error))
            return
        except Exception as error:  # a server bug in opening or accepting: end the stream with it (INTERNAL)
            await self._stop_pump()  # answers the frames already accepted
            for slot in self._slots:
                if not slot.done():
                    slot.set_result(_ABANDONED)
            self._out.put_nowait(error)
            return
        finally:
            self._awaiting_request = False
        await self._finish(end)

    async def _read_requests(self, requests: RequestReads[StreamRequest]) -> CloseRequest | None:
        while not self._draining or self._may_collect_handoff():
            self._awaiting_request = True
            # A call that never opens must not hold the server's resources: its first request has a time limit.
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can return a request that arrived as the call
            # ended, swallowing the cancel, and the open would then outlive its call. An open stream's frames go
            # without one (asyncio.timeout costs about 3.6 us a request on a 2-core CPU, a nullcontext 0.5 us).
            opening = self._session is None
            limit = asyncio.timeout(self._manager.limits.open_timeout_s) if opening else contextlib.nullcontext()
            try:
                async with limit:
                    request = await requests.next()
            except StopAsyncIteration:
                if opening:  # a client bug would otherwise end with OK and nothing said
                    raise StreamAbort(
                        ErrorCode.NOT_OPEN,
                        "the requests ended before an open: the first request of a call must be an open",
                    ) from None
                return None
            except TimeoutError:
                raise StreamAbort(
                    ErrorCode.NOT_OPEN,
                    f"no open within {self._manager.limits.open_timeout_s:g} s (--open-timeout-s): the first "
                    "request of a call must be an open",
                ) from None
            except StreamAbort:
                raise
            except Exception as error:
                raise _ReadFailed from error
            finally:
                self._awaiting_request = False
            if isinstance(request, OpenRequest):
                self._open(request)
            elif isinstance(request, FrameRequest):
                await self._accept(request)
            elif self._session is None:
                raise StreamAbort(ErrorCode.NOT_OPEN, "close before open: the first request must be an open")
            else:
                return request
        return None

    def _open(self, request: OpenRequest) -> None:
        if self.finished.is_set():  # the call ended (cleaned up) while this open was read: nothing may outlive it
            raise asyncio.CancelledError
        if self._session is not None:
            self._manager.metrics.open_rejected.labels(ErrorCode.ALREADY_OPEN.name.lower()).inc()
            raise StreamAbort(ErrorCode.ALREADY_OPEN, "this stream is already open; send one open per Stream call")
        self._requested_stream_id = loggable_stream_id(request.stream_id)
        session, opened = self._manager.open(request, self, peer=self._peer)
        self._session = session
        bound = max(1, opened.max_reply_bytes)
        unanswered = self._max_buffered_reply_bytes // bound
        # At most the resume history ahead of the replies taken: a stream whose client stopped reading (detached
        # for a resume, see SessionManager.reclaim) must still hold the state after the last reply it was sent.
        ahead = min(_MAX_UNANSWERED, unanswered, self._manager.limits.resume_history)
        # and at most what the server-wide budget has room for (at least one reply; given back in evict and _cleanup)
        ahead = self._manager.reserve_replies(bound, ahead)
        self._reply_bound = bound
        self._reserved_reply_bytes = ReplyBudget.stream_bytes(bound, ahead)
        self._window = asyncio.Semaphore(ahead)
        self._pending = PendingFrames[_Pending](self._max_pending_frames, session.options.live)
        self._emit(dataclasses.replace(opened, max_frames_ahead=ahead))  # the client is told the window it got
        self._pump = asyncio.create_task(self._run_pump(session, self._pending), name="stream-pump")
        if self._manager.phase == "draining":  # a detached stream resumed to collect its hand-off: drain at once
            self._draining = True

    async def _accept(self, request: FrameRequest) -> None:
        received, received_ns = time.perf_counter(), time.time_ns()
        session, pending = self._session, self._pending
        if session is None or pending is None:
            raise StreamAbort(ErrorCode.NOT_OPEN, "frame before open: the first request must be an open")
        await self._window.acquire()  # waits while the client has not taken enough earlier replies
        accepted = time.perf_counter()
        slot = self._new_slot()
        if self._tracing is not None:
            self._trace_starts[slot] = FrameTraceStart.of(request, received_ns)
        session.inflight += 1
        session.activity.taken()
        self._manager.touch(session)
        last = session.last_accepted_index
        if session.last_received_index is None or request.frame_index > session.last_received_index:
            session.last_received_index = request.frame_index
        problem = admission_problem(request, last)
        if problem is not None:
            slot.set_result(frame_error(session, request, problem))
            return
        deadline = frame_deadline(request.capture_time_ns, session.options.max_staleness_s)
        if is_past(deadline):  # too old already: not worth decoding
            session.last_accepted_index = request.frame_index
            slot.set_result(stale_drop(session, request, "when it arrived"))
            return
        self._current = (slot, request)
        size, fit = session.runner.card.image_size, session.options.frame_fit
        shared = self._shared_frames if request.image.shared_memory is not None else None
        try:
            if shared is None and cheap_to_decode(request.image, size, fit):  # a thread hop would cost more
                fitted = fit_frame(request.image, size, self._max_image_pixels, fit, self._check_jpeg_data)
                decode_s = time.perf_counter() - accepted
            else:  # a frame in shared memory is read there too (one at a time per call: frames are read in order)
                fitted, decode_s = await run_timed(
                    self._decode_executor,
                    fit_shared_frame,
                    shared,
                    request.image,
                    size,
                    self._max_image_pixels,
                    fit,
                    self._check_jpeg_data,
                )
        except FrameRejected as rejected:
            slot.set_result(frame_error(session, request, rejected))
            self._current = None
            return
        session.last_accepted_index = request.frame_index
        # The encoded image is not needed once decoded: a waiting frame holds its model input alone (a few KB
        # for the default model), not the up to --max-message-bytes it arrived as; nor its trace context, which
        # the trace start keeps (bounded) when tracing is on.
        request = dataclasses.replace(request, image=_DECODED, traceparent="", tracestate="")
        item = _Pending(request, fitted.pixels, fitted.view, slot, received_ns, received, decode_s, deadline)
        superseded = await pending.put(item)
        self._current = None
        if superseded is not None:
            message = f"frame {request.frame_index} arrived before this one reached the model (live mode)"
            superseded.slot.set_result(frame_dropped(session, superseded.request, DropReason.SUPERSEDED, message))

    async def _finish(self, end: CloseRequest | None) -> None:
        await self._stop_pump()
        session = self._session
        if session is None:
            shutting_down = StreamAbort(ErrorCode.SHUTTING_DOWN, "this server is shutting down; use another replica")
            self._out.put_nowait(shutting_down if self._draining else _END)
            return
        handoff = session.handoff()
        if self._draining and end is None:  # a close read before the drain began is honoured as a close
            # released as "drained" once gRPC takes the StreamClosed (run), as "lost" if the call ends first
            self._manager.begin_handoff(session)
            if handoff is None:  # no frame processed yet: there is no state to hand off
                message = (
                    "this server is shutting down before it processed a frame of this stream, so there is no "
                    "hand-off: open a new stream on another replica with the same options"
                )
                ending = message
            else:
                message = "this server is shutting down: continue the stream on another replica with this hand-off"
                ending = f"{message} (StreamClosed.handoff)"
            self._emit(StreamClosed(session.stream_id, CloseReason.SERVER_DRAINING, handoff, message))
            assert self._requests is not None
            await self._requests.discard_until_end(HALF_CLOSE_QUIET_S, HALF_CLOSE_LONGEST_S)
            self._out.put_nowait(StreamAbort(ErrorCode.SHUTTING_DOWN, ending))
            return
        if end is None:
            # The requests ended without a close: the client half-closed, or it cancelled and gRPC delivered the
            # end of the requests before the cancellation (it does when the event loop was busy). Either way the
            # stream ended without closing, like a lost connection: it waits detached for its resume window, or
            # without one is freed as "cancelled". It is let go once its last answers are written (see _DETACH); if
            # the call fails first, the call's end does it.
            self._out.put_nowait(_DETACH)
        else:
            self._manager.release(session, "closed")
        keep = handoff if end is not None and end.return_state else None
        self._emit(StreamClosed(session.stream_id, CloseReason.CLIENT_CLOSED, keep))
        if end is not None and self._requests is not None:
            # Requests after a close are dropped unread, and the status waits for the client's half-close (the
            # slotstream client sends it with the close): ending the call under a client that still writes makes
            # grpc.aio report INTERNAL instead of OK (grpc/grpc#36066).
            await self._requests.discard_until_end(HALF_CLOSE_QUIET_S, HALF_CLOSE_LONGEST_S)
        self._out.put_nowait(_END)

    async def _stop_pump(self) -> None:
        if self._pending is not None:
            await self._pending.close()
        if self._pump is not None:
            await self._pump

    # -- pump ---------------------------------------------------------------------------------------------

    async def _run_pump(self, session: Session, pending: PendingFrames[_Pending]) -> None:
        while (item := await pending.get()) is not None:
            try:
                response: FrameResponse = await process_frame(self._manager, self._decode_executor, session, item)
            except FrameRejected as rejected:
                response = frame_error(session, item.request, rejected)
            except DeadlinePassed:
                response = stale_drop(session, item.request, "when it was to reach the model")
            except BatcherClosed:
                response = shutdown_drop(session, item.request)
            except Exception as error:  # a bug must cost one frame, not the server
                _log.exception("frame failed", extra={"stream_id": session.stream_id})
                failed = FrameRejected(ErrorCode.INFERENCE_FAILED, repr(error))
                response = frame_error(session, item.request, failed)
            if not item.slot.done():
                item.slot.set_result(response)

    # -- helpers ------------------------------------------------------------------------------------------

    def _new_slot(self) -> Slot:
        slot: Slot = asyncio.get_running_loop().create_future()
        self._slots.add(slot)
        self._out.put_nowait(slot)
        return slot

    def _emit(self, response: StreamResponse) -> None:
        self._closed_sent = self._closed_sent or isinstance(response, StreamClosed)
        self._new_slot().set_result(response)
