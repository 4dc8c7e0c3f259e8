"""A stream's requests, checked before anything is sent: :func:`frame_request` for a frame (its index, capture
time, id, JPEG quality and size against one message: :func:`image_room`, the client's or the server's) and
:func:`check_open_request` for an open."""

from __future__ import annotations

import numbers
import operator
import time
from collections.abc import Container
from typing import Any

from service import wire
from service.client.encoding import ImageLike, check_jpeg_quality, encode_image
from service.types import (
    MAX_TRACEPARENT_BYTES,
    MAX_TRACESTATE_BYTES,
    EncodedImage,
    FrameRequest,
    ImageEncoding,
    OpenRequest,
)

FRAME_FIELDS_BYTES = 256
"""Room a frame request needs besides its image bytes, ``camera_frame_id`` and trace context (indices, times, sizes,
tags)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SMALLEST_SERVER_REQUEST_BYTES = 1024 * 1024
"""The smallest request limit a slotstream server has (it refuses a ``--max-message-bytes`` below 1 MiB): a frame
request this small fits every server, so a client reads the server's own limit only for a larger one."""


def text_bytes(camera_frame_id: str, traceparent: str, tracestate: str) -> int:
    """The bytes a frame request's text fields take (UTF-8; the trace context is ASCII, checked by
    :func:`check_trace_context`), the room :func:`image_room` leaves for them."""
    return len(camera_frame_id.encode()) + len(traceparent) + len(tracestate)


def image_room(max_message_bytes: int, text_bytes: int = 0) -> int:
    """The most image bytes a frame request carries in one message of ``max_message_bytes``, beside its text fields
    (``camera_frame_id``, ``traceparent`` and ``tracestate``) of ``text_bytes`` bytes (UTF-8) and
    :data:`FRAME_FIELDS_BYTES` of other fields."""
    return max_message_bytes - FRAME_FIELDS_BYTES - text_bytes


def check_open_request(request: OpenRequest) -> None:
    """Raise ``ValueError`` when the open ``request`` cannot be sent: a ``mask_size`` that is not two sizes of at
    least 1 pixel, or options the wire message cannot carry (a plain value where an enum member belongs)."""
    size = request.options.mask_size
    if size is not None and (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(side, numbers.Integral) and not isinstance(side, bool) and side >= 1 for side in size)
    ):
        raise ValueError(
            f"the open cannot be sent: mask_size must be (height, width) in pixels, each at least 1, or None for "
            f"the model's input size; got {size!r}"
        )
    try:
        wire.request_to_proto(request)  # options that cannot be sent fail here, before a call is made
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"the open cannot be sent: {error} (StreamOptions takes enum members for its enum fields, such as "
            "frame_fit=FrameFit.CROP and outputs of Output members)"
        ) from error


def frame_request(
    image: ImageLike,
    frame_index: int | None,
    capture_time_ns: int | None,
    camera_frame_id: str,
    jpeg_quality: int | None,
    *,
    next_index: int,
    in_flight: Container[int],
    max_message_bytes: int | None,
    server_limit: bool = False,
    png_bytes: int = 0,
    traceparent: str = "",
    tracestate: str = "",
) -> FrameRequest:
    """The checked request for one frame (nothing recorded yet). An array is encoded raw, or as JPEG at
    ``jpeg_quality``; fitting it as PNG is the caller's (:meth:`ClientStream.send`), which then passes the PNG.

    Args:
        image, frame_index, capture_time_ns, camera_frame_id, jpeg_quality: as :meth:`ClientStream.send` takes
            them.
        next_index: the index the frame gets when ``frame_index`` is ``None``.
        in_flight: indices of the stream's frames sent and not answered yet, which ``frame_index`` may not take.
        max_message_bytes: the largest message the client sends; ``None``: the size is not checked.
        server_limit: ``max_message_bytes`` is the server's ``--max-message-bytes`` (below the client's own), not
            the client's ``max_message_bytes``; the refusal names it.
        png_bytes: for a raw image, the size it came to as PNG, too large too (0: not tried); the refusal says it.
        traceparent, tracestate: the frame's W3C trace context, as :meth:`ClientStream.send` takes it.

    Raises:
        TypeError, ValueError: as :meth:`ClientStream.send` raises them.
    """
    if frame_index is None:
        index = next_index
        if index > INT64_MAX:
            raise ValueError(
                f"frame_index: the next default index {index} is past the int64 range (the previous frame's "
                "index was 2**63 - 1); pass frame_index explicitly"
            )
    else:
        index = _int64(frame_index, "frame_index")
        if index in in_flight:  # one index, two frames: reconnect() could re-send only one of them
            raise ValueError(
                f"frame_index {index} is still in flight (sent and not answered yet): every frame needs its own "
                f"index, larger than the previous frame's; the next free one is {next_index}"
            )
    capture = time.time_ns() if capture_time_ns is None else _int64(capture_time_ns, "capture_time_ns")
    if not isinstance(camera_frame_id, str):
        raise TypeError(f"camera_frame_id must be a str, got {type(camera_frame_id).__name__}")
    try:
        camera_frame_id.encode()
    except UnicodeEncodeError as error:
        raise ValueError(
            f"camera_frame_id must be text UTF-8 can encode; {error.reason} at position {error.start}: "
            f"{camera_frame_id!r}"
        ) from None
    check_trace_context(traceparent, tracestate)
    room_taken = text_bytes(camera_frame_id, traceparent, tracestate)
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)
    try:
        encoded = encode_image(image, jpeg_quality)
    except ValueError as error:
        raise ValueError(f"frame {index}: {error}") from error
    if max_message_bytes is not None and len(encoded.data) > image_room(max_message_bytes, room_taken):
        raise ValueError(_too_large(encoded, index, jpeg_quality, max_message_bytes, server_limit, png_bytes))
    return FrameRequest(index, encoded, capture, camera_frame_id, traceparent, tracestate)


