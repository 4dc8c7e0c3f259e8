"""``PendingFrames``: the frames of one stream that wait for the model, with the live-mode drop rule."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class PendingFrames(Generic[T]):
    """Decoded frames of one stream waiting for the model.

    In live mode only the newest frame waits: :meth:`put` returns the frame it replaces. Otherwise up to
    ``capacity`` frames wait and :meth:`put` blocks when full, which slows the client down through gRPC
    flow control instead of dropping frames.
    """

    def __init__(self, capacity: int, live: bool) -> None:
        self._items: deque[T] = deque()
        self._capacity = 1 if live else capacity
        self._live = live
        self._changed = asyncio.Condition()
        self._closed = False

    async def put(self, item: T) -> T | None:
        """Queue ``item``; returns the frame it superseded (live mode) or ``None``."""
        async with self._changed:
            superseded = None
            if self._live and self._items:
                superseded = self._items.popleft()
            else:
                await self._changed.wait_for(lambda: len(self._items) < self._capacity)
            self._items.append(item)
            self._changed.notify_all()
            return superseded

    async def get(self) -> T | None:
        """The next frame, or ``None`` once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._closed)
            item = self._items.popleft() if self._items else None
            self._changed.notify_all()
            return item

    async def close(self) -> None:
        """No more frames will come; :meth:`get` returns ``None`` after the queued ones."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
