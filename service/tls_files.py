"""Whether the server's TLS files load as gRPC will load them, checked before the server listens
(``ServiceConfig.check_files``) and again when renewed files are taken up (:mod:`service.tls`).

gRPC does its TLS with its own library (BoringSSL), not the OpenSSL behind Python's ``ssl``: a pair OpenSSL loads
may be one gRPC refuses (an Ed448 key, an RSA-PSS key, an ECDSA key on a curve other than P-256, P-384 or P-521),
so the pair is also handed to a gRPC server that is never started, which loads it as the real one will. gRPC
serves RSA keys and ECDSA keys on P-256 and P-384 to every client; it also loads Ed25519 and P-521 keys, but
gRPC's own clients (Python's among them) fail the handshake with those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

_log = logging.getLogger(__name__)

_PROBE_ADDRESS = "127.0.0.1:0"  # the throwaway server's port, bound for a moment (the server never starts)


def tls_file_problems(cert: Path | None, key: Path | None, client_ca: Path | None) -> list[str]:
    """What is wrong with the server's TLS files, each problem naming its flags and file, as gRPC would load them
    (empty when they load): a certificate chain and its matching unencrypted private key, of a kind gRPC can
    use, and PEM client CAs. ``ServiceConfig.check_files`` reports these before listening; renewed files are
    checked the same way."""
    import ssl

    problems = []
    pair_loads = False
    if cert is not None and key is not None:
        try:
            # gRPC cannot use an encrypted key: an empty password makes one fail here instead of prompting.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=b"")
            pair_loads = True
        except (OSError, ssl.SSLError, ValueError) as error:
            problems.append(
                f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and its matching private key "
                f"({error})"
            )
    if client_ca is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError, ValueError) as error:
            problems.append(f"--tls-client-ca {client_ca}: not PEM CA certificates ({error})")
    if pair_loads and not problems and cert is not None and key is not None:
        try:
            refused = not _grpc_loads(cert.read_bytes(), key.read_bytes(), _read(client_ca))
        except OSError as error:
            problems.append(f"--tls-cert {cert} / --tls-key {key}: {error}")
        else:
            if refused:
                problems.append(
                    f"--tls-cert {cert} / --tls-key {key}: gRPC's TLS library (BoringSSL) cannot use this "
                    "certificate and key, though OpenSSL loads them: use an RSA key (rsaEncryption, not RSA-PSS) or "
                    "an ECDSA key on P-256 or P-384 (not Ed448, nor a curve such as secp256k1 or brainpool)"
                )
    return problems


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def _grpc_loads(cert: bytes, key: bytes, client_ca: bytes | None) -> bool:
    """Whether gRPC builds server credentials from this pair (and client CAs). It builds them when a secure port
    is added, so a server that is never started adds one. ``True`` too when no port can be added here even
    without TLS (no IPv4 loopback): then nothing is known against the pair."""
    import grpc

    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    if _port_added(lambda server: server.add_secure_port(_PROBE_ADDRESS, credentials)):
        return True
    if not _port_added(lambda server: server.add_insecure_port(_PROBE_ADDRESS)):
        _log.debug("cannot bind %s to check the TLS files with gRPC; not checked", _PROBE_ADDRESS)
        return True
    return False


def _port_added(add: Callable[[grpc.Server], int]) -> bool:
    """Whether ``add`` adds a port to a new gRPC server (which is stopped without ever starting)."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # starts no thread: nothing is submitted
    try:
        return add(server) != 0  # older grpcio versions return 0 instead of raising
    except RuntimeError:
        return False
    finally:
        server.stop(None)
