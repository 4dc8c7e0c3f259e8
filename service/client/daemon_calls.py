"""Blocking calls awaited from the event loop on a daemon thread of the caller's own.

``asyncio.to_thread`` runs a call on the loop's default executor, whose threads ``asyncio.run`` and the
interpreter wait for when they end: a call that never returns (a stalled camera, a frame file that is a FIFO nobody
writes) then holds up a Ctrl-C or SIGTERM for good. :class:`DaemonCalls` runs them on a daemon thread instead,
which nothing waits for.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonCalls:
    """Runs the calls given to :meth:`call` one after another on a daemon thread of its own (unlike a
    ``ThreadPoolExecutor``'s threads, which the interpreter waits for at exit).

    A call whose waiter is cancelled before the thread starts it is skipped; one already running goes on (its
    outcome is dropped). :meth:`stop` ends the thread once the call it is running returns.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self._calls = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, run on the thread once the calls before it are done; what it raises (whatever it
        is) is raised here."""
        future: Future[Any] = Future()
        self._calls.put((future, function, args))
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """End the thread after the call it is running (which may never return: the thread is a daemon)."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, function, args = item
            if not future.set_running_or_notify_cancel():  # its waiter was cancelled first
                continue
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to the waiter, whatever it is
                future.set_exception(error)
