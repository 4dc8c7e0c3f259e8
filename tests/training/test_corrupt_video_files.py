"""A video file that cannot be opened is reported by the project's error alone: decord's own C++ log line
(``video_reader.cc:83: ERROR opening: ...``), which bypasses its Python log level, never reaches the terminal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from training.datasets import DatasetError
from training.datasets.decoding import decode_video, frame_count
from training.datasets.specs import build_dataset

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("decord") is None or importlib.util.find_spec("av") is None,
    reason="decord prints the line this guards against; PyAV keeps files it cannot open from reaching it",
)


def corrupt_mp4(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "bad.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)  # an mp4 header, then noise
    return path


def test_a_corrupt_training_video_is_named_without_decords_log_line(tmp_path: Path, capfd) -> None:
    path = corrupt_mp4(tmp_path / "videos")
    with pytest.raises(DatasetError, match=r"bad\.mp4") as raised:
        build_dataset(f"videos:{tmp_path / 'videos'}", "train", 2, (32, 32), 0)
    assert "cannot be read" in str(raised.value)
    err = capfd.readouterr().err
    assert "ERROR opening" not in err and "video_reader.cc" not in err, err

    for read in (lambda: frame_count(path), lambda: decode_video(path, range), lambda: frame_count(path, "decord")):
        with pytest.raises(DatasetError, match=rf"{path}: cannot (open|decode) video, corrupt or unsupported"):
            read()
    err = capfd.readouterr().err
    assert "ERROR opening" not in err and "video_reader.cc" not in err, err


def test_an_empty_video_file_is_called_empty(tmp_path: Path) -> None:
    """FFmpeg's reason for a file of 0 bytes is "Invalid data found when processing input"; the file is empty."""
    path = tmp_path / "videos" / "never_started.mp4"
    path.parent.mkdir()
    path.touch()
    for read in (lambda: frame_count(path), lambda: decode_video(path, range), lambda: frame_count(path, "decord")):
        with pytest.raises(
            DatasetError, match=rf"^{path}: cannot (open|decode) video: the file is empty \(0 bytes\)$"
        ):
            read()
