"""PyAV's decoding of a video file: a window of its frames, exactly those asked for, decoded forward (from the
keyframe before the window when the file's timestamps allow an exact seek) and numbered as they come; its frame
count from the header or its packets; and :class:`PyavFailure`, PyAV's error on a file, named in the messages.

PyAV is imported lazily (:func:`import_av`); :mod:`training.datasets.decoding` decides when decord decodes instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from plugins.pixels import upright_rgb
from plugins.video_files import ends_early, frame_span, recorded_end_s
from training.datasets.decoded_clip import DecodedClip, DecoderMissing, WindowChooser
from training.datasets.errors import DatasetError


@dataclass(frozen=True)
class PyavFailure:
    """PyAV's error on a file, as the messages of :mod:`training.datasets.decoding` give it.

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
    def of(cls, err: Exception) -> PyavFailure:
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
        if is_empty_file(path):  # FFmpeg says only "Invalid data found when processing input"
            return f"{path}: cannot {verb} video: the file is empty (0 bytes)"
        return f"{path}: cannot {verb} video, corrupt or unsupported ({reasons})"


def is_empty_file(path: Path) -> bool:
    """Whether ``path`` is a file of 0 bytes (an interrupted copy, a recording that never started)."""
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def import_av() -> Any:
    """PyAV, imported on each call (a dependency, imported lazily; without it decord decodes).

    Raises:
        DecoderMissing: PyAV is not installed.
    """
    try:
        import av
    except ImportError as err:
        raise DecoderMissing("reading video files needs PyAV or decord: pip install av") from err
    return av


def decode_with_pyav(path: Path, choose: WindowChooser) -> DecodedClip:
    """Decode with PyAV, converting and keeping only the window's frames, so memory is bounded by the window (a
    clip of a long video holds a clip, wherever it lies), and stopping after the window's last frame. A window
    that does not start at the first frame is decoded from the keyframe before it when the file allows that
    exactly (:func:`_seek_window`), else from the first frame.

    The window is chosen from the frame count :func:`recorded_count` gives (what
    :func:`~training.datasets.decoding.frame_count` returns). When there is none, when ``choose`` refuses that count
    (it may understate the frames), or when the file ends before the window does (it overstated them), the frames
    are counted by decoding them without converting any, and the window is chosen from the real count; a window
    drawn from the recorded count that fits the real one is kept (drawing again would change it). ``num_frames`` is
    the recorded count when the window ends before it, else the real one. A file whose frames stop before the end
    its header records is refused, as the streaming client refuses it: damaged data a decoder ends the stream at
    without an error (an AVI's middle) would otherwise leave only its first frames to train on, silently.

    Raises:
        DatasetError: The file has no video stream, the frame size changes within the window (naming the frame),
            it ends before the window does when counted by decoding, or its decoded frames end early.
    """
    av = import_av()
    recorded = recorded_count(av, path) or 0  # 0: none recorded or counted
    try:
        return _decode_counted(av, path, choose, recorded)
    except _FrameSizeChanged as err:
        raise DatasetError(
            f"{path}: the frame size changes at frame {err.index}, from {err.before} to {err.after} (width x height); "
            "a clip's frames must share one size: re-encode the video at one size"
        ) from err


def _decode_counted(av: Any, path: Path, choose: WindowChooser, recorded: int) -> DecodedClip:
    """:func:`decode_with_pyav` given the ``recorded`` frame count (0: none)."""
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
        recorded: the frame count :func:`recorded_count` gives, or the real one (0: none).

    Returns:
        The window's frames, uint8 [T, H, W, 3] (None when the file ends before the window does), and the frame
        count: the real one when decoding met the file's end (a window ending on or after the recorded last frame
        is followed to the end, without converting anything past it), else ``recorded``.

    Raises:
        DatasetError: the file ends before the window does, and its frames stop before the end its header records
            (:func:`plugins.video_files.ends_early`: a file damaged or cut short, which the decoder ends cleanly).
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
        stream = container.streams.video[0]
        last: list[Any] = []  # the latest frame decoded
        frames, count = _keep_window(_remembering(_numbered(container.decode(stream)), last), window, recorded)
        if frames is None and last:  # the decoder met the file's end: was it where the header says it is?
            span = frame_span(last[0].pts, last[0].duration, stream)
            early = ends_early(path, count, span, recorded_end_s(container, stream))
            if early is not None:
                raise DatasetError(str(early)) from early
    return frames, count


def _remembering(frames: Iterator[tuple[int, Any]], last: list[Any]) -> Iterator[tuple[int, Any]]:
    """``frames`` as they are, keeping the latest frame in ``last`` (one item)."""
    for index, frame in frames:
        last[:] = [frame]
        yield index, frame


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
    :func:`_frame_timestamps` and :func:`recorded_count` both read."""
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


def recorded_count(av: Any, path: Path) -> int | None:
    """The frame count of ``path``'s first video stream, without decoding it: the container's count when it
    agrees with the stream's duration (:func:`_agrees_with_duration`), else the stream's packets that hold a frame
    to show counted (not empty, not marked discarded by the container as an edit list's trimmed frames are:
    :func:`_demuxed_packets`); None when neither gives one.

    The packets are counted when the container records no count (Matroska, WebM) or one that disagrees with the
    duration: an MP4/MOV trimmed by an edit list (a phone's "trim") records every frame it stores (60, say) but
    plays, and decodes to, those the edit keeps (50; the container marks the others discarded), and a variable
    frame rate file is counted too (one demux per file version and process). Counted packets are checked to reach
    the end the header records, as the client checks the frames it decodes
    (:func:`plugins.video_files.ends_early`): a Matroska or WebM file cut short (an interrupted copy or
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
