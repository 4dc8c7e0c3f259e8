"""Renewed TLS certificates are served to new connections without a restart (as Kubernetes renews them); a pair
gRPC's TLS library cannot use is refused, at start-up and on renewal, though Python's OpenSSL loads it."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from service_helpers import make_video, run

from service.__main__ import main
from service.client import Client, FrameResult, StreamError, StreamOptions, TlsFiles
from service.config import ConfigError, ServiceConfig
from service.tls import ReloadingServerCredentials
from service.tls_files import tls_file_problems

BORINGSSL_REFUSES = {"ed448": ("ed448",), "rsa_pss": ("rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048")}
"""Key types OpenSSL (and so Python's ``ssl``) loads and gRPC's BoringSSL does not: ``openssl req -newkey`` args."""


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


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Self-signed ``NAME.pem`` / ``NAME.key`` pairs for 127.0.0.1: each of :data:`BORINGSSL_REFUSES`, and
    ``p256`` (an ECDSA P-256 key, which gRPC uses), made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("key-types")
    kinds = {**BORINGSSL_REFUSES, "p256": ("ec", "-pkeyopt", "ec_paramgen_curve:P-256")}
    for name, (algorithm, *options) in kinds.items():
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", algorithm, *options, "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            cwd=directory, capture_output=True, text=True,
        )  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"this openssl cannot make a {algorithm} certificate: {made.stderr.strip()}")
    return directory


@pytest.mark.parametrize("kind", sorted(BORINGSSL_REFUSES))
def test_a_pair_grpc_cannot_use_is_named_at_start(pairs, model_dir, kind, capsys):
    """Python's OpenSSL loads these pairs; the check asks gRPC, so start-up names the files, not a failed bind."""
    cert, key = pairs / f"{kind}.pem", pairs / f"{kind}.key"
    problem = rf"--tls-cert .*{kind}\.pem / --tls-key .*{kind}\.key: gRPC's TLS library \(BoringSSL\) cannot use"
    with pytest.raises(ConfigError, match=problem):
        ServiceConfig(model_dir=model_dir, tls_cert=cert, tls_key=key).check_files()
    with pytest.raises(ValueError, match=problem):
        ReloadingServerCredentials(cert, key)
    argv = ["--model-dir", str(model_dir), "--listen", "127.0.0.1:0", "--metrics-listen", ""]
    assert main([*argv, "--tls-cert", str(cert), "--tls-key", str(key)]) == 2
    error = capsys.readouterr().err
    assert "cannot use this certificate and key" in error and "cannot listen" not in error, error


def test_files_that_stop_loading_before_the_server_listens_are_named(certificates, model_dir, monkeypatch, capsys):
    """TLS files that pass the start-up check and then stop loading (renewed in between, while the model loads)
    are reported as the TLS files' problem, not as the model's."""
    import service.tls as tls

    monkeypatch.setattr(tls, "tls_file_problems", lambda *files: ["--tls-cert X / --tls-key Y: renewed, broken"])
    d = certificates
    argv = ["--model-dir", str(model_dir), "--listen", "127.0.0.1:0", "--metrics-listen", "", "--no-warmup"]
    assert main([*argv, "--tls-cert", str(d / "server.pem"), "--tls-key", str(d / "server.key")]) == 2
    error = capsys.readouterr().err
    assert "cannot use the TLS files: --tls-cert X / --tls-key Y: renewed, broken" in error, error
    assert "cannot load the model" not in error, error


def test_pairs_grpc_uses_pass_the_check(pairs, certificates):
    d = certificates
    assert tls_file_problems(d / "server.pem", d / "server.key", d / "ca.pem") == []
    assert tls_file_problems(pairs / "p256.pem", pairs / "p256.key", None) == []


def test_a_renewal_grpc_cannot_use_is_not_taken_up(start_server, certificates, pairs, tmp_path, caplog):
    """Not counted nor logged as a reload, the previous certificate still served; later files are still tried."""
    caplog.set_level(logging.INFO, logger="service.tls")
    d, mount = certificates, tmp_path / "secret"
    mount.mkdir()
    _mount(mount, "v1", d / "server.pem", d / "server.key")
    server = start_server(tls_cert=mount / "tls.crt", tls_key=mount / "tls.key")
    assert server.server.tls is not None
    for version, kind in enumerate(sorted(BORINGSSL_REFUSES), start=2):
        _mount(mount, f"v{version}", pairs / f"{kind}.pem", pairs / f"{kind}.key")
        for _ in range(2):
            assert isinstance(run(_one_frame(server.target, d / "ca.pem")), FrameResult)  # still the first pair
    assert server.server.tls.reloads == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "service.tls"]
    assert not [m for m in messages if "reloaded" in m], messages
    refused = [m for m in messages if "renewed TLS files do not load" in m and "BoringSSL" in m]
    assert len(refused) == len(BORINGSSL_REFUSES), messages

    _mount(mount, "v9", d / "server2.pem", d / "server2.key")
    assert isinstance(run(_one_frame(server.target, d / "ca2.pem")), FrameResult)
    assert server.server.tls.reloads == 1


def test_a_folder_given_for_a_tls_file_is_named_as_a_folder(model_dir, tmp_path):
    with pytest.raises(ValueError, match=rf"--tls-cert {tmp_path}: a folder, not a file"):
        ServiceConfig(model_dir=model_dir, tls_cert=tmp_path, tls_key=tmp_path / "missing.key").check_files()
