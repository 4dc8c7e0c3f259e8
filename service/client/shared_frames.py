"""Sending frames through shared memory: :class:`SharedFrameRing` writes raw frames into a POSIX shared memory
segment and gives the :class:`~service.types.EncodedImage` that names them, which a server on this host started
with ``--shared-memory`` reads from there (``ModelCard.shared_memory`` says whether it will for this client).

A 1080p frame then no longer goes through gRPC: the client copies it once into the segment and the server once out
of it, and the request carries a few dozen bytes. The segment is removed when the ring is closed (or, failing
that, when the process ends). Linux only, as the server's side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import weakref
from multiprocessing import shared_memory
from typing import TYPE_CHECKING

import numpy as np

from service.client.encoding import ImageLike
from service.client.errors import StreamError
from service.types import EncodedImage, ImageEncoding, SharedMemoryRef

if TYPE_CHECKING:
    from service.client.stream import ClientStream

NAME_PREFIX = "slotstream_"
"""Every segment name a server reads starts so (``service.shared_memory.SEGMENT_NAME``)."""

_OPEN_RINGS: weakref.WeakValueDictionary[str, SharedFrameRing] = weakref.WeakValueDictionary()
"""This process's open rings by segment name, for :func:`with_bytes`."""


class SharedFrameRing:
    """``slots`` frame slots of one shape in one shared memory segment, written in turn.

    A slot is written again ``slots`` frames after it was: the frame it held must have been answered by then (the
    server reads a frame's bytes before it answers it), so keep fewer than ``slots`` frames unanswered, for
    example a stream's window of frames in flight at most ``slots - 1``. A frame answered with
    ``SHARED_MEMORY_UNAVAILABLE`` was not read: send its pixels as an array instead.

    Args:
        frame_shape: ``(H, W)`` of the uint8 RGB frames the ring holds.
        slots: how many frames it holds (>= 2).

    Raises:
        ValueError: a side below 1 or fewer than 2 slots.
        OSError: the segment cannot be made (no /dev/shm, no room in it).
    """

    def __init__(self, frame_shape: tuple[int, int], slots: int = 8) -> None:
        height, width = frame_shape
        if height < 1 or width < 1 or slots < 2:
            raise ValueError(f"a ring needs frames of at least 1x1 pixels and 2 slots, got {frame_shape}, {slots}")
        self.frame_shape = (height, width)
        self.slots = slots
        self.slot_bytes = height * width * 3
        self._memory = shared_memory.SharedMemory(
            name=NAME_PREFIX + secrets.token_hex(12), create=True, size=self.slot_bytes * slots
        )
        self.name = self._memory.name.lstrip("/")
        self._next = 0
        self._closed = False
        _OPEN_RINGS[self.name] = self

    @property
    def next_slot(self) -> int:
        """The slot :meth:`put` writes next (0 to ``slots - 1``)."""
        return self._next

    def fits(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` is a uint8 RGB frame of this ring's shape."""
        return frame.dtype == np.uint8 and frame.shape == (*self.frame_shape, 3)

    def put(self, frame: np.ndarray) -> EncodedImage:
        """Copy ``frame`` (uint8 ``[H, W, 3]`` of :attr:`frame_shape`) into the next slot; returns the image to
        send in its place.

        Raises:
            ValueError: the frame is not of this ring's shape and type (send it as an array), or the ring is closed.
        """
        if self._closed:
            raise ValueError("the shared frame ring is closed")
        if not self.fits(frame):
            raise ValueError(
                f"a frame of {frame.dtype} {tuple(frame.shape)} does not fit this ring's slots of uint8 "
                f"{(*self.frame_shape, 3)}: send it as an array"
            )
        offset = self._next * self.slot_bytes
        buffer = self._memory.buf
        assert buffer is not None  # open until close()
        # [H, W, 3] -> [H*W*3], in the slot's bytes
        np.copyto(np.frombuffer(buffer, np.uint8, self.slot_bytes, offset).reshape(frame.shape), frame)
        self._next = (self._next + 1) % self.slots
        height, width = self.frame_shape
        return EncodedImage(
            ImageEncoding.RAW_RGB8, b"", height, width, 3, SharedMemoryRef(self.name, offset, self.slot_bytes)
        )

    def close(self) -> None:
        """Remove the segment. Safe to call twice, and safe once the frames sent from it are answered (the server
        reads a frame's bytes before it answers it); a frame still in flight would be refused."""
        if self._closed:
            return
        self._closed = True
        _OPEN_RINGS.pop(self.name, None)
        self._memory.close()
        with contextlib.suppress(FileNotFoundError):  # removed by someone else already
            self._memory.unlink()

    def read(self, where: SharedMemoryRef) -> bytes:
        """A copy of the bytes at ``where`` in this ring (a frame :meth:`put` placed there).

        Raises:
            ValueError: ``where`` is not in this ring, or the ring is closed.
        """
        if self._closed or where.name != self.name or where.offset + where.size > self.slot_bytes * self.slots:
            raise ValueError(f"{where} is not in the open ring {self.name}")
        buffer = self._memory.buf
        assert buffer is not None  # open until close()
        return bytes(buffer[where.offset : where.offset + where.size])

    def __enter__(self) -> SharedFrameRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def with_bytes(image: EncodedImage) -> EncodedImage:
    """``image`` with its pixels in the image's own bytes when they lie in a ring of this process that is still
    open (for a server that does not read shared memory), else ``image`` as it is. The pixels are those sent: a ring
    does not write a slot again before its frame is answered."""
    where = image.shared_memory
    ring = None if where is None else _OPEN_RINGS.get(where.name)
    if where is None or ring is None:
        return image
    return dataclasses.replace(image, data=ring.read(where), shared_memory=None)


async def reads_shared_memory(stream: ClientStream) -> bool:
    """Whether the server of ``stream`` reads shared memory for this client (its model card says).

    Raises:
        StreamError: the card cannot be read.
    """
    assert stream.opened is not None
    return (await stream.client.describe(stream.opened.model)).shared_memory


async def refuses_shared_memory(stream: ClientStream) -> bool:
    """Whether the server of ``stream`` says it does not read shared memory for this client: after a reconnect,
    whether to send frames as bytes from then on (a card that cannot be read says nothing: ``False``)."""
    try:
        return not await reads_shared_memory(stream)
    except StreamError:
        return False


class RingSender:
    """Puts a stream's frames in a :class:`SharedFrameRing` of ``slots`` slots (made for the first frame's shape), and
    never in a slot whose frame is still unanswered: such a frame, and one of another shape or type, is sent as it
    is. So frames sent faster than they are answered (live mode) fall back to bytes rather than overwrite a frame
    the server has not read.

    Call :meth:`image` when a frame is about to be sent, :meth:`settled` once it is answered or was not sent after
    all, and :meth:`close` when the stream is over.
    """

    def __init__(self, slots: int) -> None:
        self.slots = max(slots, 2)
        self._ring: SharedFrameRing | None = None
        self._held: dict[int, int] = {}  # frame index -> the ring slot its pixels are in, until it is answered

    def image(self, frame: ImageLike, frame_index: int) -> ImageLike:
        """What to send for frame ``frame_index``: the :class:`EncodedImage` of its copy in the ring, or ``frame``
        itself (not a uint8 ``[H, W, 3]`` array of the ring's shape, or its slot is taken).

        Raises:
            OSError: the ring cannot be made (no /dev/shm, no room in it).
        """
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            return frame
        if self._ring is None:
            self._ring = SharedFrameRing((frame.shape[0], frame.shape[1]), self.slots)
        if not self._ring.fits(frame) or self._ring.next_slot in self._held.values():
            return frame
        self._held[frame_index] = self._ring.next_slot
        return self._ring.put(frame)

    def settled(self, frame_index: int) -> None:
        """Frame ``frame_index`` was answered, or not sent: its slot may be written again."""
        self._held.pop(frame_index, None)

    def close(self) -> None:
        """Remove the ring's segment, if one was made."""
        if self._ring is not None:
            self._ring.close()


__all__ = [
    "NAME_PREFIX",
    "RingSender",
    "SharedFrameRing",
    "reads_shared_memory",
    "refuses_shared_memory",
    "with_bytes",
]
