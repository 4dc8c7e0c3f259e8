"""An address the server cannot listen on (a host name that does not resolve, an address that is not this
machine's, a busy port) is refused before the model loads, with the system's reason, and a server that never
listened logs no ``stopped`` line."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from service_helpers import ServerThread, make_config

from service.config import ServiceConfig
from service.engine import Engine
from service.ports import ListenError, listen_problem
from service.server import default_engine_factory

REPO = Path(__file__).resolve().parents[2]
NOT_RESOLVED = "nosuchhost.invalid"  # RFC 6761: never resolves
NOT_LOCAL = "192.0.2.1"  # TEST-NET-1 (RFC 5737): no machine's own address


def _nonlocal_bind_allowed() -> bool:
    """Whether the kernel lets sockets bind addresses that are not the machine's (``ip_nonlocal_bind``)."""
    try:
        return Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip() != "0"
    except OSError:
        return False


needs_local_binds_only = pytest.mark.skipif(
    _nonlocal_bind_allowed(), reason="this kernel lets sockets bind any address (ip_nonlocal_bind)"
)


class _Loads:
    """An engine factory that records that the model was loaded, and runs ``during`` first (while it "loads")."""

    def __init__(self, during: Any = None) -> None:
        self.calls = 0
        self.during = during

    def __call__(self, config: ServiceConfig) -> Engine:
        self.calls += 1
        if self.during is not None:
            self.during()
        return default_engine_factory(config)


def _start_refused(model_dir: Path, factory: _Loads, caplog: pytest.LogCaptureFixture, **overrides: Any) -> str:
    """Start an in-process server that must fail with :class:`ListenError`, stop it; returns the error's text."""
    server = ServerThread(make_config(model_dir, **overrides), factory)
    with caplog.at_level(logging.INFO, logger="service.server"):
        with pytest.raises(ListenError) as refused:
            server.start()
        server.stop(0.5)
    assert "stopped" not in [record.getMessage() for record in caplog.records], "it never listened"
    return str(refused.value)


def test_a_host_name_that_does_not_resolve_is_the_resolvers_error():
    problem = listen_problem(f"{NOT_RESOLVED}:5000")
    assert isinstance(problem, socket.gaierror) and problem.strerror


@needs_local_binds_only
def test_an_address_of_another_machine_cannot_be_assigned():
    problem = listen_problem(f"{NOT_LOCAL}:0")
    assert problem is not None and problem.errno == errno.EADDRNOTAVAIL


def test_a_free_address_has_no_problem_and_a_listened_port_is_in_use():
    for address in ("127.0.0.1:0", "localhost:0", "0.0.0.0:0"):
        assert listen_problem(address) is None, address
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        problem = listen_problem(f"127.0.0.1:{holder.getsockname()[1]}")
    assert problem is not None and problem.errno == errno.EADDRINUSE


def test_an_unresolvable_listen_host_is_refused_before_the_model_loads(model_dir, caplog):
    factory = _Loads()
    message = _start_refused(model_dir, factory, caplog, listen=f"{NOT_RESOLVED}:5000")
    assert message.startswith(f"--listen {NOT_RESOLVED}:5000: cannot resolve the host {NOT_RESOLVED} (")
    assert "in use" not in message
    assert factory.calls == 0, "the model was loaded first"


@needs_local_binds_only
def test_a_metrics_address_of_another_machine_is_refused_before_the_model_loads(model_dir, caplog):
    factory = _Loads()
    message = _start_refused(model_dir, factory, caplog, metrics_listen=f"{NOT_LOCAL}:9464")
    assert message.startswith(f"--metrics-listen {NOT_LOCAL}:9464: cannot listen there (")
    assert f"{NOT_LOCAL} is not an address of this machine" in message
    assert factory.calls == 0, "the model was loaded first"


def test_a_port_taken_while_the_model_loads_is_named_busy(model_dir, caplog):
    """The check before the load passes; another process takes the port during the load (a TensorRT build can take
    minutes): the listen's failure is then explained, and the server, which never listened, logs no ``stopped``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    holder = socket.socket()
    try:

        def take_the_port() -> None:
            holder.bind(("127.0.0.1", port))
            holder.listen()

        factory = _Loads(take_the_port)
        message = _start_refused(model_dir, factory, caplog, listen=f"127.0.0.1:{port}")
    finally:
        holder.close()
    assert factory.calls == 1
    assert message.startswith(f"--listen 127.0.0.1:{port}: the port is in use"), message


@needs_local_binds_only
def test_the_process_exits_2_with_the_systems_reason(model_dir):
    result = subprocess.run(
        [sys.executable, "-m", "service", "--model-dir", str(model_dir), "--listen", f"{NOT_LOCAL}:5000"],
        cwd=REPO,
        env={**os.environ, "SLOTSTREAM_METRICS_LISTEN": "", "SLOTSTREAM_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"slotstream: --listen {NOT_LOCAL}:5000: cannot listen there (Cannot assign requested address)" in (
        result.stderr
    )
    assert "model loaded" not in result.stderr and "in use" not in result.stderr
    assert "stopped" not in result.stderr and "Traceback" not in result.stderr
