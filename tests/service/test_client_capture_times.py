"""The capture times the ``stream`` command sends and saves: on the source's own timeline (a video's presentation
timestamps, a synthetic clip's or a folder's frame rate) after a wall-clock anchor taken when the stream starts, or
the wall-clock capture time for a source without timing of its own."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video

from service.client.__main__ import main
from service.extract import main as extract_main


def _variable_rate_video(path: Path, times_ms: list[int]) -> Path:
    """An MPEG-4 clip whose frames are shown at ``times_ms`` (milliseconds; not evenly spaced)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 40, 30, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, time_ms in zip(make_video(seed=71, frames=len(times_ms)), times_ms, strict=True):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = time_ms, Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _stream(server, source: str, slots: Path, *flags: str) -> tuple[np.ndarray, int, int]:
    """Run ``stream`` on ``source``; return the saved capture times and the wall clock before and after the run."""
    before = time.time_ns()
    assert main(["stream", source, "--target", server.target, "--slots", str(slots), *flags]) == 0
    after = time.time_ns()
    with np.load(slots) as saved:
        return saved["capture_time_ns"], before, after


def test_a_video_files_capture_times_are_its_presentation_timestamps_after_the_streams_start(server, tmp_path):
    """Frames shown 40, 60, 80 and 10 ms apart are saved 40, 60, 80 and 10 ms apart (they used to be the moments
    the client sent them, milliseconds apart whatever the video said)."""
    video = _variable_rate_video(tmp_path / "clip.mp4", [0, 40, 100, 180, 190])
    times, before, after = _stream(server, str(video), tmp_path / "slots.npz")
    assert np.diff(times).tolist() == [40_000_000, 60_000_000, 80_000_000, 10_000_000]
    assert before <= times[0] <= after  # the first frame's: the wall clock when the stream started
    with np.load(tmp_path / "slots.npz") as saved:
        assert str(saved["capture_clock"]) == "presentation"
        assert saved["fps"].dtype == np.float64 and saved["fps"] > 0  # the container's average rate


def test_synthetic_and_folder_capture_times_follow_the_frame_rate(server, tmp_path):
    """A synthetic clip at its nominal 15 frames/s and a folder at ``--fps 50`` (sent as fast as the server
    answers: the times are the sources', not the sending's)."""
    times, before, after = _stream(server, "synthetic:5", tmp_path / "synthetic.npz")
    assert np.diff(times).tolist() == [round((i + 1) * 1e9 / 15) - round(i * 1e9 / 15) for i in range(4)]
    assert before <= times[0] <= after
    with np.load(tmp_path / "synthetic.npz") as saved:
        assert str(saved["capture_clock"]) == "frame_rate" and float(saved["fps"]) == 15.0

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=72, frames=4)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    times, before, after = _stream(server, str(folder), tmp_path / "folder.npz", "--fps", "50")
    assert np.diff(times).tolist() == [20_000_000] * 3 and before <= times[0] <= after
    with np.load(tmp_path / "folder.npz") as saved:
        assert str(saved["capture_clock"]) == "frame_rate" and float(saved["fps"]) == 50.0


def test_a_folder_without_a_rate_gets_the_wall_clock_time_each_frame_was_read(server, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=73, frames=3)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    times, before, after = _stream(server, str(folder), tmp_path / "slots.npz")
    assert before <= times[0] and np.all(np.diff(times) > 0) and times[-1] <= after
    with np.load(tmp_path / "slots.npz") as saved:
        assert str(saved["capture_clock"]) == "wall_clock" and math.isnan(float(saved["fps"]))


RECORDED = 1_650_000_000_123_456_789
"""When a recording started, as its robot's bag would say (2022)."""


def test_a_recordings_start_time_anchors_its_capture_times_in_stream_and_extract(server, model_dir, tmp_path, capsys):
    """``--start-time-ns``: a recording's rows line up with what was recorded beside it, not with the replay."""
    video = _variable_rate_video(tmp_path / "clip.mp4", [0, 40, 100])
    times, _, _ = _stream(server, str(video), tmp_path / "stream.npz", "--start-time-ns", str(RECORDED))
    assert times.tolist() == [RECORDED, RECORDED + 40_000_000, RECORDED + 100_000_000]
    out = tmp_path / "extracted"
    args = [str(video), "synthetic:3", "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert extract_main([*args, "--start-time-ns", str(RECORDED)]) == 0
    with np.load(out / "clip.npz") as saved:
        assert saved["capture_time_ns"].tolist() == times.tolist()  # the same times as the stream's
    with np.load(out / "synthetic_3.npz") as saved:  # each source's first frame at the start given
        assert saved["capture_time_ns"].tolist() == [RECORDED + round(i * 1e9 / 15) for i in range(3)]


def test_a_start_time_is_refused_for_frames_timed_as_they_are_read(server, model_dir, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=74, frames=2)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    start = ["--start-time-ns", str(RECORDED)]
    assert main(["stream", str(folder), "--target", server.target, *start]) == 2
    assert "--start-time-ns needs a source on its own timeline" in capsys.readouterr().err
    assert extract_main([str(folder), "--model", str(model_dir), "--out", str(tmp_path / "out"), *start]) == 1
    assert "--start-time-ns needs a source on its own timeline" in capsys.readouterr().err
    for bad in ("0", "-5", "1.5e18", "soon", str(2**62 + 1)):
        with pytest.raises(SystemExit):
            main(["stream", "synthetic:2", "--target", server.target, "--start-time-ns", bad])
        assert "must be a time in whole ns since the Unix epoch" in capsys.readouterr().err
