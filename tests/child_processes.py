"""Starting child processes that take Ctrl-C as a foreground job does, without ``preexec_fn``.

A shell's background job (``make test &``, CI runners) starts with SIGINT ignored, and a child inherits that: Python
then keeps ignoring Ctrl-C. ``preexec_fn`` could give the child the default action back, but it makes ``subprocess``
``fork()`` the test process (``vfork`` otherwise), and in a test process where gRPC runs (an in-process server),
gRPC's fork handlers restart its poller thread in the child, which ``close_fds`` then breaks: the child aborts with
``epoll_wait error: Bad file descriptor`` before it runs anything (grpc/grpc#43055). Here the test process handles
SIGINT while it starts the child instead, which the child inherits as the default action (``exec`` resets a handled
signal to it).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def children_take_ctrl_c() -> Iterator[None]:
    """While open, the child processes started take SIGINT's default action (Python's ``KeyboardInterrupt``), also
    when this process ignores SIGINT (it then handles it meanwhile). From the main thread only."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def popen_with_ctrl_c(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(*args, **kwargs)``, its child taking SIGINT's default action
    (:func:`children_take_ctrl_c`)."""
    with children_take_ctrl_c():
        return subprocess.Popen(*args, **kwargs)
