"""PEM files for a TLS connection to the service (:class:`TlsFiles`), read and checked once."""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from plugins.files import user_path

PathLike = str | os.PathLike[str]
"""A file path as the client takes it."""


_TLS_FLAGS = {"root_ca": "--tls-ca", "cert": "--tls-cert", "key": "--tls-key"}
"""Each :class:`TlsFiles` field and the ``python -m service.client`` flag that sets it, for error messages."""


class TlsBytes(NamedTuple):
    """The PEM bytes of a client's TLS files (:meth:`TlsFiles.read`), in the order gRPC's
    ``ssl_channel_credentials`` takes them; ``None`` for a file not given."""

    root_ca: bytes | None
    key: bytes | None
    cert: bytes | None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS connection. Paths may be given as ``str`` or any path-like; they are kept as
    :class:`~pathlib.Path`. The files are read (once) when a :class:`Client` is made with them.

    Attributes:
        root_ca: CA that signed the server certificate (``None``: the system roots).
        cert: client certificate, for servers that require mutual TLS.
        key: the client certificate's private key (unencrypted: gRPC takes no password).
        server_name: overrides the name checked against the server certificate.

    Raises:
        ValueError: a client certificate without its key, or a key without its certificate.
    """

    root_ca: Path | PathLike | None = None
    cert: Path | PathLike | None = None
    key: Path | PathLike | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        for name in _TLS_FLAGS:
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str | os.PathLike):
                    raise TypeError(f"TlsFiles.{name} must be a path (str or path-like), got {type(value).__name__}")
                object.__setattr__(self, name, Path(value))
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise ValueError(f"TLS: a client {given} needs its {missing} too (mutual TLS takes both), or neither")

    def read(self) -> TlsBytes:
        """Read and check the files: their PEM bytes, ``None`` for those not given.

        Raises:
            OSError: a file cannot be read (the message names the field, its command-line flag and the path).
            ValueError: a file is not what its field needs: ``root_ca`` and ``cert`` PEM certificates (a
                ``-----BEGIN CERTIFICATE-----`` block that parses), ``key`` an unencrypted PEM private key
                (gRPC would otherwise fail every handshake with a bare ``UNAVAILABLE``, or abort the process).
        """
        return TlsBytes(self._read("root_ca"), self._read("key"), self._read("cert"))

    def _read(self, name: str) -> bytes | None:
        path = getattr(self, name)
        if path is None:
            return None
        label = f"TlsFiles.{name} ({_TLS_FLAGS[name]}) {path}"
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise type(error)(error.errno, f"{label}: cannot read it: {error.strerror}") from error
        if name == "key":
            if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
                raise ValueError(f"{label}: not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)")
            if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data:
                raise ValueError(f"{label}: the private key is encrypted, and gRPC takes no password; decrypt it")
            return data
        what = "the CA certificate" if name == "root_ca" else "the client certificate"
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ValueError(
                f"{label}: {what} is not PEM (no '-----BEGIN CERTIFICATE-----' block); convert a DER file with "
                "`openssl x509 -inform der -in FILE -out FILE.pem`"
            )
        try:
            ssl.create_default_context(cadata=data.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as error:
            raise ValueError(f"{label}: {what} does not parse as PEM certificates ({error})") from error
        return data


def add_tls_flags(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Add ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--tls-server-name`` (read by :func:`tls_from_flags`),
    each help text ending with ``note``."""
    parser.add_argument("--tls-ca", type=user_path, help=f"CA certificate: connect with TLS{note}")
    parser.add_argument("--tls-cert", type=user_path, help=f"client certificate, for mutual TLS{note}")
    parser.add_argument("--tls-key", type=user_path, help=f"client key, for mutual TLS{note}")
    parser.add_argument(
        "--tls-server-name",
        help=f"name to check the server certificate against, when it differs from the target host{note}",
    )


def tls_from_flags(args: argparse.Namespace) -> TlsFiles | None:
    """The TLS files the :func:`add_tls_flags` flags name, or ``None`` (a plaintext connection) when none is given."""
    if not (args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return TlsFiles(root_ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)
