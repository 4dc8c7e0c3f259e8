"""Frame decoding and conversion to model input; every bad image becomes a :class:`FrameRejected` saying why.

Pure functions, safe to call from worker threads. The pipeline is
``EncodedImage -> RGB uint8 [H0, W0, 3] -> fitted (stretch, crop or pad) -> resized -> float32 [3, H, W] in [0, 1]``.
A grayscale frame stays one channel (``L``, uint8 ``[H0, W0]``) through the fit and the resize and is replicated
into R, G and B at the end: the same numbers as converting it to RGB first, for less work.
The fit's boxes are :mod:`plugins.frame_fit`'s, shared with training; :class:`FittedFrame` says where the model's
view lies in the frame, for the mask outputs (:mod:`service.postprocess`).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from plugins.frame_fit import PAD_VALUE, fit_box
from plugins.pixels import KEPT_MODES, SIXTEEN_BIT_MODES, TO_GRAY_MODES, PixelRangeError, rgb_or_gray
from service.errors import ErrorCode, FrameRejected
from service.image_headers import (
    JPEG_WALK_SEGMENTS,
    MAX_JPEG_HEADER_SEGMENTS,
    MAX_JPEG_HEADER_SKIPPED,
    MAX_JPEG_SCANS,
    MAX_PNG_CHUNKS,
    count_jpeg_scans,
    header_size,
    image_format,
    jpeg_header_work,
    png_chunk_count,
    png_chunk_limit,
    without_unused_png_chunks,
)
from service.jpeg_integrity import jpeg_damage
from service.types import EncodedImage, FrameFit, ImageEncoding

PREPROCESSING = (
    "decode to 8-bit RGB as training reads frames (grayscale is replicated into R, G and B, 16-bit grayscale by its "
    "top 8 bits; an alpha channel is dropped, not composited; palette and CMYK images are converted by Pillow, CMYK "
    "without a colour profile); fit the frame to the input's aspect ratio as each stream's frame_fit says (unset: the "
    "server's --frame-fit): STRETCH keeps the whole frame, so the aspect ratio is not preserved; CROP cuts out the "
    "largest centred box with the input's aspect ratio (training's --frame-fit crop; masks are 255 outside it); PAD "
    "centres the frame on a mid-grey (RGB 128) canvas with the input's aspect ratio (masks cover the frame alone); "
    "resize to the input size with Pillow's bilinear filter (antialiased when shrinking; JPEGs may first be decoded "
    "at a reduced DCT scale that keeps at least twice the input size in the part the model sees); scale to [0, 1] as "
    "float32 [3, H, W]"
)

ModelView = tuple[float, float, float, float]
"""Where the model's input lies in a frame: ``(top, left, height, width)`` as fractions of the frame's height and
width (the :func:`plugins.frame_fit.fit_box` box divided by the frame's size). Inside the frame for a crop; for a
pad it holds the frame (``top, left <= 0``)."""


@dataclass(frozen=True)
class FittedFrame:
    """A frame ready for the model.

    Attributes:
        pixels: float32 ``[3, H, W]`` in ``[0, 1]``.
        view: where the model's input lies in the frame; ``None`` when it is the whole frame (a stretch, or a
            crop or pad of a frame that already has the input's aspect ratio).
    """

    pixels: np.ndarray
    view: ModelView | None


_PIL_FORMATS = {ImageEncoding.JPEG: "JPEG", ImageEncoding.PNG: "PNG"}
_TO_RGB_MODES = frozenset({"P", "RGBA", "CMYK"})
"""Pillow modes converted to ``RGB`` by Pillow: palette, RGB with alpha (dropped) and CMYK (no colour profile)."""
_DECODED_MODES = KEPT_MODES | TO_GRAY_MODES | _TO_RGB_MODES | SIXTEEN_BIT_MODES
"""Every Pillow mode a frame may decode to (read by :func:`plugins.pixels.rgb_or_gray`); the others (none that
Pillow reads from a PNG or JPEG) are refused."""


def prepare_frame(
    image: EncodedImage, size: tuple[int, int], max_pixels: int, fit: FrameFit = FrameFit.STRETCH
) -> np.ndarray:
    """Decode ``image`` and turn it into model input (:func:`fit_frame`'s pixels).

    Args:
        image: the frame's image as sent.
        size: the model's input ``(H, W)``.
        max_pixels: largest accepted width x height.
        fit: how the frame is fitted to ``size`` (not ``UNSPECIFIED``).

    Returns:
        float32 ``[3, H, W]`` in ``[0, 1]``.

    Raises:
        FrameRejected: the image is empty, too large, undecodable (a JPEG of more than :data:`MAX_JPEG_SCANS`
            scans included, and one whose image data libjpeg finds damaged: a scan cut short but closed with the
            end marker, a bad Huffman code), of unknown encoding, or raw with other than 3 channels. A PNG's text
            and ICC profile chunks are ignored, not decompressed.
        ValueError: ``fit`` is ``UNSPECIFIED``.
    """
    return fit_frame(image, size, max_pixels, fit).pixels


def fit_frame(
    image: EncodedImage, size: tuple[int, int], max_pixels: int, fit: FrameFit, check_jpeg_data: bool = True
) -> FittedFrame:
    """Decode ``image``, fit it to ``size`` as ``fit`` says (:func:`fit_image`) and turn it into model input.

    ``STRETCH`` is decoding and :func:`to_model_input` alone; ``CROP`` and ``PAD`` crop or pad the decoded frame
    first. A JPEG may be decoded at a reduced scale that keeps at least twice ``size`` in the model's view.

    Args:
        image: the frame's image as sent.
        size: the model's input ``(H, W)``.
        max_pixels: largest accepted width x height.
        fit: how the frame is fitted to ``size`` (not ``UNSPECIFIED``).
        check_jpeg_data: refuse a JPEG whose image data libjpeg finds damaged (:func:`_check_jpeg_data`, a second
            libjpeg pass over the JPEG at 1/8 scale); ``False`` leaves such a JPEG to Pillow, which decodes it with
            the damaged part made up (the server's ``--no-jpeg-damage-check``).

    Raises:
        FrameRejected: see :func:`prepare_frame`.
        ValueError: ``fit`` is ``UNSPECIFIED``.
    """
    decoded, frame_size = _decode(image, max_pixels, size, fit, check_jpeg_data)
    if fit == FrameFit.PAD:
        _check_canvas((decoded.height, decoded.width), size, max_pixels, frame_size)
    fitted, view = fit_image(decoded, size, fit, frame_size)  # STRETCH: the decoded image and no view
    return FittedFrame(to_model_input(fitted, size), view)


def fit_image(
    image: Image.Image, size: tuple[int, int], fit: FrameFit, frame_size: tuple[int, int] | None = None
) -> tuple[Image.Image, ModelView | None]:
    """Crop or pad an RGB or grayscale (``L``) image to the aspect ratio of ``size`` = ``(H, W)``, by
    :func:`plugins.frame_fit.fit_box`.

    ``CROP`` cuts out the :func:`~plugins.frame_fit.crop_box`; ``PAD`` pastes the image on a canvas of
    :func:`~plugins.frame_fit.pad_box`'s size filled with :data:`~plugins.frame_fit.PAD_VALUE` in every channel;
    ``STRETCH`` (and a frame that already has the aspect ratio) leaves the image as it is.

    Args:
        image: the decoded frame.
        size: the model's input ``(H, W)``.
        fit: how to fit it.
        frame_size: ``(height, width)`` of the frame as sent, when ``image`` was decoded smaller (a JPEG at a
            reduced scale): the box is that of the frame as sent, as training computes it, scaled to ``image``.

    Returns:
        The image to resize to ``size``, and where the model's view lies in the frame (``None``: all of it).

    Raises:
        ValueError: ``fit`` is ``UNSPECIFIED``.
    """
    width, height = image.size
    frame_h, frame_w = frame_size or (height, width)
    box = fit_box(frame_h, frame_w, size, fit.fit_name)
    if box == (0, 0, frame_h, frame_w):
        return image, None
    view = (box[0] / frame_h, box[1] / frame_w, box[2] / frame_h, box[3] / frame_w)
    top, left = round(view[0] * height), round(view[1] * width)  # the box in the decoded image's pixels
    box_h, box_w = max(1, round(view[2] * height)), max(1, round(view[3] * width))
    if fit == FrameFit.CROP:
        return image.crop((left, top, left + box_w, top + box_h)), view
    fill = PAD_VALUE if image.mode == "L" else (PAD_VALUE, PAD_VALUE, PAD_VALUE)
    canvas = Image.new(image.mode, (box_w, box_h), fill)
    canvas.paste(image, (-left, -top))
    return canvas, view


def decode_image(
    image: EncodedImage,
    max_pixels: int,
    draft_size: tuple[int, int] | None = None,
    fit: FrameFit = FrameFit.STRETCH,
) -> Image.Image:
    """Decode ``image`` to an 8-bit RGB Pillow image (a grayscale one replicated into R, G and B).

    Args:
        image: the frame's image as sent.
        max_pixels: largest accepted width x height (checked before decoding the pixels).
        draft_size: the size the image will be resized to; lets JPEG decoding skip detail it would discard.
        fit: how the image will be fitted to ``draft_size``: the reduced scale keeps at least twice
            ``draft_size`` inside the model's view (the crop box, the padded canvas or the whole frame).

    Raises:
        FrameRejected: see :func:`prepare_frame`.
        ValueError: ``fit`` is ``UNSPECIFIED`` (with a ``draft_size``).
    """
    decoded = _decode(image, max_pixels, draft_size, fit)[0]
    return decoded if decoded.mode == "RGB" else decoded.convert("RGB")


def _decode(
    image: EncodedImage,
    max_pixels: int,
    draft_size: tuple[int, int] | None,
    fit: FrameFit,
    check_jpeg_data: bool = True,
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`decode_image`, except that a grayscale frame stays grayscale (mode ``L``), and the
    ``(height, width)`` of the frame as sent (the decoded image is smaller when a JPEG was decoded at a reduced
    scale)."""
    if image.encoding == ImageEncoding.RAW_RGB8:
        pixels = _raw_pixels(image, max_pixels)  # [H, W, 3]
        return Image.fromarray(pixels), (pixels.shape[0], pixels.shape[1])
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
    _check_structure(image.data)
    opened = _open(image.data, expected, max_pixels)
    width, height = opened.size
    _check_size(width, height, max_pixels)
    mode = opened.mode
    if mode not in _DECODED_MODES:
        raise FrameRejected(
            ErrorCode.WRONG_CHANNELS,
            f"cannot read a {expected} of Pillow mode {mode!r} as an image: send 8-bit RGB, 8 or 16-bit grayscale, "
            "RGBA, grayscale with alpha, palette or CMYK",
        )
    if expected == "JPEG":
        _check_jpeg_scans(image.data)  # first: the check below decodes every scan
        if check_jpeg_data:
            _check_jpeg_data(image.data)
    if draft_size is not None and expected == "JPEG":
        # libjpeg can decode at 1/2, 1/4 or 1/8 scale; keep at least twice the target size in the model's view.
        # The mode asked for does not change a grayscale or CMYK JPEG's mode: only the scale applies to them.
        opened.draft("RGB", _draft_request(height, width, draft_size, fit))
    try:  # RGB and L in place (no copy), 16-bit grayscale by its top 8 bits, the rest converted by Pillow
        return rgb_or_gray(opened), (height, width)
    except PixelRangeError as error:  # mode I beyond 16 bits
        raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, f"a grayscale image with {error.detail}") from error
    except (OSError, ValueError, SyntaxError) as error:
        if "truncated" in str(error):  # Pillow's "image file is truncated (N bytes not processed)"
            problem = (
                f"the {expected} data ends early: its {width}x{height} image is cut off after "
                f"{len(image.data):,} bytes (a partial read or write of the frame?)"
            )
            raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, problem) from error
        raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, f"the {expected} data is corrupt: {error}") from error


