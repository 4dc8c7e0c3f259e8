"""How ``python -m service.client stream`` sends its frames: raw RGB, JPEG at ``--jpeg-quality``, or lossless PNG
for a frame whose raw pixels do not fit one message (:class:`FrameEncoder`)."""

from __future__ import annotations

import sys

import numpy as np

from service.client.daemon_calls import DaemonCalls
from service.client.encoding import encode_image, fit_png
from service.client.requests import image_room
from service.client.shared_frames import SharedFrameRing
from service.types import EncodedImage, ImageEncoding


class FrameEncoder:
    """How ``stream`` sends its frames (uint8 ``[H, W, 3]`` RGB): as JPEG at ``--jpeg-quality`` when it is given;
    else raw RGB, or as PNG when the raw pixels do not fit one message of ``--max-message-bytes``. PNG is lossless
    (the server decodes the very pixels raw sends), so the answers, and the slots, are those of raw frames; the
    first frame sent as PNG is told on stderr, once.

    Raw frames are copied on the event loop (a copy is cheap); JPEG and PNG are encoded on a daemon thread of the
    encoder's own (a 3840x2160 PNG takes about 0.7 s), so the answers keep being read meanwhile.

    Attributes:
        png_frames: frames sent as PNG so far.
    """

    def __init__(self, jpeg_quality: int | None, max_message_bytes: int) -> None:
        self.jpeg_quality = jpeg_quality
        self.max_message_bytes = max_message_bytes
        self.png_frames = 0
        self.ring: SharedFrameRing | None = None
        """With ``--shared-memory``: raw frames of its shape go through it instead of the request."""
        self._room = image_room(max_message_bytes)  # the CLI sends no camera_frame_id
        self._limit = "--max-message-bytes"  # where max_message_bytes comes from, as messages name it
        self._worker: DaemonCalls | None = None

    def fit_server_limit(self, max_request_bytes: int) -> bool:
        """Size frames to the server's request limit (its model card's ``max_request_bytes``) when it is below
        this encoder's, so that a frame the server would refuse is sent as PNG instead, or refused here with advice;
        return whether the limit was lowered. 0 (a server that does not report it) changes nothing."""
        if not 0 < max_request_bytes < self.max_message_bytes:
            return False
        self.max_message_bytes = max_request_bytes
        self._room = image_room(max_request_bytes)
        self._limit = "the server's --max-message-bytes"
        return True

    async def encode(self, image: np.ndarray, index: int) -> EncodedImage:
        """Frame ``index`` as sent.

        Raises:
            ValueError: the frame does not fit one message as JPEG at ``--jpeg-quality``, or neither raw nor as PNG
                (the message says what to change).
        """
        if self.jpeg_quality is None and self.ring is not None and self.ring.fits(image):
            return self.ring.put(image)  # a copy into shared memory; the request only names it
        if self.jpeg_quality is None and image.nbytes <= self._room:
            return encode_image(image)  # raw: a copy
        if self._worker is None:
            self._worker = DaemonCalls("slotstream-frame-encoder")
        encoded: EncodedImage = await self._worker.call(self._compressed, image, index)
        if encoded.encoding == ImageEncoding.PNG:
            if not self.png_frames:
                print(self._png_notice(image, index), file=sys.stderr)
            self.png_frames += 1
        return encoded

    def stop_sharing_memory(self) -> None:
        """Send the later frames as bytes, and remove the ring (for a server that does not read it, once the frames
        in flight were re-sent with their pixels: nothing reads it any more)."""
        if self.ring is not None:
            self.ring.close()
            self.ring = None

    def close(self) -> None:
        """End the encoding thread, if one was started, after the frame it is encoding, and remove the ring."""
        if self._worker is not None:
            self._worker.stop()
        if self.ring is not None:
            self.ring.close()

    def _compressed(self, image: np.ndarray, index: int) -> EncodedImage:
        """Frame ``index`` as JPEG (with ``--jpeg-quality``) or PNG that fits one message; runs on the worker."""
        if self.jpeg_quality is not None:
            encoded = encode_image(image, self.jpeg_quality)
            if len(encoded.data) > self._room:
                raise ValueError(self._jpeg_too_large(image, index, len(encoded.data)))
            return encoded
        png, size = fit_png(image, self._room)
        if png is None:
            raise ValueError(self._png_too_large(image, index, size))
        return png

    def _png_notice(self, image: np.ndarray, index: int) -> str:
        height, width = image.shape[:2]
        return (
            f"note: frame {index} ({width}x{height}) is {image.nbytes:,} bytes raw, more than one message carries "
            f"({self._limit} {self.max_message_bytes:,}): such frames are sent as PNG, lossless (the same "
            "results as raw, slower to encode); --jpeg-quality Q sends every frame as JPEG instead (smaller, faster, "
            "lossy)"
        )

    def _jpeg_too_large(self, image: np.ndarray, index: int, size: int) -> str:
        height, width = image.shape[:2]
        return (
            f"frame {index}: the {width}x{height} frame is {size:,} bytes as JPEG at --jpeg-quality "
            f"{self.jpeg_quality}, more than one message carries ({self._limit} {self.max_message_bytes:,}); "
            "lower --jpeg-quality, or raise --max-message-bytes here and on the server"
        )

    def _png_too_large(self, image: np.ndarray, index: int, size: int) -> str:
        height, width = image.shape[:2]
        return (
            f"frame {index}: the {width}x{height} frame does not fit one message ({self._limit} "
            f"{self.max_message_bytes:,}) raw ({image.nbytes:,} bytes) or as PNG ({size:,} bytes, lossless); raise "
            "--max-message-bytes here and on the server, or send JPEG with --jpeg-quality Q (lossy)"
        )
