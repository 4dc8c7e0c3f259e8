"""Frame sources for the command-line client: a video file, a folder of images, a camera, or a synthetic clip.

Every frame comes with its time (:class:`SourceFrame`), on one of three clocks (:attr:`Source.clock`):

* ``presentation`` (video files): the frame's presentation timestamp, in ns after the first frame's.
* ``frame_rate`` (a synthetic clip; a folder of frames given a rate): ``number / rate`` in ns, the rate being the
  one asked for (``--fps``) or else the source's nominal one (15 frames/s for a synthetic clip), ``number`` the
  frame's :attr:`SourceFrame.source_frame` counted from the first frame's (a gap in a folder's numbering is a longer
  step).
* ``wall_clock`` (cameras; a folder of frames without a rate): the wall-clock time the frame was captured (read
  from the camera, or from its file), in ns since the Unix epoch.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from plugins.files import NoHomeFolder, user_path
from plugins.pixels import rgb_pixels, upright_rgb
from plugins.video_files import VIDEO_SUFFIXES, FrameSpan, ends_early, frame_span, recorded_end_s
from service.cli_limits import check_fps
from service.client.synthetic import synthetic_frames

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SYNTHETIC_FPS = 15.0
"""The nominal rate of a synthetic clip."""

Clock = Literal["presentation", "frame_rate", "wall_clock"]
"""What :attr:`SourceFrame.time_ns` counts (see the module docstring)."""
_DIGITS = re.compile(r"(\d+)")
"""A run of digits in a frame file's name: compared as a number by :func:`_frame_order`."""
_NUMBERED = re.compile(r"(?P<prefix>.*?)(?P<number>\d+)")
"""A frame file's stem of the pattern ``<prefix><number>`` (``00007``, ``frame_7``), as ``davis:`` reads it."""
_AVFMT_NOTIMESTAMPS = 0x0080
"""FFmpeg's input-format flag for a format whose frames carry no timestamps (raw ``.h264``, ``.hevc``, ``.m4v``;
the timestamps FFmpeg's parser makes up for some of them are not the file's, and are not used)."""


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source, with its time.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        time_ns: on the ``presentation`` and ``frame_rate`` clocks, the frame's time on the source's own timeline,
            in ns after its first frame (0 for the first); on the ``wall_clock`` clock, the time it was captured,
            in ns since the Unix epoch.
        source_frame: which frame of the source it is: the file's number in a folder whose files are numbered
            (:func:`frame_numbers`: ``00007.jpg`` is 7, so a gap in the numbering shows), else the frame's place
            in the source from 0 (a video's decoded frames, a folder's files in frame order, a camera's reads, a
            synthetic clip's frames).
    """

    image: np.ndarray
    time_ns: int
    source_frame: int = 0


@dataclass
class Source:
    """Frames (lazily produced, each with its time), the clock their times are on, and the source's nominal frame
    rate, if known (a video's average rate, the rate of a ``frame_rate`` clock, what a camera reports)."""

    frames: Iterator[SourceFrame]
    fps: float | None
    description: str
    clock: Clock = "wall_clock"
    limit_reached: bool = False
    """Whether the frames stopped at ``max_frames`` (:func:`open_source`), not at the source's end: set once the
    last frame allowed is given, before anything past it is read."""

    @property
    def own_timeline(self) -> bool:
        """Whether the frames' times are on the source's own timeline (offsets from its first frame), not the
        wall clock."""
        return self.clock != "wall_clock"


def open_source(spec: str, max_frames: int | None = None, fps: float | None = None, *, cameras: bool = True) -> Source:
    """Open ``spec``: ``camera:N`` (OpenCV device N), ``synthetic:N`` (N generated frames), a folder of images
    (in frame order, numbers in names compared as numbers, hidden files left out: :func:`frame_files`), an image
    file (one frame) or a video file (its frames upright: :func:`upright_rgb`).

    Args:
        spec: what to open.
        max_frames: stop after this many frames (``None``: all), without reading the source further: a bad frame
            past them, or a video cut short after them, is not seen (:attr:`Source.limit_reached` tells).
        fps: the rate of a folder's or a synthetic clip's timeline (``--fps``; from
            :data:`~service.cli_limits.MIN_FPS` to :data:`~service.cli_limits.MAX_FPS`); a video keeps its
            presentation timestamps and a camera its capture times whatever it is.
        cameras: whether the caller takes ``camera:N`` (messages suggest it only then; ``service.extract`` does not).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the folder has no images or two files for one frame (:func:`frame_files`; a gap in its
            numbering is only warned about: :func:`_folder`), the file is no video (or one without a video
            stream), the spec is malformed, ``max_frames`` is not > 0, or ``fps`` is beyond the bounds of
            :func:`service.cli_limits.check_fps`; while reading, a video frame that cannot be decoded or an image
            file that cannot be read (the message names the file, and a video's frame).
        ImportError: a camera was asked for and OpenCV is not installed (the message says how to install it).
    """
    others = "camera:N or synthetic:N" if cameras else "synthetic:N"  # what to give instead, in messages
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    if fps is not None:
        check_fps(fps)
    check_source_spec(spec)
    if spec.startswith("camera:"):
        source = _camera(_count(spec, "camera:", "a device number", 0))
    elif spec.startswith("synthetic:"):
        count = _count(spec, "synthetic:", "a frame count", 1) if spec != "synthetic:" else 60
        rate = fps or SYNTHETIC_FPS
        source = Source(_at_rate(synthetic_frames(count), rate), rate, f"{count} synthetic frames", "frame_rate")
    else:
        path = source_path(spec)
        if not path.exists():
            raise FileNotFoundError(f"{spec}: no such file or folder (or use {others.replace(' or ', ' / ')})")
        if path.is_dir():
            source = _folder(path, fps)
        elif path.suffix.lower() in IMAGE_SUFFIXES:  # one picture: a stream of one frame
            source = _images([path], f"the image {path}", fps)
        else:
            source = _video(path, fps, others)
    if max_frames is not None:
        source.frames = _limit(source, max_frames)
    return source


def source_path(spec: str) -> Path:
    """The file or folder a source spec names, a leading ``~`` expanded as in every path flag (a quoted spec is
    not expanded by the shell); the spec as it is where ``~user`` names no user."""
    try:
        return user_path(spec)
    except NoHomeFolder:  # the spec names a path starting with "~", which will not be found
        return Path(spec)


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


def _limit(source: Source, count: int) -> Iterator[SourceFrame]:
    """The first ``count`` frames of ``source`` (``count`` >= 1): the last one is given without reading the next
    (whose failure would fail frames already given), marking ``source`` as :attr:`~Source.limit_reached` first; the
    source's frames are closed at the end (a video's file with them)."""
    frames = source.frames  # now: a generator's body would run only once source.frames is this one

    def limited() -> Iterator[SourceFrame]:
        try:
            for index, frame in enumerate(frames):
                if index + 1 >= count:
                    source.limit_reached = True
                    yield frame
                    return
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    return limited()


def _rate_time_ns(index: int, fps: float) -> int:
    """Frame ``index``'s time on a timeline of ``fps`` frames per second, in ns."""
    return round(index * 1e9 / fps)


def _at_rate(images: Iterable[np.ndarray], fps: float, numbers: list[int] | None = None) -> Iterator[SourceFrame]:
    """``images`` at ``fps``: each at ``number / fps`` after the first, ``number`` its frame number from
    ``numbers`` (counted from the first's) or else its place."""
    for index, image in enumerate(images):
        number = numbers[index] if numbers is not None else index
        first = numbers[0] if numbers is not None else 0
        yield SourceFrame(image, _rate_time_ns(number - first, fps), number)


def _is_image(path: Path) -> bool:
    """Whether ``path`` is named as a frame image: an image suffix, and not hidden (a name starting with ``.``,
    as macOS's ``._00000.jpg`` resource files; the rule of ``training.datasets.images.is_visible``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _is_video_file(path: Path) -> bool:
    """Whether ``path`` is named as a video file (:data:`VIDEO_SUFFIXES`), and not hidden."""
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file directly (not in a subfolder)."""
    return any(_is_image(p) for p in folder.iterdir())


def _frame_order(path: Path) -> tuple[tuple[str | int, ...], str]:
    """Sort key of a frame file: its stem with each run of digits read as a number, then its name. For names of
    one pattern ``<prefix><number>`` this is the order of ``training.datasets.davis`` (``frame_2`` before
    ``frame_10``; ``00003.jpg`` before ``00003.png``); other names keep a natural order (``0001a`` between
    ``0001`` and ``0002``)."""
    # "frame_10b" -> ["frame_", "10", "b"]: text at even places, digits at odd ones, so two keys compare alike
    parts = _DIGITS.split(path.stem)
    return tuple(int(part) if place % 2 else part for place, part in enumerate(parts)), path.name


def frame_files(folder: Path) -> list[Path]:
    """The frame images directly in ``folder``, in frame order (:func:`_frame_order`: numbers in names compared as
    numbers, so ``frame_2`` comes before ``frame_10``), hidden files left out: the order and files the ``davis:``
    training reader takes from a sequence folder.

    Raises:
        ValueError: two files for one frame (``00001.jpg`` and ``00001.png``, or ``frame_1.png`` and
            ``frame_01.png``: names that differ only in their suffix or in a number's leading zeros), as the
            ``davis:`` reader refuses them; the message names both.
    """
    files = sorted((p for p in folder.iterdir() if _is_image(p)), key=_frame_order)
    for before, after in itertools.pairwise(files):
        if _frame_order(before)[0] == _frame_order(after)[0]:
            raise ValueError(
                f"{folder}: {before.name} and {after.name} are two files for one frame; keep one of the two"
            )
    return files


def _numbered(files: list[Path]) -> list[re.Match[str]] | None:
    """Each file's ``<prefix><number>`` match when all of ``files`` follow one such pattern, else ``None``."""
    matches = [_NUMBERED.fullmatch(file.stem) for file in files]
    numbered = [match for match in matches if match is not None]
    if len(numbered) < len(files) or len({match["prefix"] for match in numbered}) > 1:
        return None
    return numbered


def frame_numbers(files: list[Path]) -> list[int] | None:
    """The numbers of frame files (in frame order: :func:`frame_files`) whose names all follow one pattern
    ``<prefix><number>`` (``00007.jpg`` -> 7, ``frame_12.png`` -> 12); ``None`` when they follow no one pattern."""
    numbered = _numbered(files)
    return None if numbered is None else [int(match["number"]) for match in numbered]


def numbering_gap(files: list[Path]) -> str | None:
    """What is missing from frame files (in frame order, one file per frame: :func:`frame_files`) whose names all
    follow one pattern ``<prefix><number>``: the first missing file and the files around it, with how many other
    gaps there are; ``None`` when the numbers run without a gap or the names follow no one pattern (and so carry
    no numbering to check). The ``davis:`` training reader refuses such a folder; the client streams it."""
    numbered = _numbered(files)
    if numbered is None:
        return None
    gaps = [
        (before, after, first)
        for (before, first), (after, second) in itertools.pairwise(zip(files, numbered, strict=True))
        if int(second["number"]) != int(first["number"]) + 1
    ]
    if not gaps:
        return None
    before, after, first = gaps[0]
    digits = first["number"]
    missing = f"{first['prefix']}{int(digits) + 1:0{len(digits)}d}{before.suffix}"
    others = f" ({len(gaps) - 1} more {'gap' if len(gaps) == 2 else 'gaps'} after it)" if len(gaps) > 1 else ""
    return f"frame {missing} is missing: the numbering jumps from {before.name} to {after.name}{others}"


def _folder(path: Path, fps: float | None) -> Source:
    """A folder's images in frame order (:func:`frame_files`): at ``fps`` on a ``frame_rate`` clock, or, without
    it, each with the wall-clock time it was read. Each image is read as the server reads the same file
    (:func:`plugins.pixels.rgb_pixels`: 16-bit grayscale by its top 8 bits). When the files are numbered
    (:func:`frame_numbers`), each frame's :attr:`~SourceFrame.source_frame` is its file's number and, at ``fps``,
    its time is ``(number - first number) / fps``; else they are its place in frame order and ``place / fps``.

    A gap in the files' numbering (:func:`numbering_gap`) is streamed as it is, the frames around it one after the
    other, with a warning on stderr naming the first missing file; their numbers (and, at ``fps``, their times)
    keep the gap.

    Raises:
        ValueError: the folder holds no images, or two files for one frame (:func:`frame_files`); while reading,
            an image that cannot be read or has no 8-bit reading (:class:`plugins.pixels.PixelRangeError`),
            naming the file.
    """
    files = frame_files(path)
    if not files:
        sequences = sorted(p.name for p in path.iterdir() if p.is_dir() and _holds_images(p))
        videos = sorted(p.name for p in path.iterdir() if p.is_file() and _is_video_file(p))
        hint = ""
        if sequences:  # a dataset's folder of sequences (DAVIS JPEGImages/480p): one stream per sequence
            names = ", ".join(sequences[:3]) + (", ..." if len(sequences) > 3 else "")
            hint = f"; it holds folders of images ({names}): give one of them"
        elif videos:  # a folder of recordings: each file is a source of its own
            names = ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else "")
            hint = (
                f"; it holds {len(videos)} video file(s) ({names}): give the files themselves, not their folder "
                f"({path / videos[0]}{' ...' if len(videos) > 1 else ''})"
            )
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    gap = numbering_gap(files)
    if gap is not None:
        timing = f" and their times at {fps:g} frames/s" if fps is not None else ""
        print(
            f"warning: {path}: {gap}; the frames on either side of it are streamed one after the other, their "
            f"source_frame numbers{timing} keeping the gap",
            file=sys.stderr,
        )
    return _images(files, f"{len(files)} images in {path}", fps, frame_numbers(files))


def _images(files: list[Path], description: str, fps: float | None, numbers: list[int] | None = None) -> Source:
    """``files`` as frames, in order: at ``fps`` on a ``frame_rate`` clock, or, without it, each with the
    wall-clock time it was read; each read as the server reads the same file (:func:`plugins.pixels.rgb_pixels`).
    ``numbers`` are the files' frame numbers (:func:`frame_numbers`), their :attr:`~SourceFrame.source_frame` and,
    at ``fps``, their times' steps; ``None``: their places.

    Raises:
        ValueError: while reading, an image that cannot be read (not an image, truncated) or has no 8-bit reading
            (:class:`plugins.pixels.PixelRangeError`), naming the file.
    """

    def images() -> Iterator[np.ndarray]:
        for file in files:
            yield _read_image(file)

    def read_times() -> Iterator[SourceFrame]:
        for index, image in enumerate(images()):
            yield SourceFrame(image, time.time_ns(), numbers[index] if numbers is not None else index)

    if fps is not None:
        return Source(_at_rate(images(), fps, numbers), fps, description, "frame_rate")
    return Source(read_times(), None, description, "wall_clock")


def _read_image(file: Path) -> np.ndarray:
    """``file``'s pixels as the server reads the same file (:func:`plugins.pixels.rgb_pixels`): uint8 [H, W, 3].

    Raises:
        ValueError: ``file`` cannot be read (Pillow's ``OSError``: not an image, truncated, unreadable) or has no
            8-bit reading; the message names the file.
    """
    try:
        with Image.open(file) as image:
            return rgb_pixels(image)  # [H, W, 3] uint8
    except (OSError, ValueError) as error:
        raise ValueError(f"{file}: cannot read the image ({error})") from error


def _decode_error(path: Path, index: int, error: Exception) -> ValueError:
    """A ``ValueError`` naming the file and the frame that could not be decoded, with PyAV's reason."""
    reason = getattr(error, "strerror", None) or str(error)
    return ValueError(f"{path}: frame {index}: cannot decode it, the file is corrupt or cut short ({reason})")


def _decoded_frames(container: Any, stream: Any, path: Path) -> Iterator[tuple[Any, np.ndarray]]:
    """Each decoded frame of ``stream`` with its upright pixels (:func:`upright_rgb`), until the file's end.

    Raises:
        ValueError: a frame cannot be decoded (PyAV's ``av.error.FFmpegError``, which a file cut short raises as
            ``EOFError``, neither ``OSError`` nor ``ValueError``), or, after the last frame, the frames end early
            (:func:`ends_early`: a file cut short between two frames); the message names the file and the frame.
    """
    import av

    end_s = recorded_end_s(container, stream)
    decoded = container.decode(stream)
    index = 0
    last: FrameSpan | None = None  # the span of the timestamped frame that ends latest so far
    while True:
        try:
            frame = next(decoded, None)
            if frame is not None:
                image = upright_rgb(frame)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise _decode_error(path, index, error) from error
        if frame is None:
            early = ends_early(path, index, last, end_s)
            if early is not None:
                raise early
            return
        span = frame_span(frame.pts, frame.duration, stream) if end_s is not None else None  # else nothing to check
        if span is not None and (last is None or span.end_s > last.end_s):
            last = span
        yield frame, image
        index += 1


def _untimed_rate(stream: Any, fallback_fps: float | None) -> float | None:
    """The rate that spaces frames without a timestamp: the user's ``fallback_fps`` (``--fps``), else the codec's
    frame rate (a raw H.264 stream's SPS), else FFmpeg's guess, else the stream's average rate (for a raw stream
    the demuxer's default, 25, whatever the video's); ``None`` when none is known."""
    if fallback_fps is not None:
        return fallback_fps
    for rate in (stream.codec_context.framerate, stream.guessed_rate, stream.average_rate):
        if rate:
            return float(rate)
    return None


class _PresentationClock:
    """The times of a video's frames, as they are decoded (in presentation order), in ns after the first frame's.

    Frames are timed by their presentation timestamps while each is later than the one before. From the first frame
    that has none (a raw ``.h264`` or ``.hevc`` stream's, whose format has no timestamps: ``untimed``; rare
    elsewhere) or whose timestamp is not after the one before (an H.264 stream with B-frames in an AVI carries its
    frames' decode order there, ``1, 3, 4, 2, ...``), to the end of the file, frames are timed by their place at
    ``rate``: each comes one interval (``1 / rate``) after the frame before it, so times keep increasing; the
    frames before it keep the times their timestamps gave. An untimed stream's frames are thus ``index / rate``.

    Args:
        path: the video file (for messages).
        time_base: the stream's time base (``None``: none, every frame is timed by its place).
        rate: the rate that spaces frames timed by their place (:func:`_untimed_rate`; ``None``: none known).
        untimed: the format has no timestamps (FFmpeg's ``AVFMT_NOTIMESTAMPS``): every frame is timed by its place.
    """

    def __init__(self, path: Path, time_base: Fraction | None, rate: float | None, untimed: bool) -> None:
        self._path = path
        self._time_base = None if untimed else time_base
        self._rate = rate
        self._first: int | None = None  # the first frame's timestamp
        self._last_pts: int | None = None  # the timestamp of the frame before, while frames are timed by them
        self._last: tuple[int, int] | None = None  # index and time of the frame before
        self._by_place_from: tuple[int, int] | None = None  # index and time places count from, once they do

    def time_ns(self, index: int, pts: int | None) -> int:
        """The time of frame ``index`` (frames are given in order), whose timestamp is ``pts``.

        Raises:
            ValueError: the frame is timed by its place and no rate is known (the message says to give ``--fps``).
        """
        time_base, last_pts = self._time_base, self._last_pts
        in_order = pts is not None and (last_pts is None or pts > last_pts)
        if self._by_place_from is None and time_base is not None and pts is not None and in_order:
            first = pts if self._first is None else self._first
            self._first, self._last_pts = first, pts
            self._last = (index, round((pts - first) * time_base * 10**9))
            return self._last[1]
        if not self._rate:
            raise ValueError(self._no_rate(index, pts))
        if self._by_place_from is None:  # from here to the end: the frame before, or the start (frame 0 at 0)
            self._by_place_from = self._last or (0, 0)
        since, since_ns = self._by_place_from
        self._last = (index, since_ns + _rate_time_ns(index - since, self._rate))
        return self._last[1]

    def _no_rate(self, index: int, pts: int | None) -> str:
        """Why frame ``index`` cannot be timed without a rate."""
        if pts is None or self._time_base is None:
            why = "has no presentation timestamp"
        else:
            why = f"has a presentation timestamp ({pts}) not after the one before ({self._last_pts})"
        return f"{self._path}: frame {index} {why} and the video no frame rate: give its rate with --fps"


def _video(path: Path, fallback_fps: float | None = None, others: str = "camera:N or synthetic:N") -> Source:
    """A video file's frames, timed by their presentation timestamps while they increase, else from the first frame
    without one (a raw ``.h264`` or ``.hevc`` stream's) or out of order (an H.264 AVI with B-frames) to the file's
    end by their place at ``fallback_fps`` (``--fps``), else at the codec's frame rate (:func:`_untimed_rate`;
    :class:`_PresentationClock` says how). The source's rate is the file's average rate; for a format without
    timestamps (FFmpeg's ``AVFMT_NOTIMESTAMPS``) the rate its frames are spaced by.

    Raises:
        ValueError: the file is no video (or only a header: PyAV's ``EOFError``) or holds no video stream; while
            reading, a frame that cannot be decoded or frames that end early (the file cut short: naming the file
            and the frame, :func:`_decoded_frames`), or a frame to time by its place in a file without any rate
            when no ``fallback_fps`` is given.
    """
    import av

    if path.is_file() and path.stat().st_size == 0:  # FFmpeg would say only "Invalid data found ..."
        raise ValueError(
            f"{path}: the file is empty (0 bytes); give a video file, an image file, a folder of images, " + others
        )
    try:
        container = av.open(str(path))
    except (OSError, ValueError, av.error.FFmpegError) as error:  # InvalidDataError: no video; EOFError: no frames
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(
            f"{path}: cannot read it as a video ({reason}); give a video file, an image file, a folder of images, "
            + others
        ) from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream")
    stream = container.streams.video[0]
    time_base = Fraction(stream.time_base) if stream.time_base else None
    rate = _untimed_rate(stream, fallback_fps)
    untimed = bool(container.format.flags & _AVFMT_NOTIMESTAMPS)  # a raw stream: no frame has a timestamp of its own
    fps = rate if untimed else float(stream.average_rate) if stream.average_rate else None

    def frames() -> Iterator[SourceFrame]:
        clock = _PresentationClock(path, time_base, rate, untimed)
        try:
            for index, (frame, image) in enumerate(_decoded_frames(container, stream, path)):
                yield SourceFrame(image, clock.time_ns(index, frame.pts), index)
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
            for read in itertools.count():
                ok, frame = capture.read()
                captured_ns = time.time_ns()
                if not ok:  # a camera has no end: unplugged, a USB timeout, a driver error
                    raise OSError(f"camera {index} stopped delivering frames after {read} frames")
                yield SourceFrame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), captured_ns, read)
        finally:
            capture.release()

    return Source(frames(), fps, f"camera {index}", "wall_clock")
