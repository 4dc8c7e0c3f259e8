"""The HTTP server of the Prometheus metrics page: bounded in threads and in time.

``prometheus_client``'s own server starts a thread for every connection and waits forever for its request, so
clients that connect and send nothing (or a request line and no more) pile up threads without limit. This one
serves the same WSGI application (:func:`prometheus_client.make_wsgi_app`: the exposition at any path, gzip when
asked for, ``name[]`` filters, ``OPTIONS``, ``405`` for other methods), one request per connection, with:

- a cap on connections served at once, counted apart for loopback peers (the container's health checks and the
  Kubernetes exec probes connect from 127.0.0.1) and for every other peer, so connections from the network cannot
  take the places the probes need; a connection beyond its cap is closed at once, without a thread;
- a timeout on every read and write of a connection (:data:`IO_TIMEOUT_S`), and a deadline for the whole
  exchange (:data:`CONNECTION_DEADLINE_S`), after which the connection is shut down however slowly its client
  trickles bytes in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

_log = logging.getLogger(__name__)

IO_TIMEOUT_S = 5.0
"""How long a connection may leave one read (its request) or write (the page) waiting."""
CONNECTION_DEADLINE_S = 10.0
"""How long a connection may take from accept to the last byte of its reply."""
MAX_CONNECTIONS = 32
"""Connections from other hosts served at once."""
MAX_LOOPBACK_CONNECTIONS = 8
"""Connections from this host's loopback addresses served at once, apart from :data:`MAX_CONNECTIONS`."""
_REFUSAL_WARNING_EVERY_S = 60.0


class MetricsHttpServer(ThreadingMixIn, WSGIServer):
    """Serves ``registry``'s exposition on ``(host, port)`` (``port`` 0 picks one; see :attr:`port`) once
    :meth:`serve_forever` runs, typically in a daemon thread (:func:`start_metrics_server`).

    Raises:
        OSError: the address does not resolve or cannot be bound.
    """

    daemon_threads = True  # a handler thread is bounded by the deadline; closing the server does not wait for it
    request_queue_size = 64  # the listen backlog: a burst of connections waits to be accepted (or closed)

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        io_timeout_s: float = IO_TIMEOUT_S,
        deadline_s: float = CONNECTION_DEADLINE_S,
        max_connections: int = MAX_CONNECTIONS,
        max_loopback_connections: int = MAX_LOOPBACK_CONNECTIONS,
    ) -> None:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        self.address_family = family
        self.io_timeout_s, self.deadline_s = io_timeout_s, deadline_s
        self._slots = {
            False: threading.BoundedSemaphore(max_connections),
            True: threading.BoundedSemaphore(max_loopback_connections),
        }
        self._lock = threading.Lock()
        self._deadlines: dict[Any, float] = {}  # open connections -> when they are shut down
        self._last_refusal_warning = -_REFUSAL_WARNING_EVERY_S
        super().__init__(cast("tuple[str, int]", address), _Handler)  # an IPv4 or IPv6 address: TCP
        self.set_app(make_wsgi_app(registry))

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a new thread if its peer's cap has room, else close it at once."""
        loopback = _is_loopback(client_address[0])
        if not self._slots[loopback].acquire(blocking=False):
            self._refused(client_address[0], loopback)
            self.shutdown_request(request)
            return
        with self._lock:
            self._deadlines[request] = time.monotonic() + self.deadline_s
        try:
            super().process_request(request, client_address)  # starts the thread, which releases the slot
        except BaseException:
            self.shutdown_request(request)
            self._slots[loopback].release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # ends with shutdown_request
        finally:
            self._slots[_is_loopback(client_address[0])].release()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:  # forgotten before it is closed, so service_actions never shuts down a reused descriptor
            self._deadlines.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Shut down the connections past their deadline (called by ``serve_forever`` about twice a second): the
        thread serving one wakes from its read or write and ends."""
        now = time.monotonic()
        with self._lock:
            for request, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    del self._deadlines[request]
                    with contextlib.suppress(OSError):  # already closed by its client
                        request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that timed out, was reset or was shut down is routine; anything else is logged."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            _log.debug("metrics connection from %s ended: %r", client_address[0], error)
        else:
            _log.exception("metrics request from %s failed", client_address[0])

    def _refused(self, peer: str, loopback: bool) -> None:
        now = time.monotonic()
        if now - self._last_refusal_warning >= _REFUSAL_WARNING_EVERY_S:
            self._last_refusal_warning = now
            kind = "loopback " if loopback else ""
            _log.warning(
                "metrics: too many %sconnections open at once; closing new ones (this one from %s) until some "
                "end (reported once a minute)",
                kind,
                peer,
            )


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsHttpServer:
    """A :class:`MetricsHttpServer` serving in a daemon thread; stop it with ``shutdown()`` and ``server_close()``.

    Raises:
        OSError: the address does not resolve or cannot be bound.
    """
    server = MetricsHttpServer(host, port, registry)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


class _Handler(WSGIRequestHandler):
    """Times out its connection's reads and writes after the server's ``io_timeout_s``, and logs no request line
    (scrapes and probes come every few seconds)."""

    server: MetricsHttpServer

    def setup(self) -> None:
        self.request.settimeout(self.server.io_timeout_s)  # every later read and write of the connection
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
