"""Liveness for the model: notice a model call that never returns.

A hung model call (a deadlocked driver, a GPU that stopped answering, an operator stuck in a loop) leaves
the event loop answering health checks happily while every stream waits forever, so "the process answers"
is not liveness. :class:`ModelWatchdog` polls how long the longest-running model call has been running and
reports each change between stalled and healthy; the server turns that into the liveness health status
that Kubernetes restarts the pod on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

_log = logging.getLogger(__name__)


class ModelWatchdog:
    """Calls ``on_change(True)`` when a model call has run longer than ``timeout_s``, ``on_change(False)`` when
    the model is back (no call running that long).

    Args:
        busy_for_s: seconds the longest-running model call has been running (0 when idle).
        timeout_s: a call running longer than this counts as a stall (must be > 0).
        on_change: awaited with the new state at each change (not at start: the model starts healthy).
        interval_s: polling period; defaults to a quarter of ``timeout_s``, at most 1 s.
    """

    def __init__(
        self,
        busy_for_s: Callable[[], float],
        timeout_s: float,
        on_change: Callable[[bool], Awaitable[None]],
        interval_s: float | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._busy_for_s = busy_for_s
        self._timeout_s = timeout_s
        self._on_change = on_change
        self._interval_s = interval_s if interval_s is not None else min(1.0, timeout_s / 4)
        self.stalled = False

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            busy = self._busy_for_s()
            stalled = busy > self._timeout_s
            if stalled == self.stalled:
                continue
            self.stalled = stalled
            if stalled:
                _log.error(
                    "model stalled: one call has run for %.1f s (--model-stall-timeout-s %.1f); liveness fails",
                    busy,
                    self._timeout_s,
                )
            else:
                _log.warning("model recovered: no call runs longer than %.1f s any more", self._timeout_s)
            await self._on_change(stalled)
