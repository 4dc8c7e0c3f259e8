"""A blocking helper over the async client, for scripts and synchronous robot code."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from service.client.connection import Client
from service.client.daemon_calls import DaemonCalls
from service.client.encoding import ImageLike
from service.client.errors import StreamError
from service.client.exchange import send_while_receiving
from service.client.tls import TlsFiles
from service.types import CloseReason, FrameDropped, FrameResponse, StreamClosed, StreamOptions

_DONE = object()

TimedFrame = tuple[ImageLike, int | None]
"""A frame with its capture time, as :func:`stream_frames` takes it: ``(image, capture_time_ns)``, the time in
nanoseconds since the Unix epoch (``None``: the moment it is sent)."""


class _SourceExit(Exception):
    """A ``SystemExit`` or ``KeyboardInterrupt`` the frames iterator raised, carried as an ordinary exception:
    raised as itself on the shared loop, it would stop that loop for every stream. Re-raised as ``error`` in the
    caller's thread."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def _image_and_time(item: Any, index: int) -> tuple[Any, int | None]:
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
    """The next frame, ``_DONE`` at the end; an exit the iterator raises comes back as :class:`_SourceExit`."""
    try:
        return next(iterator, _DONE)
    except Exception:
        raise
    except BaseException as error:
        raise _SourceExit(error) from error


async def _unless_stopped(pending: Awaitable[Any], stopping: asyncio.Event) -> Any:
    """``pending``'s result, or ``_DONE`` as soon as ``stopping`` is set (``pending`` is then cancelled: a frame
    source blocked in its thread is left behind, its frame unused)."""
    task = asyncio.ensure_future(pending)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():  # stopped, or this wait was cancelled: the pending call's outcome is nobody's
            task.cancel()
    return task.result() if task.done() else _DONE


_loop_lock = threading.Lock()
_loop: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None


def client_loop() -> asyncio.AbstractEventLoop:
    """The event loop every blocking call of this process runs on, in a daemon thread started on first use (and
    again should that thread have ended).

    One loop for the whole process, not one per call: gRPC's asyncio layer binds its completion-queue poller to
    the loop it first runs on, and after that loop closes the poller keeps calling into it ("Event loop is closed"
    tracebacks on stderr), so a script calling :func:`stream_frames` for one video after another needs them all
    on one loop. gRPC's asyncio layer does not survive ``fork``: a forked child must not use the client its
    parent used (start child processes with ``spawn``, or before the first call).
    """
    global _loop
    with _loop_lock:
        if _loop is None or not _loop[1].is_alive():  # a loop is closed only once its thread has ended
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="slotstream-client-loop", daemon=True)
            thread.start()
            _loop = (loop, thread)
        return _loop[0]


