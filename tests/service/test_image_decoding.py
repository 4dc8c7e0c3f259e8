"""Frame decoding, conversion to model input, and mask post-processing (pure functions)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from service.decode_scheduling import cheap_to_decode
from service.errors import ErrorCode, FrameRejected
from service.images import fit_frame, prepare_frame
from service.postprocess import MaskRequest, mask_outputs
from service.types import EncodedImage, FrameFit, ImageEncoding

RGB = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def _encoded(fmt: str, array: np.ndarray = RGB) -> bytes:
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_raw_frames_become_float_chw_in_unit_range():
    image = EncodedImage(ImageEncoding.RAW_RGB8, RGB.tobytes(), 48, 64, 3)
    frame = prepare_frame(image, (48, 64), 1 << 20)
    assert frame.shape == (3, 48, 64) and frame.dtype == np.float32
    np.testing.assert_allclose(frame, RGB.transpose(2, 0, 1) / 255, atol=1e-6)


def test_png_equals_raw_and_resizing_is_bilinear():
    raw = prepare_frame(EncodedImage(ImageEncoding.RAW_RGB8, RGB.tobytes(), 48, 64), (24, 32), 1 << 20)
    png = prepare_frame(EncodedImage(ImageEncoding.PNG, _encoded("PNG")), (24, 32), 1 << 20)
    np.testing.assert_array_equal(raw, png)
    expected = np.asarray(Image.fromarray(RGB).resize((32, 24), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(raw, expected.transpose(2, 0, 1), atol=1e-6)


def test_jpeg_decodes_close_to_the_original():
    smooth = np.kron(RGB[:6, :8], np.ones((8, 8, 1), np.uint8))  # 48x64 of flat 8x8 blocks
    frame = prepare_frame(EncodedImage(ImageEncoding.JPEG, _encoded("JPEG", smooth)), (48, 64), 1 << 20)
    assert np.abs(frame - smooth.transpose(2, 0, 1) / 255).mean() < 0.05  # chroma subsampling blurs colour edges


def test_large_jpeg_uses_reduced_dct_decoding_and_still_matches(monkeypatch):
    big = np.kron(RGB, np.ones((8, 8, 1), np.uint8))  # 384x512, smooth at the 8-pixel scale
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, *args, **kwargs):
        result = draft(self, *args, **kwargs)
        decoded_sizes.append(self.size)  # what libjpeg will decode to
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    fast = prepare_frame(EncodedImage(ImageEncoding.JPEG, _encoded("JPEG", big)), (24, 32), 1 << 22)
    assert decoded_sizes == [(64, 48)], "decoded at 1/8 scale: the smallest at least twice the 32x24 target"
    exact = prepare_frame(EncodedImage(ImageEncoding.RAW_RGB8, big.tobytes(), 384, 512), (24, 32), 1 << 22)
    assert np.abs(fast - exact).mean() < 0.05


def test_a_cut_off_jpeg_is_named_as_such_with_its_size():
    """A frame whose bytes end early (a partial read) says so, not Pillow's "(0 bytes not processed)"."""
    data = _encoded("JPEG")
    with pytest.raises(FrameRejected) as rejected:
        prepare_frame(EncodedImage(ImageEncoding.JPEG, data[: len(data) // 2]), (48, 64), 1 << 20)
    assert rejected.value.code == ErrorCode.UNDECODABLE_IMAGE
    assert f"ends early: its 64x48 image is cut off after {len(data) // 2:,} bytes" in rejected.value.message
    assert "not processed" not in rejected.value.message


def _png_with_ihdr(width: int, height: int, colour_type: int = 2) -> bytes:
    """The test PNG with its IHDR's size and colour type replaced (and the chunk's CRC made to match)."""
    data = bytearray(_encoded("PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts at byte 16: width, height
    data[25] = colour_type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # over the type and the 13 bytes of data
    return bytes(data)


def _jpeg_with_sof_height(height: int) -> bytes:
    """The test JPEG with its SOF0 segment's height replaced."""
    data = bytearray(_encoded("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = struct.pack(">H", height)  # marker, length (2), precision (1), then height
    return bytes(data)


@pytest.mark.parametrize(
    ("encoding", "data", "declared"),
    [
        (ImageEncoding.PNG, _png_with_ihdr(64, 0), "the PNG header declares 64x0 pixels"),
        (ImageEncoding.PNG, _png_with_ihdr(0, 48), "the PNG header declares 0x48 pixels"),
        (ImageEncoding.JPEG, _jpeg_with_sof_height(0), "the JPEG header declares 64x0 pixels"),
    ],
    ids=["png-height", "png-width", "jpeg-height"],
)
def test_a_header_declaring_no_pixels_is_an_empty_image(encoding, data, declared):
    """It was answered UNDECODABLE_IMAGE, "bytes that are not a PNG image (nor PNG/JPEG at all)"."""
    with pytest.raises(FrameRejected) as rejected:
        prepare_frame(EncodedImage(encoding, data), (48, 64), 1 << 20)
    assert rejected.value.code == ErrorCode.EMPTY_IMAGE and rejected.value.message == declared


def test_a_png_header_pillow_cannot_read_is_not_called_other_than_a_png():
    with pytest.raises(FrameRejected) as rejected:
        prepare_frame(EncodedImage(ImageEncoding.PNG, _png_with_ihdr(64, 48, colour_type=5)), (48, 64), 1 << 20)
    assert rejected.value.code == ErrorCode.UNDECODABLE_IMAGE
    assert "of a PNG image whose header does not decode" in rejected.value.message


def test_size_is_checked_before_decoding_pixels():
    huge_png = _encoded("PNG", np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(FrameRejected) as error:
        prepare_frame(EncodedImage(ImageEncoding.PNG, huge_png), (24, 24), 100 * 100)
    assert error.value.code == ErrorCode.IMAGE_TOO_LARGE and "300x300" in error.value.message


@pytest.mark.parametrize("encoding", [ImageEncoding.PNG, ImageEncoding.RAW_RGB8], ids=["png", "raw"])
def test_a_frame_of_exactly_the_pixel_limit_is_accepted_and_one_pixel_more_is_refused(encoding):
    """``max_pixels`` is the largest accepted width x height: a 64 x 48 frame (3072 pixels) passes a limit of
    3072 and is refused by a limit of 3071."""
    if encoding == ImageEncoding.PNG:
        image = EncodedImage(encoding, _encoded("PNG"))
    else:
        image = EncodedImage(encoding, RGB.tobytes(), 48, 64, 3)
    assert prepare_frame(image, (24, 24), 64 * 48).shape == (3, 24, 24)
    with pytest.raises(FrameRejected) as rejected:
        prepare_frame(image, (24, 24), 64 * 48 - 1)
    assert rejected.value.code == ErrorCode.IMAGE_TOO_LARGE
    assert "64x48 = 3072 pixels; this server accepts at most 3071" in rejected.value.message


def test_palette_png_is_rgb():
    palette = Image.fromarray(RGB).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert prepare_frame(EncodedImage(ImageEncoding.PNG, buffer.getvalue()), (8, 8), 1 << 20).shape == (3, 8, 8)


def test_mask_outputs_resize_then_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    masks = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # [B, K, h, w], sums to 1 over K
    native, resized, nothing = mask_outputs(
        masks[[0, 1, 1]],
        [MaskRequest((4, 4), soft=True), MaskRequest((8, 6), soft=True, soft_uint8=True), MaskRequest((4, 4), False)],
    )
    np.testing.assert_array_equal(native.segmentation, masks[0].argmax(0))
    np.testing.assert_allclose(native.soft_masks, masks[0])
    expected = bilinear_half_pixel(masks[1], (8, 6))  # [K, 8, 6]
    assert resized.segmentation.shape == (8, 6) and resized.soft_masks.dtype == np.uint8
    np.testing.assert_array_equal(resized.segmentation, expected.argmax(0))  # argmax of the resized masks
    np.testing.assert_array_equal(resized.soft_masks, np.rint(expected * 255).astype(np.uint8))  # rounded
    assert nothing.segmentation is None and nothing.soft_masks is None


def bilinear_half_pixel(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[K, h, w] -> [K, H, W]``: bilinear resampling with pixel centres at half-integers, edges clamped (what
    ``align_corners=False`` means), written out here so the test does not check the server against itself."""

    def taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, source - low

    (top, bottom, dy), (left, right, dx) = taps(size[0], masks.shape[1]), taps(size[1], masks.shape[2])
    rows = masks[:, top] * (1 - dy)[:, None] + masks[:, bottom] * dy[:, None]  # [K, H, w]
    return rows[:, :, left] * (1 - dx) + rows[:, :, right] * dx  # [K, H, W]


def test_segmentation_gives_near_ties_to_the_lowest_slot():
    masks = np.zeros((1, 3, 1, 2), dtype=np.float32)  # [B, K, h, w]
    masks[0, :, 0, 0] = [0.0, 0.5, 0.5 + 1e-6]  # slots 1 and 2 tied within rounding noise
    masks[0, :, 0, 1] = [0.1, 0.2, 0.7]
    (out,) = mask_outputs(masks, [MaskRequest((1, 2))])
    assert out.segmentation.tolist() == [[1, 2]]


def test_only_images_small_in_pixels_too_are_decoded_on_the_event_loop():
    """A few KB of PNG can hold millions of pixels (85 ms to decode): the header decides, not the byte count."""
    flat = _encoded("PNG", np.zeros((2048, 2048, 3), np.uint8))
    assert len(flat) <= 16 * 1024, "compresses to a few KB"
    model, stretch = (64, 64), FrameFit.STRETCH
    assert not cheap_to_decode(EncodedImage(ImageEncoding.PNG, flat), model, stretch)
    assert cheap_to_decode(EncodedImage(ImageEncoding.PNG, _encoded("PNG")), model, stretch)
    assert cheap_to_decode(EncodedImage(ImageEncoding.JPEG, _encoded("JPEG")), model, stretch)
    assert cheap_to_decode(EncodedImage(ImageEncoding.JPEG, b"\xff\xd8 garbage"), model, stretch), "fails as fast"
    assert not cheap_to_decode(EncodedImage(ImageEncoding.RAW_RGB8, bytes(512 * 512 * 3), 512, 512, 3), model, stretch)


def test_a_thin_frame_is_judged_by_its_padded_canvas():
    """1 x 2048 pixels are few, but padded to a square model's aspect they make a 2048 x 2048 canvas: that work
    goes to the decode pool, off the event loop."""
    thin = _encoded("PNG", np.zeros((1, 2048, 3), np.uint8))
    raw = EncodedImage(ImageEncoding.RAW_RGB8, bytes(2048 * 3), 1, 2048, 3)
    for image in (EncodedImage(ImageEncoding.PNG, thin), raw):
        assert cheap_to_decode(image, (64, 64), FrameFit.STRETCH)
        assert cheap_to_decode(image, (64, 64), FrameFit.CROP)
        assert not cheap_to_decode(image, (64, 64), FrameFit.PAD)


def test_a_padded_canvas_beyond_the_pixel_limit_is_refused_before_it_is_made():
    """A frame of a few bytes and an extreme aspect ratio would pad to gigabytes; the limit on pixels applies to
    the canvas too, and the message says what to do."""
    thin = EncodedImage(ImageEncoding.PNG, _encoded("PNG", np.zeros((1, 8000, 3), np.uint8)))
    assert len(thin.data) < 1024
    with pytest.raises(FrameRejected) as rejected:
        fit_frame(thin, (64, 64), 4096 * 4096, FrameFit.PAD)
    assert rejected.value.code == ErrorCode.IMAGE_TOO_LARGE
    assert (
        "8000x8000 = 64000000 pixel canvas" in rejected.value.message and "CROP or STRETCH" in rejected.value.message
    )
    fitted = fit_frame(thin, (64, 64), 4096 * 4096, FrameFit.CROP)  # the same frame cropped is fine
    assert fitted.pixels.shape == (3, 64, 64)


@pytest.mark.parametrize("encoding", [ImageEncoding.PNG, ImageEncoding.RAW_RGB8], ids=["png", "raw"])
def test_a_padded_canvas_of_exactly_the_pixel_limit_is_accepted_and_one_pixel_more_is_refused(encoding):
    """A 100 x 10 frame (1000 pixels) padded for a square model makes a 100 x 100 canvas: a limit of 10000
    pixels accepts it, one of 9999 refuses it by its canvas although the frame itself is far below."""
    array = np.zeros((10, 100, 3), np.uint8)
    if encoding == ImageEncoding.PNG:
        image = EncodedImage(encoding, _encoded("PNG", array))
    else:
        image = EncodedImage(encoding, array.tobytes(), 10, 100, 3)
    assert fit_frame(image, (64, 64), 100 * 100, FrameFit.PAD).pixels.shape == (3, 64, 64)
    with pytest.raises(FrameRejected) as rejected:
        fit_frame(image, (64, 64), 100 * 100 - 1, FrameFit.PAD)
    assert rejected.value.code == ErrorCode.IMAGE_TOO_LARGE
    assert "100x100 = 10000 pixel canvas; this server accepts at most 9999" in rejected.value.message


def test_a_large_jpeg_padded_is_judged_by_the_canvas_of_its_reduced_decode():
    """A 5000 x 1000 JPEG is decoded at 1/8 scale for a 64 x 64 model, so its padded canvas is 625 x 625, far
    below the limit its full-size canvas (5000 x 5000) would exceed."""
    wide = EncodedImage(ImageEncoding.JPEG, _encoded("JPEG", np.full((1000, 5000, 3), 90, np.uint8)))
    fitted = fit_frame(wide, (64, 64), 4096 * 4096, FrameFit.PAD)
    assert fitted.pixels.shape == (3, 64, 64)
