"""Grayscale masks are binary (object >= 128, as in DAVIS 2016): instance ids saved as scaled gray levels
(``cv2.imwrite(ids * 85)``) would turn object 1 into background and merge the others, so a grayscale mask with two
or more gray levels that each cover an area is refused, naming the file; binary masks whose edges are anti-aliased,
blurred or JPEG-damaged still read."""

from __future__ import annotations

import io

import numpy as np
import pytest
from davis_sample import davis_root, needs_davis
from PIL import Image, ImageFilter

from training.datasets import DatasetError, build_dataset
from training.datasets.images import read_mask


def instance_ids(height: int = 96, width: int = 128) -> np.ndarray:
    """uint8 [H, W] ids 0-3: three filled objects of different sizes on background."""
    ids = np.zeros((height, width), np.uint8)
    ids[10:40, 10:50] = 1
    ids[50:90, 60:120] = 2
    ids[20:35, 80:100] = 3
    return ids


def binary_disc(height: int = 96, width: int = 128) -> Image.Image:
    """A 0/255 grayscale disc, the DAVIS 2016 mask of one object."""
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (height / 3) ** 2
    return Image.fromarray(np.where(disc, 255, 0).astype(np.uint8), mode="L")


def jpeg_damaged(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after a round trip through JPEG: noise near black and white, ringing along the edges."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


@pytest.mark.parametrize("scale", [85, 64, 50])
def test_instance_ids_saved_as_gray_levels_are_refused_naming_the_file(tmp_path, scale):
    path = tmp_path / "00000.png"
    Image.fromarray(instance_ids() * scale, mode="L").save(path)
    levels = ", ".join(str(scale * i) for i in (1, 2, 3))
    with pytest.raises(DatasetError, match=rf"^{path}: grayscale mask with 3 gray levels .*\({levels}\)") as refused:
        read_mask(path)
    assert "palette ('P') PNG" in str(refused.value) and "binary 0/255 mask" in str(refused.value)


def test_gray_level_ids_stop_evaluation_of_a_davis_folder(tmp_path):
    root = tmp_path / "DAVIS"
    frames, masks = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    for t in range(2):
        Image.fromarray(np.full((96, 128, 3), 40 * t, np.uint8)).save(frames / f"{t:05d}.jpg")
        Image.fromarray(instance_ids() * 85, mode="L").save(masks / f"{t:05d}.png")
    with pytest.raises(DatasetError, match=r"seq/00000\.png: grayscale mask with 3 gray levels"):
        build_dataset(f"davis:{root}", "val", None, (32, 32))[0]


def test_one_object_in_any_gray_above_128_reads_as_binary(tmp_path):
    ids = instance_ids()
    Image.fromarray(np.where(ids == 2, 200, 0).astype(np.uint8), mode="L").save(tmp_path / "one.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "one.png"), (ids == 2).astype(np.int16))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda image: image, id="clean"),
        pytest.param(
            lambda image: jpeg_damaged(image, 3), id="jpeg-3"
        ),  # flat patches of near-black and near-white grays
        pytest.param(lambda image: jpeg_damaged(image, 30), id="jpeg-30"),
        pytest.param(lambda image: jpeg_damaged(image, 95), id="jpeg-95"),
        pytest.param(lambda image: image.filter(ImageFilter.GaussianBlur(4)), id="blurred"),
        pytest.param(lambda image: image.resize((32, 24), Image.Resampling.BOX), id="box-downscaled"),
        pytest.param(lambda image: image.resize((512, 384), Image.Resampling.BICUBIC), id="bicubic-upscaled"),
    ],
)
def test_binary_masks_with_soft_or_noisy_edges_still_read(tmp_path, damage):
    mask = damage(binary_disc())
    mask.save(tmp_path / "soft.png")
    values = np.asarray(mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "soft.png"), (values >= 128).astype(np.int16))


@needs_davis
def test_every_real_davis2016_mask_reads_as_binary():
    masks = sorted((davis_root() / "DAVIS" / "Annotations").rglob("*.png"))
    assert masks
    for path in masks:
        assert set(np.unique(read_mask(path)).tolist()) <= {0, 1}, path
