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

from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from training.datasets.decode_decord import count_with_decord, decode_with_decord, decord_message_part
from training.datasets.decode_pyav import PyavFailure, decode_with_pyav, import_av, is_empty_file, recorded_count
from training.datasets.decoded_clip import DecodedClip, DecoderMissing, WindowChooser
from training.datasets.errors import DatasetError

Backend = Literal["auto", "decord", "pyav"]
_T = TypeVar("_T")


_OPENED_BY_PYAV: set[tuple[str, int, int]] = set()
"""Files PyAV has opened in this process, by path, size and modification time (each is checked once)."""


def _pyav_open_error(path: Path) -> PyavFailure | None:
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
        return PyavFailure.of(err)
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _OPENED_BY_PYAV:
        return None
    try:
        with av.open(str(path)):
            pass
    except Exception as err:  # av.error.* (OSError/ValueError subclasses) for corrupt or unsupported files
        return PyavFailure.of(err)
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


def _pyav_then_decord(path: Path, backend: Backend, pyav: Callable[[], _T], decord: Callable[[], _T], verb: str) -> _T:
    """``pyav()``, or ``decord()`` for ``backend="decord"`` or, with ``"auto"``, when PyAV is not installed or
    fails on a file it can open (:func:`_decord_after`). ``verb`` (``"open"``, ``"decode"``) words the errors.

    Raises:
        DatasetError: Naming the file, and the frame PyAV could not decode when it failed on one, with PyAV's
            error and decord's (when decord failed otherwise:
            :func:`~training.datasets.decode_decord.decord_message_part`); or from ``pyav()`` (a file without a video
            stream, one cut short or whose frame size changes, a window ``choose`` refuses), which decord is not asked
            to read.
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
        failure = PyavFailure.of(err)
        if backend == "pyav":
            raise DatasetError(failure.message(path, verb)) from err
    return _decord_after(path, backend, decord, verb, failure)


def _decord_after(
    path: Path, backend: Backend, decord: Callable[[], _T], verb: str, failure: PyavFailure | None
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
        decord_part = decord_message_part(err, failure)
        if failure is None and _turned_sideways(path):
            raise DatasetError(
                f"{path}: decord cannot {verb} this video, which its display matrix turns a quarter turn (a phone "
                f"video stored sideways): decord fails on many such videos ({decord_part}); decode it with PyAV "
                "(backend 'auto' or 'pyav')"
            ) from err
        if failure is not None:
            raise DatasetError(failure.message(path, verb, decord_part)) from err
        if is_empty_file(path):
            raise DatasetError(f"{path}: cannot {verb} video: the file is empty (0 bytes)") from err
        raise DatasetError(f"{path}: cannot {verb} video, corrupt or unsupported ({decord_part})") from err


def frame_count(path: Path, backend: Backend = "auto") -> int | None:
    """The number of frames of a video file, without decoding it: the count :func:`decode_video` with the same
    backend chooses frames from.

    With ``"pyav"``, and ``"auto"``, the container's count when it agrees with the stream's duration, else the
    stream's packets counted (a header without a count, as in Matroska and WebM, or an MP4/MOV trimmed by an edit
    list, whose header counts the frames the edit drops: :func:`~training.datasets.decode_pyav.recorded_count`),
    which must reach the end the header records (a file cut short is refused); ``"auto"`` asks decord when PyAV is
    not installed or fails on a file it can open. ``"decord"`` counts decord's index, which includes the frames an
    edit list drops (60 for a video that plays 50), and does not check that the file reaches its recorded end.

    Returns:
        The frame count, or ``None`` when the file opens but neither records nor yields one (the file may still
        decode: :func:`decode_video` is the authority).

    Raises:
        DatasetError: If no backend can open the file (the message names the file and gives each backend's error),
            the file has no video stream, or its packets end before the end its header records (cut short).
        ImportError: If the requested backend (or, for ``auto``, both) is not installed.
    """
    return _pyav_then_decord(
        path, backend, lambda: recorded_count(import_av(), path), lambda: count_with_decord(path), "open"
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
        path, backend, lambda: decode_with_pyav(path, choose), lambda: decode_with_decord(path, choose), "decode"
    )


__all__ = ["Backend", "DecodedClip", "DecoderMissing", "WindowChooser", "decode_video", "frame_count"]