def to_model_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB or grayscale (``L``) image to ``size`` = ``(H, W)`` and convert it to float32 ``[3, H, W]``
    in ``[0, 1]``; a grayscale image's one channel becomes R, G and B (exactly what resizing it as RGB gives)."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)  # [H, W, 3], or [H, W] for a grayscale image
    if pixels.ndim == 2:
        gray = pixels * np.float32(1 / 255)  # [H, W]
        return np.repeat(gray[None], 3, axis=0)  # [H, W] -> [1, H, W] -> [3, H, W]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)) * np.float32(1 / 255)  # [H, W, 3] -> [3, H, W]


def _draft_request(height: int, width: int, size: tuple[int, int], fit: FrameFit) -> tuple[int, int]:
    """The ``(width, height)`` below which a reduced-scale JPEG decode must not go: the model's view (``fit``'s
    box in the frame) is resized to ``size``, so the frame needs ``2 * size * frame / box`` pixels a side for the
    view to keep at least twice ``size`` (for a stretch exactly twice ``size``)."""
    _, _, box_h, box_w = fit_box(height, width, size, fit.fit_name)
    return math.ceil(2 * size[1] * width / box_w), math.ceil(2 * size[0] * height / box_h)


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
        raise FrameRejected(
            ErrorCode.WRONG_CHANNELS,
            f"RAW_RGB8 images must have 3 channels (RGB, [height, width, 3]), got {channels}: replicate a grayscale "
            "image into R, G and B and drop an alpha channel before sending, or send the image as PNG or JPEG, "
            "which may be grayscale or have alpha",
        )
    expected = image.height * image.width * 3
    if len(image.data) != expected:
        raise FrameRejected(
            ErrorCode.WRONG_RAW_SIZE,
            f"raw image of {image.height}x{image.width}x3 needs {expected} bytes, got {len(image.data)}",
        )
    return np.frombuffer(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)  # [H*W*3] -> [H, W, 3]


