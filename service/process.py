"""The server as a process: :func:`serve` runs a :class:`~service.server.Server` until a signal stops it.

SIGTERM and SIGINT start a graceful shutdown (the drain of :meth:`Server.stop <service.server.Server.stop>`), and a
second one ends the drain at once (:meth:`Server.hurry <service.server.Server.hurry>`). SIGHUP stops an interactive
server (its terminal closed) and is logged and ignored by any other. A signal while the model loads or warms up
ends the process without waiting for the thread doing it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from service.config import ServiceConfig
from service.server import EngineFactory, Server, default_engine_factory

_log = logging.getLogger(__name__)


async def serve(config: ServiceConfig, engine_factory: EngineFactory = default_engine_factory) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully; a second SIGTERM or SIGINT ends the
    drain at once. SIGHUP stops it as SIGTERM does when its standard input is a terminal (the terminal closed), and
    is logged and ignored otherwise.

    A signal that arrives while the model loads (a TensorRT engine build can take minutes) ends the process at once
    with status 0: nothing is served yet, and the load, which runs in a thread that cannot be interrupted, is
    abandoned instead of holding the process until its supervisor kills it. So is the model's warm-up, when the
    signal arrives after the server listens but before it reports SERVING.

    Raises:
        RuntimeError: warm-up failed (logged with its traceback); the server was stopped first.
    """
    server = Server(config, engine_factory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _first_then_hurry(stop, server))
    # SIGHUP: the terminal of an interactive server (make serve) closed, so stop as on SIGTERM; else (a container, a
    # supervisor, nohup) nothing is to be reloaded on it: say so and serve on.
    interactive = sys.stdin is not None and sys.stdin.isatty()
    loop.add_signal_handler(signal.SIGHUP, _first_then_hurry(stop, server) if interactive else _hangup_ignored)
    try:
        starting = asyncio.ensure_future(server.start(wait_ready=False, on_failure=stop.set))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            _log.info("shutdown requested while the model loads: the load is abandoned")
            logging.shutdown()
            os._exit(0)  # the loading thread cannot be stopped, and the interpreter would wait for it at exit
        stopping.cancel()
        starting.result()  # a model that cannot be loaded, an address that cannot be bound
        await stop.wait()
        if server.failure is not None:
            error = server.failure
            raise RuntimeError(f"the model failed to warm up: {type(error).__name__}: {error}") from error
        _log.info("shutdown requested")
    except BaseException:
        await _stop_and_exit(server, failed=True)
        raise
    await _stop_and_exit(server, failed=False)


def _first_then_hurry(stop: asyncio.Event, server: Server) -> Callable[[], None]:
    """The handler of SIGTERM and SIGINT: the first asks ``stop`` for a graceful shutdown, a later one ends its
    drain at once (:meth:`Server.hurry`), for an operator who will not wait out the grace period."""

    def handle() -> None:
        if stop.is_set():
            server.hurry()
        else:
            stop.set()

    return handle


def _hangup_ignored() -> None:
    """SIGHUP to a server without a terminal (an operator used to daemons that reload on it) would end the process
    at once, losing every stream: the server has nothing to reload on it (certificate and token files are reloaded
    when they change), so it says so and serves on."""
    _log.warning(
        "SIGHUP ignored: certificate and token files are reloaded when they change; send SIGTERM to stop the server"
    )


async def _stop_and_exit(server: Server, failed: bool) -> None:
    """Stop ``server``; when it left a thread or a connection behind, end the process at once (the interpreter
    would wait for a model thread at exit), with status 1 after a failure (``failed``: an exception is on its way
    out, such as a failed warm-up) or an abandoned model call, else 0. Otherwise return, and the caller goes on."""
    await server.stop()
    if server.model_abandoned or server.warm_up_abandoned or server.connections_abandoned:
        logging.shutdown()
        os._exit(1 if failed or server.model_abandoned else 0)


__all__ = ["serve"]
