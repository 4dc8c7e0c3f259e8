"""Frame sources for the command-line client: a video file, a folder of images, a camera, or a synthetic clip.

Every frame comes with its time (:class:`SourceFrame`), on one of three clocks (:attr:`Source.clock`):

* ``presentation`` (video files): the frame's presentation timestamp, in ns after the first frame's.
* ``frame_rate`` (a synthetic clip; a folder of frames given a rate): ``index / rate`` in ns, the rate being the
  one asked for (``--fps``) or else the source's nominal one (15 frames/s for a synthetic clip).
* ``wall_clock`` (cameras; a folder of frames without a rate): the wall-clock time the frame was captured (read
  from the camera, or from its file), in ns since the Unix epoch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from plugins.pixels import rgb_pixels
from service.client.synthetic import synthetic_frames

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SYNTHETIC_FPS = 15.0
"""The nominal rate of a synthetic clip."""

Clock = Literal["presentation", "frame_rate", "wall_clock"]
"""What :attr:`SourceFrame.time_ns` counts (see the module docstring)."""


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source, with its time.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        time_ns: on the ``presentation`` and ``frame_rate`` clocks, the frame's time on the source's own timeline,
            in ns after its first frame (0 for the first); on the ``wall_clock`` clock, the time it was captured,
            in ns since the Unix epoch.
    """

    image: np.ndarray
    time_ns: int


@dataclass
class Source:
    """Frames (lazily produced, each with its time), the clock their times are on, and the source's nominal frame
    rate, if known (a video's average rate, the rate of a ``frame_rate`` clock, what a camera reports)."""

    frames: Iterator[SourceFrame]
    fps: float | None
    description: str
    clock: Clock = "wall_clock"

    @property
    def own_timeline(self) -> bool:
        """Whether the frames' times are on the source's own timeline (offsets from its first frame), not the
        wall clock."""
        return self.clock != "wall_clock"


def open_source(spec: str, max_frames: int | None = None, fps: float | None = None) -> Source:
    """Open ``spec``: ``camera:N`` (OpenCV device N), ``synthetic:N`` (N generated frames), a folder of images
    (sorted by name), an image file (one frame) or a video file.

    Args:
        spec: what to open.
        max_frames: stop after this many frames (``None``: all).
        fps: the rate of a folder's or a synthetic clip's timeline (``--fps``); a video keeps its presentation
            timestamps and a camera its capture times whatever it is.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the folder has no images, the spec is malformed, or ``max_frames`` or ``fps`` is not > 0.
        ImportError: a camera was asked for and OpenCV is not installed (the message says how to install it).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    check_source_spec(spec)
    if spec.startswith("camera:"):
        source = _camera(_count(spec, "camera:", "a device number", 0))
    elif spec.startswith("synthetic:"):
        count = _count(spec, "synthetic:", "a frame count", 1) if spec != "synthetic:" else 60
        rate = fps or SYNTHETIC_FPS
        source = Source(_at_rate(synthetic_frames(count), rate), rate, f"{count} synthetic frames", "frame_rate")
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"{spec}: no such file or folder (or use camera:N / synthetic:N)")
        if path.is_dir():
            source = _folder(path, fps)
        elif path.suffix.lower() in IMAGE_SUFFIXES:  # one picture: a stream of one frame
            source = _images([path], f"the image {path}", fps)
        else:
            source = _video(path, fps)
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


def _limit(frames: Iterator[SourceFrame], count: int) -> Iterator[SourceFrame]:
    for index, frame in enumerate(frames):
        if index >= count:
            return
        yield frame


def _rate_time_ns(index: int, fps: float) -> int:
    """Frame ``index``'s time on a timeline of ``fps`` frames per second, in ns."""
    return round(index * 1e9 / fps)


def _at_rate(images: Iterable[np.ndarray], fps: float) -> Iterator[SourceFrame]:
    for index, image in enumerate(images):
        yield SourceFrame(image, _rate_time_ns(index, fps))


def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file directly (not in a subfolder)."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _folder(path: Path, fps: float | None) -> Source:
    """A folder's images, sorted by name: at ``fps`` on a ``frame_rate`` clock, or, without it, each with the
    wall-clock time it was read. Each image is read as the server reads the same file
    (:func:`plugins.pixels.rgb_pixels`: 16-bit grayscale by its top 8 bits).

    Raises:
        ValueError: the folder holds no images; while reading, an image with no 8-bit reading
            (:class:`plugins.pixels.PixelRangeError`).
    """
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sequences = sorted(p.name for p in path.iterdir() if p.is_dir() and _holds_images(p))
        hint = ""
        if sequences:  # a dataset's folder of sequences (DAVIS JPEGImages/480p): one stream per sequence
            names = ", ".join(sequences[:3]) + (", ..." if len(sequences) > 3 else "")
            hint = f"; it holds folders of images ({names}): give one of them"
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    return _images(files, f"{len(files)} images in {path}", fps)


def _images(files: list[Path], description: str, fps: float | None) -> Source:
    """``files`` as frames, in order: at ``fps`` on a ``frame_rate`` clock, or, without it, each with the
    wall-clock time it was read; each read as the server reads the same file (:func:`plugins.pixels.rgb_pixels`).

    Raises:
        ValueError: while reading, an image with no 8-bit reading (:class:`plugins.pixels.PixelRangeError`).
    """

    def images() -> Iterator[np.ndarray]:
        for file in files:
            with Image.open(file) as image:
                yield rgb_pixels(image)  # [H, W, 3] uint8, as the server reads the file

    def read_times() -> Iterator[SourceFrame]:
        for image in images():
            yield SourceFrame(image, time.time_ns())

    if fps is not None:
        return Source(_at_rate(images(), fps), fps, description, "frame_rate")
    return Source(read_times(), None, description, "wall_clock")


def _video(path: Path, fallback_fps: float | None = None) -> Source:
    """A video file's frames, timed by their presentation timestamps (a frame without one, which few files have,
    by its place at the file's average rate, else at ``fallback_fps``).

    Raises:
        ValueError: the file is no video or holds no video stream; while reading, a frame without a timestamp in a
            file without a rate when no ``fallback_fps`` is given.
    """
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
    time_base = Fraction(stream.time_base) if stream.time_base else None
    rate = fps or fallback_fps

    def frames() -> Iterator[SourceFrame]:
        first: int | None = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and time_base is not None:
                    first = frame.pts if first is None else first
                    time_ns = round((frame.pts - first) * time_base * 10**9)
                elif rate:  # a frame without a timestamp (rare): its place at the nominal rate
                    time_ns = _rate_time_ns(index, rate)
                else:
                    raise ValueError(
                        f"{path}: frame {index} has no presentation timestamp and the video no frame rate: give "
                        "its rate with --fps"
                    )
                yield SourceFrame(frame.to_ndarray(format="rgb24"), time_ns)
        finally:
            container.close()

    return Source(frames(), fps, f"video {path}", "presentation")


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

    def frames() -> Iterator[SourceFrame]:
        try:
            while True:
                ok, frame = capture.read()
                captured_ns = time.time_ns()
                if not ok:
                    return
                yield SourceFrame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), captured_ns)
        finally:
            capture.release()

    return Source(frames(), fps, f"camera {index}", "wall_clock")
