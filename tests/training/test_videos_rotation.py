"""Phone videos stored sideways with a display-matrix rotation read upright whichever backend decodes them: decord
turns the frames by the matrix, and the PyAV fallback (and the client's and ``service.extract``'s video source,
which share its helper) turns them the same way."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from service.client.sources import open_source
from training.datasets.decoding import decode_video

HEIGHT, WIDTH = 32, 64  # stored landscape; decord decodes this size correctly (it mis-decodes some, e.g. 64x48)


def _pattern() -> np.ndarray:
    """uint8 [32, 64, 3]: red top-left block, green bottom band, blue right band; no turn or flip maps it onto
    itself."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:16, :16, 0] = 250
    image[-8:, :, 1] = 250
    image[:, -16:, 2] = 250
    return image


def _write_rotated(path: Path, degrees: int, frames: int = 3) -> None:
    """An H.264 file of ``frames`` copies of :func:`_pattern` whose display matrix turns it ``degrees``
    counter-clockwise (PyAV's convention, read back as ``VideoFrame.rotation``)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_pattern(), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    error = np.abs(actual.astype(np.int16) - expected.astype(np.int16)).mean()
    assert error < 8, f"{what}: mean difference {error:.1f} from the upright pattern"


@pytest.mark.parametrize(("degrees", "quarter_turns"), [(90, 1), (180, 2), (270, 3), (-90, 3)])
def test_every_video_reader_shows_a_rotated_file_upright(tmp_path, degrees, quarter_turns):
    path = tmp_path / f"phone_{degrees}.mp4"
    _write_rotated(path, degrees)
    upright = np.rot90(_pattern(), quarter_turns)  # what a player shows: [64, 32, 3] for a quarter turn
    pyav = decode_video(path, lambda n: range(n), backend="pyav")
    assert pyav.backend == "pyav" and pyav.num_frames == 3
    for index, frame in enumerate(pyav.frames):
        _assert_close(frame, upright, f"pyav frame {index}")
    window = decode_video(path, lambda n: range(1), backend="pyav")  # the path that stops after a window
    _assert_close(window.frames[0], upright, "pyav window")
    (client_frame, *_) = [frame.image for frame in open_source(str(path)).frames]
    _assert_close(client_frame, upright, "client source")
    assert client_frame.flags["C_CONTIGUOUS"]
    if importlib.util.find_spec("decord") is not None:  # the x86_64 wheels only
        decord = decode_video(path, lambda n: range(n), backend="decord")
        _assert_close(decord.frames[0], upright, "decord")
        _assert_close(pyav.frames[0], decord.frames[0], "pyav against decord")
