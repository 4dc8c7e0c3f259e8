"""The :class:`~service.client.connection.Client` that the ``python -m service.client`` connection flags describe
(``--target``, ``--token``/``--token-file``, the TLS flags, ``--max-message-bytes``, ``--reconnect``), and the bearer
token those flags give."""

from __future__ import annotations

import argparse
import re

from service.client.connection import Client, check_token
from service.client.reconnection import RECONNECT_CHANNEL_OPTIONS
from service.client.tls import tls_from_flags
from service.grpc_limits import DEFAULT_MAX_MESSAGE_BYTES
from service.tokens import read_tokens


def client_from_args(args: argparse.Namespace) -> Client:
    """The client the connection flags describe.

    Raises:
        ValueError: ``--target`` names a host without a port on a plaintext connection (gRPC would quietly try
            443, the TLS port, where a TLS endpoint behind an ingress is fine); a token file that holds no token,
            or a token that cannot be sent (:func:`token_from_args`).
        OSError: a token or TLS file cannot be read.
    """
    tls = tls_from_flags(args)
    check_target(args.target)
    if tls is None and re.fullmatch(r"[\w.-]+", args.target):
        raise ValueError(
            f"--target {args.target}: give the server's port too, as in {args.target}:50051 (without one, gRPC "
            "uses 443, the TLS port)"
        )
    options = list(RECONNECT_CHANNEL_OPTIONS) if getattr(args, "reconnect", 0) else []
    max_message_bytes = getattr(args, "max_message_bytes", None) or DEFAULT_MAX_MESSAGE_BYTES
    return Client(
        args.target, token=token_from_args(args), tls=tls, max_message_bytes=max_message_bytes, channel_options=options
    )


def check_target(target: str) -> None:
    """Refuse a ``--target`` that is empty, or ``host:port`` with no host or a port outside 1-65535 (gRPC would take
    a port past 65535 modulo 65536, and reach another server). Other gRPC target forms (``dns:///``, ``unix:``)
    pass as they are.

    Raises:
        ValueError: naming the flag and what is wrong.
    """
    if not target.strip():
        raise ValueError("--target is empty: give the server's host:port, as in 127.0.0.1:50051")
    address = re.fullmatch(r"(\[[^\]]*\]|[^:/\[\]]*):(-?\d+)", target)
    if address is None:
        return
    host, port = address.group(1), int(address.group(2))
    if not host:
        raise ValueError(f"--target {target}: give the server's host too, as in 127.0.0.1{target}")
    if not 1 <= port <= 65535:
        raise ValueError(f"--target {target}: the port must be 1-65535, got {port}")


def token_from_args(args: argparse.Namespace) -> str | None:
    """The bearer token from ``--token``, or the first token of ``--token-file`` read as the server reads its
    ``--auth-token-file`` (:func:`service.tokens.read_tokens`: one token per line, blank lines and surrounding
    blanks ignored), so a client given the server's file while a rotation adds a second line sends the first.

    Raises:
        OSError: the token file cannot be read.
        ValueError: the token file is empty or not text, or the token cannot be sent
            (:func:`~service.client.connection.check_token`); the message names the flag.
    """
    if args.token_file is None:
        token: str | None = args.token
        flag = "--token"
    else:
        flag = f"--token-file {args.token_file}"
        try:
            token = read_tokens(args.token_file)[0]
        except OSError as error:
            raise type(error)(error.errno, f"{flag}: cannot read it: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{flag}: cannot read it as text ({error.reason} at byte {error.start})") from None
        except ValueError:
            raise ValueError(f"{flag} is empty") from None
    if token:
        try:
            check_token(token)
        except ValueError as error:
            raise ValueError(f"{flag}: {error}") from None
    return token
