"""Where a video file's frames end and how they are timed, in the client's (and ``service.extract``'s) source: a
file cut short between two frames (an interrupted copy or download) is reported as ending early, naming the file
and the last frame read, while whole files whose frames legitimately end before their header's frame count (an
edit-list trim) or whose frames come irregularly read without error; a raw H.264 stream, whose frames carry no
timestamps, is timed at its codec's frame rate, or at ``--fps`` when given."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from service_helpers import make_video

from service.client.sources import SourceFrame, open_source
from service.extract import main as extract_main

SIZE = (48, 64)  # frames' height, width
FPS = 10
FRAMES = 30
CUT_AT = 12
"""The cut files end where this frame's bytes start: frames 0 .. CUT_AT - 1 are whole."""


def frame_images(count: int = FRAMES) -> list[np.ndarray]:
    return make_video(seed=7, frames=count, size=SIZE)


def write_video(path: Path, codec: str, options: dict[str, str] | None = None) -> Path:
    """``FRAMES`` frames at ``FPS`` frames/s in ``path`` (its suffix names the container), written by ``codec``."""
    height, width = SIZE
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frame_images():
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def cut_before_frame(video: Path, frame: int, cut: Path) -> Path:
    """``video``'s bytes up to where the packet of frame ``frame`` (in file order) starts, as ``cut``: the frames
    before it are whole, so the decoder meets a clean end of file, not damaged data."""
    with av.open(str(video)) as container:
        starts = [packet.pos for packet in container.demux(video=0) if packet.size]
    cut.write_bytes(video.read_bytes()[: starts[frame]])
    return cut


def read_all(spec: Path, fps: float | None = None) -> list[SourceFrame]:
    return list(open_source(str(spec), fps=fps).frames)


WHOLE_FILES = {  # the name to write, the codec, the muxer's options
    "mkv": ("clip.mkv", "libx264", None),
    "webm": ("clip.webm", "libvpx", None),  # no frame count in the header, a duration tag per track
    "avi": ("clip.avi", "mpeg4", None),
    "fast-start mp4": ("clip.mp4", "mpeg4", {"movflags": "faststart"}),  # the index first, as phones write
}


@pytest.mark.parametrize("kind", list(WHOLE_FILES))
def test_a_video_cut_between_two_frames_is_reported_as_ending_early(tmp_path, kind):
    name, codec, options = WHOLE_FILES[kind]
    whole = write_video(tmp_path / name, codec, options)
    cut = cut_before_frame(whole, CUT_AT, tmp_path / f"cut_{name}")
    read: list[SourceFrame] = []
    early = f"^{re.escape(str(cut))}: the file ends early, after frame {CUT_AT - 1} "
    with pytest.raises(ValueError, match=early) as failure:
        for frame in open_source(str(cut)).frames:
            read.append(frame)
    assert len(read) == CUT_AT  # every frame before the cut is still delivered
    assert "it is cut short" in str(failure.value)


@pytest.mark.parametrize("kind", list(WHOLE_FILES))
def test_a_whole_video_reads_to_its_end_without_error(tmp_path, kind):
    name, codec, options = WHOLE_FILES[kind]
    frames = read_all(write_video(tmp_path / name, codec, options))
    assert len(frames) == FRAMES
    assert frames[-1].time_ns == pytest.approx((FRAMES - 1) * 1e9 / FPS, abs=2e6)


def test_an_mp4_trimmed_by_its_edit_list_reads_without_error(tmp_path):
    """Its header counts every stored frame (``stream.frames``), but the edit list shows the frames from 1 s on:
    fewer frames than counted, ending where the header's duration says."""
    path = tmp_path / "trimmed.mp4"
    height, width = SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        packets = [p for image in frame_images() for p in stream.encode(av.VideoFrame.from_ndarray(image))]
        packets += stream.encode(None)
        shift = int(1 / packets[0].time_base)  # 1 s in the packets' time base: the first FPS frames come before 0
        for packet in packets:
            packet.pts -= shift
            packet.dts -= shift
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == FRAMES  # counted: what a frame count check would expect
    frames = read_all(path)
    assert 0 < len(frames) < FRAMES


