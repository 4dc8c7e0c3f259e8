"""A TCP proxy between a test's client and server whose connections the test cuts (:class:`TcpProxy`), and a way to
act once a server has processed a given frame (:func:`after_frame`)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class TcpProxy:
    """Forwards TCP connections from a loopback port of its own to ``upstream`` (``host:port``, which may be changed
    between connections). :meth:`drop` cuts every connection open now, as a network failure would; later
    connections go through again."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.drops = 0
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def drop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self.drops += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.drop()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            host, port = self.upstream.rsplit(":", 1)
            try:
                server = socket.create_connection((host, int(port)))
            except OSError:
                client.close()  # nothing listening upstream: the client sees a failed connection
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def latest_frame(server) -> int:
    """The highest frame index any stream of ``server`` has processed (-1: none)."""
    manager = server.server.manager
    return int(server.on_loop(lambda: max((s.last_frame_index or -1 for s in manager.sessions.values()), default=-1)))


def after_frame(server, index: int, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread once ``server`` has processed frame ``index``."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while latest_frame(server) < index and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=watch, name="test-watcher", daemon=True)
    thread.start()
    return thread


class TakeOver:
    """A rolling update behind ``proxy``, as a Kubernetes Service sees one: once ``draining`` has processed frame
    ``index``, new connections lead to ``replacement`` and ``draining`` shuts down (grace ``grace_s``), in threads.

    Attributes:
        watcher: the thread waiting for the frame.
        stopping: the thread stopping ``draining`` (None until the frame came).
    """

    def __init__(self, proxy: TcpProxy, draining, replacement, index: int = 10, grace_s: float = 5.0) -> None:
        self.stopping: threading.Thread | None = None

        def take_over() -> None:
            proxy.upstream = replacement.target
            self.stopping = threading.Thread(target=draining.stop, args=(grace_s,), daemon=True)
            self.stopping.start()

        self.watcher = after_frame(draining, index, take_over)

    def draining(self) -> bool:
        """Whether the shutdown is still under way."""
        return self.stopping is not None and self.stopping.is_alive()

    def join(self) -> None:
        """Wait for the take-over and the shutdown to end (30 s each at most)."""
        self.watcher.join(30)
        if self.stopping is not None:
            self.stopping.join(30)
