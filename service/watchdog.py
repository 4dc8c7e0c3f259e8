"""Liveness for the model: notice a model call that never returns, or a model that only fails.

A hung model call (a deadlocked driver, a GPU that stopped answering, an operator stuck in a loop) leaves
the event loop answering health checks happily while every stream waits forever, so "the process answers"
is not liveness. :class:`ModelWatchdog` polls how long the longest-running model call has been running and
reports each change between stalled and healthy; the server turns that into the liveness health status
that Kubernetes restarts the pod on.

A model that answers every call with an exception (a sticky CUDA error, a corrupt engine) fails every frame
with ``INFERENCE_FAILED`` while health checks pass, so a long enough run of failed calls is not liveness
either: :class:`ModelFailureMonitor` counts consecutive failed model calls and reports when the count reaches
its limit and when a call succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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

    Raises:
        ValueError: ``timeout_s`` is not positive.
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


class ModelFailureMonitor:
    """Calls ``on_change(True)`` when ``limit`` model calls in a row have failed, ``on_change(False)`` at the next
    call that succeeds after that.

    Thread-safe: model calls run on several model threads (and sometimes on the event-loop thread), each of
    which calls :meth:`record`. ``on_change`` runs on the recording thread with the monitor's lock held, so the
    changes arrive in the order they happened; it must not block (hand the change to the event loop with
    ``call_soon_threadsafe``).

    Args:
        limit: failed calls in a row, with no success in between, that count as a failing model (must be >= 1).
        on_change: called with the new state at each change (not at start: the model starts healthy).

    Raises:
        ValueError: ``limit`` is below 1.
    """

    def __init__(self, limit: int, on_change: Callable[[bool], object]) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._on_change = on_change
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.failing = False

    def record(self, ok: bool) -> None:
        """Count one finished model call: ``ok`` when it returned, not when it raised."""
        with self._lock:
            if ok:
                self.consecutive_failures = 0
                if self.failing:
                    self.failing = False
                    _log.warning("model recovered: a model call succeeded again; liveness passes")
                    self._on_change(False)
                return
            self.consecutive_failures += 1
            if not self.failing and self.consecutive_failures >= self._limit:
                self.failing = True
                _log.error(
                    "model failing: %d model calls in a row failed (--model-failure-limit %d); liveness fails",
                    self.consecutive_failures,
                    self._limit,
                )
                self._on_change(True)
