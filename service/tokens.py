"""Bearer tokens read from a file, taken up again when the file changes, so tokens rotate without a restart.

The file holds one token per line (blank lines and surrounding spaces ignored); a call may present any of them.
Rotating a token is three steps: add the new token as a second line, move the clients to it, remove the old
line. A mounted Kubernetes Secret works: the file is looked at through the symbolic links the kubelet swaps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino) of the file the path resolves to now


def read_tokens(path: Path) -> tuple[str, ...]:
    """The tokens in ``path``, one per non-blank line.

    Raises:
        OSError: the file cannot be read.
        ValueError: it holds no token.
    """
    tokens = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tokens


_NOTHING_REFUSED = object()
"""No status refused yet (not ``None``, which is the status of a deleted file: deleting it must warn too)."""


class TokenFile:
    """The tokens of a file, read again when the file changes (looked at no more than every ``check_every_s``).

    A file that cannot be read or holds no token while the server runs keeps the tokens read last (a half-written
    Secret must not lock every client out), with a warning, once per change of the file.

    Args:
        path: the token file.
        check_every_s: how often, at most, the file's status is looked at.
        clock: monotonic time in seconds (tests pass their own).

    Raises:
        OSError, ValueError: as :func:`read_tokens`, for the first reading.
    """

    def __init__(self, path: Path, check_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._clock = clock
        self._stamp = self._status()
        self._tokens = tuple(token.encode() for token in read_tokens(path))
        self._checked = clock()
        self._refused: object = _NOTHING_REFUSED  # the status of a file last refused (None: a deleted file)
        self.reloads = 0
        """How many times a changed file was taken up since it was first read."""

    def current(self) -> tuple[bytes, ...]:
        """The tokens a call may present now."""
        now = self._clock()
        if now - self._checked >= self._check_every_s:
            self._checked = now
            stamp = self._status()
            if stamp != self._stamp and stamp != self._refused:
                self._reload(stamp)
        return self._tokens

    def _reload(self, stamp: _Stamp | None) -> None:
        try:
            tokens = read_tokens(self.path)
        except (OSError, ValueError) as error:
            self._refused = stamp
            _log.warning("kept the previous bearer tokens: %s cannot be used (%s)", self.path, error)
            return
        self._tokens = tuple(token.encode() for token in tokens)
        self._stamp, self._refused = stamp, _NOTHING_REFUSED
        self.reloads += 1
        _log.info("reloaded the bearer tokens", extra={"path": str(self.path), "tokens": len(tokens)})

    def _status(self) -> _Stamp | None:
        try:
            status = os.stat(self.path)  # follows the symbolic links a mounted Secret is made of
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino
