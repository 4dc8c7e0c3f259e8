"""``python -m training.datasets generate`` and ``python -m training.ceiling`` refuse sizes they cannot build with a
usage error naming the flags, before any data is made or written (they used to end in allocation tracebacks, or be
killed for memory)."""

from __future__ import annotations

import tracemalloc

import pytest

import service.cli_limits
from training.ceiling import main as ceiling_main
from training.datasets.__main__ import main as datasets_main
from training.datasets.synthetic import generate_video
from training.datasets.synthetic.generator import video_bytes

GIB = 1024**3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--frames", "2", "--size", "100000"], "--size must be at most 4096 pixels a side"),
        (
            ["--frames", "100000000", "--size", "8"],
            "--frames 100000000 at --size 8 (--level medium): one video's frames, masks and metadata need about",
        ),
        (["--level", "hard", "--frames", "100000", "--size", "64"], "--frames 100000 at --size 64 (--level hard)"),
    ],
)
def test_generate_refuses_a_video_too_large_to_make_before_writing(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        datasets_main(["generate", "--videos", "1", "--out", str(out), *flags])
    err = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and message in err, err
    assert not out.exists()


def test_generate_makes_a_video_within_the_budget(tmp_path, monkeypatch):
    """Under a 1 GiB memory limit (a 256 MiB budget) 24 frames of 64x64 are far within it."""
    monkeypatch.setattr(service.cli_limits, "memory_limit_bytes", lambda: GIB)
    out = tmp_path / "out"
    assert datasets_main(["generate", "--level", "hard", "--videos", "1", "--out", str(out)]) == 0
    assert len(list((out / "JPEGImages").rglob("*.jpg"))) == 24


@pytest.mark.parametrize(
    ("level", "frames", "size"), [("easy", 400, 8), ("medium", 40, 64), ("hard", 300, 32), ("hard", 2, 256)]
)
def test_a_videos_bytes_are_at_least_what_the_generator_takes(level, frames, size):
    generate_video(level, seed=3, num_frames=2, size=(8, 8))  # the first video's one-off costs (caches) aside
    tracemalloc.start()
    try:
        generate_video(level, seed=3, num_frames=frames, size=(size, size))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = video_bytes(level, frames, (size, size))
    assert peak <= estimate <= 3 * peak, (peak, estimate)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image-size", "20000"], "--image-size must be at most 4096 pixels a side"),
        (["--mask-size", "100000"], "--mask-size 100000 is larger than --image-size 64"),
        (["--mask-size", "16", "33", "--image-size", "32"], "--mask-size 33 is larger than --image-size 32"),
    ],
)
def test_ceiling_refuses_sizes_beyond_the_image_before_loading_data(flags, message, tmp_path, capsys):
    out = tmp_path / "c.json"
    with pytest.raises(SystemExit) as exited:
        ceiling_main(["--data", "synthetic:easy", "--json", str(out), *flags])
    err = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and message in err, err
    assert not out.exists()


def test_a_video_whose_one_hot_ground_truth_outgrows_the_memory_is_refused_before_it_is_made(monkeypatch):
    """At a large --image-size a long video's one-hot masks (12 bytes a pixel and segment) outgrow the memory."""
    import torch

    from training.ceiling import downsampled_instances

    ids = torch.zeros(4, 64, 64, dtype=torch.long)
    ids[:, :8, :8], ids[:, 30:40, 30:40] = 1, 2
    assert downsampled_instances(ids, (16, 16)).shape == (4, 3, 16, 16)
    monkeypatch.setattr(service.cli_limits, "memory_limit_bytes", lambda: 1024**2)  # a budget of 256 KiB
    with pytest.raises(ValueError, match=r"^--image-size 64x64: the 3 one-hot ground-truth masks of a 4-frame video"):
        downsampled_instances(ids, (16, 16))
