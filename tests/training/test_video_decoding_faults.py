"""Damaged and awkward video files in training: a Matroska or WebM file cut short (which decodes to fewer frames
without an error) is refused as the client refuses it, naming the file; a frame PyAV cannot decode is named by its
index, with decord's error only when it failed otherwise and without its C++ source locations; and decord, which
fails on many videos turned a quarter turn by their display matrix, is not fallen back to on one, and says so when
asked for by name."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import av
import numpy as np
import pytest

from training.datasets import DatasetError, VideoFolderDataset
from training.datasets.decoding import decode_video, frame_count

FRAMES = 12
HAS_DECORD = importlib.util.find_spec("decord") is not None
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed (the x86_64 wheels only)")


def write_video(
    path: Path,
    codec: str,
    pix_fmt: str = "yuv420p",
    size: tuple[int, int] = (48, 64),
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """``FRAMES`` flat frames at 10 frames/s (frame ``t`` of value ``20 t``), of ``size`` (height, width), whose
    display matrix turns them ``rotation`` degrees."""
    height, width = size
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for t in range(FRAMES):
            image = np.full((height, width, 3), 20 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """The byte offset and size of each packet of ``path``'s video stream that holds a frame, in file order."""
    with av.open(str(path)) as container:
        return [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]


def cut_before_packet(video: Path, packet: int, cut: Path) -> Path:
    """``video``'s bytes up to where packet ``packet`` starts: the packets before it are whole, so the decoder
    meets a clean end of file, not damaged data."""
    cut.write_bytes(video.read_bytes()[: packet_spans(video)[packet][0]])
    return cut


def zero_packet(video: Path, packet: int) -> Path:
    """``video`` with packet ``packet``'s bytes zeroed in place (the file keeps its length and its index)."""
    data = bytearray(video.read_bytes())
    start, size = packet_spans(video)[packet]
    data[start : start + size] = bytes(size)
    video.write_bytes(bytes(data))
    return video


@pytest.mark.parametrize(("name", "codec"), [("clip.mkv", "libx264"), ("clip.webm", "libvpx")])
def test_a_matroska_or_webm_file_cut_short_is_refused_naming_it(tmp_path, name, codec):
    whole = write_video(tmp_path / name, codec)
    assert frame_count(whole) == FRAMES  # whole: no false alarm
    folder = tmp_path / "videos"
    folder.mkdir()
    cut = cut_before_packet(whole, 5, folder / name)
    early = rf"{re.escape(str(cut))}: the file ends early, after frame 4 \(at 0\.500 s of the 1\.200 s its header "
    for read in (lambda: frame_count(cut), lambda: decode_video(cut, lambda n: range(n))):
        with pytest.raises(DatasetError, match=f"^{early}"):
            read()
    with pytest.raises(DatasetError, match=rf"{folder}: 1 video file\(s\) cannot be read: {name}; .*{early}"):
        VideoFolderDataset(folder, "train", 2, (16, 16))
    with pytest.raises(DatasetError, match=early):
        VideoFolderDataset(folder, "val", None, (16, 16))[0]


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_a_frame_pyav_cannot_decode_is_named_without_decords_internals(tmp_path, backend):
    """Motion JPEG decodes each frame alone, so the zeroed packet is the frame PyAV stops at; decord, tried after
    it with ``auto``, fails there with the same FFmpeg error, which is not repeated."""
    video = zero_packet(write_video(tmp_path / "clip.avi", "mjpeg", "yuvj420p"), 5)
    with pytest.raises(DatasetError) as failure:
        decode_video(video, lambda n: range(n), backend)
    assert str(failure.value) == (
        f"{video}: cannot decode video frame 5, corrupt or cut short (pyav: Invalid data found when processing input)"
    )


@needs_decord
def test_decords_error_is_added_without_its_source_locations_when_it_fails_otherwise(tmp_path):
    """A fast-start MP4 cut inside its first frame: PyAV cannot decode frame 0, decord cannot even set up its
    filter graph."""
    whole = write_video(tmp_path / "whole.mp4", "libx264", options={"movflags": "faststart"})
    start, _ = packet_spans(whole)[0]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: start + 10])
    with pytest.raises(DatasetError) as failure:
        decode_video(cut, lambda n: range(n), "auto")
    message = str(failure.value)
    assert message.startswith(f"{cut}: cannot decode video frame 0, corrupt or cut short (pyav: ")
    assert re.search(r"; decord: [^;]+\)$", message), message
    assert ".cc:" not in message and "Check failed" not in message, message


def test_auto_does_not_fall_back_to_decord_on_a_video_turned_a_quarter_turn(tmp_path):
    """PyAV fails on a damaged frame of a phone video stored sideways: decord, which fails on many such videos (on
    64x48 ones: ``Check failed: from_size == to_size``), is not asked, and the message says why."""
    video = zero_packet(write_video(tmp_path / "phone.mp4", "libx264", rotation=90), 5)
    assert decode_video(video, lambda n: range(1), "pyav").frames.shape == (1, 64, 48, 3)  # upright: turned
    with pytest.raises(DatasetError) as failure:
        decode_video(video, lambda n: range(n), "auto")
    message = str(failure.value)
    assert message.startswith(f"{video}: cannot decode video frame ")
    assert message.endswith("; decord not tried: it fails on many videos turned a quarter turn)"), message


@needs_decord
def test_decord_asked_for_by_name_says_a_quarter_turn_is_why_it_fails(tmp_path):
    video = write_video(tmp_path / "phone.mp4", "libx264", rotation=90)
    with pytest.raises(DatasetError) as failure:
        decode_video(video, lambda n: range(n), "decord")
    message = str(failure.value)
    assert message.startswith(f"{video}: decord cannot decode this video, which its display matrix turns a quarter")
    assert "decode it with PyAV (backend 'auto' or 'pyav')" in message and ".cc:" not in message
    assert decode_video(video, lambda n: range(n), "auto").backend == "pyav"  # the default reads it


def test_an_avi_whose_decoding_stops_at_damaged_data_is_refused_not_trained_on_in_part(tmp_path):
    """Scrambled bytes in an MPEG-4 ``.avi``'s middle: its header and index are whole (60 frames, 4 s), but PyAV ends
    the stream cleanly at the damage, after 23 frames. A clip drawn past there is refused as the client refuses the
    file, instead of being drawn again from the frames that decode (which trained on a third of the file)."""
    video = tmp_path / "damaged.avi"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width = stream.height = 64
        stream.pix_fmt, stream.options = "yuv420p", {"g": "5"}
        for t in range(60):
            image = np.zeros((64, 64, 3), np.uint8)
            image[:, :, 0] = 4 * t
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes((byte * 7 + 13) & 255 for byte in data[middle : middle + 3000])
    video.write_bytes(bytes(data))
    assert frame_count(video) == 60  # the header: nothing to see without decoding
    assert decode_video(video, lambda n: range(0, 8), "pyav").frames.shape[0] == 8  # before the damage: fine
    early = rf"^{re.escape(str(video))}: the file ends early, after frame 22 \(at 1\.533 s of the 4\.000 s its header"
    with pytest.raises(DatasetError, match=early):
        decode_video(video, lambda n: range(n - 8, n), "pyav")
