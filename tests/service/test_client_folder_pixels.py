"""The client's folder source reads every frame file as the server reads the same file (``plugins.pixels``): a
16-bit grayscale PNG by its top 8 bits, not clipped to white as Pillow's own RGB conversion clips it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.client.sources import open_source
from service.images import decode_image
from service.types import EncodedImage, ImageEncoding

SIXTEEN_BIT = np.array([[0, 256, 512, 25600, 65280]], np.uint16)
"""Values whose top 8 bits are 0, 1, 2, 100 and 255 (Pillow's ``convert("RGB")`` gives 0, 255, 255, 255, 255)."""


def server_reads(path) -> np.ndarray:
    """What the server decodes from the file's bytes sent as a PNG frame: uint8 ``[H, W, 3]``."""
    image = EncodedImage(ImageEncoding.PNG, path.read_bytes())
    return np.asarray(decode_image(image, max_pixels=1 << 20))


def test_a_16_bit_png_folder_is_read_by_its_top_8_bits_as_the_server_reads_it(tmp_path):
    Image.fromarray(SIXTEEN_BIT).save(tmp_path / "000.png")
    Image.fromarray(SIXTEEN_BIT[:, ::-1].copy()).save(tmp_path / "001.png")
    with Image.open(tmp_path / "000.png") as image:
        assert image.mode == "I;16"
    frames = [frame.image for frame in open_source(str(tmp_path), fps=10).frames]
    assert len(frames) == 2
    assert frames[0].dtype == np.uint8 and frames[0].shape == (1, 5, 3)
    assert frames[0][..., 0].tolist() == [[0, 1, 2, 100, 255]] and (frames[0] == frames[0][..., :1]).all()
    for frame, name in zip(frames, ("000.png", "001.png"), strict=True):
        np.testing.assert_array_equal(frame, server_reads(tmp_path / name))


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.arange(15, dtype=np.uint8).reshape(3, 5) * 17),  # L
        Image.fromarray(np.arange(15, dtype=np.uint8).reshape(3, 5) * 17).convert("1"),
        Image.fromarray(np.dstack([np.arange(15, dtype=np.uint8).reshape(3, 5) * 17] * 2)),  # LA
        Image.fromarray(np.arange(60, dtype=np.uint8).reshape(3, 5, 4) * 4),  # RGBA
        Image.fromarray(np.arange(45, dtype=np.uint8).reshape(3, 5, 3) * 5).convert("P"),
    ],
    ids=["gray", "bilevel", "gray with alpha", "rgba", "palette"],
)
def test_other_png_modes_are_read_as_the_server_reads_them(tmp_path, image):
    image.save(tmp_path / "frame.png")
    (frame,) = [frame.image for frame in open_source(str(tmp_path), fps=10).frames]
    np.testing.assert_array_equal(frame, server_reads(tmp_path / "frame.png"))


def test_a_folder_of_sequence_folders_is_refused_naming_them(tmp_path):
    """A dataset's folder of sequences (DAVIS ``JPEGImages/480p``) holds no frames itself: the error names the
    sequence folders to give instead."""
    for name in ("bear", "blackswan", "camel", "dog"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name / "00000.jpg")
    (tmp_path / "notes").mkdir()  # a folder without images is not named
    with pytest.raises(
        ValueError, match=r"holds no images .*; it holds folders of images \(bear, blackswan, camel, \.\.\.\)"
    ):
        open_source(str(tmp_path))


def test_an_image_file_is_a_source_of_one_frame(tmp_path):
    Image.fromarray(SIXTEEN_BIT).save(tmp_path / "one.png")
    source = open_source(str(tmp_path / "one.png"), fps=5)
    (frame,) = [frame.image for frame in source.frames]
    assert source.description == f"the image {tmp_path / 'one.png'}"
    assert np.array_equal(frame, server_reads(tmp_path / "one.png"))
