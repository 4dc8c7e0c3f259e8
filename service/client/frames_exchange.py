"""One :func:`~service.client.blocking.stream_frames` call's exchange on the client loop: reading the caller's frames
iterator, sending each frame within the window, handing the answers to the caller's thread, and continuing the
stream after a lost connection or a server's shutdown when the call allows reconnecting (:class:`FramesExchange`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import queue
import time
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any

from service.client.connection import Client
from service.client.daemon_calls import DaemonCalls
from service.client.errors import StreamError
from service.client.exchange import mark_seen, send_while_receiving
from service.client.reconnection import StreamClients, continue_stream, interruption, worth_reconnecting
from service.client.shared_frames import RingSender, refuses_shared_memory
from service.client.stream import ClientStream
from service.errors import ErrorCode
from service.types import MIN_IDLE_TIMEOUT_S, CloseReason, FrameDropped, FrameResponse, StreamClosed

DONE = object()
"""The end of the frames (or of a wait that was stopped)."""

_log = logging.getLogger("service.client")


class SourceExit(Exception):
    """A ``SystemExit`` or ``KeyboardInterrupt`` the frames iterator raised, carried as an ordinary exception:
    raised as itself on the shared loop, it would stop that loop for every stream. Re-raised as ``error`` in the
    caller's thread."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def image_and_time(item: Any, index: int) -> tuple[Any, int | None]:
    """The image and capture time of ``item``, frame ``index`` of :func:`stream_frames`: an image alone (sent with
    the moment it is sent as its capture time) or an ``(image, capture_time_ns)`` pair; the time's range is checked
    by ``send()``.

    Raises:
        ValueError: a tuple that is not a pair.
        TypeError: a capture time that is not an integer or ``None``.
    """
    if not isinstance(item, tuple):
        return item, None
    if len(item) != 2:
        raise ValueError(
            f"frame {index}: a frame is an image or an (image, capture_time_ns) pair, got a tuple of {len(item)}"
        )
    image, capture_time_ns = item
    if capture_time_ns is None:
        return image, None
    try:
        number = None if isinstance(capture_time_ns, bool) else operator.index(capture_time_ns)  # NumPy's too
    except TypeError:
        number = None
    if number is None:
        raise TypeError(
            f"frame {index}: the capture time of an (image, capture_time_ns) pair must be an integer (nanoseconds "
            f"since the Unix epoch) or None, got {type(capture_time_ns).__name__} {capture_time_ns!r}"
        )
    return image, number


def _next_frame(iterator: Iterator[Any]) -> Any:
    """The next frame, :data:`DONE` at the end; an exit the iterator raises comes back as :class:`SourceExit`."""
    try:
        return next(iterator, DONE)
    except Exception:
        raise
    except BaseException as error:
        raise SourceExit(error) from error


async def unless_stopped(pending: Awaitable[Any], stopping: asyncio.Event) -> Any:
    """``pending``'s result, or :data:`DONE` as soon as ``stopping`` is set (``pending`` is then cancelled: a frame
    source blocked in its thread is left behind, its frame unused)."""
    task = asyncio.ensure_future(pending)
    stopped = asyncio.ensure_future(stopping.wait())
    finished = False
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finished = task.done()
    finally:
        stopped.cancel()
        if not task.done():  # stopped, or this wait was cancelled: the pending call's outcome is nobody's
            task.cancel()
    return task.result() if finished else DONE


def put_replacing(answers: queue.Queue[Any], answer: FrameResponse) -> None:
    """Put ``answer`` in the one-place queue ``answers``, replacing an answer the caller has not taken yet."""
    while True:
        try:
            answers.put_nowait(answer)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):  # the caller may take it first
                answers.get_nowait()


