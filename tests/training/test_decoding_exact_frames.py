"""``backend="auto"`` decodes exactly the frames asked for, and counts the frames it decodes, on the files where
decord's random access does not: MPEG-4 Part 2 with B-frames, HEVC with open GOPs (x265's default) and an MP4
trimmed by an edit list; a stream whose frame size changes is refused naming the frame, not stretched.

Every frame carries its own index in its pixels (8 black or white blocks along its top, one bit each), so a
decoded clip is checked against the indices it claims.
"""

from __future__ import annotations

import fractions
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.datasets import DatasetError
from training.datasets.decoding import decode_video, frame_count

av = pytest.importorskip("av")

WIDTH, HEIGHT = 160, 96
STRIP = HEIGHT // 4  # rows of the index blocks
BLOCK = WIDTH // 8  # columns of one bit's block


def frame_image(index: int, width: int = WIDTH) -> np.ndarray:
    """uint8 [HEIGHT, width, 3]: red left half, blue right half, and ``index``'s 8 bits as black/white blocks."""
    image = np.zeros((HEIGHT, width, 3), np.uint8)
    image[:, : width // 2] = (200, 30, 30)
    image[:, width // 2 :] = (30, 30, 200)
    image[:STRIP] = 0
    block = width // 8
    for bit in range(8):
        if (index >> bit) & 1:
            image[:STRIP, bit * block : (bit + 1) * block] = 255
    return image


def index_of(frame: np.ndarray) -> int:
    """The index a decoded frame (uint8 [H, W, 3]) carries (:func:`frame_image`), read away from block edges."""
    block = frame.shape[1] // 8
    return sum(
        1 << bit for bit in range(8) if frame[2 : STRIP - 2, bit * block + 2 : (bit + 1) * block - 2].mean() > 128
    )


def write_video(path: Path, frames: int, codec: str, gop: int, options: dict[str, str]) -> None:
    """``frames`` frames of :func:`frame_image` encoded with ``codec`` at 30 fps, a keyframe every ``gop``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = options
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_trimmed_mp4(path: Path, stored: int, trimmed: int) -> None:
    """An MP4 of ``stored`` H.264 frames whose edit list drops the first ``trimmed`` (what a phone's "trim"
    writes): its packets' timestamps are moved ``trimmed`` frames before 0, so the muxer starts the edit there."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"bf": "0"}
        packets = [
            packet
            for index in range(stored)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(index), format="rgb24"))
        ]
        packets += stream.encode()
        shift = int(trimmed / (30 * packets[0].time_base))  # `trimmed` frames in the packets' time base
        for packet in packets:
            packet.pts -= shift
            packet.dts -= shift
            container.mux(packet)


def vp8_packets(first: int, count: int, width: int) -> list[Any]:
    """VP8 packets of frames ``first`` .. ``first + count - 1`` of :func:`frame_image` at ``width`` x HEIGHT."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.framerate = 30
    packets = []
    for index in range(first, first + count):
        frame = av.VideoFrame.from_ndarray(frame_image(index, width), format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = index, codec.time_base
        packets += codec.encode(frame)
    return packets + codec.encode(None)


def needs_encoder(name: str) -> None:
    if name not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {name} encoder")


def assert_exact(path: Path, windows: Iterable[range]) -> None:
    """Each window decodes with ``"auto"`` to frames carrying exactly its indices."""
    wrong = []
    for window in windows:
        clip = decode_video(path, lambda count, window=window: window)
        held = [index_of(frame) for frame in clip.frames]
        if clip.indices != window or held != list(window):
            wrong.append((list(window), held, clip.backend))
    assert not wrong, f"{path.name}: {len(wrong)} windows hold other frames (asked, held, backend): {wrong[:3]}"


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_mpeg4_with_b_frames_decodes_the_frames_asked_for(tmp_path: Path, suffix: str) -> None:
    """Xvid-style MPEG-4 Part 2 with B-frames: decord gave frames 86-89, 89, 89 for a window of 84-89."""
    needs_encoder("mpeg4")
    path = tmp_path / f"xvid{suffix}"
    write_video(path, 90, "mpeg4", gop=30, options={"bf": "2"})
    assert frame_count(path) == 90
    assert_exact(path, [range(start, start + 6) for start in range(0, 85, 3)])


def test_hevc_with_open_gops_decodes_the_frames_asked_for(tmp_path: Path) -> None:
    """x265's default open GOPs: decord shifted windows starting on a keyframe by 1-2 frames."""
    needs_encoder("libx265")
    path = tmp_path / "hevc.mp4"
    write_video(path, 200, "libx265", gop=60, options={"x265-params": "log-level=error"})
    assert frame_count(path) == 200
    assert_exact(path, [range(start, start + 6) for start in (*range(0, 194, 6), 59, 60, 61, 119, 120, 180)])


def test_a_trimmed_mp4_counts_and_decodes_the_frames_it_plays(tmp_path: Path) -> None:
    """An edit list that drops the first 10 of 60 stored frames: 50 frames, those stored as 10-59 (decord counted
    60, its last 10 repeating the final frame)."""
    needs_encoder("libx264")
    path = tmp_path / "trimmed.mp4"
    write_trimmed_mp4(path, stored=60, trimmed=10)
    assert frame_count(path) == 50 and frame_count(path, "pyav") == 50
    whole = decode_video(path, lambda count: range(count))
    assert whole.num_frames == 50 and [index_of(frame) for frame in whole.frames] == list(range(10, 60))
    first = decode_video(path, lambda count: range(6))
    assert first.num_frames == 50 and [index_of(frame) for frame in first.frames] == list(range(10, 16))
    for start in (0, 20, 44):
        clip = decode_video(path, lambda count, start=start: range(start, start + 6))
        assert [index_of(frame) for frame in clip.frames] == list(range(start + 10, start + 16))


def test_a_frame_size_change_is_refused_naming_the_file_and_the_frame(tmp_path: Path) -> None:
    """A WebM whose frames turn from 160x96 to 128x96 at frame 20: decord stretched them to one size."""
    needs_encoder("libvpx")
    path = tmp_path / "resized.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = fractions.Fraction(1, 30)
        for packet in vp8_packets(0, 20, WIDTH) + vp8_packets(20, 20, 128):
            packet.stream = stream
            container.mux(packet)
    assert frame_count(path) == 40  # WebM records no count: the packets are counted
    with pytest.raises(DatasetError, match=rf"{path}: the frame size changes at frame 20, from 160x96 to 128x96"):
        decode_video(path, lambda count: range(15, 25))
    before, after = decode_video(path, lambda count: range(14, 20)), decode_video(path, lambda count: range(30, 36))
    assert before.frames.shape == (6, HEIGHT, WIDTH, 3) and after.frames.shape == (6, HEIGHT, 128, 3)
    assert [index_of(frame) for frame in after.frames] == list(range(30, 36))


def test_decord_decodes_when_pyav_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("decord") is None:
        pytest.skip("decord is not installed (the x86_64 wheels only)")
    needs_encoder("libx264")
    path = tmp_path / "clip.mp4"
    write_video(path, 12, "libx264", gop=12, options={"bf": "0"})
    assert decode_video(path, lambda count: range(3)).backend == "pyav"
    monkeypatch.setitem(sys.modules, "av", None)  # "import av" now raises ImportError
    clip = decode_video(path, lambda count: range(3))
    assert clip.backend == "decord" and [index_of(frame) for frame in clip.frames] == [0, 1, 2]
    assert frame_count(path) == 12
