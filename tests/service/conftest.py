"""Service test fixtures: the tiny model on disk (saved and exported), the backends to test, in-process servers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from service_helpers import ADMIN_TOKEN, BACKENDS, ServerThread, make_config, quick_export, save_tiny_model
from tcp_proxy import TcpProxy

from service.config import ServiceConfig
from service.engine import Engine


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved with ``save_pretrained`` (random weights, fixed seed)."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def exported_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model exported by ``training.export``, as the ``onnx`` and ``tensorrt`` backends load it."""
    return quick_export(model_dir, tmp_path_factory.mktemp("exports") / "tiny")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Serve with one intra-op thread (as the server does by default) and restore torch's setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each backend the service supports, with the device it runs on."""
    name, device = request.param
    return str(name), str(device)


@pytest.fixture
def start_server(model_dir: Path) -> Iterator[Callable[..., ServerThread]]:
    """Factory: ``start_server(**config_overrides, engine_factory=None, wait_ready=True)``; stopped after the test."""
    servers: list[ServerThread] = []

    def start(
        engine_factory: Callable[[ServiceConfig], Engine] | None = None, wait_ready: bool = True, **overrides: Any
    ) -> ServerThread:
        server = ServerThread(make_config(model_dir, **overrides), engine_factory)
        servers.append(server)
        return server.start(wait_ready)

    yield start
    for server in servers:
        server.stop(0.5)


@pytest.fixture
def server(start_server: Callable[..., ServerThread]) -> ServerThread:
    """A server with the default test settings."""
    return start_server()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CAs (``ca.pem``, ``ca2.pem``), a server certificate for 127.0.0.1/localhost from each
    (``server.pem`` / ``server.key``, ``server2.pem`` / ``server2.key``) and a client certificate from the first
    (``client.pem`` / ``client.key``), made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca, names in (("ca", ("server", "client")), ("ca2", ("server2",))):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=test-{ca}")  # fmt: skip
        for name in names:
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                    "-subj", f"/CN={name}")  # fmt: skip
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                    "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    return directory


@pytest.fixture
def admin_file(tmp_path: Path) -> Path:
    """A file of one admin token, :data:`service_helpers.ADMIN_TOKEN`, readable by its owner alone."""
    path = tmp_path / "admin-tokens"
    path.write_text(f"{ADMIN_TOKEN}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], TcpProxy]]:
    """Factory: ``proxy_to(server.target)``; closed after the test."""
    proxies: list[TcpProxy] = []

    def make(upstream: str) -> TcpProxy:
        proxies.append(TcpProxy(upstream))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
