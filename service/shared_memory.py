"""Frames from shared memory: a same-host client writes a frame's bytes into a POSIX shared memory segment and sends
where they lie (``Image.shared_memory``) instead of the bytes, sparing the copy through gRPC (``--shared-memory``).

:class:`SharedMemoryFrames` (one per call) resolves such a reference into the image's bytes. It maps each segment
once, read-only, and keeps at most :data:`MAX_MAPPED_SEGMENTS` mapped; a segment removed and made again under the
same name (another file) is mapped again. It reads only where the call comes from this host (:func:`is_local_peer`),
only names of the form ``slotstream_...`` (:data:`SEGMENT_NAME`), only plain files (a symbolic link is refused),
and only within the segment; anything else is a :class:`~service.errors.FrameRejected` with
``SHARED_MEMORY_UNAVAILABLE`` that says which. Linux only: segments are the files of ``/dev/shm``.
"""

from __future__ import annotations

import ipaddress
import mmap
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from service.errors import ErrorCode, FrameRejected
from service.images import FittedFrame, fit_frame
from service.types import EncodedImage, FrameFit

SHM_ROOT = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory segments, one file per name."""
SEGMENT_NAME = re.compile(r"slotstream_[A-Za-z0-9_-]{1,64}")
"""The segment names a server reads: its own prefix, so that a reference cannot reach other programs' segments."""
MAX_MAPPED_SEGMENTS = 8
"""Segments one call keeps mapped (a client writes its frames into one or a few); the least recently used goes."""


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


@dataclass
class _Mapped:
    inode: tuple[int, int]  # (st_dev, st_ino): the file a name named when it was mapped
    memory: mmap.mmap


class SharedMemoryFrames:
    """Reads frames' bytes from shared memory for one call.

    Args:
        enabled: the server reads shared memory (``--shared-memory``).
        peer: the call's peer (``context.peer()``), which must be on this host.
    """

    def __init__(self, enabled: bool, peer: str) -> None:
        self._refusal = _refusal(enabled, peer)
        self._mapped: OrderedDict[str, _Mapped] = OrderedDict()

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
        memory = self._memory(ref.name)
        if ref.size == 0 or ref.offset + ref.size > len(memory):
            raise _unavailable(
                f"shared_memory asks for bytes {ref.offset:,} to {ref.offset + ref.size:,} of segment {ref.name!r}, "
                f"which holds {len(memory):,} bytes" + (" (and a size of 0)" if ref.size == 0 else "")
            )
        return replace(image, data=memory[ref.offset : ref.offset + ref.size], shared_memory=None)

    def close(self) -> None:
        """Unmap every segment (the call ended)."""
        for mapped in self._mapped.values():
            mapped.memory.close()
        self._mapped.clear()

    def _memory(self, name: str) -> mmap.mmap:
        """The segment ``name`` mapped read-only: the mapping kept from an earlier frame while the name still
        names the same file, else a new one.

        Raises:
            FrameRejected: ``SHARED_MEMORY_UNAVAILABLE``: no such segment, not a plain file, not readable or empty.
        """
        path = SHM_ROOT / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _unavailable(
                f"no shared memory segment {name!r} on the server's host ({path}): the client must write it on "
                "this host, and containers must share /dev/shm"
            ) from None
        except OSError as error:  # a symbolic link (ELOOP), no permission
            raise _unavailable(f"shared memory segment {name!r} cannot be opened: {error.strerror}") from None
        try:
            info = os.fstat(fd)
            inode = (info.st_dev, info.st_ino)
            kept = self._mapped.get(name)
            if kept is not None and kept.inode == inode:
                self._mapped.move_to_end(name)
                return kept.memory
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                raise _unavailable(f"shared memory segment {name!r} is not a plain file with bytes in it")
            memory = mmap.mmap(fd, info.st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if kept is not None:
            kept.memory.close()
        self._mapped[name] = _Mapped(inode, memory)
        self._mapped.move_to_end(name)
        while len(self._mapped) > MAX_MAPPED_SEGMENTS:
            self._mapped.popitem(last=False)[1].memory.close()
        return memory


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
    "MAX_MAPPED_SEGMENTS",
    "SEGMENT_NAME",
    "SharedMemoryFrames",
    "fit_shared_frame",
    "is_local_peer",
    "shared_memory_supported",
]
