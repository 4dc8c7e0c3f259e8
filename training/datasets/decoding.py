"""Video file decoding with PyAV, falling back to decord. Both backends are imported lazily.

PyAV decodes first because its frames are exactly the ones asked for: it decodes forward (from the keyframe before a
window when the file's timestamps allow an exact seek) and numbers the frames it gets, where decord's random access
(``VideoReader.get_batch``) silently gives other frames on common files. Measured with decord 0.6 on files whose
frames carry their own index in their pixels: MPEG-4 Part 2 with B-frames (Xvid-style ``.avi``, ``mpeg4`` in
``.mp4``): 10 of 12 training clips held other frames (one claiming frames 84-89 held 86, 87, 88, 89, 89, 89); HEVC
with open GOPs (x265's default): clips starting on a keyframe shifted by 1-2 frames; an ``.mp4``/``.mov`` trimmed
by an edit list (a phone's "trim"): 60 frames where players and PyAV show 50, the last 10 repeating the final frame
(so a video labelled with 50 masks failed evaluation for a missing mask); a WebM whose frame size changes mid-stream:
later frames stretched to the first size, where PyAV refuses the file (:class:`DatasetError` naming the frame).
PyAV returned the right frames on every one of them. decord decodes only when PyAV is not installed or fails on a
file it can open (that is not turned a quarter turn: below), or when asked for by name (``backend="decord"``).

PyAV gives the frames as a player shows them, turned by the rotation of the file's display matrix (a phone video
stored sideways: :func:`plugins.pixels.upright_rgb`, which the client and ``service.extract`` use too). decord 0.6
turns them the same way when it can, but fails on many videos turned a quarter turn (90 or 270 degrees: ``Check
failed: from_size == to_size`` for a 64x48 or 128x72 one, where 64x32 or 640x360 ones read); so ``"auto"`` does not
fall back to decord on such a file, and with ``backend="decord"`` the error says that the turn is why. Both read a
window of frames from the keyframe before it when the file allows that, and hold only the window's frames.

A frame PyAV cannot decode is named in the error, by its index; decord's error is added only when it failed
otherwise than PyAV (another FFmpeg error, or its own), without its C++ source locations.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np

from plugins.pixels import upright_rgb
from service.client.sources import ends_early, frame_span, recorded_end_s
from training.datasets.errors import DatasetError

Backend = Literal["auto", "decord", "pyav"]
WindowChooser = Callable[[int], range]
"""Given a video's frame count, returns the frame indices to decode."""
_T = TypeVar("_T")


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


@dataclass(frozen=True)
class _PyavFailure:
    """PyAV's error on a file, as the messages of :func:`_pyav_then_decord` give it.

    Attributes:
        reason: The error's text: FFmpeg's message (``Invalid data found when processing input``), without the
            error number and the call PyAV adds; else the first line of the exception's text.
        code: FFmpeg's error number (``errno``), or None.
        frame: The frame PyAV could not decode (:class:`_FrameUndecodable`), or None: the file as a whole.
    """

    reason: str
    code: int | None = None
    frame: int | None = None

    @classmethod
    def of(cls, err: Exception) -> _PyavFailure:
        """The failure ``err`` (a :class:`_FrameUndecodable`, or PyAV's ``av.error.*``) reports."""
        frame = err.index if isinstance(err, _FrameUndecodable) else None
        cause = err.error if isinstance(err, _FrameUndecodable) else err
        reason = (getattr(cause, "strerror", None) or str(cause) or type(cause).__name__).splitlines()[0]
        code = getattr(cause, "errno", None)
        return cls(reason, code if isinstance(code, int) else None, frame)

    def message(self, path: Path, verb: str, decord: str | None = None) -> str:
        """The message naming ``path`` (and the frame), with ``decord``'s part (``"decord: ..."``) when given."""
        reasons = "; ".join(part for part in (f"pyav: {self.reason}", decord) if part)
        if self.frame is not None:
            return f"{path}: cannot decode video frame {self.frame}, corrupt or cut short ({reasons})"
        return f"{path}: cannot {verb} video, corrupt or unsupported ({reasons})"


