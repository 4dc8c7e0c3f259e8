"""A folder of frames as the client (and ``service.extract``) reads it, against the ``davis:`` training reader's
rules: two files for one frame are refused naming both; a gap in the numbering is streamed, with one warning naming
the first missing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.client.__main__ import main
from service.client.sources import frame_files, open_source
from service.extract import main as extract_main

UNUSED_TARGET = "127.0.0.1:9"  # never reached: each folder below fails before the client connects


def _folder(path: Path, names: list[str]) -> Path:
    """A folder of small frames, each named as given, frame ``i`` filled with ``20 * (i + 1)``."""
    path.mkdir(exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 20 * (index + 1), np.uint8)).save(path / name)
    return path


@pytest.mark.parametrize(
    ("names", "pair"),
    [
        (["00000.jpg", "00001.jpg", "00001.png", "00002.jpg"], ("00001.jpg", "00001.png")),
        (["frame_1.png", "frame_01.png", "frame_2.png"], ("frame_01.png", "frame_1.png")),
    ],
)
def test_two_files_for_one_frame_are_refused_naming_both(tmp_path, names, pair):
    folder = _folder(tmp_path / "clip", names)
    message = f"{folder}: {pair[0]} and {pair[1]} are two files for one frame; keep one of the two"
    with pytest.raises(ValueError) as refused:
        frame_files(folder)
    assert str(refused.value) == message
    with pytest.raises(ValueError) as refused:
        open_source(str(folder), fps=10)
    assert str(refused.value) == message


def test_the_stream_command_refuses_two_files_for_one_frame_before_connecting(tmp_path, capsys):
    folder = _folder(tmp_path / "clip", ["00000.jpg", "00000.png"])
    assert main(["stream", str(folder), "--target", UNUSED_TARGET]) == 2
    assert f"error: {folder}: 00000.jpg and 00000.png are two files for one frame" in capsys.readouterr().err


def test_a_gap_in_the_numbering_is_streamed_with_one_warning_naming_the_first_missing_file(tmp_path, capsys):
    folder = _folder(tmp_path / "clip", ["00000.png", "00001.png", "00003.png", "00004.png", "00007.png"])
    source = open_source(str(folder), fps=10)
    frames = list(source.frames)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert (
        f"warning: {folder}: frame 00002.png is missing: the numbering jumps from 00001.png to 00003.png (1 more gap "
        "after it); the frames on either side of it are streamed one after the other, their source_frame numbers "
        "and their times at 10 frames/s keeping the gap"
    ) in err
    assert [int(frame.image[0, 0, 0]) for frame in frames] == [20, 40, 60, 80, 100], "every file, in order"
    assert [frame.source_frame for frame in frames] == [0, 1, 3, 4, 7]
    assert [frame.time_ns for frame in frames] == [number * 100_000_000 for number in (0, 1, 3, 4, 7)]


@pytest.mark.parametrize(
    "names",
    [
        ["frame_8.png", "frame_9.png", "frame_10.png", "frame_11.png"],  # unpadded, starting anywhere
        ["0000.png", "0001.png", "0001a.png", "0003.png"],  # not one pattern: no numbering to check
        ["cam_0000.png", "cam_0002.png", "other_0001.png"],  # two prefixes
    ],
)
def test_a_folder_without_a_gap_in_one_numbering_warns_nothing(tmp_path, capsys, names):
    folder = _folder(tmp_path / "clip", names)
    assert len(list(open_source(str(folder)).frames)) == len(names)
    assert "warning" not in capsys.readouterr().err


def test_extract_refuses_two_files_for_one_frame_and_warns_about_a_gap(model_dir, tmp_path, capsys):
    """``service.extract`` reads folders through the same source: the same refusal, the same warning."""
    twice = _folder(tmp_path / "twice", ["00000.png", "00001.jpg", "00001.png"])
    gap = _folder(tmp_path / "gap", ["00000.png", "00002.png"])
    out = tmp_path / "out"
    code = extract_main([str(twice), str(gap), "--model", str(model_dir), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"slotstream extract: {twice}: 00001.jpg and 00001.png are two files for one frame" in err
    assert f"warning: {gap}: frame 00001.png is missing: the numbering jumps from 00000.png to 00002.png;" in err
    assert not (out / "twice.npz").exists()
    with np.load(out / "gap.npz") as trajectory:
        np.testing.assert_array_equal(trajectory["frame_index"], [0, 1])