def _unidentified(data: bytes, expected: str) -> FrameRejected:
    """What Pillow's refusal to identify ``data`` means: a header that declares no pixels (``EMPTY_IMAGE``), a PNG or
    JPEG header Pillow cannot read, or bytes of neither format (``UNDECODABLE_IMAGE``)."""
    kind = image_format(data)
    size = header_size(data)
    if size is not None and 0 in size:
        return FrameRejected(ErrorCode.EMPTY_IMAGE, f"the {kind} header declares {size[0]}x{size[1]} pixels")
    if kind is not None:
        return FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"{len(data)} bytes of a {kind} image whose header does not decode"
        )
    return FrameRejected(
        ErrorCode.UNDECODABLE_IMAGE, f"{len(data)} bytes that are not a {expected} image (nor PNG/JPEG at all)"
    )


def _open(data: bytes, expected: str, max_pixels: int) -> Image.Image:
    """Open ``data`` with Pillow (its header only), a PNG without its :data:`_UNUSED_PNG_CHUNKS`.

    Raises:
        FrameRejected: ``data`` is not an ``expected`` image, its header is corrupt, or it is larger than Pillow
            decodes (said as :func:`_check_size` says it, with ``max_pixels``).
    """
    readable = without_unused_png_chunks(data) if image_format(data) == "PNG" else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(readable), formats=list(_PIL_FORMATS.values()))
    except UnidentifiedImageError as error:
        raise _unidentified(data, expected) from error
    except Image.DecompressionBombError as error:  # beyond twice Image.MAX_IMAGE_PIXELS, above any max_pixels
        size = header_size(data)
        if size is None:  # a header too unusual for header_size: Pillow's limit is what is known
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            problem = f"the image has more than {limit} pixels; this server accepts at most {max_pixels} {_LIMIT_FLAG}"
            raise FrameRejected(ErrorCode.IMAGE_TOO_LARGE, problem) from error
        raise _too_large(*size, max_pixels) from error
    except (OSError, ValueError, SyntaxError) as error:
        raise FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"{len(data)} bytes that do not decode as {expected}: {error}"
        ) from error
    if opened.format != expected:
        raise FrameRejected(
            ErrorCode.UNDECODABLE_IMAGE, f"the frame says {expected} but the data is a {opened.format} image"
        )
    return opened


