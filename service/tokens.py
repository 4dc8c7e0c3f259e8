"""Bearer tokens read from a file, taken up again when the file changes, so tokens rotate without a restart.

The file holds one token per line (blank lines and surrounding spaces ignored); a call may present any of them.
Rotating a token is three steps: add the new token as a second line, move the clients to it, remove the old
line. A mounted Kubernetes Secret works: the file is looked at through the symbolic links the kubelet swaps.

The server reads the file with :func:`read_token_lines`, which refuses a line no client can send (a character
outside printable ASCII ``!`` .. ``~``: a UTF-8 byte-order mark, a space inside the line), naming the file and the
line, never the token. A token shorter than :data:`MIN_TOKEN_CHARS` is warned about (:func:`short_token_warning`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino) of the file the path resolves to now

MIN_TOKEN_CHARS = 22
"""Tokens shorter than this are warned about: 22 random base64 characters hold about 128 bits."""

_CHARACTER_NAMES = {
    " ": "a space",
    "\t": "a tab",
    "\r": "a carriage return",
    "\ufeff": "a byte-order mark (U+FEFF, which some editors write at the start of a UTF-8 file)",
}
"""What the refusal of a token line calls the characters it names by more than their code point."""


class TokenFileError(ValueError):
    """A token file holds no token, or a line that is not a token a client can send (the message names the file and
    the line, never the token).

    Attributes:
        line: the line refused (from 1), or ``None`` when the file holds no token.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_tokens(path: Path) -> tuple[str, ...]:
    """The tokens in ``path``, one per non-blank line, as they are (the client's ``--token-file``, which checks the
    token it sends itself; the server reads its file with :func:`read_token_lines`).

    Raises:
        OSError: the file cannot be read.
        ValueError: it holds no token.
    """
    tokens = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tokens


def read_token_lines(path: Path) -> tuple[tuple[int, str], ...]:
    """The tokens in ``path`` with their line numbers (from 1), one per non-blank line, surrounding blanks ignored:
    what a server accepts.

    Every token must be printable ASCII (``!`` .. ``~``): gRPC sends it as metadata, and a token (RFC 6750) has no
    spaces, so a line holding anything else (a UTF-8 byte-order mark, ``tok1 tok2``, a non-ASCII letter) is a token
    no client can send, and is refused rather than accepted silently.

    Raises:
        OSError: the file cannot be read.
        TokenFileError: it holds no token, is not UTF-8 text, or a line holds a character outside ``!`` .. ``~``;
            the message names the file, the line and the character's position, never the token.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data.count(b"\n", 0, error.start) + 1
        raise TokenFileError(f"{path} line {bad} is not UTF-8 text (a token is printable ASCII)", bad) from None
    tokens = []
    for number, line in enumerate(text.split("\n"), start=1):
        token = line.strip()
        if not token:
            continue
        for position, character in enumerate(token):
            if not "!" <= character <= "~":
                what = _CHARACTER_NAMES.get(character, f"the character U+{ord(character):04X}")
                raise TokenFileError(
                    f"{path} line {number}: the token holds {what} at position {position}, so no client can send it "
                    "(a token is printable ASCII, '!' to '~', without spaces): fix or remove the line",
                    number,
                )
        tokens.append((number, token))
    if not tokens:
        raise TokenFileError(f"{path} holds no token")
    return tuple(tokens)


def short_token_warning(source: str, lines: Sequence[tuple[int, str]]) -> str | None:
    """A warning about the tokens of ``lines`` (line number, token) shorter than :data:`MIN_TOKEN_CHARS`, or
    ``None`` when there is none; ``source`` names where they come from (``--auth-token-file PATH``). It names the
    lines and lengths, never a token."""
    short = [f"line {number} ({len(token)} characters)" for number, token in lines if len(token) < MIN_TOKEN_CHARS]
    if not short:
        return None
    return (
        f"{source}: {', '.join(short)}: shorter than {MIN_TOKEN_CHARS} characters (under about 128 bits), a token "
        "may be guessed; use a long random one (`openssl rand -base64 32` makes 44 characters)"
    )


_NOTHING_REFUSED = object()
"""No status refused yet (not ``None``, which is the status of a deleted file: deleting it must warn too)."""


class TokenFile:
    """The tokens of a file (:func:`read_token_lines`), read again when the file changes (looked at no more than
    every ``check_every_s``).

    A file that cannot be read, holds no token or holds a line that is no token while the server runs keeps the
    tokens read last (a half-written Secret must not lock every client out), with a warning, once per change of the
    file. A reload that takes up tokens shorter than :data:`MIN_TOKEN_CHARS` warns about them.

    Args:
        path: the token file.
        check_every_s: how often, at most, the file's status is looked at.
        clock: monotonic time in seconds (tests pass their own).
        on_reload: called with the tokens a reload took up once the file has settled: at the first look after
            the reload that finds it unchanged (the server then ends the calls authenticated with a token no longer
            among them, so a file caught half-written, which new calls may meet for a moment, ends none).

    Raises:
        OSError, TokenFileError: as :func:`read_token_lines`, for the first reading.
    """

    def __init__(
        self,
        path: Path,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[tuple[bytes, ...]], object] | None = None,
    ) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self._clock = clock
        self._on_reload = on_reload
        self._stamp = self._status()
        self._tokens = tuple(token.encode() for _, token in read_token_lines(path))
        self._checked = clock()
        self._refused: object = _NOTHING_REFUSED  # the status of a file last refused (None: a deleted file)
        self._unsettled = False  # a reload took up tokens on_reload was not yet called with
        self.reloads = 0
        """How many times a changed file was taken up since it was first read."""

    def current(self) -> tuple[bytes, ...]:
        """The tokens a call may present now (the file is looked at first if ``check_every_s`` has passed)."""
        if self._clock() - self._checked >= self.check_every_s:
            self.check()
        return self._tokens

    def check(self) -> None:
        """Look at the file now, and take it up again if it changed."""
        self._checked = self._clock()
        stamp = self._status()
        if stamp != self._stamp and stamp != self._refused:
            self._reload(stamp)
        elif self._unsettled and stamp == self._stamp:
            self._unsettled = False
            if self._on_reload is not None:
                self._on_reload(self._tokens)

    async def watch(self) -> None:
        """Look at the file every ``check_every_s``, forever (cancel the task to stop): a token removed from the
        file is then taken away from the calls it authenticated though no new call arrives to look at it."""
        while True:
            await asyncio.sleep(self.check_every_s)
            try:
                self.check()
            except Exception:  # a failure must not end the watch, and with it every later revocation
                _log.exception("looking at the bearer token file failed", extra={"path": str(self.path)})

    def _reload(self, stamp: _Stamp | None) -> None:
        try:
            lines = read_token_lines(self.path)
        except (OSError, ValueError) as error:
            self._refused = stamp
            _log.warning("kept the previous bearer tokens: %s cannot be used (%s)", self.path, error)
            return
        self._tokens = tuple(token.encode() for _, token in lines)
        self._stamp, self._refused = stamp, _NOTHING_REFUSED
        self.reloads += 1
        _log.info("reloaded the bearer tokens", extra={"path": str(self.path), "tokens": len(lines)})
        if (warning := short_token_warning(str(self.path), lines)) is not None:
            _log.warning(warning)
        self._unsettled = True  # on_reload once the file is seen unchanged (check)

    def _status(self) -> _Stamp | None:
        try:
            status = os.stat(self.path)  # follows the symbolic links a mounted Secret is made of
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino
