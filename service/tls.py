"""Server TLS credentials that follow renewed certificate files.

Certificates in Kubernetes are renewed in place: cert-manager rewrites the Secret and the kubelet swaps the
mounted files atomically, without restarting the pod. :class:`ReloadingServerCredentials` gives gRPC a fetcher
that it calls before each new connection's handshake; when the files changed since the last load (their
modification time, size or inode), the new pair is checked and served to the connections that follow, and
connections already open keep the certificate they were made with. A pair is checked by gRPC itself before it
is served (:func:`service.tls_files.tls_file_problems`), because gRPC reports a pair it cannot use only in its own
log and keeps the previous one. A pair that does not load (a key that does not match its certificate, a file
caught half-written, a key type gRPC's TLS library cannot use) is logged once and the previous pair kept, so a
bad renewal never takes the server off the air and is never counted as a reload; the files are tried again when
they change.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from service.tls_files import tls_file_problems

_log = logging.getLogger(__name__)

_FileStamp = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino) of the file a path resolves to now


@dataclass(frozen=True)
class _LoadedFiles:
    stamps: tuple[_FileStamp | None, ...]
    configuration: grpc.ServerCertificateConfiguration


class TlsFilesError(ValueError):
    """The server's TLS files do not load (when the server listens, or when renewed files are checked); its
    message names the flags and files."""


class ReloadingServerCredentials:
    """gRPC server credentials read from PEM files, reloaded when the files change.

    Args:
        cert: the server's certificate chain (PEM).
        key: its private key (PEM, unencrypted).
        client_ca: CA certificates that client certificates must chain to; given, clients must present one
            (mutual TLS).

    Raises:
        TlsFilesError: the files do not load now (what ``ServiceConfig.check_files`` reports before this runs;
            files changed since then).
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()  # gRPC may call the fetcher from several handshakes at once
        loaded = self._load()
        if loaded is None:
            raise TlsFilesError(f"--tls-cert {cert} / --tls-key {key}: the files changed while they were read")
        self._loaded = loaded
        self._rejected: tuple[_FileStamp | None, ...] | None = None  # files that failed to load, warned once
        self.reloads = 0
        """How many times renewed files were taken up since the server started."""

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port``, serving the files' current pair to every new connection."""
        return grpc.dynamic_ssl_server_credentials(
            self._loaded.configuration,
            self._fetch,
            require_client_authentication=self.client_ca is not None,
        )

    def _paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)

    def _stamps(self) -> tuple[_FileStamp | None, ...]:
        stamps: list[_FileStamp | None] = []
        for path in self._paths():
            try:
                status = os.stat(path)  # follows the symbolic links a mounted Secret is made of
            except OSError:
                stamps.append(None)
            else:
                stamps.append((status.st_mtime_ns, status.st_size, status.st_ino))
        return tuple(stamps)

    def _load(self) -> _LoadedFiles | None:
        """Check and read the files; ``None`` when they changed while being read (read again later).

        Raises:
            TlsFilesError: a file is missing or does not hold a usable PEM certificate, key or CA bundle.
        """
        before = self._stamps()
        if problems := tls_file_problems(self.cert, self.key, self.client_ca):
            raise TlsFilesError("; ".join(problems))
        try:
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
            ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        except OSError as error:
            raise TlsFilesError(f"--tls-cert {self.cert} / --tls-key {self.key}: {error}") from error
        if self._stamps() != before:
            return None
        configuration = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        return _LoadedFiles(before, configuration)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: the new configuration when the files changed and load, else ``None`` (keep serving
        the current one)."""
        with self._lock:
            stamps = self._stamps()
            if stamps in (self._loaded.stamps, self._rejected):
                return None
            try:
                loaded = self._load()
            except ValueError as error:
                self._rejected = stamps
                _log.warning("renewed TLS files do not load; serving the previous certificate (%s)", error)
                return None
            if loaded is None:
                return None
            self._loaded = loaded
            self.reloads += 1
            _log.info("TLS certificate reloaded", extra={"cert": str(self.cert)})
            return loaded.configuration