def test_a_variable_frame_rate_video_reads_without_error(tmp_path):
    """Frames at irregular times, the last one shown long: its end is the file's, whatever the average rate."""
    path = tmp_path / "vfr.mp4"
    times_ms = [0, 40, 80, 300, 340, 900, 940, 2000]
    height, width = SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for image, time_ms in zip(frame_images(len(times_ms)), times_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = time_ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    frames = read_all(path)
    assert [round(frame.time_ns / 1e6) for frame in frames] == times_ms


def test_extract_keeps_the_rows_of_a_video_that_ends_early_and_says_so(model_dir, tmp_path, capsys):
    cut = cut_before_frame(write_video(tmp_path / "clip.mkv", "libx264"), CUT_AT, tmp_path / "cut.mkv")
    out = tmp_path / "out"
    assert extract_main([str(cut), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"slotstream extract: {cut}: the file ends early, after frame {CUT_AT - 1} " in err
    with np.load(out / "cut.npz") as trajectory:
        np.testing.assert_array_equal(trajectory["frame_index"], np.arange(CUT_AT))


def raw_h264(path: Path, rate: int, codec: str = "libx264", muxer: str = "h264") -> Path:
    """An H.264 elementary stream (no container, so no timestamps) whose SPS says ``rate`` frames/s: FFmpeg's raw
    demuxer reports its default 25 frames/s as the average rate whatever the stream says. ``codec`` and ``muxer``
    make another raw stream (``"mpeg4"``, ``"m4v"``)."""
    height, width = SIZE
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frame_images(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_a_raw_h264_stream_is_timed_at_its_codec_rate(tmp_path):
    video = raw_h264(tmp_path / "camera.h264", 30)
    source = open_source(str(video))
    assert source.fps == 30
    times = [frame.time_ns for frame in source.frames]
    assert times == [round(index * 1e9 / 30) for index in range(10)]


@pytest.mark.parametrize(
    ("name", "codec", "muxer"), [("camera.h264", "libx264", "h264"), ("camera.m4v", "mpeg4", "m4v")]
)
def test_fps_times_a_raw_stream(tmp_path, name, codec, muxer):
    """``--fps`` spaces the frames of a raw stream, and is the saved rate, also where FFmpeg's parser makes up
    timestamps of its own for them (a raw MPEG-4 stream's)."""
    video = raw_h264(tmp_path / name, 30, codec, muxer)
    source = open_source(str(video), fps=12)
    assert source.fps == 12
    times = [frame.time_ns for frame in source.frames]
    assert times == [round(index * 1e9 / 12) for index in range(10)]


def test_an_avi_with_b_frames_is_timed_by_frame_place_once_its_timestamps_go_back(tmp_path):
    """H.264 with B-frames in an AVI: the decoder gives its frames (in presentation order) the timestamps of the
    decode order, 1, 3, 4, 2, ...; from the first that goes back, frames are timed one interval of the rate apart,
    so the presentation clock never runs backwards."""
    try:
        av.Codec("libx264", "w")
    except Exception as error:  # av.codec.codec.UnknownCodecError: an FFmpeg build without libx264
        pytest.skip(f"PyAV's FFmpeg has no libx264 encoder ({error})")
    path = tmp_path / "clip.avi"
    height, width = SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"bf": "3", "g": "6"}
        for image in frame_images():
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        stamps = [frame.pts for frame in container.decode(video=0)]
    assert any(later <= earlier for earlier, later in itertools.pairwise(stamps)), stamps  # the file shows the fault
    times = [frame.time_ns for frame in read_all(path)]
    assert len(times) == FRAMES and times[0] == 0
    steps = np.diff(times)
    assert (steps > 0).all(), times
    back = next(index for index in range(1, FRAMES) if stamps[index] <= max(stamps[:index]))
    assert set(steps[back - 1 :].tolist()) == {round(1e9 / FPS)}  # one interval apart from there to the end
