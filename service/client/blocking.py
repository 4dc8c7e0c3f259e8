"""A blocking helper over the async client, for scripts and synchronous robot code."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from service.client.connection import Client
from service.client.encoding import ImageLike
from service.client.errors import StreamError
from service.client.exchange import send_while_receiving
from service.client.tls import TlsFiles
from service.types import CloseReason, FrameResponse, StreamClosed, StreamOptions

_DONE = object()

_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None  # (the process it belongs to, the loop)


def client_loop() -> asyncio.AbstractEventLoop:
    """The event loop every blocking call of this process runs on, in a daemon thread started on first use.

    One loop for the whole process, not one per call: gRPC's asyncio layer binds its completion-queue poller to
    the loop it first runs on, and after that loop closes the poller keeps calling into it ("Event loop is closed"
    tracebacks on stderr), so a script calling :func:`stream_frames` for one video after another needs them all
    on one loop. A forked child gets a loop of its own.
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid() or _loop[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="slotstream-client-loop", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


def stream_frames(
    target: str,
    frames: Iterable[ImageLike],
    options: StreamOptions | None = None,
    *,
    model: str = "",
    token: str | None = None,
    tls: TlsFiles | None = None,
    window: int = 2,
    jpeg_quality: int | None = None,
) -> Iterator[FrameResponse]:
    """Stream ``frames`` through one stream and yield the answer to each, in order.

    Frames are read from ``frames`` lazily and up to ``window`` are in flight at once, so decoding or
    capturing the next frame overlaps with the server's work. Frame indices are 0, 1, 2, ... The stream runs on
    the process's :func:`client_loop`, so calls may follow one another (and run from several threads at once).

    Args:
        target: ``host:port``.
        frames: uint8 ``[H, W, 3]`` RGB arrays, or JPEG/PNG bytes.
        options: stream options.
        model: model name (``""``: the server's default).
        token: bearer token.
        tls: TLS files.
        window: frames sent ahead of the answers.
        jpeg_quality: send arrays as JPEG at this quality instead of raw.

    Raises:
        StreamError: the server refused or ended the stream. A server that shuts down mid-stream ends it with
            status ``UNAVAILABLE`` (code ``SHUTTING_DOWN``) and its message, after answering the frames it
            accepted; the error's ``handoff`` holds the state to continue from with the async client
            (``Client.open(options, handoff=error.handoff)`` on another server).
        ValueError: a frame that is not an image (the message starts ``frame N:``).
        Exception: whatever iterating ``frames`` raised (the stream is then cancelled).
    """
    answers: queue.Queue[Any] = queue.Queue(maxsize=max(window, 1) * 4)
    stop = threading.Event()

    async def run() -> None:
        async with Client(target, token=token, tls=tls) as client:
            stream = await client.open(options, model=model)
            slots = asyncio.Semaphore(max(window, 1))

            all_sent = False

            async def send_all() -> None:
                nonlocal all_sent
                iterator = iter(frames)
                while not stop.is_set():
                    frame: Any = await asyncio.to_thread(next, iterator, _DONE)
                    if frame is _DONE:  # a None frame is the caller's (a failed camera read): send() refuses it
                        break
                    await slots.acquire()
                    await stream.send(frame, jpeg_quality=jpeg_quality)
                all_sent = True
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
                    slots.release()
                    await asyncio.to_thread(answers.put, answer)

            await send_while_receiving(send_all(), receive_all())

    async def run_and_report() -> None:
        try:
            await run()
        except Exception as error:  # handed to the caller's thread
            await asyncio.to_thread(answers.put, error)
        await asyncio.to_thread(answers.put, _DONE)

    call = asyncio.run_coroutine_threadsafe(run_and_report(), client_loop())
    interrupted = False
    try:
        while (item := answers.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    except KeyboardInterrupt:
        interrupted = True  # do not wait for the stream (it may be stuck connecting): cancel it
        call.cancel()
        raise
    finally:
        stop.set()
        while not call.done() and not interrupted:
            with contextlib.suppress(queue.Empty):
                answers.get(timeout=0.1)
