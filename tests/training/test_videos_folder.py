"""``videos:<dir>`` folders: training reads only frames, unreadable files and stray masks are named up front."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from training.datasets import DatasetError, VideoFolderDataset, build_dataset
from training.datasets.decoding import decode_video, frame_count
from training.datasets.export import write_mask_png, write_mp4
from training.datasets.synthetic import generate_video

DECORD = pytest.param(
    "decord",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("decord") is None, reason="decord is not installed (the x86_64 wheels only)"
    ),
)


def _video_dir(tmp_path: Path, frames: int = 8, masks: int | None = None) -> Path:
    """``<tmp>/videos/clip.mp4`` of ``frames`` frames with the masks of its first ``masks`` frames (all: None)."""
    video = generate_video("easy", 5, frames, (32, 64))  # decord mis-decodes some widths, e.g. 48
    folder = tmp_path / "videos"
    folder.mkdir()
    write_mp4(folder / "clip.mp4", video.frames)
    (folder / "clip").mkdir()
    for t in range(frames if masks is None else masks):
        write_mask_png(folder / "clip" / f"{t:05d}.png", video.masks[t % frames])
    return folder


def _write_flat_frames(path: Path, frames: int, step: int, codec: str, pix_fmt: str, **options: str) -> None:
    """A 32x32 video of ``frames`` flat frames, frame ``t`` of value ``step * t``."""
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
        for t in range(frames):
            image = np.full((32, 32, 3), step * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _write_mkv(path: Path, frames: int) -> None:
    """An FFV1 Matroska file, whose header (read by PyAV) does not record its frame count."""
    _write_flat_frames(path, frames, 20, "ffv1", "bgr0")


def test_training_reads_only_the_frames_of_a_video_masked_on_some_frames(tmp_path):
    """Masks for frames 0-3 of 8: every training clip loads (without masks); validation scores frames 0-3 (the
    others are void)."""
    folder = _video_dir(tmp_path, frames=8, masks=4)
    train = build_dataset(f"videos:{folder}", "train", 2, (16, 16))
    torch.manual_seed(0)
    clips = [train[0] for _ in range(20)]
    assert {clip.start for clip in clips} == {0, 2, 4, 6}
    assert all(clip.masks is None for clip in clips)
    masks = build_dataset(f"videos:{folder}", "val", None, (16, 16))[0].masks
    assert masks is not None and bool((masks[4:] == -1).all()) and not bool((masks[:4] == -1).any())


def test_unreadable_video_files_are_refused_when_the_training_set_is_built(tmp_path):
    folder = _video_dir(tmp_path)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (folder / "empty.mp4").write_bytes(b"")
    for clip_length in (2, None):
        with pytest.raises(
            DatasetError, match=rf"{folder}: 2 video file\(s\) cannot be read: broken\.mp4, empty\.mp4"
        ):
            build_dataset(f"videos:{folder}", "train", clip_length, (16, 16))
    assert len(build_dataset(f"videos:{folder}", "val", None, (16, 16))) == 3  # evaluation names it when it loads it


@pytest.mark.parametrize("backend", ["auto", DECORD, "pyav"])
def test_frame_count_tells_an_unreadable_file_from_a_header_without_a_count(tmp_path, backend):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DatasetError, match=rf"{broken}: cannot open video"):
        frame_count(broken, backend)
    folder = tmp_path / "v"
    folder.mkdir()
    _write_mkv(folder / "a.mkv", 4)
    assert frame_count(folder / "a.mkv", backend) == 4  # no count in its header: PyAV counts packets, decord its index
    clip = VideoFolderDataset(folder, "train", 2, (16, 16), backend=backend)[0]  # a header without a count trains
    assert clip.frames.shape == (2, 3, 16, 16) and clip.masks is None


def test_hidden_files_are_not_videos(tmp_path):
    """macOS writes ``._<name>`` resource files next to the videos it copies."""
    folder = _video_dir(tmp_path)
    (folder / "._clip.mp4").write_bytes(b"\x00\x05\x16\x07 resource fork")
    assert len(build_dataset(f"videos:{folder}", "train", 2, (16, 16))) == 1


def test_masks_without_a_frame_are_refused_naming_the_folder_and_both_counts(tmp_path):
    folder = _video_dir(tmp_path, frames=8, masks=10)
    for clip_length in (None, 4):
        with pytest.raises(
            DatasetError, match=r"clip: 10 masks for the 8 frames of clip\.mp4; .*00008\.png, 00009\.png"
        ):
            build_dataset(f"videos:{folder}", "val", clip_length, (16, 16))[0]
    (folder / "clip" / "00008.png").unlink()
    (folder / "clip" / "00009.png").unlink()
    clip = build_dataset(f"videos:{folder}", "val", None, (16, 16))[0]
    assert clip.masks is not None and clip.masks.shape == (8, 16, 16)


@pytest.mark.parametrize("name", ["phone.m4v", "camcorder.MTS", "broadcast.ts", "old.3gp"])
def test_common_video_containers_are_picked_up_by_their_suffix(tmp_path, name):
    """An ``.m4v`` (an MP4, as phones and iTunes write it; the client reads it too), an MPEG transport stream
    (``.ts``, a camcorder's ``.MTS``), a ``.3gp``: picked up and decoded like an ``.mp4``."""
    folder = tmp_path / "v"
    folder.mkdir()
    _write_flat_frames(folder / name, 6, 20, "libx264", "yuv420p")
    dataset = VideoFolderDataset(folder, "train", 4, (16, 16))
    assert [path.name for path in dataset.files] == [name]
    clip = dataset.first_frames(0, 6)
    assert clip.frames.shape == (6, 3, 16, 16)
    assert np.abs(clip.frames.mean(dim=(1, 2, 3)).numpy() * 255 - [0, 20, 40, 60, 80, 100]).max() < 4


def test_a_folder_without_videos_lists_the_suffixes_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("no videos here")
    with pytest.raises(DatasetError, match=r"no video files \(\.mp4, \.m4v, \.mov, .*\.ts, .*\) directly in"):
        VideoFolderDataset(tmp_path, "train", 4, (16, 16))


def test_a_videos_spec_naming_a_file_says_to_name_its_folder(tmp_path):
    video = tmp_path / "clip.mp4"
    write_mp4(video, generate_video("easy", 4, 2, (16, 16)).frames)
    with pytest.raises(
        DatasetError, match=rf"^{re.escape(str(video))}: is a file, not a folder: .*\(videos:{tmp_path}\)"
    ):
        build_dataset(f"videos:{video}", "train", 2, (16, 16))
    with pytest.raises(DatasetError, match=r"video folder does not exist"):
        build_dataset(f"videos:{tmp_path / 'absent'}", "train", 2, (16, 16))


class _CountingContainer:
    """A PyAV container that counts the frames its ``decode`` yields (PyAV's classes cannot be patched)."""

    decoded = 0

    def __init__(self, container):
        self._container = container

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._container, name)

    def decode(self, *args):
        for frame in self._container.decode(*args):
            _CountingContainer.decoded += 1
            yield frame


