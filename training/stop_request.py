"""Stopping a training run at a step boundary: the first Ctrl-C (SIGINT) or SIGTERM asks the loop to finish the
step it is in, write a checkpoint of it and stop, so ``--resume`` loses no step; a second signal acts at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

_CAUGHT = (signal.SIGINT, signal.SIGTERM)
STOPPING = (
    "stopping after the current step, with a checkpoint of it (or with the final model, if that step is the last; "
    "{again} again stops at once, without them)"
)


class RunStopped(KeyboardInterrupt):
    """The run stopped at a step boundary on a signal, after writing a checkpoint of that step (none before its
    first step). A ``KeyboardInterrupt``, so whatever handles Ctrl-C handles it too.

    Attributes:
        signal_number: the signal that asked for the stop (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: the last step trained, the step of the checkpoint written (0: none was).
    """

    def __init__(self, signal_number: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signal_number).name} after step {step}")
        self.signal_number = signal_number
        self.step = step


class StopRequest:
    """A context in which the first SIGINT or SIGTERM is recorded instead of acting, for a loop to poll between
    steps (:attr:`signal_number`); the signals' earlier handlers come back on the first one (so a second Ctrl-C
    raises ``KeyboardInterrupt`` at once and a second SIGTERM ends the process) and when the context exits.

    The first signal is announced on stderr as ``doing`` (or what it returns when the signal comes, when it is a
    function; ``{again}`` names the signal to send again).
    Only a signal whose handler is Python's default is taken over: a SIGINT ignored (a background job) stays
    ignored, and a handler someone else installed stays theirs. Outside the main thread, or with ``enabled``
    false (several processes, which would have to agree on the step), the context changes nothing.
    """

    def __init__(self, enabled: bool = True, doing: str | Callable[[], str] = STOPPING) -> None:
        self.enabled = enabled
        self.doing = doing
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for number in _CAUGHT:
                current = signal.getsignal(number)
                if current in (signal.default_int_handler, signal.SIG_DFL):
                    self._previous[number] = current
                    signal.signal(number, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._restore()

    def _record(self, number: int, frame: FrameType | None) -> None:
        self.signal_number = number
        self._restore()
        again = "Ctrl-C" if number == signal.SIGINT else "the signal"
        doing = self.doing() if callable(self.doing) else self.doing
        print(f"\n{signal.Signals(number).name}: {doing.format(again=again)}", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
