"""Whether the server can listen on an address it is told to, found out before the model loads, and the refusal
said when it cannot."""

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


class ListenError(Exception):
    """The server cannot listen on a configured address (a port another process holds, a host name that does not
    resolve, an address that is not this machine's)."""


def check_listen_address(flag: str, address: str) -> None:
    """Refuse, before the model loads, an ``address`` (given with ``flag``) that the server cannot listen on now.

    Raises:
        ListenError: naming the flag, the address and the system's reason (see :func:`listen_problem`).
    """
    problem = listen_problem(address)
    if problem is None:
        return
    if problem.errno == errno.EADDRINUSE:
        raise ListenError(
            f"{flag} {address}: the port is in use (another process listens there): stop that process, or choose "
            f"another port with {flag} HOST:PORT"
        )
    host = address.rpartition(":")[0]
    if isinstance(problem, socket.gaierror):
        raise ListenError(f"{flag} {address}: cannot resolve the host {host} ({problem.strerror})")
    hint = ""
    if problem.errno == errno.EADDRNOTAVAIL:
        hint = f": {host} is not an address of this machine (listen on one of its addresses, or 0.0.0.0 for all)"
    raise ListenError(f"{flag} {address}: cannot listen there ({problem.strerror}){hint}")