_OPENED_BY_PYAV: set[tuple[str, int, int]] = set()
"""Files PyAV has opened in this process, by path, size and modification time (each is checked once)."""


def _pyav_open_error(path: Path) -> _PyavFailure | None:
    """PyAV's error opening ``path``'s container, or ``None`` when it opens or PyAV is not installed.

    decord reports a file it cannot open from its C++ code straight to the process's stderr (``video_reader.cc:83:
    ERROR opening: ...``), past any Python logging setting, before raising; so before decord reads a file
    (``backend="decord"``, or ``"auto"`` once PyAV failed on it or is missing) the file is opened with PyAV, which
    reads the same container headers through FFmpeg without printing, and one that fails there never reaches
    decord. Cheap: only the header is read, once per file and process (worker processes and threads
    each check for themselves, which needs no redirection of the shared stderr).
    """
    try:
        import av
    except ImportError:
        return None
    try:
        stat = path.stat()
    except OSError as err:
        return _PyavFailure.of(err)
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _OPENED_BY_PYAV:
        return None
    try:
        with av.open(str(path)):
            pass
    except Exception as err:  # av.error.* (OSError/ValueError subclasses) for corrupt or unsupported files
        return _PyavFailure.of(err)
    _OPENED_BY_PYAV.add(key)
    return None


def _turned_sideways(path: Path) -> bool:
    """Whether ``path``'s display matrix turns its first frame by an odd quarter turn (90 or 270 degrees: a phone
    video stored sideways), as PyAV reads it (``frame.rotation``, rounded to quarter turns as
    :func:`plugins.pixels.upright_rgb` rounds it); False also when PyAV is missing or cannot decode that frame."""
    try:
        import av

        with av.open(str(path)) as container:
            first = next(iter(container.decode(container.streams.video[0])), None)
    except Exception:  # ImportError, av.error.*, IndexError (no video stream): not known
        return False
    return first is not None and round(float(first.rotation or 0) / 90) % 2 == 1


_DECORD_ERROR = re.compile(
    r"(?:\[[\d:]+\] \S+:\d+: )*(?:Check failed: .*? \((?P<code>-?\d+) vs\. -?\d+\) )?(?P<text>.*)"
)
"""A line of decord's C++ errors: the ``[04:12:13] /path/to/file.cc:218: `` stamps of where it was raised (one per
C++ frame it passed), decord's ``Check failed: <expression> (<value> vs. <expected>)`` when a check failed (the
value is FFmpeg's negative error number when the expression is an FFmpeg call's), then its message."""


def _decord_part(err: Exception, pyav: _PyavFailure | None) -> str | None:
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


def _decode_decord(path: Path, choose: WindowChooser) -> DecodedClip:
    """Decode with decord's random access, which is not exact on every file (the module docstring lists where it
    gives other frames than ``choose`` asked for, or counts frames a player does not show)."""
    decord = _quiet_decord()
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    indices = choose(len(reader))
    frames = reader.get_batch(list(indices)).asnumpy()  # [T, H, W, 3]
    return DecodedClip(np.ascontiguousarray(frames, dtype=np.uint8), indices, "decord", len(reader))


def _import_av() -> Any:
    """PyAV, imported on each call (a dependency, imported lazily; without it decord decodes).

    Raises:
        DecoderMissing: PyAV is not installed.
    """
    try:
        import av
    except ImportError as err:
        raise DecoderMissing("reading video files needs PyAV or decord: pip install av") from err
    return av