class FramesExchange:
    """Sends the frames of an iterable over an opened stream, at most ``window`` unanswered at a time (every frame as
    it comes in live mode), and hands each answer to ``answers`` (or, with ``newest_only``, the newest result or
    error, replacing one not taken yet), until the stream is closed.

    With ``reconnect`` tries allowed, a lost connection, a server's shutdown (:func:`worth_reconnecting`) or an
    expiry after the caller kept the answers waiting (a stalled loop body: :meth:`_worth_a_try`) is followed by up to
    that many :meth:`ClientStream.reconnect` tries; the frames sent and not answered are re-sent, and the frame
    being read or sent when the call ended is sent after them, so every frame reaches the stream's state once, in
    order. A frame
    the continued state already holds but whose answer was lost with the call (a hand-off newer than the last
    answer) is logged and gets no answer.

    With a ``ring``, each frame goes through shared memory where the ring has room (:class:`RingSender`), while the
    server reads it: after a reconnect to another server that does not, the later frames go as bytes. In live mode
    with tries allowed, at most ``resume_history`` frames (the ``--resume-history`` of the server the stream is on)
    are unanswered at once, so a stalled loop body cannot let the server run past the point a resume can go back to.
    """

    def __init__(
        self,
        stream: ClientStream,
        frames: Iterable[Any],
        answers: queue.Queue[Any],
        stopping: asyncio.Event,
        *,
        window: int,
        jpeg_quality: int | None,
        newest_only: bool,
        frame_thread: DaemonCalls,
        answer_thread: DaemonCalls,
        ring: RingSender | None = None,
    ) -> None:
        self.stream, self.answers, self.stopping = stream, answers, stopping
        self.ring = ring
        self._frames = frames
        self._iterator: Iterator[Any] | None = None  # iter(frames), made on the loop when the first frame is read
        self._jpeg_quality, self._newest_only = jpeg_quality, newest_only
        self._frame_thread, self._answer_thread = frame_thread, answer_thread
        # Live mode: the server answers a frame still waiting for the model when a newer one comes as dropped, so
        # frames go as the iterator gives them (no limit); a window would read a camera only at the model's pace.
        live = stream.opened is not None and stream.opened.options.live
        self._limit: int | None = None if live else max(window, 1)  # the most frames unanswered at once
        self._reading: asyncio.Future[Any] | None = None  # the frames iterator's read under way, kept across calls
        self._current: Any = DONE  # the frame read and not sent yet (DONE: none)
        self._in_flight: set[int] = set()  # sent, not answered
        self._room = asyncio.Event()  # set when a frame leaves _in_flight
        self._longest_hand_over_s = 0.0  # of this call: how long the caller kept the receiver waiting, at most
        self._exhausted = False  # the iterator has ended
        self._all_sent = False  # every frame was sent (not stopped early)

    async def run(self, close_timeout_s: float, reconnect: int, clients: StreamClients) -> None:
        """Exchange every frame, continuing the stream with up to ``reconnect`` tries after each interruption worth
        one (``clients`` gives a new client for the tries after a server's shutdown, and closes those the stream
        no longer uses).

        Raises:
            StreamError: the server refused or ended the stream, or its call ended and could not be continued (the
                original error, with a note on the failed tries).
            SourceExit, Exception: what reading the frames raised (the answers to the frames sent come first).
        """
        opened = self.stream.opened
        if reconnect and opened is not None and opened.options.resume_window_s <= 0:
            _log.warning(
                "stream %s: the server keeps no resume window (its --max-resume-window-s is 0): a reconnection can "
                "only continue the stream from the state its last answer carried",
                opened.stream_id,
            )
        live = self._limit is None
        while True:
            if live and reconnect:
                self._limit = self._live_limit()
            self._longest_hand_over_s = 0.0
            try:
                await send_while_receiving(
                    self._send_all(), self._receive_all(), settle_s=close_timeout_s, close=self.stream.close_writing
                )
                return
            except StreamError as error:
                if not reconnect or self.stopping.is_set() or not self._worth_a_try(error):
                    raise
                # The caller leaving the loop ends the tries at once: nothing more is to be sent.
                if await unless_stopped(self._continue_after(error, reconnect, clients), self.stopping) is DONE:
                    raise

    def _live_limit(self) -> int | None:
        """The most frames a live stream to be continued keeps unanswered: the resume history of the server it is on
        (``None``: no limit, from a server that does not report one). A loop body that stalls must not let the
        server run further ahead of the last answer read than a resume can go back (it would be refused
        ``RESUME_POINT_UNAVAILABLE``)."""
        opened = self.stream.opened
        return opened.resume_history if opened is not None and opened.resume_history > 0 else None

    def _worth_a_try(self, error: StreamError) -> bool:
        """Whether ``error`` is worth a reconnection try: :func:`worth_reconnecting`, and an expiry (no frame came
        within the idle timeout) of a call during which the caller kept the receiver waiting for at least half that
        timeout (a loop body that stalled: the window filled, so no frame went out), which the last answer's state
        continues exactly. Not an expiry while the caller took its answers: the frames stopped coming (a camera
        gone), and a continued stream would expire again and again."""
        if error.code != ErrorCode.STREAM_EXPIRED:
            return worth_reconnecting(error)
        opened = self.stream.opened
        idle_timeout_s = opened.options.idle_timeout_s if opened is not None else 0.0
        return self._longest_hand_over_s >= max(idle_timeout_s, MIN_IDLE_TIMEOUT_S) / 2

    async def _send_all(self) -> None:
        stream = self.stream
        while not self._exhausted:
            if self._current is DONE:
                self._current = await self._read_next()
                if self._current is DONE:
                    break
            frame, capture_time_ns = image_and_time(self._current, stream.next_frame_index)
            if await unless_stopped(self._wait_for_room(), self.stopping) is DONE:
                break
            index = stream.next_frame_index
            self._in_flight.add(index)  # before the send: it may be answered first
            try:
                image = frame if self.ring is None else self.ring.image(frame, index)
                await stream.send(image, capture_time_ns=capture_time_ns, jpeg_quality=self._jpeg_quality)
            finally:
                if stream.next_frame_index > index:  # recorded: sent, or re-sent by reconnect()
                    self._current = DONE
                else:  # refused or cancelled before it counted as sent: it goes out next time
                    self._settle(index)
        self._all_sent = not self.stopping.is_set()
        await stream.close_writing()

    async def _read_next(self) -> Any:
        """The frames iterator's next frame, :data:`DONE` at its end or once the caller stopped. A read under way
        when the call ends is kept for the next call (after a reconnect), so no frame is lost with it."""
        if self._reading is None:
            if self._iterator is None:
                self._iterator = iter(self._frames)
            self._reading = asyncio.ensure_future(self._frame_thread.call(_next_frame, self._iterator))
            self._reading.add_done_callback(mark_seen)
        reading = self._reading
        try:
            item = await unless_stopped(asyncio.shield(reading), self.stopping)
        except asyncio.CancelledError:  # the call ended: the read, even one done meanwhile, is the next call's
            raise
        except BaseException:  # the frames iterator's own failure
            self._reading = None
            raise
        if reading.done():  # taken; else stopped while it reads
            self._reading = None
        if item is DONE and reading.done():
            self._exhausted = True
        return item

    async def _receive_all(self) -> None:
        stream = self.stream
        while True:
            answer = await stream.receive()
            if isinstance(answer, StreamClosed):
                # A server that shuts down closes its streams itself; that is an error only when frames were left
                # unanswered or unsent (a drain right after the last answer is not).
                ended_early = stream.unanswered or not self._all_sent
                if answer.reason != CloseReason.CLIENT_CLOSED and ended_early:
                    raise StreamError.from_closed(answer, stream.handoff)
                return
            self._settle(answer.frame_index)
            if not self._newest_only:
                waited = time.monotonic()
                await self._answer_thread.call(self.answers.put, answer)  # waits while the caller's queue is full
                self._longest_hand_over_s = max(self._longest_hand_over_s, time.monotonic() - waited)
            elif not isinstance(answer, FrameDropped):
                put_replacing(self.answers, answer)

    async def _continue_after(self, error: StreamError, reconnect: int, clients: StreamClients) -> None:
        """Continue the stream after ``error`` with up to ``reconnect`` tries.

        Raises:
            StreamError: ``error``, when no try succeeded (a note says how many were made, and the last failure).
        """
        stream = self.stream

        def client_for(last: StreamError) -> Client | None:
            return clients.new() if last.code == ErrorCode.SHUTTING_DOWN else None

        def before_try(last: StreamError, tries: int, wait_s: float) -> None:
            _log.warning(
                "stream %s: %s; reconnecting in %g s (try %d of %d)",
                stream.stream_id,
                interruption(last, stream.client.target),
                wait_s,
                tries,
                reconnect,
            )

        client_before = stream.client
        outcome = await continue_stream(stream, error, reconnect, client_for=client_for, before_try=before_try)
        if outcome.opened is None:
            if outcome.tries:
                tries = f"{outcome.tries} {'try' if outcome.tries == 1 else 'tries'}"
                error.add_note(f"{tries} to continue the stream failed (last: {outcome.last_error})")
            raise error
        opened = outcome.opened
        after = "its start" if opened.last_frame_index is None else f"frame {opened.last_frame_index}"
        _log.warning("stream %s: continued (%s) after %s", stream.stream_id, opened.kind.name.lower(), after)
        lost = sorted(self._in_flight - set(stream.unanswered))
        if lost:  # already in the state the stream continues from, and never to be answered
            _log.warning(
                "stream %s: the answers to frames %s were lost with the connection (the stream's state holds them)",
                stream.stream_id,
                ", ".join(map(str, lost)),
            )
            for index in lost:
                self._settle(index)
        if stream.client is not client_before:
            await clients.close_unused(stream.client)
        if self.ring is not None:  # the server may be another now, behind the same address (a crash, a restart)
            await self._check_shared_memory()

    async def _wait_for_room(self) -> None:
        """Wait until fewer than the limit's frames are unanswered (at once without a limit)."""
        while self._limit is not None and len(self._in_flight) >= self._limit:
            self._room.clear()
            await self._room.wait()

    def _settle(self, index: int) -> None:
        """Frame ``index`` is not in flight any more (answered, not sent, or its answer lost)."""
        self._in_flight.discard(index)
        self._room.set()
        if self.ring is not None:
            self.ring.settled(index)

    async def _check_shared_memory(self) -> None:
        """After a reconnect: stop sending through shared memory when the server the stream continued on does not
        read it for this client (a card that cannot be read leaves it on: the frames' answers will say). The frames
        the reconnect re-sent went with their pixels already (:meth:`ClientStream.reconnect`)."""
        stream = self.stream
        if await refuses_shared_memory(stream):
            _log.warning(
                "stream %s: the server it continued on does not read shared memory for this client: later frames "
                "go as bytes",
                stream.stream_id,
            )
            self.ring = None
