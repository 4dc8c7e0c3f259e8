"""A blocking helper over the async client, for scripts and synchronous robot code."""

from __future__ import annotations

import asyncio
import contextlib
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
    capturing the next frame overlaps with the server's work. Frame indices are 0, 1, 2, ...

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

    def worker() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:  # handed to the caller's thread
            answers.put(error)
        answers.put(_DONE)

    thread = threading.Thread(target=worker, name="slotstream-client", daemon=True)
    thread.start()
    interrupted = False
    try:
        while (item := answers.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    except KeyboardInterrupt:
        interrupted = True  # do not wait for the worker (it may be stuck connecting); it is a daemon thread
        raise
    finally:
        stop.set()
        while thread.is_alive() and not interrupted:
            with contextlib.suppress(queue.Empty):
                answers.get(timeout=0.1)