def _check_structure(data: bytes) -> None:
    """Refuse a PNG or JPEG that Pillow would spend seconds reading in Python: too many chunks or marker segments,
    or too many bytes stepped over one at a time (:func:`~service.image_headers.png_chunk_limit` and the JPEG
    limits beside it)."""
    kind = image_format(data)
    problem = None
    if kind == "PNG" and png_chunk_count(data, limit := png_chunk_limit(data)) > limit:
        problem = (
            f"the PNG has more than {limit:,} chunks (at most {MAX_PNG_CHUNKS}, and one per 4 KiB of its bytes; "
            "encoders write a handful besides the image data)"
        )
    elif kind == "JPEG":
        segments, skipped = jpeg_header_work(data)
        if segments > MAX_JPEG_HEADER_SEGMENTS:
            problem = (
                f"the JPEG has more than {MAX_JPEG_HEADER_SEGMENTS} marker segments before its image data (encoders "
                "write a few dozen)"
            )
        elif skipped > MAX_JPEG_HEADER_SKIPPED:
            problem = (
                f"the JPEG has more than {MAX_JPEG_HEADER_SKIPPED:,} stray bytes between its header segments "
                "(encoders write none)"
            )
    if problem is not None:
        raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, f"{problem}: re-encode the frame")


def _check_jpeg_scans(data: bytes) -> None:
    """Refuse a JPEG of more than :data:`MAX_JPEG_SCANS` scans before libjpeg decodes it: a count of 0xFF 0xDA
    pairs (about 1 ms a MB, a few % of decoding it), and a walk of the segments only when there are more (a few
    ms; at most about 12 ns a byte, for data of 0xFF bytes)."""
    scans, complete = count_jpeg_scans(data)
    if scans <= MAX_JPEG_SCANS and complete:
        return
    if scans > MAX_JPEG_SCANS:
        found = f"{scans:,} scans" if complete else f"more than {scans:,} scans"
    else:
        found = f"more than {JPEG_WALK_SEGMENTS:,} marker segments (encoders write a few dozen)"
    raise FrameRejected(
        ErrorCode.UNDECODABLE_IMAGE,
        f"the JPEG has {found}; this server decodes at most {MAX_JPEG_SCANS} scans (start-of-scan segments) per "
        "image, since each is a pass over the whole image: re-encode the frame as a baseline JPEG or a standard "
        "progressive one (about 10 scans)",
    )


