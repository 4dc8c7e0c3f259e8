"""A frame's request sized to one message: :func:`sized_frame_request`, checked as :func:`frame_request` checks it
and fitted to the client's ``max_message_bytes`` or, when it is lower, the server's ``--max-message-bytes`` (read
from the server when a frame may exceed it), an array that does not fit raw going as PNG."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from service.client.encoding import ImageLike, fit_png
from service.client.frame_ledger import FrameLedger
from service.client.requests import SMALLEST_SERVER_REQUEST_BYTES, frame_request, image_room, text_bytes
from service.types import FrameRequest, ImageEncoding

if TYPE_CHECKING:
    from service.client.connection import Client


async def sized_frame_request(
    client: Callable[[], Client],
    frames: FrameLedger,
    check_sendable: Callable[[], None],
    image: ImageLike,
    frame_index: int | None,
    capture_time_ns: int | None,
    camera_frame_id: str,
    jpeg_quality: int | None,
    traceparent: str = "",
    tracestate: str = "",
) -> FrameRequest:
    """The checked request for a frame (see :meth:`ClientStream.send`), sized to the client's limit or the
    server's when it is lower; called with the stream's prepare lock held, so no other frame is recorded meanwhile.
    Awaits only for a frame request over :data:`~service.client.requests.SMALLEST_SERVER_REQUEST_BYTES` while the
    server's limit is unknown (one read per client: :meth:`Client.read_server_limit`), and for an array whose raw
    pixels do not fit (encoded as PNG in a worker thread); the default index and the stream's state are checked again
    after either.

    Args:
        client: the stream's client now, whose limits the request is sized to (asked again after an await: a
            reconnect may have moved the stream to another client meanwhile).
        frames: the stream's frames: the default index and the frames in flight, read again after an await.
        check_sendable: raises the reason the stream takes no more requests, if there is one.
        image, frame_index, capture_time_ns, camera_frame_id, jpeg_quality, traceparent, tracestate: as
            :meth:`ClientStream.send` takes them.

    Raises:
        TypeError, ValueError, StreamError: as :meth:`ClientStream.send` raises them; nothing is recorded.
    """
    check_sendable()
    # Every argument checked, and the image encoded (an array raw, or as JPEG), before anything is awaited.
    first = frame_request(
        image,
        frame_index,
        capture_time_ns,
        camera_frame_id,
        jpeg_quality,
        next_index=frames.next_index,
        in_flight=frames.unanswered,
        max_message_bytes=None,
        traceparent=traceparent,
        tracestate=tracestate,
    )
    encoded = first.image
    text_room = text_bytes(camera_frame_id, traceparent, tracestate)
    waited = False
    may_exceed_server = len(encoded.data) > image_room(SMALLEST_SERVER_REQUEST_BYTES, text_room)
    if may_exceed_server and client().server_max_request_bytes is None:
        await client().read_server_limit()
        waited = True
    limit, server_limit = client().request_limit()
    room = image_room(limit, text_room)
    png_bytes = 0
    if isinstance(image, np.ndarray) and encoded.encoding == ImageEncoding.RAW_RGB8 and len(encoded.data) > room:
        png, png_bytes = await asyncio.to_thread(fit_png, image, room)  # lossless: the same pixels as raw
        encoded = png or encoded
        waited = True
    if waited:
        check_sendable()  # it may have been closed meanwhile
    return frame_request(
        encoded,  # as it is
        frame_index,
        first.capture_time_ns,
        camera_frame_id,
        jpeg_quality,
        next_index=frames.next_index,  # another index may have been taken meanwhile
        in_flight=frames.unanswered,
        max_message_bytes=limit,
        server_limit=server_limit,
        png_bytes=png_bytes,
        traceparent=traceparent,
        tracestate=tracestate,
    )


__all__ = ["sized_frame_request"]
