"""The bounds the command-line tools share (``service.cli_limits``): a frame rate, a frame's side and the memory a
tool builds at once; each refusal names the flag, the value and the bound."""

from __future__ import annotations

import math

import pytest

from service.cli_limits import (
    MAX_FPS,
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    MIN_FPS,
    check_fps,
    check_frame_pixels,
    check_frame_side,
    check_memory,
    memory_budget_bytes,
)
from service.config import ServiceConfig


@pytest.mark.parametrize("fps", [MIN_FPS, 0.5, 15.0, 240.0, MAX_FPS])
def test_a_frame_rate_within_the_bounds_is_taken(fps):
    assert check_fps(fps) == fps


@pytest.mark.parametrize("fps", [0.0, -1.0, 1e-300, 1e-9, MIN_FPS / 2, MAX_FPS * 1.001, 1e300, math.inf, math.nan])
def test_a_frame_rate_beyond_the_bounds_is_refused_naming_the_flag_the_value_and_the_bounds(fps):
    with pytest.raises(ValueError) as refused:
        check_fps(fps, "--rate")
    message = str(refused.value)
    assert message.startswith("--rate must be a number of frames per second from 0.001 to 10000 (")
    assert message.endswith(f"got {fps:g}")


def test_the_longest_frame_side_is_that_of_the_servers_default_pixel_limit():
    assert ServiceConfig().max_image_pixels == MAX_FRAME_PIXELS == MAX_FRAME_SIDE**2


def test_a_frame_side_beyond_the_bound_is_refused_with_the_value_as_given():
    assert check_frame_side(MAX_FRAME_SIDE, "--size") == MAX_FRAME_SIDE
    with pytest.raises(ValueError, match=r"^--size must be at most 4096 pixels a side .*, got 480x4097$"):
        check_frame_side(4097, "--size", "480x4097")


def test_a_frame_of_more_pixels_than_the_servers_default_is_refused_whatever_its_sides():
    check_frame_pixels(1000, 5000, "--size", "1000x5000")
    check_frame_pixels(4096, 4096, "--size", "4096")
    with pytest.raises(
        ValueError, match=r"^--size must be at most 16777216 pixels .*, got 4097x4096: 16781312 pixels$"
    ):
        check_frame_pixels(4097, 4096, "--size", "4097x4096")


def test_the_memory_budget_is_a_quarter_of_the_limit():
    assert memory_budget_bytes(8 * 1024**3) == 2 * 1024**3
    assert memory_budget_bytes() > 0  # the machine's or container's own limit (or 16 GiB when none is readable)


def test_building_more_than_the_budget_at_once_is_refused_naming_what_and_the_bytes():
    check_memory(2 * 1024**3, "--frames 10", memory_limit=8 * 1024**3)  # exactly the budget: taken
    with pytest.raises(ValueError) as refused:
        check_memory(2 * 1024**3 + 1, "--frames 10", memory_limit=8 * 1024**3)
    message = str(refused.value)
    assert message.startswith("--frames 10 need about 2,147,483,649 bytes (2.0 GiB) in memory at once")
    assert "more than the 2,147,483,648 bytes (2.0 GiB) allowed" in message
