"""The busy-port probe the server runs before loading its model."""

from __future__ import annotations

import errno
import socket

from service.ports import listen_problem


def address_in_use(listen: str) -> bool:
    """Whether the probe finds another process listening on ``listen``."""
    problem = listen_problem(listen)
    return problem is not None and problem.errno == errno.EADDRINUSE


def test_a_listening_port_is_in_use_and_a_free_one_is_not():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert address_in_use(f"127.0.0.1:{port}")
        assert address_in_use(f"0.0.0.0:{port}"), "the wildcard address overlaps the listener"
    assert not address_in_use(f"127.0.0.1:{port}"), "free again once the listener is closed"


def test_what_the_listen_itself_reports_is_not_called_busy():
    assert not address_in_use("127.0.0.1:0")  # any free port
    assert not address_in_use("127.0.0.1:http")  # not a number: the configuration check refuses it


def test_a_socket_family_the_kernel_lacks_is_left_to_the_listen_to_report(monkeypatch):
    def no_ipv6(*args, **kwargs):
        raise OSError(97, "Address family not supported by protocol")

    monkeypatch.setattr(socket, "socket", no_ipv6)
    assert not address_in_use("[::1]:50051")