def _decode_pyav(path: Path, choose: WindowChooser) -> DecodedClip:
    """Decode with PyAV, converting and keeping only the window's frames, so memory is bounded by the window (a
    clip of a long video holds a clip, wherever it lies), and stopping after the window's last frame. A window
    that does not start at the first frame is decoded from the keyframe before it when the file allows that
    exactly (:func:`_seek_window`), else from the first frame.

    The window is chosen from the frame count :func:`_recorded_count` gives (what :func:`frame_count` returns).
    When there is none, when ``choose`` refuses that count (it may understate the frames), or when the file ends
    before the window does (it overstated them), the frames are counted by decoding them without converting any,
    and the window is chosen from the real count; a window drawn from the recorded count that fits the real one is
    kept (drawing again would change it). ``num_frames`` is the recorded count when the window ends before it, else
    the real one.

    Raises:
        DatasetError: The file has no video stream, the frame size changes within the window (naming the frame),
            or it ends before the window does when counted by decoding.
    """
    av = _import_av()
    recorded = _recorded_count(av, path) or 0  # 0: none recorded or counted
    try:
        return _decode_counted(av, path, choose, recorded)
    except _FrameSizeChanged as err:
        raise DatasetError(
            f"{path}: the frame size changes at frame {err.index}, from {err.before} to {err.after} (width x height); "
            "a clip's frames must share one size: re-encode the video at one size"
        ) from err


def _decode_counted(av: Any, path: Path, choose: WindowChooser, recorded: int) -> DecodedClip:
    """:func:`_decode_pyav` given the ``recorded`` frame count (0: none)."""
    chosen = _window_of(choose, recorded)
    counted: int | None = None  # the real count, once decoding met the file's end
    if chosen is not None:
        frames, count = _decode_window(av, path, chosen, recorded)
        if frames is not None:
            return DecodedClip(frames, chosen, "pyav", count)
        counted = count  # the file ended before the window: the recorded count was wrong
    real = counted if counted is not None else _count_frames(av, path)
    indices = choose(real)
    frames, _ = _decode_window(av, path, indices, real)
    if frames is None:
        raise DatasetError(f"{path}: the file ended before frame {indices[-1]} of the {real} frames it decoded to")
    return DecodedClip(frames, indices, "pyav", real)


def _window_of(choose: WindowChooser, recorded: int) -> range | None:
    """The window ``choose`` draws from the ``recorded`` frame count; None when none is recorded (0) or
    ``choose`` refuses it (the count may understate the frames: the caller counts them)."""
    if recorded <= 0:
        return None
    try:
        return choose(recorded)
    except DatasetError:
        return None


def _decode_window(av: Any, path: Path, window: range, recorded: int) -> tuple[np.ndarray | None, int]:
    """The frames of ``window`` (increasing indices) of ``path``'s first video stream, converted by
    :func:`plugins.pixels.upright_rgb` (turned as decord turns them), nothing else converted.

    Args:
        av: the PyAV module.
        path: the video file.
        window: the frame indices to keep (increasing).
        recorded: the frame count :func:`_recorded_count` gives, or the real one (0: none).

    Returns:
        The window's frames, uint8 [T, H, W, 3] (None when the file ends before the window does), and the frame
        count: the real one when decoding met the file's end (a window ending on or after the recorded last frame
        is followed to the end, without converting anything past it), else ``recorded``.
    """
    if min(window) > 0 and recorded > 0:
        try:
            seeking = _seek_window(av, path, window, recorded)
        except _FrameSizeChanged:
            raise
        except Exception:  # _SeekMismatch, or a file PyAV cannot seek in: seeking only saves time, so a decode
            seeking = None  # from the first frame decides (and reports a file that cannot be decoded at all)
        if seeking is not None:
            return seeking
    with av.open(str(path)) as container:
        return _keep_window(_numbered(container.decode(container.streams.video[0])), window, recorded)


class _FrameSizeChanged(Exception):
    """A frame of a window is of another size than the window's first (a stream whose resolution changes).

    Attributes:
        index: The frame's index in the file.
        before: The window's first frame's size, ``"<width>x<height>"``.
        after: The frame's size, alike.
    """

    def __init__(self, index: int, before: str, after: str) -> None:
        super().__init__(f"frame {index} is {after}, the window's first frame {before}")
        self.index = index
        self.before = before
        self.after = after


