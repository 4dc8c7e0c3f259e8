"""decord's decoding of a video file, by random access (not exact on every file: :mod:`training.datasets.decoding`
says where it is not), its frame count, and its errors' text without their C++ source locations. decord is optional:
it is imported on each call, never when this module is."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets.decode_pyav import PyavFailure
from training.datasets.decoded_clip import DecodedClip, WindowChooser


def _quiet_decord() -> Any:
    """decord (imported on each call, so a missing one falls back to PyAV), with its own logging off: its FFmpeg
    errors would print before the message that names the file (which carries decord's error text anyway)."""
    import decord

    _silence(decord)
    return decord


@functools.cache
def _silence(decord: Any) -> None:
    """Turn decord's logging off, once per process."""
    decord.logging.set_level(decord.logging.QUIET)


def decode_with_decord(path: Path, choose: WindowChooser) -> DecodedClip:
    """Decode with decord's random access, which is not exact on every file (the docstring of
    :mod:`training.datasets.decoding` lists where it gives other frames than ``choose`` asked for, or counts frames
    a player does not show)."""
    decord = _quiet_decord()
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    indices = choose(len(reader))
    frames = reader.get_batch(list(indices)).asnumpy()  # [T, H, W, 3]
    return DecodedClip(np.ascontiguousarray(frames, dtype=np.uint8), indices, "decord", len(reader))


def count_with_decord(path: Path) -> int:
    """decord's frame count, from its index of the file's packets (counting the frames an edit list trims)."""
    decord = _quiet_decord()
    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


_DECORD_ERROR = re.compile(
    r"(?:\[[\d:]+\] \S+:\d+: )*(?:Check failed: .*? \((?P<code>-?\d+) vs\. -?\d+\) )?(?P<text>.*)"
)
"""A line of decord's C++ errors: the ``[04:12:13] /path/to/file.cc:218: `` stamps of where it was raised (one per
C++ frame it passed), decord's ``Check failed: <expression> (<value> vs. <expected>)`` when a check failed (the
value is FFmpeg's negative error number when the expression is an FFmpeg call's), then its message."""


def decord_message_part(err: Exception, pyav: PyavFailure | None) -> str | None:
    """``"decord: <its message>"`` for decord's error ``err``: the first line of its text without the C++ source
    locations and checked expression (:data:`_DECORD_ERROR`); None when it is PyAV's failure again: decord's check
    names the FFmpeg error number PyAV reported (both read the file through FFmpeg)."""
    line = str(err).splitlines()[0] if str(err) else type(err).__name__
    parts = _DECORD_ERROR.match(line)  # matches every line: each part may be empty
    code = parts["code"] if parts else None
    text = (parts["text"].strip() if parts else "") or line
    if pyav is not None and pyav.code is not None and code is not None and abs(int(code)) == abs(pyav.code):
        return None
    return f"decord: {text}"