def stream_frames(
    target: str,
    frames: Iterable[ImageLike | TimedFrame],
    options: StreamOptions | None = None,
    *,
    model: str = "",
    token: str | None = None,
    tls: TlsFiles | None = None,
    window: int = 2,
    jpeg_quality: int | None = None,
    close_timeout_s: float = 5.0,
    newest_only: bool = False,
) -> Iterator[FrameResponse]:
    """Stream ``frames`` through one stream and yield the answer to each, in order.

    Frames are read from ``frames`` lazily and up to ``window`` are in flight at once, so decoding or
    capturing the next frame overlaps with the server's work. Frame indices are 0, 1, 2, ... The stream runs on
    the process's :func:`client_loop`, so calls may follow one another (and run from several threads at once).
    Frames are sized to the server's message limit as :meth:`ClientStream.send` sizes them (an array whose raw
    pixels do not fit goes as PNG, lossless).

    Args:
        target: ``host:port``.
        frames: uint8 ``[H, W, 3]`` RGB arrays, JPEG/PNG bytes or :class:`EncodedImage` s, each alone or in an
            ``(image, capture_time_ns)`` pair (:data:`TimedFrame`) that gives its capture time (nanoseconds since
            the Unix epoch; ``None``, like an image alone: the moment it is sent). The answers echo it.
        options: stream options.
        model: model name (``""``: the server's default).
        token: bearer token.
        tls: TLS files.
        window: frames sent ahead of the answers (without live mode; with ``StreamOptions(live=True)`` every
            frame is sent as the iterator gives it, and the server answers those it had no time for as dropped).
        jpeg_quality: send arrays as JPEG at this quality instead of raw.
        close_timeout_s: leaving the loop early (``break``, an exception in its body) closes the stream at once,
            without waiting for the frames iterator's next frame, and waits this long for the answers to the
            frames in flight (which are dropped); a server that has not answered them by then, or a second
            Ctrl-C during the wait, cancels the call instead (the server then frees the stream, or keeps it for
            its resume window). Python closes the generator when the loop drops it; one kept in a variable is
            closed by its ``close()`` (or ``with contextlib.closing(stream_frames(...)) as answers:``).
        newest_only: for a loop slower than its camera (pair it with ``StreamOptions(live=True)``, under which
            the frames iterator is read at its own pace, not the model's or the loop's): each iteration yields the
            newest result or frame error that arrived since the previous one, and skips the older ones and every
            ``FrameDropped`` notice. Off (the default), every frame's answer is yielded, in order.

    Raises:
        StreamError: the server refused or ended the stream. A server that shuts down mid-stream ends it with
            status ``UNAVAILABLE`` (code ``SHUTTING_DOWN``) and its message, after answering the frames it
            accepted; the error's ``handoff`` holds the state to continue from with the async client
            (``Client.open(options, handoff=error.handoff)`` on another server).
        ValueError: a frame that is not an image or does not fit one message, or a tuple that is not an
            ``(image, capture_time_ns)`` pair (the message starts ``frame N:``); a capture time out of the int64
            range.
        TypeError: a capture time that is not an integer or ``None`` (the message starts ``frame N:``).
        Exception: whatever iterating ``frames`` raised. The stream is closed first and the answers to the
            frames already sent are yielded before it (those that come within ``close_timeout_s``; a loop
            that takes longer over them loses the rest).
    """
    answers: queue.Queue[Any] = queue.Queue(maxsize=1 if newest_only else max(window, 1) * 4)
    stopping = asyncio.Event()  # set on the loop when the caller leaves early: no more frames are sent
    # Threads of this call alone for the two blocking waits (on the shared loop's default executor, a few calls
    # that wait on their callers would take every thread from the rest), daemon threads so that a frames iterator
    # that never returns (a stalled camera) cannot hold up the interpreter's exit.
    frame_thread = DaemonCalls("slotstream-stream-frames")
    answer_thread = DaemonCalls("slotstream-stream-answers")

    async def run() -> None:
        async with Client(target, token=token, tls=tls) as client:
            stream = await client.open(options, model=model)
            slots = asyncio.Semaphore(max(window, 1))
            # Live mode: the server answers a frame still waiting for the model when a newer one comes as dropped,
            # so frames go as the iterator gives them; a window would read a camera only at the model's pace.
            live = stream.opened is not None and stream.opened.options.live

            all_sent = False

            async def send_all() -> None:
                nonlocal all_sent
                iterator = iter(frames)
                while True:
                    item: Any = await _unless_stopped(frame_thread.call(_next_frame, iterator), stopping)
                    if item is _DONE:  # a None frame is the caller's (a failed camera read): send() refuses it
                        break
                    frame, capture_time_ns = _image_and_time(item, stream.next_frame_index)
                    if not live and await _unless_stopped(slots.acquire(), stopping) is _DONE:
                        break
                    await stream.send(frame, capture_time_ns=capture_time_ns, jpeg_quality=jpeg_quality)
                all_sent = not stopping.is_set()
                await stream.close_writing()

            async def receive_all() -> None:
                while True:
                    answer = await stream.receive()
                    if isinstance(answer, StreamClosed):
                        # A server that shuts down closes its streams itself; that is an error only when frames
                        # were left unanswered or unsent (a drain right after the last answer is not).
                        ended_early = stream.unanswered or not all_sent
                        if answer.reason != CloseReason.CLIENT_CLOSED and ended_early:
                            raise StreamError.from_closed(answer, stream.handoff)
                        return
                    if not live:
                        slots.release()
                    if not newest_only:
                        await answer_thread.call(answers.put, answer)
                    elif not isinstance(answer, FrameDropped):
                        _put_replacing(answers, answer)

            await send_while_receiving(send_all(), receive_all(), settle_s=close_timeout_s, close=stream.close_writing)

    async def run_and_report() -> None:
        try:
            await run()
        except Exception as error:  # handed to the caller's thread
            await answer_thread.call(answers.put, error.error if isinstance(error, _SourceExit) else error)
        await answer_thread.call(answers.put, _DONE)

    loop = client_loop()
    call = asyncio.run_coroutine_threadsafe(run_and_report(), loop)
    try:
        while (item := answers.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    except KeyboardInterrupt:
        call.cancel()  # do not wait for the stream (it may be stuck connecting): cancel it
        raise
    finally:
        loop.call_soon_threadsafe(stopping.set)
        try:
            _wait_for_the_end(call, answers, close_timeout_s)
        finally:
            call.cancel()  # a no-op once the call has ended
            frame_thread.stop()
            answer_thread.stop()


def _put_replacing(answers: queue.Queue[Any], answer: FrameResponse) -> None:
    """Put ``answer`` in the one-place queue ``answers``, replacing an answer the caller has not taken yet."""
    while True:
        try:
            answers.put_nowait(answer)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):  # the caller may take it first
                answers.get_nowait()


def _wait_for_the_end(call: Future[None], answers: queue.Queue[Any], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for ``call`` to end, dropping the answers it still hands over (nobody reads them
    any more, and a full queue would hold the call up). Not while the interpreter exits (a generator still
    referenced then is closed by the clean-up of its module): the client loop's thread can no longer run the
    call to its end, so the wait would only hold the exit up."""
    deadline = time.monotonic() + timeout_s
    while not call.done() and time.monotonic() < deadline and not sys.is_finalizing():
        with contextlib.suppress(queue.Empty):
            answers.get(timeout=0.05)
