"""Whether the server's TLS files load as gRPC will load them, checked before the server listens
(``ServiceConfig.check_files``) and again when renewed files are taken up (:mod:`service.tls`)."""

from __future__ import annotations

from pathlib import Path


def tls_file_problems(cert: Path | None, key: Path | None, client_ca: Path | None) -> list[str]:
    """What is wrong with the server's TLS files, each problem naming its flags and file, as gRPC would load them
    (empty when they load): a certificate chain and its matching unencrypted private key, and PEM client CAs.
    ``ServiceConfig.check_files`` reports these before listening; renewed files are checked the same way."""
    import ssl

    problems = []
    if cert is not None and key is not None:
        try:
            # gRPC cannot use an encrypted key: an empty password makes one fail here instead of prompting.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=b"")
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
    return problems
