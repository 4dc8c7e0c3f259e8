"""Frames as sent on the wire: :func:`encode_image` (raw RGB, JPEG or PNG), :func:`encode_png`, :func:`fit_png` (the
smallest PNG that fits) and the JPEG quality check."""

from __future__ import annotations

import io

import numpy as np

from service.types import (
    EncodedImage,
    ImageEncoding,
)

ImageLike = np.ndarray | bytes | bytearray | memoryview | EncodedImage
"""What a frame may be given as: a uint8 ``[H, W, 3]`` RGB array, JPEG or PNG bytes, or an encoded image."""
PNG_FAST_LEVEL = 1
"""The zlib level :func:`encode_image` writes PNGs at: the fastest that compresses (a 3840x2160 photo took 0.7 s
and came to 66% of its raw size; level 6 took 1.4 s for 59%)."""
PNG_LEVELS = (1, 6)
"""The zlib levels :func:`fit_png` tries, in order, for a frame whose raw pixels do not fit one message: the fastest
first (a 3840x2160 photo: 0.7 s, 66% of its raw size), then a smaller one for a frame that still does not fit (1.4 s,
59%)."""


def check_jpeg_quality(quality: int, name: str = "jpeg_quality") -> None:
    """Raise ``ValueError`` (naming ``name``) unless ``quality`` is a JPEG quality Pillow honours (1-95; it clamps
    others silently), ``TypeError`` unless it is an integer.

    Raises:
        TypeError: ``quality`` is not an integer (a bool is not one).
        ValueError: ``quality`` is outside 1-95.
    """
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer):
        raise TypeError(f"{name} must be an integer between 1 and 95, got {type(quality).__name__} {quality!r}")
    if not 1 <= quality <= 95:
        raise ValueError(f"{name} must be between 1 and 95, got {quality}")


def encode_image(image: ImageLike, jpeg_quality: int | None = None, *, png: bool = False) -> EncodedImage:
    """An image as sent on the wire (see :meth:`ClientStream.send`): an array raw (``RAW_RGB8``), as JPEG at
    ``jpeg_quality`` (lossy) or, with ``png``, as PNG (lossless: the server decodes the very pixels a raw frame
    carries, in fewer bytes, at :data:`PNG_FAST_LEVEL`); bytes and an :class:`EncodedImage` as they are.

    Raises:
        ValueError: an array that is not uint8 ``[H, W, 3]`` or has no pixels, bytes that are neither JPEG nor
            PNG, a ``jpeg_quality`` outside 1-95 (Pillow would clamp it silently), or both ``jpeg_quality`` and
            ``png``.
        TypeError: a ``jpeg_quality`` that is not an integer.
    """
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)
        if png:
            raise ValueError(f"pass jpeg_quality ({jpeg_quality}) for JPEG or png=True for PNG, not both")
    if isinstance(image, EncodedImage):
        return image
    if isinstance(image, bytearray | memoryview):
        image = bytes(image)
    if isinstance(image, bytes):
        if image.startswith(b"\xff\xd8"):
            return EncodedImage(ImageEncoding.JPEG, image)
        if image.startswith(b"\x89PNG"):
            return EncodedImage(ImageEncoding.PNG, image)
        raise ValueError("image bytes must be a JPEG or PNG file; send arrays for raw pixels")
    if not isinstance(image, np.ndarray):
        raise ValueError(
            "a frame must be a uint8 [H, W, 3] array, JPEG or PNG bytes, or an EncodedImage, got "
            f"{type(image).__name__}"
        )
    check_frame_array(image)
    if jpeg_quality is not None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=jpeg_quality)
        return EncodedImage(ImageEncoding.JPEG, buffer.getvalue())
    if png:
        return encode_png(image, PNG_FAST_LEVEL)
    height, width, _ = image.shape
    return EncodedImage(ImageEncoding.RAW_RGB8, np.ascontiguousarray(image).tobytes(), height, width, 3)


def encode_png(image: np.ndarray, compress_level: int = PNG_FAST_LEVEL) -> EncodedImage:
    """The uint8 ``[H, W, 3]`` RGB ``image`` as a PNG (lossless) at zlib level ``compress_level`` (0-9: higher is
    smaller and slower).

    Raises:
        ValueError: ``image`` is not a uint8 ``[H, W, 3]`` array with pixels, or ``compress_level`` is not 0-9.
    """
    check_frame_array(image)
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be between 0 and 9 (zlib's levels), got {compress_level}")
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return EncodedImage(ImageEncoding.PNG, buffer.getvalue())


def fit_png(image: np.ndarray, max_bytes: int) -> tuple[EncodedImage | None, int]:
    """``image`` as a PNG (lossless) of at most ``max_bytes`` bytes, at the first level of :data:`PNG_LEVELS` that
    makes one that small, and its size; ``(None, size)`` with the smallest size reached when none fits (noise does
    not compress). Slow for a large frame (see :data:`PNG_LEVELS`): run it off the event loop.

    Raises:
        ValueError: ``image`` is not a uint8 ``[H, W, 3]`` array with pixels.
    """
    sizes = []
    for level in PNG_LEVELS:
        encoded = encode_png(image, level)
        if len(encoded.data) <= max_bytes:
            return encoded, len(encoded.data)
        sizes.append(len(encoded.data))
    return None, min(sizes)


def check_frame_array(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is a uint8 ``[H, W, 3]`` RGB array with at least one pixel."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frames must be uint8 [H, W, 3] RGB arrays, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"a frame needs at least one pixel, got an empty {image.shape[0]}x{image.shape[1]} array")
