"""Video files: the suffixes a training data folder picks up and the client's messages name, and the end a file's
header records, against which the client and the training data check that a file was not cut short (torch-free and
gRPC-free, so the client-only install and the training data loaders share it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".3gp",
    ".ogv",
    ".wmv",
    ".flv",
)
"""Suffixes of the common video containers, compared case-insensitively. PyAV (FFmpeg) reads a file whatever its
suffix says (an ``.m4v`` is an MP4, or a raw MPEG-4 stream, alike)."""

_MATROSKA_DURATION = re.compile(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
"""A Matroska track's ``DURATION`` tag: ``HH:MM:SS.nnnnnnnnn``."""
END_SLACK_FRAMES = 2
"""How many frame intervals a video's decoded frames may end before the end its header records (rounded durations,
a frame a decoder drops) before the file is taken as cut short (:func:`ends_early`)."""


def _matroska_duration_s(stream: Any) -> Fraction | None:
    """The end of ``stream`` in s as a Matroska file's track tag ``DURATION`` (``HH:MM:SS.nnnnnnnnn``) records it
    (FFmpeg and mkvmerge write one per track; Matroska has no other duration per stream), or ``None``."""
    match = _MATROSKA_DURATION.fullmatch(str(stream.metadata.get("DURATION", "")).strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return (int(hours) * 60 + int(minutes)) * 60 + Fraction(seconds)


def recorded_end_s(container: Any, stream: Any) -> Fraction | None:
    """When the header of ``container`` says ``stream``'s last frame ends, in s on the frames' clock: the stream's
    start plus its duration; else its Matroska ``DURATION`` tag; else, when the file holds this stream alone, the
    container's duration (that of its longest stream: not the video's when there are others). ``None`` when the
    file records none of them (a raw ``.h264`` stream, a WebM recorded live).

    The tag and the container's duration are taken as the end itself, not added to the start (Matroska measures
    both from 0): a file whose first frame comes late may then go unchecked, but is never failed wrongly."""
    if stream.duration and stream.time_base:
        return Fraction((stream.start_time or 0) + stream.duration) * Fraction(stream.time_base)
    tagged = _matroska_duration_s(stream)
    if tagged is not None:
        return tagged
    if container.duration and len(container.streams) == 1:
        return Fraction(container.duration, 1_000_000)  # in AV_TIME_BASE units: microseconds
    return None


@dataclass(frozen=True)
class FrameSpan:
    """Where a frame ends (its timestamp plus its duration, or plus one interval of the stream's average rate: when
    the next frame is due), in s, and that interval."""

    end_s: Fraction
    interval_s: Fraction


def frame_span(pts: int | None, duration: int | None, stream: Any) -> FrameSpan | None:
    """The :class:`FrameSpan` of a frame (a decoded frame's, or its packet's) of ``stream`` with timestamp ``pts``
    and ``duration`` (in the stream's time base; 0 or None: unknown); ``None`` for a frame without a timestamp, or
    of unknown duration in a stream without a rate."""
    if pts is None or not stream.time_base:
        return None
    time_base = Fraction(stream.time_base)
    if duration:
        interval = duration * time_base
    elif stream.average_rate:
        interval = 1 / Fraction(stream.average_rate)
    else:
        return None
    return FrameSpan(pts * time_base + interval, interval)


def ends_early(path: Path, count: int, last: FrameSpan | None, end_s: Fraction | None) -> ValueError | None:
    """A ``ValueError`` when a file's frames, ``count`` of them, the latest ending as ``last`` says, stop more than
    :data:`END_SLACK_FRAMES` frame intervals before ``end_s``, the end its header records (:func:`recorded_end_s`):
    the file was cut short (an interrupted copy or download) between two frames, where the decoder sees a clean
    end. Frame counts are not compared: an MP4 trimmed by its edit list shows fewer frames than its header counts.
    The client checks the frames it decodes; ``training.datasets.decoding`` the packets it counts."""
    if last is None or end_s is None or last.end_s + END_SLACK_FRAMES * last.interval_s >= end_s:
        return None
    return ValueError(
        f"{path}: the file ends early, after frame {count - 1} (at {float(last.end_s):.3f} s of the "
        f"{float(end_s):.3f} s its header records): it is cut short (an interrupted copy or download?)"
    )
