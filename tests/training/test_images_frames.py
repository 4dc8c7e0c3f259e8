"""``read_frame`` on frame images beyond 8-bit RGB: 16-bit grayscale is scaled, not clipped; floats are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import DatasetError, build_dataset
from training.datasets.images import read_frame


def test_16_bit_grayscale_png_frames_keep_their_brightness(tmp_path):
    values = np.array([[0, 257 * 100], [40000, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as image:
        assert image.mode == "I;16"
    frame = read_frame(tmp_path / "f.png")
    assert frame.dtype == np.uint8 and frame.shape == (2, 2, 3)
    assert frame[..., 0].tolist() == [[0, 100], [156, 255]] and (frame == frame[..., :1]).all()


def test_a_davis_sequence_of_16_bit_frames_is_not_white(tmp_path):
    seq = tmp_path / "JPEGImages" / "480p" / "s"
    seq.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((8, 8), 257 * 60 * t, np.uint16)).save(seq / f"{t:05d}.png")
    frames = build_dataset(f"davis:{tmp_path}", "val", None, (8, 8))[0].frames  # [T, 3, H, W]
    assert torch.allclose(frames.mean(dim=(1, 2, 3)), torch.tensor([0.0, 60.0, 120.0]) / 255)


def test_32_bit_integer_frames_are_read_in_the_16_bit_range(tmp_path):
    """Older Pillow versions read 16-bit PNGs in mode ``I``; a TIFF holds such an image under any suffix."""
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "f.png", format="TIFF")
    assert read_frame(tmp_path / "f.png")[..., 0].tolist() == [[0, 255]]
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "g.png", format="TIFF")
    with pytest.raises(DatasetError, match=r"g\.png: 'I' frame image with values 0-70000, outside the 16-bit range"):
        read_frame(tmp_path / "g.png")


def test_floating_point_frames_are_refused_naming_the_file(tmp_path):
    Image.fromarray(np.full((2, 2), 0.5, np.float32)).save(tmp_path / "f.png", format="TIFF")
    with pytest.raises(DatasetError, match=r"f\.png: floating-point frame image"):
        read_frame(tmp_path / "f.png")