def _keep_window(frames: Iterator[tuple[int, Any]], window: range, recorded: int) -> tuple[np.ndarray | None, int]:
    """:func:`_decode_window` from ``frames``: decoded frames with their indices, consecutive and increasing.

    Raises:
        _FrameSizeChanged: a frame of the window is of another size than the window's first.
    """
    kept: dict[int, np.ndarray] = {}
    last = max(window)
    count = 0
    for index, frame in frames:
        count = index + 1
        if index in window:
            kept[index] = upright_rgb(frame)  # [H, W, 3]
            _check_same_size(kept, index, min(window))
        if index >= last:
            break
    if len(kept) < len(window):  # the file ended first: count is its real frame count
        return None, count
    if last >= recorded - 1:  # on the recorded last frame: count what follows, if anything (no conversion)
        count += sum(1 for _ in frames)
    else:
        count = recorded
    return np.stack([kept[index] for index in window]), count  # T x [H, W, 3] -> [T, H, W, 3]


def _check_same_size(kept: dict[int, np.ndarray], index: int, first: int) -> None:
    """Checks that frame ``index`` of ``kept`` is of the size of frame ``first``.

    Raises:
        _FrameSizeChanged: it is not.
    """
    (height, width), (new_height, new_width) = kept[first].shape[:2], kept[index].shape[:2]  # [H, W, 3] each
    if (height, width) != (new_height, new_width):
        raise _FrameSizeChanged(index, f"{width}x{height}", f"{new_width}x{new_height}")


class _SeekMismatch(Exception):
    """Decoding after a seek did not give the frames a decode from the first frame gives, in the same order."""


def _seek_window(av: Any, path: Path, window: range, recorded: int) -> tuple[np.ndarray | None, int] | None:
    """:func:`_decode_window` by seeking to the last keyframe at or before the window's first frame and decoding
    forward from there; None when the file does not allow it exactly (:func:`_frame_timestamps`), ends before the
    window does, or that keyframe is the first frame.

    Raises:
        _SeekMismatch: the frames decoded after the seek do not carry consecutive indices from one at or before
            the window's first frame (a frame the decoder dropped or could not decode without earlier ones).
    """
    version = (str(path), path.stat().st_mtime_ns, path.stat().st_size)  # a file written again is read again
    index = _frame_timestamps(av, *version)
    if index is None:
        return None
    order, keyframe_times = index
    if len(order) != recorded:
        return None
    start = order[min(window)]
    keyframes = [pts for pts in keyframe_times if pts <= start]
    if not keyframes or max(keyframes) == order[0]:  # none, or the first frame: a decode from the start is as short
        return None
    if _first_decoded_timestamp(av, *version) != order[0]:  # numbering by timestamps would not be the decoder's
        return None
    index_of = {pts: number for number, pts in enumerate(order)}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(max(keyframes), stream=stream, backward=True, any_frame=False)
        frames, count = _keep_window(_checked(container.decode(stream), index_of, min(window)), window, recorded)
    return (frames, count) if frames is not None else None  # ended early: a decode from the start is the authority


class _Packet(NamedTuple):
    """What :func:`_demuxed_packets` keeps of a packet: its timestamp and duration (in the stream's time base; None
    or 0: unknown), and whether it is a keyframe, and one the container marks discarded (an edit list's trimmed
    frames)."""

    pts: int | None
    duration: int | None
    keyframe: bool
    discard: bool


@functools.lru_cache(maxsize=256)
def _demuxed_packets(av: Any, path: str, mtime_ns: int, size: int) -> tuple[_Packet, ...]:
    """The :class:`_Packet` of each packet of a video file's first video stream that holds a frame (not empty), read
    by demuxing without decoding, once per file version (``mtime_ns`` and ``size`` are part of the cache key): what
    :func:`_frame_timestamps` and :func:`_recorded_count` both read."""
    del mtime_ns, size  # cache key only
    with av.open(path) as container:
        stream = container.streams.video[0]
        return tuple(
            _Packet(p.pts, p.duration, p.is_keyframe, p.is_discard) for p in container.demux(stream) if p.size > 0
        )


