"""Frame decoding and conversion to model input; every bad image becomes a :class:`FrameRejected` saying why.

Pure functions, safe to call from worker threads. The pipeline is
``EncodedImage -> RGB uint8 [H0, W0, 3] -> resized -> float32 [3, H, W] in [0, 1]``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import ErrorCode, FrameRejected
from service.types import EncodedImage, ImageEncoding

PREPROCESSING = (
    "decode to 8-bit RGB; resize to the input size with Pillow's bilinear filter (antialiased when shrinking; "
    "JPEGs may first be decoded at a reduced DCT scale that stays at least twice the input size); no crop or "
    "padding, so the aspect ratio is not preserved; scale to [0, 1] as float32 [3, H, W]"
)

_PIL_FORMATS = {ImageEncoding.JPEG: "JPEG", ImageEncoding.PNG: "PNG"}
_CHANNELS_OF_MODE = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4, "YCbCr": 3, "I": 1, "F": 1}


def prepare_frame(image: EncodedImage, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """Decode ``image`` and turn it into model input.

    Args:
        image: the frame's image as sent.
        size: the model's input ``(H, W)``.
        max_pixels: largest accepted width x height.

    Returns:
        float32 ``[3, H, W]`` in ``[0, 1]``.

    Raises:
        FrameRejected: the image is empty, too large, undecodable, not RGB, or of unknown encoding.
    """
    return to_model_input(decode_image(image, max_pixels, draft_size=size), size)


def decode_image(image: EncodedImage, max_pixels: int, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``image`` to an 8-bit RGB Pillow image.

    Args:
        image: the frame's image as sent.
        max_pixels: largest accepted width x height (checked before decoding the pixels).
        draft_size: the size the image will be resized to; lets JPEG decoding skip detail it would discard.

    Raises:
        FrameRejected: see :func:`prepare_frame`.
    """
    if image.encoding == ImageEncoding.RAW_RGB8:
        return Image.fromarray(_raw_pixels(image, max_pixels))
    encoding = image.encoding
    if encoding == ImageEncoding.UNSPECIFIED and not image.data:
        raise FrameRejected(
            ErrorCode.EMPTY_IMAGE,
            "the frame has no image (Frame.image is unset or empty): set its encoding (JPEG, PNG or RAW_RGB8) and "
            "its data",
        )
    if not isinstance(encoding, ImageEncoding) or encoding not in _PIL_FORMATS:
        raise FrameRejected(
            ErrorCode.UNKNOWN_ENCODING,
            f"unknown image encoding {int(encoding)}: set Image.encoding to JPEG, PNG or RAW_RGB8",
        )
    if not image.data:
        raise FrameRejected(ErrorCode.EMPTY_IMAGE, "the image has no bytes")
    expected = _PIL_FORMATS[encoding]
    opened = _open(image.data, expected)
    width, height = opened.size
    _check_size(width, height, max_pixels)
    channels = _CHANNELS_OF_MODE.get(opened.mode)
    if channels != 3:
        got = f"{channels} channel(s)" if channels else "an unsupported pixel format"
        raise FrameRejected(
            ErrorCode.WRONG_CHANNELS, f"expected a 3-channel RGB {expected}, got mode {opened.mode!r} ({got})"
        )
    if draft_size is not None and expected == "JPEG":
        # libjpeg can decode at 1/2, 1/4 or 1/8 scale; keep at least twice the target size.
        opened.draft("RGB", (2 * draft_size[1], 2 * draft_size[0]))
    try:
        return opened.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, f"the {expected} data is corrupt: {error}") from error


def to_model_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to ``size`` = ``(H, W)`` and convert it to float32 ``[3, H, W]`` in ``[0, 1]``."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)  # [H, W, 3]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)) * np.float32(1 / 255)  # [H, W, 3] -> [3, H, W]


def _raw_pixels(image: EncodedImage, max_pixels: int) -> np.ndarray:
    channels = image.channels or 3
    if image.height == 0 or image.width == 0:
        if not image.data:
            raise FrameRejected(ErrorCode.EMPTY_IMAGE, "the image has no bytes")
        raise FrameRejected(
            ErrorCode.WRONG_RAW_SIZE,
            f"raw image with height {image.height} and width {image.width}: set both for RAW_RGB8",
        )
    _check_size(image.width, image.height, max_pixels)
    if channels != 3:
        raise FrameRejected(ErrorCode.WRONG_CHANNELS, f"raw images must have 3 channels (RGB), got {channels}")
    expected = image.height * image.width * 3
    if len(image.data) != expected:
        raise FrameRejected(
            ErrorCode.WRONG_RAW_SIZE,
            f"raw image of {image.height}x{image.width}x3 needs {expected} bytes, got {len(image.data)}",
        )
    return np.frombuffer(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)  # [H*W*3] -> [H, W, 3]


def _open(data: bytes, expected: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(_PIL_FORMATS.values()))
    except UnidentifiedImageError as error:
        raise FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"{len(data)} bytes that are not a {expected} image (nor PNG/JPEG at all)"
        ) from error
    except Image.DecompressionBombError as error:
        raise FrameRejected(ErrorCode.IMAGE_TOO_LARGE, f"the image is too large to decode: {error}") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"{len(data)} bytes that do not decode as {expected}: {error}"
        ) from error
    if opened.format != expected:
        raise FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"the frame says {expected} but the data is a {opened.format} image"
        )
    return opened


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise FrameRejected(ErrorCode.EMPTY_IMAGE, f"the image is {width}x{height} pixels")
    if width * height > max_pixels:
        raise FrameRejected(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the image is {width}x{height} = {width * height} pixels; this server accepts at most {max_pixels}",
        )
