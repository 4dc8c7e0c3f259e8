"""What a trajectory file says of its source: how the run ended (``complete``, ``end_reason``) and which source frame
each row is (``source_frame``), in ``service.extract`` and ``stream --slots`` alike; ``--max-frames N`` stops before
reading frame N + 1; a source whose every frame is refused fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import interrupted_source_opener, make_video
from test_video_source_ends import CUT_AT, cut_before_frame, write_video

from service.client.__main__ import main as client_main
from service.client.sources import open_source
from service.client.trajectory import trajectory_end
from service.extract import main as extract_main
from service.extract import trajectory_name


def _jpeg_folder(folder: Path, names: list[str], truncated: str | None = None) -> Path:
    """JPEG frames named as given; ``truncated`` (one of them) cut to half its bytes."""
    folder.mkdir()
    for name, frame in zip(names, make_video(seed=61, frames=len(names)), strict=True):
        Image.fromarray(frame).save(folder / name, quality=95)
    if truncated is not None:
        data = (folder / truncated).read_bytes()
        (folder / truncated).write_bytes(data[: len(data) // 2])
    return folder


def _numbered(count: int, skip: tuple[int, ...] = ()) -> list[str]:
    return [f"{number:05d}.jpg" for number in range(count) if number not in skip]


def _end(path: Path) -> tuple[bool | None, str]:
    with np.load(path) as saved:
        return trajectory_end(saved)


def test_max_frames_does_not_read_the_frame_after_the_last_one(tmp_path):
    folder = _jpeg_folder(tmp_path / "walk", _numbered(6), truncated="00005.jpg")
    source = open_source(str(folder), max_frames=5)
    assert len(list(source.frames)) == 5 and source.limit_reached
    cut = cut_before_frame(write_video(tmp_path / "clip.mkv", "libx264"), CUT_AT, tmp_path / "cut.mkv")
    source = open_source(str(cut), max_frames=CUT_AT)
    assert [frame.source_frame for frame in source.frames] == list(range(CUT_AT)), "no ends-early check"
    assert source.limit_reached
    whole = open_source(str(folder), max_frames=9)
    with pytest.raises(ValueError, match=r"00005\.jpg: cannot read the image"):
        list(whole.frames)
    assert not whole.limit_reached


def test_extract_records_how_each_source_ended(model_dir, tmp_path, capsys):
    bad = _jpeg_folder(tmp_path / "bad", _numbered(4), truncated="00002.jpg")
    limited = _jpeg_folder(tmp_path / "limited", _numbered(4), truncated="00003.jpg")
    out = tmp_path / "out"
    flags = ["--model", str(model_dir), "--out", str(out), "--quiet"]
    assert extract_main(["synthetic:3", str(bad), *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("without --fps the frames of a folder are timed by when they were read") == 1, err
    with np.load(out / "synthetic_3.npz") as saved:
        assert trajectory_end(saved) == (True, "end")
        assert saved["source_frame"].tolist() == [0, 1, 2]
    complete, reason = _end(out / "bad.npz")
    assert complete is False and reason.startswith("source_error: ") and "00002.jpg" in reason
    assert extract_main([str(limited), "--max-frames", "3", "--fps", "10", *flags]) == 0
    assert _end(out / "limited.npz") == (True, "max_frames")
    assert "timed by when they were read" not in capsys.readouterr().err


def test_extract_records_an_interrupted_source(model_dir, tmp_path, monkeypatch):
    from service import extract as extract_module

    monkeypatch.setattr(extract_module, "open_source", interrupted_source_opener(2))
    out = tmp_path / "out"
    assert extract_main(["synthetic:10", "--model", str(model_dir), "--out", str(out), "--quiet"]) == 130
    assert _end(out / f"{trajectory_name('synthetic:10')}.npz") == (False, "interrupted")


def test_a_source_whose_every_frame_is_refused_fails(model_dir, tmp_path, capsys):
    folder = tmp_path / "big"
    folder.mkdir()
    for index in range(2):  # over the default 4096 x 4096 pixels
        Image.fromarray(np.zeros((4097, 4096, 3), np.uint8)).save(folder / f"{index:04d}.png")
    out = tmp_path / "out"
    assert extract_main([str(folder), "synthetic:2", "--model", str(model_dir), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"slotstream extract: {folder}: no frame has a row, every one was refused (and the 1 after it)" in (
        captured.err
    )
    assert "IMAGE_TOO_LARGE" in captured.err
    assert f"{folder}: 0 frames" not in captured.out
    assert "synthetic:2: 2 frames" in captured.out, "the other sources are still extracted"


def test_a_gap_in_a_numbered_folder_shows_in_source_frame_and_times(model_dir, tmp_path):
    folder = _jpeg_folder(tmp_path / "gap", _numbered(10, skip=(5,)))
    frames = list(open_source(str(folder), fps=10).frames)
    numbers = [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert [frame.source_frame for frame in frames] == numbers
    assert [frame.time_ns for frame in frames] == [number * 100_000_000 for number in numbers]
    unnumbered = _jpeg_folder(tmp_path / "named", ["a.jpg", "b.jpg"])
    assert [frame.source_frame for frame in open_source(str(unnumbered)).frames] == [0, 1]
    out = tmp_path / "out"
    assert extract_main([str(folder), "--fps", "10", "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    with np.load(out / "gap.npz") as saved:
        assert saved["frame_index"].tolist() == list(range(9))
        assert saved["source_frame"].tolist() == numbers
        times = saved["capture_time_ns"] - saved["capture_time_ns"][0]
        assert times.tolist() == [number * 100_000_000 for number in numbers]


def test_a_file_written_before_the_end_was_recorded_still_reads():
    assert trajectory_end({"frame_index": np.arange(3)}) == (None, "")


def test_stream_records_how_its_source_ended_and_its_source_frames(server, tmp_path, capsys):
    gap = _jpeg_folder(tmp_path / "gap", _numbered(5, skip=(2,)))
    bad = _jpeg_folder(tmp_path / "bad", _numbered(4), truncated="00002.jpg")
    target = ["--target", server.target]
    whole, limited, broken = tmp_path / "whole.npz", tmp_path / "limited.npz", tmp_path / "broken.npz"
    assert client_main(["stream", str(gap), *target, "--fps", "50", "--slots", str(whole)]) == 0
    with np.load(whole) as saved:
        assert trajectory_end(saved) == (True, "end")
        assert saved["source_frame"].tolist() == [0, 1, 3, 4]
    assert client_main(["stream", str(bad), *target, "--max-frames", "2", "--slots", str(limited)]) == 0
    assert _end(limited) == (True, "max_frames")
    assert client_main(["stream", str(bad), *target, "--slots", str(broken)]) == 2
    complete, reason = _end(broken)
    assert complete is False and reason.startswith("source_error: ") and "00002.jpg" in reason
    capsys.readouterr()
