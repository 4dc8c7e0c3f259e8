"""A frame rate near zero or infinite is refused up front by every tool that takes ``--fps`` (``service.extract``,
``service.client stream``, the sources it opens, ``service.bench``): it used to overflow the capture times once
every frame was extracted, wait for ever between two frames, or give every frame the same time."""

from __future__ import annotations

import pytest

from service.bench.__main__ import main as bench_main
from service.cli_limits import MAX_FPS, MIN_FPS
from service.client.__main__ import main as client_main
from service.client.sources import open_source
from service.extract import main as extract_main

BOUNDS = "a number of frames per second from 0.001 to 10000"
REFUSED = ["1e-9", "1e-30", "1e-300", "inf", "20000"]


@pytest.mark.parametrize("fps", REFUSED)
def test_extract_refuses_the_rate_before_loading_a_model_or_writing(fps, tmp_path, capsys):
    out = tmp_path / "out"
    assert extract_main(["synthetic:12", "--out", str(out), "--fps", fps, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"slotstream extract: --fps must be {BOUNDS}" in err and f"got {float(fps):g}" in err
    assert not out.exists()


@pytest.mark.parametrize("fps", REFUSED)
def test_the_client_refuses_the_rate_as_a_usage_error(fps, tmp_path, capsys):
    slots = tmp_path / "slots.npz"
    with pytest.raises(SystemExit) as exited:
        client_main(["stream", "synthetic:3", "--target", "127.0.0.1:1", "--fps", fps, "--slots", str(slots)])
    err = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and f"argument --fps: must be {BOUNDS}" in err and f"got '{fps}'" in err
    assert not slots.exists()


@pytest.mark.parametrize("fps", [1e-30, float("inf"), float("nan")])
def test_a_source_refuses_the_rate_before_making_a_frame(fps):
    with pytest.raises(ValueError, match=f"--fps must be {BOUNDS}"):
        open_source("synthetic:3", fps=fps)


def test_the_bounds_themselves_time_the_frames_of_a_source():
    slowest = [frame.time_ns for frame in open_source("synthetic:3", fps=MIN_FPS).frames]
    fastest = [frame.time_ns for frame in open_source("synthetic:3", fps=MAX_FPS).frames]
    assert slowest == [0, 10**12, 2 * 10**12] and fastest == [0, 100_000, 200_000]


@pytest.mark.parametrize("fps", REFUSED)
def test_the_load_generator_refuses_the_rate_before_connecting(fps, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--fps", fps])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"--fps must be {BOUNDS}" in err and f"got {float(fps):g}" in err
