"""PyAV decoding of a window of a video (what training reads; decord is only the fallback): the window's frames, the
same as those of the whole video, with only the window's frames converted (memory bounded by the window), wherever the
window lies and whether or not the container records its frame count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.datasets import decode_pyav
from training.datasets.decoding import decode_video

av = pytest.importorskip("av")

FRAMES = 30
SIZE = (32, 64)


ENCODINGS = {
    "closed GOP": {"bf": "2", "crf": "10"},
    "open GOP": {"x264-params": "open-gop=1:bframes=3:keyint=8:min-keyint=2", "crf": "10"},
}


def _write_video(path: Path, encoding: str = "closed GOP") -> None:
    """``FRAMES`` distinct frames, H.264 with B-frames and a keyframe every 8 frames (mp4 records the frame count,
    Matroska does not)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        stream.codec_context.gop_size = 8
        stream.options = ENCODINGS[encoding]
        for index in range(FRAMES):
            frame = np.full((*SIZE, 3), index * 8, np.uint8)  # [H, W, 3]
            frame[:, : index + 1] = 255  # a bar as wide as the frame's number
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of frames PyAV decoding converts to arrays, one entry per conversion."""
    calls: list[int] = []
    real = decode_pyav.upright_rgb

    def counted(frame: Any) -> np.ndarray:
        calls.append(1)
        return real(frame)

    monkeypatch.setattr(decode_pyav, "upright_rgb", counted)
    return calls


WINDOWS: dict[str, Callable[[int], range]] = {
    "first chunk": lambda n: range(0, 6),
    "middle chunk": lambda n: range(12, 18),
    "last chunk": lambda n: range(n - 6, n),
    "last frame": lambda n: range(n - 1, n),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_a_window_converts_only_its_frames_and_matches_the_whole_video(
    tmp_path: Path, encoding: str, suffix: str, window: str, conversions: list[int]
) -> None:
    path = tmp_path / f"clip{suffix}"
    _write_video(path, encoding)
    whole = decode_video(path, lambda n: range(n), "pyav")
    assert whole.num_frames == FRAMES and whole.frames.shape == (FRAMES, *SIZE, 3)
    conversions.clear()
    clip = decode_video(path, WINDOWS[window], "pyav")
    assert clip.indices == WINDOWS[window](FRAMES) and clip.num_frames == FRAMES
    np.testing.assert_array_equal(clip.frames, whole.frames[clip.indices.start : clip.indices.stop])
    assert len(conversions) == len(clip.indices)  # nothing outside the window is converted (or kept)


def test_a_window_past_a_short_video_is_refused_naming_the_file(tmp_path: Path) -> None:
    from training.datasets import DatasetError
    from training.datasets.transforms import choose_window

    path = tmp_path / "clip.mkv"
    _write_video(path)
    with pytest.raises(DatasetError, match=f"{path}: video has {FRAMES} frames, fewer than val_frames=40"):
        decode_video(path, lambda n: choose_window(n, 40, "val", str(path)), "pyav")


def test_every_window_is_the_one_decord_reads(tmp_path: Path) -> None:
    """The window's frames are decord's frames of the same indices (the nearest of decord's frames, since the two
    convert colours slightly differently), wherever the window lies against the keyframes."""
    pytest.importorskip("decord")
    path = tmp_path / "clip.mp4"
    _write_video(path, "open GOP")
    reference = decode_video(path, lambda n: range(n), "decord").frames.astype(np.int16)  # [N, H, W, 3]
    for start in range(FRAMES - 5):
        clip = decode_video(path, lambda n, start=start: range(start, start + 5), "pyav").frames
        distance = np.abs(reference[:, None] - clip[None].astype(np.int16)).mean(axis=(2, 3, 4))  # [N, 5]
        assert list(distance.argmin(axis=0)) == list(range(start, start + 5)), start


def test_a_file_whose_first_packets_cannot_be_decoded_alone_reads_as_decoded_from_its_start(tmp_path: Path) -> None:
    """A stream cut after its first keyframe (the first packets refer to frames that are gone; one is marked to be
    discarded): frame numbers follow what a decode from the start gives, so no window is read by seeking."""
    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    _write_video(source)
    with av.open(str(source)) as original, av.open(str(cut), "w") as copy:
        stream = copy.add_stream_from_template(original.streams.video[0])
        for number, packet in enumerate(original.demux(original.streams.video[0])):
            if packet.size and number >= 5:
                packet.stream = stream
                copy.mux(packet)
    whole = decode_video(cut, lambda n: range(n), "pyav").frames
    for start in range(len(whole) - 5):
        clip = decode_video(cut, lambda n, start=start: range(start, start + 5), "pyav")
        np.testing.assert_array_equal(clip.frames, whole[start : start + 5])
