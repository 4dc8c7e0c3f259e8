"""The bounds the command-line tools put on a frame rate, a frame's side and what they build in memory at once.

Each tool checks its flags against them before any work, and refuses a value beyond them with a usage error that
names the flag, the value and the bound, rather than allocating without bound, waiting for ever, or failing with a
traceback once the work is done.
"""

from __future__ import annotations

import argparse

from service.grpc_limits import DEFAULT_MAX_IMAGE_PIXELS
from service.host import memory_limit_bytes

MIN_FPS = 0.001
"""The slowest frame rate taken: a frame every 1000 s (a slow time-lapse). At slower rates a frame's capture time,
``index * 1e9 / fps`` ns, passes the int64 of a trajectory file within a few million frames, and a paced sender
waits between two frames longer than a timer takes."""
MAX_FPS = 10_000.0
"""The fastest frame rate taken: a frame every 0.1 ms, beyond any camera's; an infinite rate gives every frame the
same capture time."""
FPS_LIMITS = (
    f"a number of frames per second from {MIN_FPS:g} to {MAX_FPS:g} (far slower rates overflow the int64 ns capture "
    "times and the pacing timer; an infinite one gives every frame the same time)"
)
"""What a frame-rate flag takes, with why, for its messages."""

MAX_FRAME_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
"""The most pixels a frame (or a mask) the tools send or ask a server for may have: the server's default
``--max-image-pixels``; a server started with more still takes them, but the tools size their memory for this."""
MAX_FRAME_SIDE = 4096
"""The longest side of the square frames the tools generate or score at: that of a square frame of
:data:`MAX_FRAME_PIXELS`."""

MEMORY_SHARE = 4
"""A tool builds at most the memory limit divided by this in memory at once (a quarter, as the server's automatic
reply budget, :data:`service.reply_budget.AUTO_REPLY_BUDGET_FRACTION`), leaving the rest to the model and the
process around it."""
UNKNOWN_MEMORY_BYTES = 16 * 1024**3
"""The memory assumed where no limit can be read (:func:`service.host.memory_limit_bytes` is ``None``)."""


LAST_START_NS = 2**62
"""The latest start time (ns since the Unix epoch, in the year 2116) ``--start-time-ns`` takes: a source's capture
times, counted from it, stay within the int64 a trajectory file stores."""
START_TIME_NEEDS_TIMELINE = (
    "--start-time-ns needs a source on its own timeline: a video file, a synthetic clip, or a folder or image file "
    "with --fps (a camera's frames, and those of a folder or image read without --fps, carry the wall-clock time "
    "they were read)"
)
"""Why ``--start-time-ns`` is refused for a source on the wall clock."""


def epoch_ns(text: str) -> int:
    """An argparse type: a start time in ns since the Unix epoch, 1 to :data:`LAST_START_NS`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= LAST_START_NS:
        raise argparse.ArgumentTypeError(
            f"must be a time in whole ns since the Unix epoch, 1 to {LAST_START_NS} (the year 2116), such as "
            f"`date +%s%N` prints, got {text!r}"
        )
    return value


def check_fps(fps: float, flag: str = "--fps") -> float:
    """``fps`` when it is a finite number from :data:`MIN_FPS` to :data:`MAX_FPS` frames per second.

    Raises:
        ValueError: naming ``flag``, the value and the bounds (NaN, infinities and rates <= 0 included).
    """
    if not MIN_FPS <= fps <= MAX_FPS:  # NaN compares false
        raise ValueError(f"{flag} must be {FPS_LIMITS}, got {fps:g}")
    return fps


def check_frame_side(side: int, flag: str, given: str | None = None) -> int:
    """``side`` when it is at most :data:`MAX_FRAME_SIDE` pixels (each tool checks its own smallest side).

    Args:
        side: the longest side the flag asks for, in pixels.
        flag: the flag, for the message.
        given: the flag's value as given (``480x9000``), for the message; ``None``: ``side``.

    Raises:
        ValueError: naming ``flag``, the value and the bound.
    """
    if side > MAX_FRAME_SIDE:
        raise ValueError(
            f"{flag} must be at most {MAX_FRAME_SIDE} pixels a side (a square frame of the server's default "
            f"--max-image-pixels, {MAX_FRAME_PIXELS}), got {given if given is not None else side}"
        )
    return side


def check_frame_pixels(height: int, width: int, flag: str, given: str) -> None:
    """Refuse a ``height x width`` frame of more than :data:`MAX_FRAME_PIXELS` pixels (a panorama of 1000 x 5000
    passes: the server counts pixels, not sides).

    Raises:
        ValueError: naming ``flag``, the value as ``given`` and the bound.
    """
    if height * width > MAX_FRAME_PIXELS:
        raise ValueError(
            f"{flag} must be at most {MAX_FRAME_PIXELS} pixels (the server's default --max-image-pixels, "
            f"{MAX_FRAME_SIDE} x {MAX_FRAME_SIDE}), got {given}: {height * width} pixels"
        )


def memory_budget_bytes(memory_limit: int | None = None) -> int:
    """The most a tool builds in memory at once: ``memory_limit`` (``None``: :func:`service.host.memory_limit_bytes`,
    else :data:`UNKNOWN_MEMORY_BYTES`) divided by :data:`MEMORY_SHARE`."""
    limit = memory_limit if memory_limit is not None else memory_limit_bytes() or UNKNOWN_MEMORY_BYTES
    return limit // MEMORY_SHARE


def check_memory(needed: int, what: str, memory_limit: int | None = None) -> None:
    """Refuse building ``needed`` bytes in memory at once when that is more than :func:`memory_budget_bytes`.

    Args:
        needed: the bytes the work would hold at once.
        what: the flags and values that ask for them, and what is built (``--frames 3000 x --clips 200 at --size
            64: every clip's frames``), for the message.
        memory_limit: the memory this process may use (``None``: :func:`service.host.memory_limit_bytes`).

    Raises:
        ValueError: naming ``what``, the bytes needed and the budget.
    """
    budget = memory_budget_bytes(memory_limit)
    if needed > budget:
        raise ValueError(
            f"{what} need about {needed:,} bytes ({needed / 1024**3:.1f} GiB) in memory at once, more than the "
            f"{budget:,} bytes ({budget / 1024**3:.1f} GiB) allowed: a quarter of the memory this machine or "
            "container gives"
        )
