"""``write_mp4`` is deterministic: the same frames give the same bytes, encode after encode."""

from __future__ import annotations

import hashlib

import pytest

from training.datasets.export import mp4_needs_even_size, write_mp4
from training.datasets.synthetic import generate_video

pytest.importorskip("av")


def test_repeated_encodes_of_the_same_frames_give_the_same_bytes(tmp_path):
    """Short 64x64 and 48x48 videos are where libx264's macroblock-tree rate control varied its output (up to
    half of 60 encodes of one video differed); 30 encodes of each must all agree."""
    for level, seed, size in (("medium", 3, 64), ("easy", 2, 48)):
        frames = generate_video(level, seed, 24, (size, size)).frames
        digests = set()
        for attempt in range(30):
            path = tmp_path / f"{level}-{attempt}.mp4"
            write_mp4(path, frames)
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        assert len(digests) == 1, f"{level} {size}x{size}: {len(digests)} different files from 30 encodes"


def test_libx264_runs_single_threaded_without_macroblock_tree(tmp_path):
    """The settings that make the output deterministic reach the encoder (libx264 records them in the stream)."""
    if mp4_needs_even_size():
        pytest.skip("libx264 is not available")
    write_mp4(tmp_path / "clip.mp4", generate_video("easy", 1, 4, (16, 16)).frames)
    data = tmp_path.joinpath("clip.mp4").read_bytes()
    start = data.index(b"options: ")
    options = data[start : data.index(b"\0", start)].decode().split()
    assert "threads=1" in options and "mbtree=0" in options and "crf=10.0" in options
