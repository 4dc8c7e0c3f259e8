"""Files in an unexpected place are named with why they were read so: PNG frames dumped into the folder named after
a video, next to it, were taken for its masks; a folder of video files given where a video or a folder of images
is expected names the videos to give instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.client.sources import open_source
from training.datasets import DatasetError, build_dataset
from training.datasets.export import write_mp4
from training.datasets.synthetic import generate_video

FRAMES = 3


def _clip(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, generate_video("easy", 1, FRAMES, (32, 64)).frames)


def test_png_frames_next_to_their_video_are_said_to_have_been_taken_for_its_masks(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    _clip(folder / "walk.mp4")
    (folder / "walk").mkdir()
    for t in range(FRAMES):  # the video's frames, dumped as RGB PNG files
        Image.fromarray(np.full((32, 64, 3), 40 * t, np.uint8)).save(folder / "walk" / f"{t:05d}.png")
    with pytest.raises(DatasetError) as refused:
        build_dataset(f"videos:{folder}", "val", None, (16, 16))[0]
    message = str(refused.value)
    assert message.startswith(f"{folder / 'walk' / '00000.png'}: unsupported mask mode 'RGB'")
    assert f"{folder / 'walk'} holds PNG files, so it was taken for the masks of walk.mp4" in message
    assert "named after the video and sits next to it" in message and "move them out" in message


def test_a_folder_of_videos_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    _clip(folder / "a.mp4")
    (folder / "b.MOV").write_bytes((folder / "a.mp4").read_bytes())  # a camera's name, in capitals
    (folder / "notes.txt").write_text("not a video")
    with pytest.raises(ValueError) as refused:
        open_source(str(folder))
    message = str(refused.value)
    assert message.startswith(f"{folder} holds no images (.png")
    assert "it holds 2 video file(s) (a.mp4, b.MOV): give the files themselves, not their folder" in message
    assert f"({folder / 'a.mp4'} ...)" in message


def test_a_folder_of_nothing_readable_says_only_that_it_holds_no_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(ValueError) as refused:
        open_source(str(tmp_path))
    assert str(refused.value) == f"{tmp_path} holds no images (.png, .jpg, .jpeg, .bmp, .webp)"
