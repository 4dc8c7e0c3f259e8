"""A ``videos:`` folder's ``<stem>/`` folder is the video's masks only when it holds PNG masks: one holding the
video's frames dumped as JPEG leaves the video unlabelled, and a mask folder missing a mask annotates the video
sparsely (the frame without a mask is void); one holding a PNG that is no mask says it was taken for masks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import DatasetError, VideoFolderDataset, build_dataset
from training.datasets.export import write_mask_png, write_mp4
from training.datasets.synthetic import generate_video

FRAMES = 4


def _video(folder: Path, stem: str) -> np.ndarray:
    """``folder/<stem>.mp4`` of a synthetic clip (32x64: a width decord decodes well); returns its masks."""
    video = generate_video("easy", 3, FRAMES, (32, 64))
    folder.mkdir(exist_ok=True)
    write_mp4(folder / f"{stem}.mp4", video.frames)
    masks: np.ndarray = video.masks
    return masks


def test_a_folder_of_jpeg_frames_beside_a_video_leaves_it_unlabelled(tmp_path):
    folder = tmp_path / "videos"
    _video(folder, "clip")
    (folder / "clip").mkdir()
    for t in range(FRAMES):
        Image.fromarray(np.full((32, 64, 3), 30 * t, np.uint8)).save(folder / "clip" / f"{t:05d}.jpg")
    (folder / "clip" / "._00000.png").write_bytes(b"\x00\x05\x16\x07")  # hidden: not a mask
    val = build_dataset(f"videos:{folder}", "val", None, (16, 16))
    assert isinstance(val, VideoFolderDataset) and not val.has_masks(0)
    clip = val[0]
    assert clip.masks is None and clip.frames.shape[0] == FRAMES


def test_a_mask_folder_missing_a_mask_leaves_that_frame_void(tmp_path):
    folder = tmp_path / "videos"
    masks = _video(folder, "clip")
    (folder / "clip").mkdir()
    for t in range(FRAMES - 1):  # no mask for the last frame
        write_mask_png(folder / "clip" / f"{t:05d}.png", masks[t])
    val = build_dataset(f"videos:{folder}", "val", None, (16, 16))
    assert isinstance(val, VideoFolderDataset) and val.has_masks(0)
    clip_masks = val[0].masks
    assert clip_masks is not None and bool((clip_masks[FRAMES - 1] == -1).all())


def test_a_png_that_is_no_mask_says_the_folder_was_taken_for_masks(tmp_path):
    folder = tmp_path / "videos"
    _video(folder, "clip")
    (folder / "clip").mkdir()
    frame = folder / "clip" / "00000.png"
    Image.fromarray(np.full((32, 64, 3), 90, np.uint8)).save(frame)  # a frame dumped as PNG: RGB, no mask
    with pytest.raises(DatasetError) as refused:
        build_dataset(f"videos:{folder}", "val", None, (16, 16))[0]
    message = str(refused.value)
    assert message.startswith(f"{frame}: unsupported mask mode 'RGB'")
    assert re.search(rf"{re.escape(str(folder / 'clip'))} holds PNG files, so it was taken for the masks", message)
