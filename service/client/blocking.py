"""A blocking helper over the async client, for scripts and synchronous robot code."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from service.client.connection import Client
from service.client.daemon_calls import DaemonCalls
from service.client.encoding import ImageLike
from service.client.frames_exchange import DONE, FramesExchange, SourceExit
from service.client.reconnection import RECONNECT_CHANNEL_OPTIONS, StreamClients, reconnect_options
from service.client.shared_frames import RingSender, reads_shared_memory
from service.client.tls import TlsFiles
from service.types import FrameResponse, StreamOptions

TimedFrame = tuple[ImageLike, int | None]
"""A frame with its capture time, as :func:`stream_frames` takes it: ``(image, capture_time_ns)``, the time in
nanoseconds since the Unix epoch (``None``: the moment it is sent)."""


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
    reconnect: int = 0,
    shared_memory: bool = False,
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
        reconnect: tries to continue the stream after a lost connection, a server's shutdown, a server not ready,
            or a server that took the stream away because the loop body stalled (``CLIENT_NOT_READING``: its answers
            were not read; ``STREAM_EXPIRED`` while the window waited for the loop: no frame came within the idle
            timeout; an expiry while the frames iterator had no frame ends the loop); 0, the default: none, the
            loop ends with the ``StreamError``. With tries allowed the stream asks for a resume window
            (``options.resume_window_s``, else 30 s; the server caps it) and the ``STATE`` output (each result
            carries the state, so a server lost without a hand-off can be replaced by another of the same model
            version); in live mode at most the ``resume_history`` of the server it is on are unanswered at once (a
            stalled body must not let the server outrun what a resume can go back to; no limit with a server that
            reports none); and each interruption gets up to
            ``reconnect`` :meth:`ClientStream.reconnect` tries, 0.25 s apart and twice as long before each next
            (4 s at most), on a new connection after a shutdown. The frames sent and not answered are re-sent and
            the loop goes on: every frame reaches the stream's state once, in order, and the answers equal an
            uninterrupted stream's, but for a frame whose answer was lost with the call while the state continued
            from holds it (it gets none; logged), and, with ``shared_memory``, for the frames re-sent from their
            slots to a server that does not read shared memory (refused ``SHARED_MEMORY_UNAVAILABLE``; the later
            frames go as bytes). Each interruption and continuation is logged (logger ``service.client``, level
            WARNING); leaving the loop ends the tries at once.
        shared_memory: send uint8 ``[H, W, 3]`` arrays through POSIX shared memory instead of the request (a server
            on this host started with ``--shared-memory``, reached over loopback): a ring of ``window + 1`` frames
            of the first array's shape, whose segment is removed when the loop ends. A frame of another shape, or
            one whose slot still holds an unanswered frame (live mode sends faster than the answers come), goes
            as bytes. Leave ``jpeg_quality`` out.

    Raises:
        StreamError: the server refused or ended the stream. A server that shuts down mid-stream ends it with
            status ``UNAVAILABLE`` (code ``SHUTTING_DOWN``) and its message, after answering the frames it
            accepted; the error's ``handoff`` holds the state to continue from with the async client
            (``Client.open(options, handoff=error.handoff)`` on another server). With ``reconnect``, the error
            that ended the call when no try could continue the stream (a note gives the last try's failure).
        ValueError: ``shared_memory`` with a server that does not read shared memory for this client, or with
            ``jpeg_quality``; a frame that is not an image or does not fit one message, or a tuple that is not an
            ``(image, capture_time_ns)`` pair (the message starts ``frame N:``); a capture time out of the int64
            range.
        TypeError: a capture time that is not an integer or ``None`` (the message starts ``frame N:``).
        Exception: whatever iterating ``frames`` raised. The stream is closed first and the answers to the
            frames already sent are yielded before it (those that come within ``close_timeout_s``; a loop
            that takes longer over them loses the rest).
    """
    if isinstance(reconnect, bool) or not isinstance(reconnect, int) or reconnect < 0:
        raise ValueError(f"reconnect must be a whole number of tries >= 0 (0: never), got {reconnect!r}")
    if shared_memory and jpeg_quality is not None:
        raise ValueError("shared_memory sends raw frames: leave jpeg_quality out, or shared_memory")
    if reconnect:
        options = reconnect_options(options or StreamOptions())
    answers: queue.Queue[Any] = queue.Queue(maxsize=1 if newest_only else max(window, 1) * 4)
    stopping = asyncio.Event()  # set on the loop when the caller leaves early: no more frames are sent
    # Threads of this call alone for the two blocking waits (on the shared loop's default executor, a few calls
    # that wait on their callers would take every thread from the rest), daemon threads so that a frames iterator
    # that never returns (a stalled camera) cannot hold up the interpreter's exit.
    frame_thread = DaemonCalls("slotstream-stream-frames")
    answer_thread = DaemonCalls("slotstream-stream-answers")

    async def run() -> None:
        channel_options = RECONNECT_CHANNEL_OPTIONS if reconnect else ()
        clients = StreamClients(lambda: Client(target, token=token, tls=tls, channel_options=channel_options))
        ring = RingSender(max(window, 1) + 1) if shared_memory else None  # a slot more than the frames in flight
        try:
            stream = await clients.clients[0].open(options, model=model)
            if shared_memory and not await reads_shared_memory(stream):
                await stream.close()
                raise ValueError(
                    "shared_memory=True: the server does not read shared memory for this client (start it with "
                    "--shared-memory, on this host, and connect over loopback)"
                )
            exchange = FramesExchange(
                stream,
                frames,
                answers,
                stopping,
                window=window,
                jpeg_quality=jpeg_quality,
                newest_only=newest_only,
                frame_thread=frame_thread,
                answer_thread=answer_thread,
                ring=ring,
            )
            await exchange.run(close_timeout_s, reconnect, clients)
        finally:
            await clients.close()
            if ring is not None:  # after the calls: no frame of it is in flight any more
                ring.close()

    async def run_and_report() -> None:
        try:
            await run()
        except Exception as error:  # handed to the caller's thread
            await answer_thread.call(answers.put, error.error if isinstance(error, SourceExit) else error)
        await answer_thread.call(answers.put, DONE)

    loop = client_loop()
    call = asyncio.run_coroutine_threadsafe(run_and_report(), loop)
    try:
        while (item := answers.get()) is not DONE:
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


def _wait_for_the_end(call: Future[None], answers: queue.Queue[Any], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for ``call`` to end, dropping the answers it still hands over (nobody reads them
    any more, and a full queue would hold the call up). Not while the interpreter exits (a generator still
    referenced then is closed by the clean-up of its module): the client loop's thread can no longer run the
    call to its end, so the wait would only hold the exit up."""
    deadline = time.monotonic() + timeout_s
    while not call.done() and time.monotonic() < deadline and not sys.is_finalizing():
        with contextlib.suppress(queue.Empty):
            answers.get(timeout=0.05)
