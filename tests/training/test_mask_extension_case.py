"""Mask files are found whatever the case of their extension (``00000.PNG``, as frames may be ``.JPG``), in
``videos:`` and ``davis:`` folders alike; two files for one frame's mask are an error naming both."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import DatasetError, DavisDataset, VideoFolderDataset, build_dataset
from training.datasets.export import write_labelled_mp4, write_mask_png
from training.datasets.synthetic import generate_video

FRAMES = 3


def _uppercase(folder: Path) -> None:
    """Renames every ``.png`` in ``folder`` to ``.PNG``."""
    for path in sorted(folder.glob("*.png")):
        path.rename(path.with_suffix(".PNG"))


def test_a_video_with_uppercase_png_masks_reads_them(tmp_path: Path) -> None:
    video = generate_video("easy", 3, FRAMES, (32, 64))
    write_labelled_mp4(tmp_path, "clip", video.frames, video.masks)
    expected = build_dataset(f"videos:{tmp_path}", "val", None, (16, 16))[0].masks
    _uppercase(tmp_path / "clip")
    val = build_dataset(f"videos:{tmp_path}", "val", None, (16, 16))
    assert isinstance(val, VideoFolderDataset) and val.has_masks(0)
    masks = val[0].masks
    assert masks is not None and expected is not None and torch.equal(masks, expected)


def test_an_uppercase_png_mask_without_a_frame_is_named(tmp_path: Path) -> None:
    video = generate_video("easy", 3, FRAMES, (32, 64))
    write_labelled_mp4(tmp_path, "clip", video.frames, video.masks)
    write_mask_png(tmp_path / "clip" / "00009.PNG", video.masks[0])
    with pytest.raises(DatasetError, match=re.escape("masks without a frame: 00009.PNG")):
        build_dataset(f"videos:{tmp_path}", "val", None, (16, 16))[0]


def _davis(root: Path) -> Path:
    """A DAVIS folder of one labelled sequence ``seq``; returns its annotation folder."""
    video = generate_video("easy", 4, FRAMES, (24, 32))
    images, masks = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for t in range(FRAMES):
        Image.fromarray(video.frames[t]).save(images / f"{t:05d}.jpg")
        write_mask_png(masks / f"{t:05d}.png", video.masks[t])
    return masks


def test_a_davis_sequence_with_uppercase_png_masks_reads_them(tmp_path: Path) -> None:
    annotations = _davis(tmp_path)
    expected = build_dataset(f"davis:{tmp_path}", "val", None, (16, 16))[0].masks
    _uppercase(annotations)
    val = build_dataset(f"davis:{tmp_path}", "val", None, (16, 16))
    assert isinstance(val, DavisDataset) and val.has_masks(0)
    masks = val[0].masks
    assert masks is not None and expected is not None and torch.equal(masks, expected)


def test_two_mask_files_for_one_frame_are_an_error_naming_both(tmp_path: Path) -> None:
    annotations = _davis(tmp_path)
    write_mask_png(annotations / "00001.PNG", np.zeros((24, 32), np.uint8))
    with pytest.raises(DatasetError, match=re.escape(f"{annotations / '00001.png'}: a second mask file for frame")):
        build_dataset(f"davis:{tmp_path}", "val", None, (16, 16))
