"""The metrics page's HTTP server: idle and trickling connections are timed out, connections beyond a cap get no
thread, and the health checks' loopback connections keep their own places while others are held open."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from service.metrics import Metrics
from service.metrics_http import MAX_LOOPBACK_CONNECTIONS, MetricsHttpServer, start_metrics_server

PARTIAL_REQUEST = b"GET /metrics HTTP/1.1\r\n"  # a request line, and never the blank line that ends the request


@contextlib.contextmanager
def _serving(host: str = "127.0.0.1", **limits: Any) -> Iterator[MetricsHttpServer]:
    metrics = Metrics()
    server = MetricsHttpServer(host, 0, metrics.registry, **limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    connection = socket.create_connection((host, port), timeout=10, source_address=(host, 0))
    connection.sendall(PARTIAL_REQUEST)
    return connection


def _closed_by_server(connection: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``connection`` (EOF or reset) within ``within_s``."""
    readable, _, _ = select.select([connection], [], [], within_s)
    if not readable:
        return False
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:
        return True


def _wait_for_refusals(connections: list[socket.socket], count: int) -> None:
    """Wait until the server has accepted all ``connections`` and closed ``count`` of them at once."""
    closed = 0
    deadline = time.monotonic() + 10
    pending = list(connections)
    while closed < count:
        assert time.monotonic() < deadline, f"{closed} of {len(connections)} connections closed, {count} expected"
        readable, _, _ = select.select(pending, [], [], 0.2)
        for connection in readable:
            pending.remove(connection)
            closed += 1
    assert not select.select(pending, [], [], 0.3)[0], "more connections closed than the cap leaves out"


def _scrape(port: int, host: str = "127.0.0.1") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def _non_loopback_address() -> str:
    """An address of this machine that is not a loopback one (the source of the route out), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, the route picks a source address
        except OSError as error:
            pytest.skip(f"this machine has no route off loopback ({error})")
        address = str(probe.getsockname()[0])
    if address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("this machine has no address outside loopback")
    return address


def test_a_partial_request_is_closed_after_the_read_timeout():
    with _serving(io_timeout_s=0.5) as server:
        started = time.monotonic()
        connection = _connect(server.port)
        try:
            assert _closed_by_server(connection, within_s=5), "the partial request is still open after 5 s"
            assert time.monotonic() - started >= 0.4
        finally:
            connection.close()
        assert "slotstream_ready" in _scrape(server.port)


def test_a_trickling_request_is_cut_off_at_the_connection_deadline():
    """Each byte arrives within the read timeout; the whole exchange still ends at the deadline."""
    with _serving(io_timeout_s=5, deadline_s=1) as server:
        started = time.monotonic()
        connection = _connect(server.port)
        try:
            while time.monotonic() - started < 6:
                if _closed_by_server(connection, within_s=0.2):
                    break
                with contextlib.suppress(OSError):
                    connection.sendall(b"X")  # one byte of a header line, every 0.2 s
            else:
                pytest.fail("a request trickled in for 6 s past a 1 s deadline")
            assert time.monotonic() - started < 4
        finally:
            connection.close()


def test_connections_beyond_the_cap_get_no_thread_and_a_scrape_still_works():
    """Through ``Metrics.serve_http``, as the server serves: held connections are capped, the rest closed."""
    metrics = Metrics()
    port = metrics.serve_http("127.0.0.1:0")
    threads = threading.active_count()
    held = [_connect(port) for _ in range(MAX_LOOPBACK_CONNECTIONS - 1)]
    try:
        assert "slotstream_ready" in _scrape(port), "a scrape while idle connections are held"
        # The scrape's thread gives its place back as it ends, which may be after the reply reached this client.
        deadline = time.monotonic() + 10
        while threading.active_count() - threads > MAX_LOOPBACK_CONNECTIONS - 1:
            assert time.monotonic() < deadline, "the scrape's connection kept its place"
            time.sleep(0.01)
        held += [_connect(port) for _ in range(40)]
        _wait_for_refusals(held, 40 - 1)
        assert threading.active_count() - threads <= MAX_LOOPBACK_CONNECTIONS
    finally:
        for connection in held:
            connection.close()
        metrics.close()


def test_loopback_probes_keep_their_places_while_other_hosts_hold_connections():
    """Health checks and exec probes connect from 127.0.0.1; connections from elsewhere cannot fill their cap."""
    address = _non_loopback_address()
    with _serving("0.0.0.0", max_connections=3, max_loopback_connections=2) as server:
        threads = threading.active_count()
        try:
            held = [_connect(server.port, address) for _ in range(12)]
        except OSError as error:
            pytest.skip(f"cannot connect to {address} here ({error})")
        try:
            _wait_for_refusals(held, 12 - 3)
            assert threading.active_count() - threads <= 3
            assert "slotstream_ready" in _scrape(server.port)  # from 127.0.0.1
        finally:
            for connection in held:
                connection.close()


def test_the_page_is_served_as_before():
    """Any path serves the exposition, gzip when asked; other methods are refused (prometheus_client's app)."""
    metrics = Metrics()
    server = start_metrics_server("127.0.0.1", 0, metrics.registry)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.headers["Content-Encoding"] == "gzip"
        assert "slotstream_event_loop_heartbeat_seconds" in _scrape(server.port)
        post = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=5)
        assert refused.value.code == 405
    finally:
        server.shutdown()
        server.server_close()
