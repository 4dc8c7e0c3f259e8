"""Video file decoding with decord, falling back to PyAV. Both backends are imported lazily.

Both give the frames as a player shows them: decord turns them by the rotation of the file's display matrix (a phone
video stored sideways), and PyAV's are turned the same way (:func:`plugins.pixels.upright_rgb`, which the
client and ``service.extract`` use too), so a file reads alike whichever backend decodes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from plugins.pixels import upright_rgb
from training.datasets.errors import DatasetError

Backend = Literal["auto", "decord", "pyav"]
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


_OPENED_BY_PYAV: set[tuple[str, int, int]] = set()
"""Files PyAV has opened in this process, by path, size and modification time (each is checked once)."""


def _pyav_open_error(path: Path) -> str | None:
    """PyAV's error opening ``path``'s container (``"pyav: ..."``), or ``None`` when it opens or PyAV is not
    installed.

    decord reports a file it cannot open from its C++ code straight to the process's stderr (``video_reader.cc:83:
    ERROR opening: ...``), past any Python logging setting, before raising; so a file is first opened with PyAV,
    which reads the same container headers through FFmpeg without printing, and one that fails there never
    reaches decord. Cheap: only the header is read, once per file and process (worker processes and threads
    each check for themselves, which needs no redirection of the shared stderr).
    """
    try:
        import av
    except ImportError:
        return None
    try:
        stat = path.stat()
    except OSError as err:
        return f"pyav: {err}".splitlines()[0]
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _OPENED_BY_PYAV:
        return None
    try:
        with av.open(str(path)):
            pass
    except Exception as err:  # av.error.* (OSError/ValueError subclasses) for corrupt or unsupported files
        return f"pyav: {err}".splitlines()[0]
    _OPENED_BY_PYAV.add(key)
    return None


def _decode_decord(path: Path, choose: WindowChooser) -> DecodedClip:
    decord = _quiet_decord()
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    indices = choose(len(reader))
    frames = reader.get_batch(list(indices)).asnumpy()  # [T, H, W, 3]
    return DecodedClip(np.ascontiguousarray(frames, dtype=np.uint8), indices, "decord", len(reader))


def _decode_pyav(path: Path, choose: WindowChooser) -> DecodedClip:
    """Decode with PyAV. When the container records its frame count and the window chosen from it ends before
    the last frame, decoding stops after the window's last frame, converting only the window's frames (a
    training clip from the start of a long video costs a clip, not the video). Otherwise (no count, a window to
    the end such as a whole video, or a count that turns out wrong) every frame is decoded, and the window is
    chosen from the real count unless the one already drawn fits it."""
    try:
        import av
    except ImportError as err:
        raise DecoderMissing("reading video files needs PyAV or decord: pip install av") from err
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DatasetError(f"{path}: file has no video stream")
        stream = container.streams.video[0]
        recorded = int(stream.frames)  # 0: not recorded
        chosen: range | None = None
        if recorded > 0:
            try:
                chosen = choose(recorded)
            except DatasetError:  # the recorded count may understate the frames: count them below
                chosen = None
        if chosen is not None and chosen[-1] < recorded - 1:  # a window that ends before the last frame
            wanted, kept = set(chosen), {}
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    kept[index] = upright_rgb(frame)  # [H, W, 3], turned as decord turns it
                if index >= chosen[-1]:
                    break
            if len(kept) == len(chosen):
                # T x [H, W, 3] -> [T, H, W, 3]
                return DecodedClip(np.stack([kept[i] for i in chosen]), chosen, "pyav", recorded)  # [T, H, W, 3]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [upright_rgb(frame) for frame in container.decode(stream)]  # each [H, W, 3], turned as decord
    # Keep the window drawn from the recorded count when it fits the real one (drawing again would change it).
    indices = chosen if chosen is not None and chosen[-1] < len(frames) else choose(len(frames))
    # T x [H, W, 3] -> [T, H, W, 3]
    return DecodedClip(np.stack([frames[i] for i in indices]), indices, "pyav", len(frames))  # [T, H, W, 3]


def _count_decord(path: Path) -> int:
    decord = _quiet_decord()
    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


def _count_pyav(path: Path) -> int | None:
    try:
        import av
    except ImportError as err:
        raise DecoderMissing("reading video files needs PyAV or decord: pip install av") from err
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DatasetError(f"{path}: file has no video stream")
        return int(container.streams.video[0].frames) or None  # 0: the container does not record it


def frame_count(path: Path, backend: Backend = "auto") -> int | None:
    """The number of frames of a video file read from its index or header, without decoding it.

    With ``backend="auto"`` decord is asked first, then PyAV's container header.

    Returns:
        The frame count, or ``None`` when the file opens but its header does not record the count (the file may
        still decode: :func:`decode_video` is the authority).

    Raises:
        DatasetError: If no backend can open the file (the message names the file and gives each backend's error)
            or the file has no video stream.
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    errors: list[str] = []
    if backend in ("auto", "decord") and (unopenable := _pyav_open_error(path)) is not None:
        raise DatasetError(f"{path}: cannot open video, corrupt or unsupported ({unopenable})")
    if backend in ("auto", "decord"):
        try:
            return _count_decord(path)
        except ImportError as err:
            if backend == "decord":
                raise DecoderMissing("the decord backend needs decord: pip install decord") from err
        except Exception as err:  # decord raises its own error types for unreadable files
            errors.append(f"decord: {err}".splitlines()[0])
    if backend in ("auto", "pyav"):
        try:
            return _count_pyav(path)
        except DatasetError:
            raise
        except ImportError:
            if not errors:
                raise
        except Exception as err:  # PyAV raises av.error.* (OSError/ValueError subclasses) for corrupt files
            errors.append(f"pyav: {err}".splitlines()[0])
    raise DatasetError(f"{path}: cannot open video, corrupt or unsupported ({'; '.join(errors)})")


def decode_video(path: Path, choose: WindowChooser, backend: Backend = "auto") -> DecodedClip:
    """Decodes the frames ``choose(frame_count)`` of a video file.

    With ``backend="auto"`` decord is tried first; when it is not installed or fails on the file, PyAV decodes it.

    Raises:
        DatasetError: If the file cannot be decoded (the message names the file and gives each backend's error), or
            from ``choose`` (e.g. the video is shorter than the clip).
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    errors: list[str] = []
    if backend in ("auto", "decord") and (unopenable := _pyav_open_error(path)) is not None:
        raise DatasetError(f"{path}: cannot decode video, corrupt or unsupported ({unopenable})")
    if backend in ("auto", "decord"):
        try:
            return _decode_decord(path, choose)
        except DatasetError:
            raise
        except ImportError as err:
            if backend == "decord":
                raise DecoderMissing("the decord backend needs decord: pip install decord") from err
        except Exception as err:  # decord raises its own error types for undecodable files
            errors.append(f"decord: {err}".splitlines()[0])
            if backend == "decord":
                raise DatasetError(f"{path}: cannot decode video ({errors[0]})") from err
    try:
        return _decode_pyav(path, choose)
    except (DatasetError, ImportError):
        raise
    except Exception as err:  # PyAV raises av.error.* (OSError/ValueError subclasses) for corrupt files
        errors.append(f"pyav: {err}".splitlines()[0])
        raise DatasetError(f"{path}: cannot decode video, corrupt or unsupported ({'; '.join(errors)})") from err
