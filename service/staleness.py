"""How old a frame may be: the deadline a stream's ``max_staleness_s`` gives a frame, and the drop's message.

A frame's age is the server's wall clock minus its ``capture_time_ns``; the deadline is expressed on
:func:`time.perf_counter`, which the batcher's waits use and which a wall-clock step does not move.
"""

from __future__ import annotations

import time

_LONGEST_S = 1e11
"""Staleness limits above this (about 3,000 years, longer than any age an int64 capture time can give) act as this,
so the limit in nanoseconds stays a float."""


def frame_deadline(capture_time_ns: int, max_staleness_s: float) -> float | None:
    """The :func:`time.perf_counter` time after which a frame captured at ``capture_time_ns`` (ns since the Unix
    epoch; 0: unknown) is older than ``max_staleness_s``; ``None`` when the limit is off (0) or the capture time
    is unknown. A deadline at or before now means the frame is stale already."""
    if max_staleness_s <= 0 or capture_time_ns == 0:
        return None
    limit_ns = round(min(max_staleness_s, _LONGEST_S) * 1e9)
    remaining_ns = capture_time_ns + limit_ns - time.time_ns()
    return time.perf_counter() + remaining_ns / 1e9


def is_past(deadline: float | None) -> bool:
    """Whether ``deadline`` (from :func:`frame_deadline`) has passed; never for ``None``."""
    return deadline is not None and deadline <= time.perf_counter()


def stale_message(capture_time_ns: int, max_staleness_s: float, when: str) -> str:
    """The ``FrameDropped`` message of a frame found stale ``when`` (``"when it arrived"``, say): its age by the
    server's clock now, the stream's limit and the clock caveat."""
    age_s = (time.time_ns() - capture_time_ns) / 1e9
    return (
        f"the frame was {age_s:.3f} s old by this server's clock {when}, over the stream's max_staleness_s of "
        f"{max_staleness_s:g} s (ages are this server's clock minus capture_time_ns: the camera's clock must agree "
        "with the server's)"
    )


__all__ = ["frame_deadline", "is_past", "stale_message"]
