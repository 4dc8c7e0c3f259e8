"""Whether the server can listen on an address it is told to, found out before the model loads."""

from __future__ import annotations

import errno
import socket


def listen_problem(listen: str) -> OSError | None:
    """Why the server cannot listen on ``listen`` (``host:port``, ``[v6]:port``) now, or ``None`` when it can.

    ``host`` is resolved and a probe socket is bound with ``SO_REUSEADDR`` (so connections of an earlier server still
    closing do not count) to each address it resolves to, as gRPC binds them.

    Returns:
        The resolver's error (a :class:`socket.gaierror`) when ``host`` does not resolve; an error with ``errno``
        ``EADDRINUSE`` when another process listens on one of the addresses; when no address can be bound, the
        first address's bind error (``EADDRNOTAVAIL``: ``host`` is not an address of this machine, ``EACCES``: a
        privileged port); ``None`` otherwise. A probe socket that cannot be made (IPv6 off in the kernel, say) is
        left to the listen itself, which may fall back to another family, and so is a ``port`` that is not a
        number (the configuration check refuses it).
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        return None
    try:
        addresses = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return error
    except UnicodeError as error:  # a host name the IDNA codec refuses (an empty label, a label too long)
        return socket.gaierror(socket.EAI_NONAME, f"not a valid host name: {error}")
    bound = False
    failures: list[OSError] = []
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return error
                failures.append(error)
            else:
                bound = True
    return failures[0] if failures and not bound else None
