"""What the video decoders take and give (:mod:`training.datasets.decoding` chooses between them): the
:data:`WindowChooser` that picks a window of a file's frames, the :class:`DecodedClip` of its frames, and
:class:`DecoderMissing` when no decoder is installed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

WindowChooser = Callable[[int], range]
"""Given a video's frame count, returns the frame indices to decode."""


class DecoderMissing(ImportError):
    """The video decoder a ``videos:`` dataset needs is not installed (the message says what to install)."""


@dataclass(frozen=True)
class DecodedClip:
    """Frames decoded from a video file.

    Attributes:
        frames: uint8 [T, H, W, 3] RGB.
        indices: Index of each frame in the file.
        backend: ``"decord"`` or ``"pyav"``, whichever produced the frames.
        num_frames: Frames in the whole file (what ``indices`` were chosen from).
    """

    frames: np.ndarray
    indices: range
    backend: str
    num_frames: int
