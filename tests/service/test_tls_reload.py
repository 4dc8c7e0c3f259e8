"""Renewed TLS certificates are served to new connections without a restart (as Kubernetes renews them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
import pytest
from service_helpers import make_video, run

from service.client import Client, FrameResult, StreamError, StreamOptions, TlsFiles
from service.tls import ReloadingServerCredentials


async def _one_frame(target: str, root_ca: Path) -> FrameResult:
    async with Client(target, tls=TlsFiles(root_ca=root_ca)) as client:  # a new channel: a new handshake
        stream = await client.open(StreamOptions())
        result = await stream.process(make_video(32, 1)[0])
        await stream.close()
        return result


def _mount(directory: Path, version: str, cert: Path, key: Path) -> None:
    """Publish ``cert``/``key`` as the kubelet updates a mounted Secret: a new timestamped folder, then one
    atomic swap of the ``..data`` link that ``tls.crt`` and ``tls.key`` point through."""
    folder = directory / f"..{version}"
    folder.mkdir()
    shutil.copyfile(cert, folder / "tls.crt")
    shutil.copyfile(key, folder / "tls.key")
    (directory / "..data_tmp").symlink_to(folder.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def test_new_connections_get_the_renewed_certificate(start_server, certificates, tmp_path, caplog):
    d, mount = certificates, tmp_path / "secret"
    mount.mkdir()
    _mount(mount, "v1", d / "server.pem", d / "server.key")
    server = start_server(tls_cert=mount / "tls.crt", tls_key=mount / "tls.key")
    assert isinstance(run(_one_frame(server.target, d / "ca.pem")), FrameResult)

    _mount(mount, "v2", d / "server2.pem", d / "server2.key")  # renewed, here by another CA
    assert isinstance(run(_one_frame(server.target, d / "ca2.pem")), FrameResult)
    with pytest.raises(StreamError) as refused:  # the old certificate is no longer served
        run(_one_frame(server.target, d / "ca.pem"), timeout=20)
    assert refused.value.status == grpc.StatusCode.UNAVAILABLE

    _mount(mount, "v3", d / "server.pem", d / "server2.key")  # a key that does not match its certificate
    assert isinstance(run(_one_frame(server.target, d / "ca2.pem")), FrameResult)  # still the last good pair
    assert isinstance(run(_one_frame(server.target, d / "ca2.pem")), FrameResult)
    assert server.server.tls is not None and server.server.tls.reloads == 1
    warnings = [r for r in caplog.records if "renewed TLS files do not load" in r.getMessage()]
    assert len(warnings) == 1, "a bad renewal is reported once, not on every connection"


def test_files_that_do_not_load_at_start_are_refused(certificates):
    with pytest.raises(ValueError, match=r"--tls-cert .*server\.pem / --tls-key .*client\.key"):
        ReloadingServerCredentials(certificates / "server.pem", certificates / "client.key")
