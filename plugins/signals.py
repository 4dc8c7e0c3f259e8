"""Holding Ctrl-C back around work that must not be cut in the middle, shared by the training loop and the client;
and ending a command on Ctrl-C with one line instead of a traceback (:func:`exit_status_of`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back while the block runs (saving a file that a second Ctrl-C, as ``timeout -s INT`` sends,
    must not cut short; building an object a ``KeyboardInterrupt`` would leave half made), then deliver each
    SIGINT that arrived in it to the handler in place before, as it would have been delivered
    (:func:`signals_held`)."""
    with signals_held(signal.SIGINT):
        yield


@contextlib.contextmanager
def signals_held(*numbers: int) -> Iterator[None]:
    """Hold the signals ``numbers`` back while the block runs, then deliver each that arrived in it, in the order
    they arrived, to the handler in place before, as it would have been delivered.

    A handler the block itself installs in place of the one holding a signal back (a handler that restores earlier
    ones on another signal) is kept, and the held signals go to it. Only the main thread can set signal handlers:
    in another one the block runs as it is, and so it does for a signal that is ignored or handled outside Python.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in numbers}
    held = [number for number, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    arrived: list[int] = []

    def collect(number: int, frame: FrameType | None) -> None:
        arrived.append(number)

    for number in held:
        signal.signal(number, collect)
    try:
        yield
    finally:
        for number in held:
            if signal.getsignal(number) is collect:  # else the block's code put its own handler in place: keep it
                signal.signal(number, previous[number])
        for number in arrived:
            signal.raise_signal(number)


def exit_status_of(main: Callable[[], int], program: str) -> int:
    """Run a command's ``main`` and return its exit status; Ctrl-C (``KeyboardInterrupt``) ends it with one line,
    ``<program>: interrupted``, and status 130 (128 + SIGINT, what a shell reports), not with a traceback. What the
    command had written so far is its own to keep or clean up (their staging folders, say)."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # its output went to a reader that stopped (| head): nothing more is wanted
        with contextlib.suppress(OSError, ValueError):  # the interpreter's flush at exit would fail again
            stdout = sys.stdout.fileno()
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout)
        return 141  # 128 + SIGPIPE