def test_pyav_decodes_a_window_up_to_its_last_frame_only(tmp_path, monkeypatch):
    """With a recorded frame count the window is chosen first and decoding stops after its last frame; the frames
    are those of a full decode. Without a count (FFV1 Matroska) every frame is decoded, as before."""
    folder = _video_dir(tmp_path, frames=12)
    every = decode_video(folder / "clip.mp4", lambda n: range(n), "pyav")
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: _CountingContainer(real_open(*args, **kwargs)))
    monkeypatch.setattr(_CountingContainer, "decoded", 0)
    asked: list[int] = []

    def window(count: int) -> range:
        asked.append(count)
        return range(3, 6)

    decoded = decode_video(folder / "clip.mp4", window, "pyav")
    assert asked == [12] and decoded.indices == range(3, 6) and decoded.num_frames == 12
    np.testing.assert_array_equal(decoded.frames, every.frames[3:6])
    assert _CountingContainer.decoded == 6, "frames 0-5 decoded, not all 12"
    _write_mkv(tmp_path / "a.mkv", 6)
    no_count = decode_video(tmp_path / "a.mkv", lambda n: range(n - 2, n), "pyav")
    assert no_count.num_frames == 6 and no_count.indices == range(4, 6)
    assert no_count.frames[:, 0, 0, 0].tolist() == [80, 100]


def _write_truncated_mp4(path: Path, frames: int, kept: int) -> None:
    """A moov-first MP4 of ``frames`` flat frames (value 8 t) cut after packet ``kept``: its header still records
    ``frames`` frames, but only the first ``kept`` can be decoded."""
    whole = path.with_suffix(".whole.mp4")
    _write_flat_frames(whole, frames, 8, "mpeg4", "yuv420p", movflags="faststart")
    with av.open(str(whole)) as container:
        offsets = [packet.pos for packet in container.demux(video=0) if packet.size]  # byte offset of each frame
    path.write_bytes(whole.read_bytes()[: offsets[kept]])


def test_pyav_chooses_the_window_again_when_the_recorded_count_overstates_the_frames_by_little(tmp_path):
    """A file whose header records 30 frames but decodes 28, ending within the slack a decoder's dropped frame or a
    rounded duration takes (:data:`plugins.video_files.END_SLACK_FRAMES`): a window drawn from 30 that does not
    fit is drawn again from the 28 frames found, and the clip reports 28."""
    path = tmp_path / "short.mp4"
    _write_truncated_mp4(path, frames=30, kept=28)
    assert frame_count(path, "pyav") == 30
    asked: list[int] = []

    def last_four(count: int) -> range:
        asked.append(count)
        return range(count - 4, count)

    clip = decode_video(path, last_four, "pyav")
    assert asked == [30, 28] and clip.num_frames == 28 and clip.indices == range(24, 28)
    assert np.abs(clip.frames.mean(axis=(1, 2, 3)) - [192, 200, 208, 216]).max() < 3  # frames 24-27, not others
    fits = decode_video(path, lambda count: range(2, 4), "pyav")  # a window inside the decodable frames
    assert fits.indices == range(2, 4) and np.abs(fits.frames.mean(axis=(1, 2, 3)) - [16, 24]).max() < 3


def test_pyav_refuses_a_window_past_where_a_file_cut_short_ends(tmp_path):
    """A file whose header records 30 frames but decodes 11 (cut short): a window past frame 10 is refused, naming
    the file and where it ends, not drawn again from the 11 frames (which would train on a third of the file); a
    window inside them is decoded."""
    path = tmp_path / "cut.mp4"
    _write_truncated_mp4(path, frames=30, kept=11)
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: the file ends early, after frame 10 "):
        decode_video(path, lambda count: range(count - 4, count), "pyav")
    fits = decode_video(path, lambda count: range(2, 4), "pyav")
    assert fits.indices == range(2, 4) and np.abs(fits.frames.mean(axis=(1, 2, 3)) - [16, 24]).max() < 3