def _check_jpeg_data(data: bytes) -> None:
    """Refuse a JPEG whose image data libjpeg finds damaged (:func:`~service.jpeg_integrity.jpeg_damage`): Pillow
    would decode it without a word, the missing or misread part made up (a cut-short scan mid-grey)."""
    damage = jpeg_damage(data)
    if damage is not None:
        raise FrameRejected(ErrorCode.UNDECODABLE_IMAGE, f"the JPEG's image data is damaged: {damage}")


def fitted_pixels(height: int, width: int, size: tuple[int, int], fit: FrameFit) -> int:
    """How many pixels a ``height x width`` frame has once fitted to ``size``'s aspect ratio, before the resize:
    the frame's own for ``STRETCH`` and ``CROP`` (at most), the padded canvas's for ``PAD`` (a 1 x 4096 frame
    padded for a square model is a 4096 x 4096 canvas)."""
    if fit != FrameFit.PAD or height < 1 or width < 1:
        return height * width
    _, _, box_h, box_w = fit_box(height, width, size, "pad")
    return box_h * box_w


def _check_canvas(
    decoded_size: tuple[int, int], size: tuple[int, int], max_pixels: int, frame_size: tuple[int, int]
) -> None:
    """Refuse a frame whose ``PAD`` canvas would exceed ``max_pixels``: a frame of a few bytes and an extreme
    aspect ratio would otherwise allocate gigabytes. The canvas is made around the decoded image
    (``decoded_size``, smaller than the ``frame_size`` sent for a JPEG decoded at a reduced scale)."""
    _, _, box_h, box_w = fit_box(*decoded_size, size, "pad")
    canvas = box_h * box_w
    if canvas > max_pixels:
        raise FrameRejected(
            ErrorCode.IMAGE_TOO_LARGE,
            f"padding the {frame_size[1]}x{frame_size[0]} image to the model's {size[1]}x{size[0]} aspect ratio "
            f"makes a {box_w}x{box_h} = {canvas} pixel canvas; this server accepts at most {max_pixels} "
            f"{_LIMIT_FLAG}: send frames nearer the model's aspect ratio, or use frame_fit CROP or STRETCH",
        )


MAX_DECODED_SIDE = 16384
"""Longest width or height accepted, whatever ``--max-image-pixels`` allows: decoding and resizing cost per row and
per column as well as per pixel, so a PNG of 1 x 16,000,000 pixels (31 KB) takes seconds of a decode thread that a
4000 x 4000 one takes 0.1 s of, and would hold up every other stream's frames (8K video is 7680 wide)."""


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise FrameRejected(ErrorCode.EMPTY_IMAGE, f"the image is {width}x{height} pixels")
    if width * height > max_pixels:
        raise _too_large(width, height, max_pixels)
    if max(width, height) > MAX_DECODED_SIDE:
        raise FrameRejected(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the image is {width}x{height} pixels; this server accepts at most {MAX_DECODED_SIDE} pixels on a side "
            "(a side that long costs a decode thread seconds whatever the pixel count): send frames nearer the "
            "model's aspect ratio",
        )


_LIMIT_FLAG = "(its --max-image-pixels)"
"""Names the server setting in every pixel-limit refusal, so a client's user knows what the server's operator can
change."""


def _too_large(width: int, height: int, max_pixels: int) -> FrameRejected:
    return FrameRejected(
        ErrorCode.IMAGE_TOO_LARGE,
        f"the image is {width}x{height} = {width * height} pixels; this server accepts at most {max_pixels} "
        f"{_LIMIT_FLAG}",
    )
