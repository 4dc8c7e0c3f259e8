"""Error codes and the two exceptions that carry them: one frame's error, and a stream-ending error.

The numeric values mirror ``slotstream.v1.ErrorCode`` in the proto (a test keeps them in sync). These
types know nothing about gRPC; the servicer maps :class:`StreamAbort` to a status code.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Machine-readable error codes (see ``ErrorCode`` in ``proto/slotstream/v1/perception.proto``)."""

    UNSPECIFIED = 0  # a value this client does not know (a newer server's); never sent
    UNDECODABLE_IMAGE = 1
    WRONG_RAW_SIZE = 2
    EMPTY_IMAGE = 3
    IMAGE_TOO_LARGE = 4
    WRONG_CHANNELS = 5
    FRAME_INDEX_NOT_INCREASING = 6
    UNKNOWN_ENCODING = 7
    INFERENCE_FAILED = 8
    CAMERA_FRAME_ID_TOO_LONG = 9
    SHARED_MEMORY_UNAVAILABLE = 10
    NOT_OPEN = 20
    ALREADY_OPEN = 21
    INVALID_OPEN = 22
    UNKNOWN_MODEL = 23
    UNKNOWN_STREAM = 24
    STREAM_EXPIRED = 25
    STREAM_ID_IN_USE = 26
    WRONG_RESUME_TOKEN = 27
    RESUME_POINT_UNAVAILABLE = 28
    HANDOFF_MISMATCH = 29
    TOO_MANY_STREAMS = 30
    NOT_READY = 31
    SHUTTING_DOWN = 32
    TAKEN_OVER = 33
    UNAUTHENTICATED = 34
    MALFORMED_REQUEST = 35
    CLIENT_NOT_READING = 36
    ADMIN_API_OFF = 37
    MODEL_LOAD_FAILED = 38
    ENDED_BY_OPERATOR = 39

    @property
    def wire_name(self) -> str:
        """The proto enum value name, e.g. ``ERROR_CODE_STREAM_EXPIRED``."""
        return f"ERROR_CODE_{self.name}"

    def __str__(self) -> str:
        """The name (``STREAM_EXPIRED``), which a message should show, not the number (``int(code)`` is that)."""
        return self.name

    def __format__(self, spec: str) -> str:
        """The name for ``f"{code}"`` (and string specs such as ``f"{code:>20}"``); a numeric spec such as
        ``f"{code:d}"`` formats the number."""
        if spec and spec[-1] in "bcdeEfFgGnoxX%":
            return int.__format__(self, spec)
        return format(self.name, spec)


ENDED_BY_THE_SERVER = frozenset(
    {ErrorCode.SHUTTING_DOWN, ErrorCode.TAKEN_OVER, ErrorCode.CLIENT_NOT_READING, ErrorCode.ENDED_BY_OPERATOR}
)
"""Codes with which the server ends a call on its own account (a drain, a resume elsewhere, a client that stopped
reading, an operator's ``Admin.EndStream``), not refusals."""

FRAME_ERROR_CODES = tuple(code for code in ErrorCode if ErrorCode.UNSPECIFIED < code < ErrorCode.NOT_OPEN)
"""The codes of a ``FrameError`` (one frame's problem; the stream continues)."""

STREAM_ERROR_CODES = tuple(code for code in ErrorCode if code >= ErrorCode.NOT_OPEN)
"""The codes that end a call (a :class:`StreamAbort`)."""

ADMIN_ONLY_CODES = frozenset({ErrorCode.ADMIN_API_OFF, ErrorCode.MODEL_LOAD_FAILED})
"""Codes only calls of the ``Admin`` service end with, never a ``Stream`` or ``Describe`` call."""


class FrameRejected(Exception):
    """One frame cannot be processed; it is answered in-band and the stream continues.

    Attributes:
        code: what kind of problem.
        message: what was wrong, for a person.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamAbort(Exception):
    """The stream cannot continue; the RPC ends with the status that :attr:`code` maps to.

    Attributes:
        code: what kind of problem.
        message: what was wrong and what to do, for a person.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 15] + " ... (cut here)"
        super().__init__(message)
        self.code = code
        self.message = message


QUOTED_CHARS = 140
"""How much of a client-supplied string an error message quotes."""

MAX_MESSAGE_CHARS = 2048
"""Longest status message sent: it travels in the ``grpc-message`` trailer, which gRPC caps at 16 KiB (a longer
one replaces the status with a transport error)."""


def quoted(value: str) -> str:
    """``repr(value)`` of at most :data:`QUOTED_CHARS` characters of ``value``, marked when cut.

    Error messages quote names the client sent (stream ids, model names) through this, so a long name cannot
    push the message past the trailer limit.
    """
    if len(value) <= QUOTED_CHARS:
        return repr(value)
    return f"{value[:QUOTED_CHARS]!r}... ({len(value)} characters)"