@functools.lru_cache(maxsize=256)
def _frame_timestamps(av: Any, path: str, mtime_ns: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The presentation timestamps of a video file's frames in frame order, and those of its keyframes, from its
    packets (:func:`_demuxed_packets`), once per file version; None when they cannot number the frames: frame
    ``i`` is the frame with the ``i``-th smallest timestamp among the stream's packets only when every packet has
    one, none is to be discarded and each is distinct (and the first decoded frame has the smallest:
    :func:`_first_decoded_timestamp`)."""
    packets = _demuxed_packets(av, path, mtime_ns, size)
    times = [packet.pts for packet in packets if packet.pts is not None]
    if not times or len(times) < len(packets) or any(packet.discard for packet in packets):
        return None
    order = sorted(times)
    if len(set(order)) != len(order):
        return None
    return tuple(order), tuple(p.pts for p in packets if p.keyframe and p.pts is not None)  # every pts is set here


@functools.lru_cache(maxsize=256)
def _first_decoded_timestamp(av: Any, path: str, mtime_ns: int, size: int) -> int | None:
    """The timestamp of the first frame a decode of the file from its start gives (None: none), once per file
    version."""
    del mtime_ns, size  # cache key only
    with av.open(path) as container:
        first = next(iter(container.decode(container.streams.video[0])), None)
    return None if first is None else first.pts


def _checked(frames: Iterator[Any], index_of: dict[int, int], start: int) -> Iterator[tuple[int, Any]]:
    """The decoded ``frames`` after a seek with their indices (``index_of`` their timestamps), checked to be
    consecutive from one at or before ``start``.

    Raises:
        _SeekMismatch: they are not.
    """
    expected: int | None = None
    for frame in frames:
        index = index_of.get(frame.pts) if frame.pts is not None else None
        if index is None or (expected is None and index > start) or (expected is not None and index != expected):
            raise _SeekMismatch(f"frame with timestamp {frame.pts} where frame {expected} was due")
        yield index, frame
        expected = index + 1


class _FrameUndecodable(Exception):
    """PyAV could not decode a frame of a file.

    Attributes:
        index: The frame's index: the number of frames decoded before it (a decoder that holds frames back to
            reorder them, as for B-frames, may have failed on the data of a frame a few after it).
        error: PyAV's error (``av.error.*``).
    """

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"frame {index}: {error}")
        self.index = index
        self.error = error


def _numbered(frames: Iterator[Any]) -> Iterator[tuple[int, Any]]:
    """The frames of a decode from a file's first frame (``container.decode``), with their indices.

    Raises:
        _FrameUndecodable: decoding a frame failed; it names the frame, the one after those given.
    """
    index = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as err:  # av.error.* (OSError/ValueError subclasses; EOFError) for damaged data
            raise _FrameUndecodable(index, err) from err
        yield index, frame
        index += 1


def _count_frames(av: Any, path: Path) -> int:
    """The frames of ``path``'s first video stream, counted by decoding them (none is converted).

    Raises:
        _FrameUndecodable: a frame cannot be decoded.
    """
    with av.open(str(path)) as container:
        return sum(1 for _ in _numbered(container.decode(container.streams.video[0])))


def _count_decord(path: Path) -> int:
    """decord's frame count, from its index of the file's packets (counting the frames an edit list trims)."""
    decord = _quiet_decord()
    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


def _recorded_count(av: Any, path: Path) -> int | None:
    """The frame count of ``path``'s first video stream, without decoding it: the container's count when it
    agrees with the stream's duration (:func:`_agrees_with_duration`), else the stream's packets that hold a frame
    to show counted (not empty, not marked discarded by the container as an edit list's trimmed frames are:
    :func:`_demuxed_packets`); None when neither gives one.

    The packets are counted when the container records no count (Matroska, WebM) or one that disagrees with the
    duration: an MP4/MOV trimmed by an edit list (a phone's "trim") records every frame it stores (60, say) but
    plays, and decodes to, those the edit keeps (50; the container marks the others discarded), and a variable
    frame rate file is counted too (one demux per file version and process). Counted packets are checked to reach
    the end the header records, as the client checks the frames it decodes
    (:func:`service.client.sources.ends_early`): a Matroska or WebM file cut short (an interrupted copy or
    download) has no count to contradict, and decodes to fewer frames without an error.

    Raises:
        DatasetError: The file has no video stream, or its counted packets end early (the message names the file,
            its last frame and both ends).
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DatasetError(f"{path}: file has no video stream")
        stream = container.streams.video[0]
        recorded = int(stream.frames)  # 0: not recorded
        if recorded > 0 and _agrees_with_duration(stream, recorded):
            return recorded
        end_s = recorded_end_s(container, stream)
        stat = path.stat()
        try:
            packets = [p for p in _demuxed_packets(av, str(path), stat.st_mtime_ns, stat.st_size) if not p.discard]
        except Exception:  # av.error.* for packets PyAV cannot read: the count is only a guide, decoding will tell
            return recorded or None
        spans = [span for p in packets if (span := frame_span(p.pts, p.duration, stream)) is not None]
    early = ends_early(path, len(packets), max(spans, key=lambda span: span.end_s, default=None), end_s)
    if early is not None:
        raise DatasetError(str(early)) from early
    return len(packets) or recorded or None


def _agrees_with_duration(stream: Any, recorded: int) -> bool:
    """Whether ``recorded`` frames at ``stream``'s average frame rate fill its duration to within a frame; True
    when the stream records no duration or rate (nothing to check against)."""
    if not stream.duration or not stream.average_rate or stream.time_base is None:
        return True
    played = float(stream.duration * stream.time_base * stream.average_rate)  # frames the duration holds
    return abs(played - recorded) < 1


def _pyav_then_decord(path: Path, backend: Backend, pyav: Callable[[], _T], decord: Callable[[], _T], verb: str) -> _T:
    """``pyav()``, or ``decord()`` for ``backend="decord"`` or, with ``"auto"``, when PyAV is not installed or
    fails on a file it can open (:func:`_decord_after`). ``verb`` (``"open"``, ``"decode"``) words the errors.

    Raises:
        DatasetError: Naming the file, and the frame PyAV could not decode when it failed on one, with PyAV's
            error and decord's (when decord failed otherwise: :func:`_decord_part`); or from ``pyav()`` (a file
            without a video stream, one cut short or whose frame size changes, a window ``choose`` refuses), which
            decord is not asked to read.
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    if backend == "decord":
        return _decord_after(path, backend, decord, verb, None)
    try:
        return pyav()
    except DatasetError:
        raise
    except ImportError:
        if backend == "pyav":
            raise
        failure = None
    except Exception as err:  # PyAV raises av.error.* (OSError/ValueError subclasses) for corrupt files
        failure = _PyavFailure.of(err)
        if backend == "pyav":
            raise DatasetError(failure.message(path, verb)) from err
    return _decord_after(path, backend, decord, verb, failure)


def _decord_after(
    path: Path, backend: Backend, decord: Callable[[], _T], verb: str, failure: _PyavFailure | None
) -> _T:
    """``decord()`` for :func:`_pyav_then_decord`, unless PyAV cannot open the file's container (decord would print
    its C++ error line first: :func:`_pyav_open_error`), or, after PyAV failed on it, its display matrix turns it
    by an odd quarter turn (:func:`_turned_sideways`: decord 0.6 fails on such videos of many sizes, ``Check failed:
    from_size == to_size``); the file is then reported with PyAV's error alone. ``failure`` is PyAV's error on the
    file (None: PyAV was not asked, or is not installed).

    Raises:
        DatasetError: PyAV cannot open the file; PyAV failed on a file turned a quarter turn (decord is not
            asked); or decord failed, or is not installed after PyAV failed (the messages name the file, and say
            when a quarter turn is why decord failed).
        DecoderMissing: decord is not installed, and PyAV was not asked or is not installed either.
    """
    if (unopenable := _pyav_open_error(path)) is not None:
        raise DatasetError(unopenable.message(path, verb))
    if failure is not None and _turned_sideways(path):
        raise DatasetError(
            failure.message(path, verb, "decord not tried: it fails on many videos turned a quarter turn")
        )
    try:
        return decord()
    except DatasetError:
        raise
    except ImportError as err:
        if failure is not None:
            raise DatasetError(failure.message(path, verb)) from err
        if backend == "decord":
            raise DecoderMissing("the decord backend needs decord: pip install decord") from err
        raise DecoderMissing("reading video files needs PyAV or decord: pip install av") from err
    except Exception as err:  # decord raises its own error types for unreadable files
        decord_part = _decord_part(err, failure)
        if failure is None and _turned_sideways(path):
            raise DatasetError(
                f"{path}: decord cannot {verb} this video, which its display matrix turns a quarter turn (a phone "
                f"video stored sideways): decord fails on many such videos ({decord_part}); decode it with PyAV "
                "(backend 'auto' or 'pyav')"
            ) from err
        if failure is not None:
            raise DatasetError(failure.message(path, verb, decord_part)) from err
        raise DatasetError(f"{path}: cannot {verb} video, corrupt or unsupported ({decord_part})") from err


def frame_count(path: Path, backend: Backend = "auto") -> int | None:
    """The number of frames of a video file, without decoding it: the count :func:`decode_video` with the same
    backend chooses frames from.

    With ``"pyav"``, and ``"auto"``, the container's count when it agrees with the stream's duration, else the
    stream's packets counted (a header without a count, as in Matroska and WebM, or an MP4/MOV trimmed by an edit
    list, whose header counts the frames the edit drops: :func:`_recorded_count`), which must reach the end the
    header records (a file cut short is refused); ``"auto"`` asks decord when PyAV is not installed or fails on a
    file it can open. ``"decord"`` counts decord's index, which includes the frames an edit list drops (60 for a
    video that plays 50), and does not check that the file reaches its recorded end.

    Returns:
        The frame count, or ``None`` when the file opens but neither records nor yields one (the file may still
        decode: :func:`decode_video` is the authority).

    Raises:
        DatasetError: If no backend can open the file (the message names the file and gives each backend's error),
            the file has no video stream, or its packets end before the end its header records (cut short).
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    return _pyav_then_decord(
        path, backend, lambda: _recorded_count(_import_av(), path), lambda: _count_decord(path), "open"
    )


def decode_video(path: Path, choose: WindowChooser, backend: Backend = "auto") -> DecodedClip:
    """Decodes the frames ``choose(frame_count)`` of a video file (:func:`frame_count` with the same backend).

    With ``backend="auto"`` PyAV decodes (its frames are exactly those asked for: the module docstring); decord
    only when PyAV is not installed or fails on a file it can open. ``backend="decord"`` decodes with decord's
    random access, which is not exact on every file: on MPEG-4 Part 2 with B-frames, HEVC with open GOPs and
    MP4/MOV trimmed by an edit list it silently gives other frames than those asked for (or counts frames a player
    does not show), and it stretches the frames of a stream whose size changes.

    Raises:
        DatasetError: If the file cannot be decoded (the message names the file, the frame PyAV could not decode,
            and each backend's error), is cut short (PyAV: :func:`frame_count`), its frame size changes within the
            frames asked for (PyAV; naming the frame), or from ``choose`` (e.g. the video is shorter than the clip).
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    return _pyav_then_decord(
        path, backend, lambda: _decode_pyav(path, choose), lambda: _decode_decord(path, choose), "decode"
    )
