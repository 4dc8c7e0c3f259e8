"""A camera has no end: one that stops delivering frames (unplugged, a driver error) ends its source with an error
naming it, not as a finished stream. OpenCV is not a dependency, so a stand-in ``cv2`` module plays the camera."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from service.client.sources import open_source


class _Capture:
    """An OpenCV ``VideoCapture`` whose reads fail after ``frames`` BGR frames."""

    frames = 3

    def __init__(self, index: int) -> None:
        self.reads = 0
        self.released = False

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.reads > self.frames:
            return False, None
        return True, np.full((4, 6, 3), (10, 20, 30), np.uint8)  # B, G, R

    def release(self) -> None:
        self.released = True


@pytest.fixture
def stand_in_cv2(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    cv2 = types.SimpleNamespace(
        VideoCapture=_Capture,
        CAP_PROP_FPS=5,
        COLOR_BGR2RGB=4,
        cvtColor=lambda image, code: image[..., ::-1],
    )
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    return cv2


def test_a_camera_that_stops_delivering_frames_ends_with_an_error_naming_it(stand_in_cv2):
    source = open_source("camera:0")
    frames = iter(source.frames)
    got = [next(frames) for _ in range(_Capture.frames)]
    assert [frame.source_frame for frame in got] == [0, 1, 2]
    assert got[0].image[0, 0].tolist() == [30, 20, 10]  # RGB
    with pytest.raises(OSError, match=r"camera 0 stopped delivering frames after 3 frames"):
        next(frames)
