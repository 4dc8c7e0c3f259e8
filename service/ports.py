"""Whether an address the server is told to listen on is already taken, found out before the model loads."""

from __future__ import annotations

import errno
import socket


def address_in_use(listen: str) -> bool:
    """Whether another process listens on ``listen`` (``host:port``, ``[v6]:port``) now.

    A probe socket is bound with ``SO_REUSEADDR`` (so connections of an earlier server still closing do not count)
    to every address ``host`` resolves to. Port 0, an address that does not resolve, or any other bind error
    count as not in use: the listen itself reports them.
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return False
    try:
        addresses = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    for family, kind, protocol, _, address in addresses:
        try:
            with socket.socket(family, kind, protocol) as probe:  # may fail too: IPv6 off in the kernel, say
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
    return False