def check_trace_context(traceparent: str, tracestate: str) -> None:
    """Raise when a frame's W3C trace context cannot be sent: not text, not ASCII (W3C headers are), or longer
    than :data:`~service.types.MAX_TRACEPARENT_BYTES` / :data:`~service.types.MAX_TRACESTATE_BYTES` (which a server
    would ignore). Its format is the server's to read: one that does not parse is ignored there, as W3C asks.

    Raises:
        TypeError: either is not a str.
        ValueError: either is not ASCII or too long.
    """
    for name, value, limit in (
        ("traceparent", traceparent, MAX_TRACEPARENT_BYTES),
        ("tracestate", tracestate, MAX_TRACESTATE_BYTES),
    ):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str (a W3C trace context header value), got {type(value).__name__}")
        if not value.isascii():
            raise ValueError(f"{name} must be ASCII, as a W3C trace context header is: {value!r}")
        if len(value) > limit:
            raise ValueError(f"{name} is {len(value)} characters; a server reads at most {limit}")


def _int64(value: Any, name: str) -> int:
    """``value`` as an int in the int64 range, or an error naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer (-2**63 .. 2**63 - 1), got {number}")
    return number


def _too_large(
    encoded: EncodedImage,
    index: int,
    jpeg_quality: int | None,
    max_message_bytes: int,
    server_limit: bool,
    png_bytes: int,
) -> str:
    """Why frame ``index``, ``encoded``, fits no message of ``max_message_bytes`` (the server's when ``server_limit``;
    ``png_bytes``: its size as PNG, when that was tried), and what to change."""
    size = f" {encoded.width}x{encoded.height}" if encoded.width else ""
    encoding = ImageEncoding(encoded.encoding).name
    if server_limit:
        limit = f"than the server takes in one message (its --max-message-bytes {max_message_bytes:,})"
        raise_limit = "raise --max-message-bytes on the server"
    else:
        limit = f"than one message carries (max_message_bytes {max_message_bytes:,})"
        raise_limit = (
            "raise max_message_bytes here (Client(max_message_bytes=...)) and --max-message-bytes on the server"
        )
    as_png = f", and {png_bytes:,} bytes as PNG (lossless)" if png_bytes else ""
    advice = _smaller_image_advice(encoded.encoding, jpeg_quality, png_tried=bool(png_bytes))
    return (
        f"frame {index}: the {encoding}{size} image is {len(encoded.data):,} bytes, more {limit}{as_png}; {advice}, "
        f"or {raise_limit}"
    )


def _smaller_image_advice(encoding: ImageEncoding | int, jpeg_quality: int | None, png_tried: bool = False) -> str:
    """How to make a frame of ``encoding`` (encoded at ``jpeg_quality`` here, if set; raw pixels that were tried as
    PNG too when ``png_tried``) smaller."""
    if encoding == ImageEncoding.JPEG:
        if jpeg_quality is not None:
            return f"encode it at a lower jpeg_quality ({jpeg_quality} here) or a smaller size"
        return "re-encode it at a lower JPEG quality or a smaller size"
    if encoding == ImageEncoding.PNG:
        return "send its pixels as JPEG (jpeg_quality=...), or at a smaller size"
    if png_tried:
        return "send it as JPEG (jpeg_quality=...), or at a smaller size"
    return (
        "send it as JPEG (jpeg_quality=...) or, lossless, as PNG (send encode_image(image, png=True), the same pixels "
        "in fewer bytes), or at a smaller size"
    )


__all__ = [
    "FRAME_FIELDS_BYTES",
    "INT64_MAX",
    "INT64_MIN",
    "SMALLEST_SERVER_REQUEST_BYTES",
    "check_open_request",
    "frame_request",
    "image_room",
]
