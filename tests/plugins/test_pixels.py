"""``plugins.pixels``: 8-bit RGB or grayscale from any Pillow image, the one reading of frame files shared by
training, the server and the client."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from plugins.pixels import PixelRangeError, rgb_or_gray, rgb_pixels
from service.images import decode_image
from service.types import EncodedImage, ImageEncoding
from training.datasets.images import read_frame

VALUES = np.array([[0, 256, 512], [25600, 65280, 65535]], np.uint16)
TOP_BITS = [[0, 1, 2], [100, 255, 255]]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_grayscale_keeps_its_top_8_bits(mode):
    images = {
        "I;16": Image.fromarray(VALUES),
        "I;16B": Image.frombytes("I;16B", (3, 2), VALUES.astype(">u2").tobytes()),  # [2, 3] big-endian
        "I": Image.fromarray(VALUES.astype(np.int32)),
    }
    image = images[mode]
    assert image.mode == mode and np.asarray(image).astype(np.int64).tolist() == VALUES.tolist()
    gray = rgb_or_gray(image)
    assert gray.mode == "L" and np.asarray(gray).tolist() == TOP_BITS
    pixels = rgb_pixels(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 3, 3)
    assert pixels[..., 0].tolist() == TOP_BITS and (pixels == pixels[..., :1]).all()


def test_rgb_and_gray_images_are_returned_as_they_are():
    for image in (Image.new("RGB", (4, 3), (1, 2, 3)), Image.new("L", (4, 3), 7)):
        assert rgb_or_gray(image) is image
    assert rgb_pixels(Image.new("L", (4, 3), 7)).tolist() == [[[7, 7, 7]] * 4] * 3


@pytest.mark.parametrize(
    ("values", "mode", "detail"),
    [
        (np.array([[0, 70000]], np.int32), "I", "values 0-70000, outside the 16-bit range 0-65535"),
        (np.array([[-1, 5]], np.int32), "I", "values -1-5, outside the 16-bit range 0-65535"),
        (np.array([[0.5]], np.float32), "F", "floating-point values, whose range is unknown"),
    ],
)
def test_values_without_an_8_bit_reading_are_refused(values, mode, detail):
    image = Image.fromarray(values)
    assert image.mode == mode
    with pytest.raises(PixelRangeError) as error:
        rgb_or_gray(image)
    assert isinstance(error.value, ValueError)
    assert (error.value.mode, error.value.detail) == (mode, detail)
    assert str(error.value) == f"a {mode!r} image with {detail}"


def test_training_and_the_server_read_a_16_bit_png_alike(tmp_path):
    Image.fromarray(VALUES).save(tmp_path / "f.png")
    served = np.asarray(decode_image(EncodedImage(ImageEncoding.PNG, (tmp_path / "f.png").read_bytes()), 1 << 20))
    np.testing.assert_array_equal(read_frame(tmp_path / "f.png"), served)
    assert served[..., 0].tolist() == TOP_BITS
