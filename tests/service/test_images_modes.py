"""Frames that are not 8-bit RGB (mono cameras, 16-bit depth-style grayscale, alpha, CMYK) decode to exactly what
the same frame sent as RGB gives; the RGB path decodes in place.

Each case builds its RGB counterpart independently of the server, with numpy from the pixels Pillow decodes (or
with the documented rule: 16-bit keeps the top 8 bits, alpha is dropped, bilevel is 0 or 255, CMYK uses Pillow's
formula written out below). :data:`MODES` is shared with ``test_server_image_modes.py``, which serves them.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from service_helpers import raw

from service.errors import ErrorCode, FrameRejected
from service.images import decode_image, prepare_frame
from service.types import EncodedImage, FrameFit, ImageEncoding

FRAME = np.random.default_rng(5).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
ALPHA = np.random.default_rng(6).integers(0, 256, size=(30, 40), dtype=np.uint8)  # zeros among them
SIZE = (24, 24)  # the model's input size in these tests: the frames are fitted (stretched, cropped, padded)


def encode(image: Image.Image, fmt: str) -> bytes:
    """``image`` as ``fmt`` file bytes (JPEG at quality 90)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def gray_of(frame: np.ndarray) -> np.ndarray:
    """Some grayscale picture made from an RGB frame: uint8 ``[H, W]``."""
    return frame.mean(axis=2).astype(np.uint8)


