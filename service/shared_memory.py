"""Frames from shared memory: a same-host client writes a frame's bytes into a POSIX shared memory segment and sends
where they lie (``Image.shared_memory``) instead of the bytes, sparing the copy through gRPC (``--shared-memory``).

:class:`SharedMemoryFrames` (one per call) resolves such a reference into the image's bytes with one ``pread`` of
the segment's file: never a mapping, whose pages past a file the client shrinks afterwards would end the server
with SIGBUS. It reads only where the call comes from this host (:func:`is_local_peer`), only names of the form
``slotstream_...`` (:data:`SEGMENT_NAME`), only plain files with one name (a symbolic link, a hard link, a FIFO or a
device is refused), only
within the file and at most ``max_bytes`` (three bytes per pixel of ``--max-image-pixels``) a frame; anything else
is a :class:`~service.errors.FrameRejected` with ``SHARED_MEMORY_UNAVAILABLE`` that says which. Linux only:
segments are the files of ``/dev/shm``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

from service.errors import ErrorCode, FrameRejected
from service.images import FittedFrame, fit_frame
from service.types import EncodedImage, FrameFit

SHM_ROOT = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory segments, one file per name."""
SEGMENT_NAME = re.compile(r"slotstream_[A-Za-z0-9_-]{1,64}")
"""The segment names a server reads: its own prefix, so that a reference cannot name other programs' segments (nor,
with the one-name rule of :func:`_read`, reach them through a hard link)."""


def shared_memory_supported() -> bool:
    """Whether this host keeps POSIX shared memory where this module reads it (Linux's ``/dev/shm``)."""
    return SHM_ROOT.is_dir()


def is_local_peer(peer: str) -> bool:
    """Whether a gRPC peer (``context.peer()``: ``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:/path``) is on
    this host: a unix socket, or a loopback address (an IPv4-mapped IPv6 loopback included)."""
    if peer.startswith(("unix:", "unix-abstract:")):
        return True
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rpartition(":")[0]
    elif kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
    else:
        return False
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


class SharedMemoryFrames:
    """Reads frames' bytes from shared memory for one call.

    Args:
        enabled: the server reads shared memory (``--shared-memory``).
        peer: the call's peer (``context.peer()``), which must be on this host.
        max_bytes: the most bytes one frame may take there (a raw frame of the largest image the server takes).
    """

    def __init__(self, enabled: bool, peer: str, max_bytes: int) -> None:
        self._refusal = _refusal(enabled, peer)
        self._max_bytes = max_bytes

    def resolve(self, image: EncodedImage) -> EncodedImage:
        """``image`` with its bytes read from the segment it names (``shared_memory`` cleared), or ``image`` itself
        when it names none.

        Raises:
            FrameRejected: ``SHARED_MEMORY_UNAVAILABLE``, saying why the bytes cannot be read.
        """
        ref = image.shared_memory
        if ref is None:
            return image
        if self._refusal is not None:
            raise FrameRejected(ErrorCode.SHARED_MEMORY_UNAVAILABLE, self._refusal)
        if image.data:
            raise _unavailable(f"the image sets both data ({len(image.data):,} bytes) and shared_memory: send one")
        if SEGMENT_NAME.fullmatch(ref.name) is None:
            raise _unavailable(
                f"shared_memory.name {ref.name[:100]!r} is not a segment name this server reads: 'slotstream_' then "
                "1-64 letters, digits, '_' or '-'"
            )
        if not 0 < ref.size <= self._max_bytes:
            raise _unavailable(
                f"shared_memory.size is {ref.size:,} bytes; a frame takes 1 to {self._max_bytes:,} (3 bytes a pixel "
                "of the largest image this server takes, its --max-image-pixels)"
            )
        return replace(image, data=_read(ref.name, ref.offset, ref.size), shared_memory=None)


def _read(name: str, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of segment ``name``, read with ``pread`` (a file shrunk meanwhile gives fewer
    bytes, never a signal).

    Raises:
        FrameRejected: ``SHARED_MEMORY_UNAVAILABLE``: no such segment, not a plain file, not readable, or the bytes
            are not all there.
    """
    path = SHM_ROOT / name
    try:
        # O_NONBLOCK: opening a FIFO to read would otherwise wait for a writer (refused below, as not a plain file)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _unavailable(
            f"no shared memory segment {name!r} on the server's host ({path}): the client must write it on this "
            "host, and containers must share /dev/shm"
        ) from None
    except OSError as error:  # a symbolic link (ELOOP), no permission
        raise _unavailable(f"shared memory segment {name!r} cannot be opened: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _unavailable(f"shared memory segment {name!r} is not a plain file")
        if info.st_nlink != 1:  # a hard link would give another file (another program's segment) a name we read
            raise _unavailable(f"shared memory segment {name!r} has {info.st_nlink} names (hard links); it needs one")
        if offset + size > info.st_size:
            raise _unavailable(
                f"shared_memory asks for bytes {offset:,} to {offset + size:,} of segment {name!r}, which holds "
                f"{info.st_size:,} bytes"
            )
        data = os.pread(fd, size, offset)
    except OSError as error:
        raise _unavailable(f"shared memory segment {name!r} cannot be read: {error.strerror}") from None
    finally:
        os.close(fd)
    if len(data) != size:
        raise _unavailable(f"segment {name!r} gave {len(data):,} of {size:,} bytes (shrunk while it was read?)")
    return data


def fit_shared_frame(
    shared: SharedMemoryFrames | None,
    image: EncodedImage,
    size: tuple[int, int],
    max_pixels: int,
    fit: FrameFit,
    check_jpeg_data: bool,
) -> FittedFrame:
    """:func:`~service.images.fit_frame` of ``image``, its bytes read from shared memory by ``shared`` first when
    it names a segment (``shared`` is then not ``None``).

    Raises:
        FrameRejected: as ``fit_frame`` and :meth:`SharedMemoryFrames.resolve` raise.
    """
    if shared is not None:
        image = shared.resolve(image)
    return fit_frame(image, size, max_pixels, fit, check_jpeg_data)


def _refusal(enabled: bool, peer: str) -> str | None:
    """Why a call from ``peer`` gets no frame from shared memory, or ``None`` when it may."""
    if not enabled:
        return "this server reads no shared memory (start it with --shared-memory): send the bytes in data"
    if not is_local_peer(peer):
        return (
            f"shared memory is read only for clients on the server's host (over loopback), and this "
            f"call came from {peer}: send the bytes in data"
        )
    return None


def _unavailable(message: str) -> FrameRejected:
    return FrameRejected(ErrorCode.SHARED_MEMORY_UNAVAILABLE, message)


__all__ = [
    "SEGMENT_NAME",
    "SharedMemoryFrames",
    "fit_shared_frame",
    "is_local_peer",
    "shared_memory_supported",
]
