"""The client's (and ``service.extract``'s) file sources: a video with no frames or cut short, and folders of frames
in frame order without hidden files, each failing with a ``ValueError`` that names the file (and the frame)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from service.client.__main__ import main
from service.client.sources import open_source

UNUSED_TARGET = "127.0.0.1:9"  # never reached: each source below fails before the client connects


def header_only_video(path: Path) -> Path:
    """An FFV1 Matroska file of a header and no frame: PyAV's open raises ``av.error.EOFError``, which is neither
    an ``OSError`` nor a ``ValueError``."""
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=10)
    stream.width = stream.height = 32
    stream.pix_fmt = "bgr0"
    container.start_encoding()
    container.close()
    return path


def cut_video(path: Path, frames: int = 40) -> Path:
    """An H.264 mp4 of noise frames with its index first (``faststart``), cut to half its bytes: the first frames
    decode, then the decoder finds invalid data."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_video_without_frames_is_refused_naming_it(tmp_path):
    video = header_only_video(tmp_path / "empty.mkv")
    with pytest.raises(ValueError, match=f"^{re.escape(str(video))}: cannot read it as a video"):
        open_source(str(video))


def test_the_stream_command_explains_a_video_without_frames(tmp_path, capsys):
    video = header_only_video(tmp_path / "empty.mkv")
    assert main(["stream", str(video), "--target", UNUSED_TARGET]) == 2
    assert f"error: {video}: cannot read it as a video" in capsys.readouterr().err


def test_a_video_cut_short_names_the_file_and_the_frame_it_cannot_decode(tmp_path):
    video = cut_video(tmp_path / "cut.mp4")
    read = []
    with pytest.raises(ValueError, match=rf"^{re.escape(str(video))}: frame \d+: cannot decode it") as failure:
        for frame in open_source(str(video)).frames:
            read.append(frame)
    assert 0 < len(read) < 40
    assert str(failure.value).startswith(f"{video}: frame {len(read)}: ")  # the frame after the last one read


def test_a_folder_is_read_in_frame_order_without_hidden_files(tmp_path):
    """Unpadded numbers (``frame_10`` after ``frame_9``, not after ``frame_1``) and a macOS ``._`` resource file,
    as the ``davis:`` training reader takes them."""
    for number in range(1, 13):
        Image.fromarray(np.full((8, 8, 3), number * 20, np.uint8)).save(tmp_path / f"frame_{number}.png")
    (tmp_path / "._frame_1.png").write_bytes(b"\x00\x05\x16\x07" + os.urandom(100))  # AppleDouble, no image
    source = open_source(str(tmp_path), fps=10)
    assert [int(frame.image[0, 0, 0]) // 20 for frame in source.frames] == list(range(1, 13))
    assert source.description == f"12 images in {tmp_path}"


def test_a_folder_of_only_hidden_files_holds_no_images(tmp_path):
    (tmp_path / "._00000.jpg").write_bytes(b"\x00\x05\x16\x07" + os.urandom(100))
    with pytest.raises(ValueError, match="holds no images"):
        open_source(str(tmp_path))


def test_a_truncated_image_in_a_folder_is_named(tmp_path):
    for index in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * index, np.uint8)).save(tmp_path / f"{index:05d}.jpg")
    data = (tmp_path / "00001.jpg").read_bytes()
    (tmp_path / "00001.jpg").write_bytes(data[: len(data) // 2])
    frames = open_source(str(tmp_path), fps=10).frames
    next(frames)
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / '00001.jpg'))}: cannot read the image"):
        next(frames)


def test_an_empty_video_file_is_called_empty(tmp_path):
    video = tmp_path / "never_started.mp4"
    video.touch()
    with pytest.raises(ValueError, match=f"^{re.escape(str(video))}: the file is empty \\(0 bytes\\); give a video"):
        open_source(str(video))
