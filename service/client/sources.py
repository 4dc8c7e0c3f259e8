"""Frame sources for the command-line client: a video file, a folder of images, a camera, or a synthetic clip."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from service.client.synthetic import synthetic_clip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class Source:
    """Frames (uint8 ``[H, W, 3]`` RGB, lazily produced) and the source's frame rate, if known."""

    frames: Iterator[np.ndarray]
    fps: float | None
    description: str


def open_source(spec: str, max_frames: int | None = None) -> Source:
    """Open ``spec``: ``camera:N`` (OpenCV device N), ``synthetic:N`` (N generated frames), a folder of images
    (sorted by name) or a video file.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the folder has no images, or the spec is malformed.
        ImportError: a camera was asked for and OpenCV is not installed (the message says how to install it).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    check_source_spec(spec)
    if spec.startswith("camera:"):
        source = _camera(_count(spec, "camera:", "a device number", 0))
    elif spec.startswith("synthetic:"):
        count = _count(spec, "synthetic:", "a frame count", 1) if spec != "synthetic:" else 60
        source = Source(iter(synthetic_clip(count)), 15.0, f"{count} synthetic frames")
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"{spec}: no such file or folder (or use camera:N / synthetic:N)")
        source = _folder(path) if path.is_dir() else _video(path)
    if max_frames is not None:
        source.frames = _limit(source.frames, max_frames)
    return source


def check_source_spec(spec: str) -> None:
    """Check the ``camera:N`` (N >= 0) and ``synthetic:N`` (N >= 1; bare ``synthetic:`` is 60 frames) forms;
    other specs are paths, checked when opened.

    Raises:
        ValueError: a malformed or out-of-range N, saying what was expected.
    """
    if spec.startswith("camera:"):
        _count(spec, "camera:", "a device number", 0)
    elif spec.startswith("synthetic:") and spec != "synthetic:":
        _count(spec, "synthetic:", "a frame count", 1)


def _count(spec: str, prefix: str, meaning: str, minimum: int) -> int:
    """The whole number after ``prefix`` in ``spec``; ``ValueError`` unless it is one and at least ``minimum``."""
    text = spec.removeprefix(prefix)
    if not text.isascii() or not text.isdigit() or int(text) < minimum:
        raise ValueError(f"{spec}: after {prefix!r} comes {meaning} (a whole number >= {minimum}), got {text!r}")
    return int(text)


def _limit(frames: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if index >= count:
            return
        yield frame


def _folder(path: Path) -> Source:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")

    def frames() -> Iterator[np.ndarray]:
        for file in files:
            with Image.open(file) as image:
                yield np.asarray(image.convert("RGB"))

    return Source(frames(), None, f"{len(files)} images in {path}")


def _video(path: Path) -> Source:
    import av

    try:
        container = av.open(str(path))
    except (OSError, ValueError) as error:  # av.error.* (InvalidDataError for a file that is no video)
        raise ValueError(
            f"{path}: cannot read it as a video ({error}); give a video file, a folder of images, "
            "camera:N or synthetic:N"
        ) from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else None

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        finally:
            container.close()

    return Source(frames(), fps, f"video {path}")


def _camera(index: int) -> Source:
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "camera sources need OpenCV: pip install opencv-python-headless (or stream a video file instead)"
        ) from error
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ValueError(f"camera {index} could not be opened")
    fps = capture.get(cv2.CAP_PROP_FPS) or None

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return Source(frames(), fps, f"camera {index}")