def replicate(gray: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` -> ``[H, W, 3]`` with R = G = B."""
    return np.repeat(gray[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 1] -> [H, W, 3]


def decoded(data: bytes) -> np.ndarray:
    """The pixels Pillow decodes from ``data``, in the file's own mode (a JPEG's values differ from the source)."""
    return np.asarray(Image.open(io.BytesIO(data)))


def mono_jpeg(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    data = encode(Image.fromarray(gray_of(frame)), "JPEG")
    gray = decoded(data)
    assert gray.ndim == 2, "a one-component JPEG"
    return EncodedImage(ImageEncoding.JPEG, data), replicate(gray)


def gray_png(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    gray = gray_of(frame)
    return EncodedImage(ImageEncoding.PNG, encode(Image.fromarray(gray), "PNG")), replicate(gray)


def png_16_bit(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    gray = gray_of(frame)
    low = np.random.default_rng(7).integers(0, 256, size=gray.shape, dtype=np.uint16)
    values = (gray.astype(np.uint16) << 8) | low  # top 8 bits: gray; the low ones must not matter
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    return EncodedImage(ImageEncoding.PNG, encode(image, "PNG")), replicate(gray)


def rgba_png(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    rgba = np.dstack([frame, ALPHA[: frame.shape[0], : frame.shape[1]]])  # [H, W, 4]
    return EncodedImage(ImageEncoding.PNG, encode(Image.fromarray(rgba), "PNG")), frame  # alpha dropped


def gray_alpha_png(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    gray = gray_of(frame)
    image = Image.fromarray(np.dstack([gray, ALPHA[: gray.shape[0], : gray.shape[1]]]))  # [H, W, 2]
    assert image.mode == "LA"
    return EncodedImage(ImageEncoding.PNG, encode(image, "PNG")), replicate(gray)


def bilevel_png(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    white = gray_of(frame) > 100
    image = Image.fromarray(white)
    assert image.mode == "1"
    return EncodedImage(ImageEncoding.PNG, encode(image, "PNG")), replicate(np.where(white, 255, 0).astype(np.uint8))


def cmyk_jpeg(frame: np.ndarray) -> tuple[EncodedImage, np.ndarray]:
    cmyk = np.dstack([255 - frame, gray_of(frame) // 4])  # [H, W, 4]
    data = encode(Image.fromarray(cmyk, "CMYK"), "JPEG")
    values = decoded(data).astype(np.int32)  # [H, W, 4] CMYK as decoded
    ink = 255 - values[:, :, 3:]  # [H, W, 1]
    product = values[:, :, :3] * ink + 128
    rgb = ink - (((product >> 8) + product) >> 8)  # Pillow's plain CMYK -> RGB: (255 - C) (255 - K) / 255, rounded
    return EncodedImage(ImageEncoding.JPEG, data), np.clip(rgb, 0, 255).astype(np.uint8)


MODES: dict[str, Callable[[np.ndarray], tuple[EncodedImage, np.ndarray]]] = {
    "mono jpeg": mono_jpeg,
    "grayscale png": gray_png,
    "16-bit png": png_16_bit,
    "rgba png": rgba_png,
    "grayscale+alpha png": gray_alpha_png,
    "bilevel png": bilevel_png,
    "cmyk jpeg": cmyk_jpeg,
}
"""Each kind of frame that is not 8-bit RGB: ``frame -> (the frame so encoded, its RGB counterpart [H, W, 3])``."""


@pytest.mark.parametrize("fit", [FrameFit.STRETCH, FrameFit.CROP, FrameFit.PAD], ids=lambda fit: fit.name)
@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_gives_the_model_input_of_its_rgb_counterpart(mode, fit):
    image, rgb = MODES[mode](FRAME)
    got = prepare_frame(image, SIZE, 1 << 20, fit)
    np.testing.assert_array_equal(got, prepare_frame(raw(rgb), SIZE, 1 << 20, fit))
    as_decoded = decode_image(image, 1 << 20)
    assert as_decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(as_decoded), rgb)


def test_a_large_mono_jpeg_is_decoded_at_reduced_scale_like_its_rgb_twin(monkeypatch):
    """The reduced-scale decode applies to mono JPEGs: the frame as the same grey sent in a colour JPEG (whose
    chroma is flat) gives the very same input, and both decode at 1/4 scale."""
    gray = np.kron(gray_of(FRAME)[:25, :30], np.ones((8, 8), np.uint8))  # 200x240, smooth at the 8-pixel scale
    mono = EncodedImage(ImageEncoding.JPEG, encode(Image.fromarray(gray), "JPEG"))
    twin = EncodedImage(ImageEncoding.JPEG, encode(Image.fromarray(replicate(gray)), "JPEG"))
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, *args, **kwargs):
        result = draft(self, *args, **kwargs)
        decoded_sizes.append((self.mode, self.size))  # what libjpeg will decode to
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    for fit in (FrameFit.STRETCH, FrameFit.CROP, FrameFit.PAD):
        decoded_sizes.clear()
        fast = prepare_frame(mono, SIZE, 1 << 20, fit)
        np.testing.assert_array_equal(fast, prepare_frame(twin, SIZE, 1 << 20, fit))
        assert decoded_sizes[0] == ("L", (60, 50)), "1/4 scale: the smallest keeping twice 24x24 in the view"
        exact = prepare_frame(raw(replicate(gray)), SIZE, 1 << 20, fit)
        assert np.abs(fast - exact).mean() < 0.05


def test_rgb_and_grayscale_frames_are_decoded_without_a_conversion(monkeypatch):
    """Decoding in place: an RGB frame is not copied by a same-mode ``convert``, and a grayscale one stays one
    channel until the model input is made (a third of the resizing)."""
    conversions = []
    convert = Image.Image.convert

    def recording_convert(self, *args, **kwargs):
        conversions.append((self.mode, args))
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", recording_convert)
    gray = gray_of(FRAME)
    for fmt in ("JPEG", "PNG"):
        for picture in (Image.fromarray(FRAME), Image.fromarray(gray)):
            for fit in (FrameFit.STRETCH, FrameFit.PAD):
                prepare_frame(EncodedImage(ImageEncoding[fmt], encode(picture, fmt)), SIZE, 1 << 20, fit)
    assert conversions == []


def test_a_raw_frame_of_other_than_three_channels_is_refused_naming_the_remedy():
    for channels in (1, 4):
        image = EncodedImage(ImageEncoding.RAW_RGB8, bytes(30 * 40 * channels), 30, 40, channels)
        with pytest.raises(FrameRejected) as error:
            prepare_frame(image, SIZE, 1 << 20)
        assert error.value.code == ErrorCode.WRONG_CHANNELS
        assert f"got {channels}" in error.value.message and "PNG or JPEG" in error.value.message
