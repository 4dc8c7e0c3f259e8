"""A stream's requests, checked before anything is sent: :func:`frame_request` for a frame (its index, capture
time, id, JPEG quality and size against one message: :func:`image_room`) and :func:`check_open_request` for an
open."""

from __future__ import annotations

import operator
import time
from collections.abc import Container
from typing import Any

from service import wire
from service.client.encoding import ImageLike, check_jpeg_quality, encode_image
from service.types import FrameRequest, ImageEncoding, OpenRequest

FRAME_FIELDS_BYTES = 256
"""Room a frame request needs besides its image bytes and ``camera_frame_id`` (indices, times, sizes, tags)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def image_room(max_message_bytes: int, camera_frame_id_bytes: int = 0) -> int:
    """The most image bytes a frame request carries in one message of ``max_message_bytes``, beside a
    ``camera_frame_id`` of ``camera_frame_id_bytes`` bytes (UTF-8) and :data:`FRAME_FIELDS_BYTES` of other fields."""
    return max_message_bytes - FRAME_FIELDS_BYTES - camera_frame_id_bytes


def check_open_request(request: OpenRequest) -> None:
    """Raise ``ValueError`` when the open ``request`` cannot be sent: options the wire message cannot carry (a
    plain value where an enum member belongs)."""
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
    max_message_bytes: int,
) -> FrameRequest:
    """The checked request for one frame (nothing recorded yet).

    Args:
        image, frame_index, capture_time_ns, camera_frame_id, jpeg_quality: as :meth:`ClientStream.send` takes
            them.
        next_index: the index the frame gets when ``frame_index`` is ``None``.
        in_flight: indices of the stream's frames sent and not answered yet, which ``frame_index`` may not take.
        max_message_bytes: the largest message the client sends.

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
        id_bytes = len(camera_frame_id.encode())
    except UnicodeEncodeError as error:
        raise ValueError(
            f"camera_frame_id must be text UTF-8 can encode; {error.reason} at position {error.start}: "
            f"{camera_frame_id!r}"
        ) from None
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)
    try:
        encoded = encode_image(image, jpeg_quality)
    except ValueError as error:
        raise ValueError(f"frame {index}: {error}") from error
    limit = image_room(max_message_bytes, id_bytes)
    if len(encoded.data) > limit:
        size = f" {encoded.width}x{encoded.height}" if encoded.width else ""
        encoding = ImageEncoding(encoded.encoding).name
        raise ValueError(
            f"frame {index}: the {encoding}{size} image is {len(encoded.data):,} bytes, more "
            f"than one message carries (max_message_bytes {max_message_bytes:,}); "
            f"{_smaller_image_advice(encoded.encoding, jpeg_quality)}, or raise max_message_bytes here "
            "(Client(max_message_bytes=...)) and --max-message-bytes on the server"
        )
    return FrameRequest(frame_index=index, image=encoded, capture_time_ns=capture, camera_frame_id=camera_frame_id)


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


def _smaller_image_advice(encoding: ImageEncoding | int, jpeg_quality: int | None) -> str:
    """How to make a frame of ``encoding`` (encoded at ``jpeg_quality`` here, if set) smaller."""
    if encoding == ImageEncoding.JPEG:
        if jpeg_quality is not None:
            return f"encode it at a lower jpeg_quality ({jpeg_quality} here) or a smaller size"
        return "re-encode it at a lower JPEG quality or a smaller size"
    if encoding == ImageEncoding.PNG:
        return "send its pixels as JPEG (jpeg_quality=...), or at a smaller size"
    return (
        "send it as JPEG (jpeg_quality=...) or, lossless, as PNG (send encode_image(image, png=True), the same pixels "
        "in fewer bytes), or at a smaller size"
    )


__all__ = ["FRAME_FIELDS_BYTES", "INT64_MAX", "INT64_MIN", "check_open_request", "frame_request", "image_room"]
