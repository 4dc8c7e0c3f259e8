"""What in a :class:`~service.config.ServiceConfig` works against the server without making it invalid, for the
start-up log: more memory for clients than the server may use (:func:`memory_warnings`), tracing settings that trace
nothing (:func:`tracing_warnings`), and bearer tokens exposed (:func:`security_warnings`); and the tokens its token
files hold (:func:`file_tokens`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from service.config_checks import DEFAULT_TRACE_SAMPLE_RATIO, ConfigError
from service.host import memory_limit_bytes
from service.tokens import MIN_TOKEN_CHARS, TokenFileError, read_token_lines, short_token_warning

if TYPE_CHECKING:
    from service.config import ServiceConfig

MAX_ADMIN_CALLS = 4
"""``Admin`` calls held at once (operators' tools: a listing, a ``--watch``, an ``EndStream``, a reload), counted
apart from ``--max-calls`` (:class:`~service.call_limit.CallLimitInterceptor`)."""


def memory_warnings(config: ServiceConfig, memory_limit: int | None = None) -> list[str]:
    """What in ``config`` lets clients take more memory than the server may use: the messages being received by
    every call at once (its ``resolved_max_calls``, and :data:`MAX_ADMIN_CALLS` with the Admin service on, x
    ``--max-message-bytes``: a stream's frame, or a call's open with a hand-off state) plus the replies they may
    hold (its ``reply_budget_bytes``) beyond half of ``memory_limit`` (``None``:
    :func:`~service.host.memory_limit_bytes`; the other half is for the server itself, its model, decoding
    and gRPC's buffers). Empty when no limit can be read."""
    limit = memory_limit_bytes() if memory_limit is None else memory_limit
    if limit is None:
        return []
    admin_calls = MAX_ADMIN_CALLS if config.admin_token_file is not None else 0
    calls = config.resolved_max_calls + admin_calls
    receiving = calls * config.max_message_bytes
    replies = config.reply_budget_bytes(limit)
    if receiving + replies <= limit // 2:
        return []
    mib = 1024 * 1024
    return [
        f"{calls} calls receiving messages of up to {config.max_message_bytes // mib} MiB (--max-calls, by "
        f"default --max-streams + 8{f', and {admin_calls} Admin calls' if admin_calls else ''}, x "
        f"--max-message-bytes: {receiving // mib} MiB) and holding "
        f"{replies // mib} MiB of replies (--max-total-buffered-reply-bytes) could use more than half of the "
        f"{limit // mib} MiB this server may use, and an out-of-memory kill ends every stream: lower "
        "--max-message-bytes to the largest frame your clients send, --max-streams or --max-calls, or the reply "
        "budget (deploy/README.md, Memory)"
    ]


def tracing_warnings(config: ServiceConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Tracing settings of ``config`` that trace nothing: a ``--trace-sample-ratio`` set without
    ``--otlp-endpoint``, or OpenTelemetry's standard endpoint variable (in ``environ``, default ``os.environ``),
    which this server does not take for its endpoint: tracing starts with ``--otlp-endpoint`` alone."""
    if config.otlp_endpoint:
        return []
    environ = os.environ if environ is None else environ
    warnings = []
    if config.trace_sample_ratio != DEFAULT_TRACE_SAMPLE_RATIO:
        warnings.append(
            f"--trace-sample-ratio {config.trace_sample_ratio:g} is set, but no frame is traced without "
            "--otlp-endpoint"
        )
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        if environ.get(name):
            warnings.append(
                f"{name} is set, but this server traces frames only with --otlp-endpoint "
                "(SLOTSTREAM_OTLP_ENDPOINT): no frame is traced"
            )
    return warnings


def security_warnings(config: ServiceConfig) -> list[str]:
    """What in ``config`` exposes a bearer token (a client's, ``--auth-token``/``--auth-token-file``, or
    an operator's, ``--admin-token-file``): a token required over plaintext on an address other machines reach
    (it crosses the network readable), a token file every user of the machine may read, a token shorter than
    :data:`~service.tokens.MIN_TOKEN_CHARS` characters (it may be guessed), or an admin token that is also a
    client token (every client holding it may list and end the streams and reload the model)."""
    files = (("--auth-token-file", config.auth_token_file), ("--admin-token-file", config.admin_token_file))
    token_files = [(flag, path) for flag, path in files if path is not None]
    if not (config.auth_token or token_files):
        return []
    warnings = []
    host = config.listen.rpartition(":")[0].strip("[]")
    if config.tls_cert is None and host not in ("127.0.0.1", "::1", "localhost"):
        who = "clients" if config.auth_token or config.auth_token_file else "Admin calls"
        warnings.append(
            f"{who} must send a bearer token, but TLS is off on --listen {config.listen}: the token crosses the "
            "network in plain text; set --tls-cert and --tls-key, or terminate TLS in front of the server"
        )
    for flag, path in token_files:
        warnings += token_file_warnings(flag, path)
    if config.auth_token and len(config.auth_token) < MIN_TOKEN_CHARS:
        warnings.append(
            f"--auth-token is {len(config.auth_token)} characters, shorter than {MIN_TOKEN_CHARS} (under about 128 "
            "bits), a token that may be guessed; use a long random one (`openssl rand -base64 32` makes 44 "
            "characters)"
        )
    if config.admin_token_file is not None and (config.auth_token or config.auth_token_file):
        try:
            shared = set(config.admin_tokens()) & set(config.bearer_tokens())
        except ConfigError:
            shared = set()  # the start-up reading reports the file
        if shared:
            warnings.append(
                f"--admin-token-file {config.admin_token_file} holds {len(shared)} token(s) that clients may also "
                "present (the client tokens): every client holding one may list the streams and their peers, "
                "end any stream and reload the model; give operators tokens of their own"
            )
    return warnings


def file_tokens(flag: str, path: Path) -> tuple[str, ...]:
    """The tokens of the token file ``path`` given as ``--flag`` (:func:`service.tokens.read_token_lines`).

    Raises:
        ConfigError: the file cannot be read, holds no token, or holds a line no client can send, naming the flag,
            the file and the line, never the token.
    """
    try:
        return tuple(token for _, token in read_token_lines(path))
    except OSError as error:
        raise ConfigError(f"--{flag} {path}: {error.strerror}") from error
    except TokenFileError as error:
        if error.line is None:
            raise ConfigError(f"--{flag} {path} is empty: it holds no token") from None
        raise ConfigError(f"--{flag} {error}") from None


def token_file_warnings(flag: str, path: Path) -> list[str]:
    """The warnings about the token file ``path`` of ``flag``: readable by every user of the machine, or holding
    tokens shorter than :data:`~service.tokens.MIN_TOKEN_CHARS` characters. A file that cannot be read gets none
    (the start-up reading reports it)."""
    warnings = []
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & stat.S_IROTH:
        warnings.append(
            f"{flag} {path} can be read by every user of this machine (mode {stat.S_IMODE(mode):o}): make it readable "
            "by the server's user alone (chmod 600)"
        )
    try:
        lines = read_token_lines(path)
    except (OSError, TokenFileError):
        lines = ()
    if (short := short_token_warning(f"{flag} {path}", lines)) is not None:
        warnings.append(short)
    return warnings


__all__ = [
    "MAX_ADMIN_CALLS",
    "file_tokens",
    "memory_warnings",
    "security_warnings",
    "token_file_warnings",
    "tracing_warnings",
]
