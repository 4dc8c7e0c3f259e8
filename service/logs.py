"""Structured logging: one JSON object per line (or plain text), with the ``extra`` fields of each record."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time (UTC, ISO 8601 with milliseconds and ``Z``), level, logger, message, the
    record's extra fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """See :meth:`logging.Formatter.format`."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain text with the extra fields appended as ``key=value`` (logfmt): a value with a space, ``=``, a quote
    or a control character is written as a JSON string, so a client-supplied value cannot pose as more fields."""

    def format(self, record: logging.LogRecord) -> str:
        """See :meth:`logging.Formatter.format`; the fields go on the message's line, a traceback after it."""
        extra = " ".join(f"{k}={_logfmt(v)}" for k, v in vars(record).items() if k not in _STANDARD)
        exc_info, exc_text, stack_info = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None  # the first line alone
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = exc_info, exc_text, stack_info
        lines = [f"{text} {extra}" if extra else text]
        if exc_info:
            lines.append(exc_text or self.formatException(exc_info))
        if stack_info:
            lines.append(self.formatStack(stack_info))
        return "\n".join(lines)


def _logfmt(value: object) -> str:
    """``value`` as a logfmt value: as is when it is one plain word, else quoted and escaped as a JSON string."""
    text = str(value)
    if text and not any(char.isspace() or char in '="\\' or not char.isprintable() for char in text):
        return text
    return json.dumps(text)


def configure_logging(level: str, fmt: str) -> None:
    """Send all logs to stderr as ``fmt`` (``json`` or ``text``) at ``level``, Python warnings included (a plugin's
    version warning, say, as one record of the ``py.warnings`` logger with ``category`` and ``source`` fields, not
    as raw lines inside a JSON log); call once, from ``main``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    warnings.showwarning = _log_warning


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A :func:`warnings.showwarning` that logs the warning as one record (the warnings filters still apply)."""
    del file, line  # the record goes to the log's handler; the source line would only add noise
    logging.getLogger("py.warnings").warning(
        str(message), extra={"category": category.__name__, "source": f"{filename}:{lineno}"}
    )


GRPC_CORE_LOGGER = "grpc._cython.cygrpc"
"""The logger gRPC's asyncio server reports its core's errors on."""

_DEPARTED_CLIENT = "ExecuteBatchError raised in core by servicer method"
"""How gRPC logs a reply it could no longer send: the call ended (the client cancelled, died or was cut off)
while the reply waited in flow control."""


class ClientDepartureFilter(logging.Filter):
    """Turns gRPC's error record for a reply it could no longer send (:data:`_DEPARTED_CLIENT`, an ERROR with a
    core traceback) into one INFO line: the client went away while replies to it waited, a routine event whose
    stream is detached or freed like any dropped connection's. Other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        """See :meth:`logging.Filter.filter`; rewrites the record in place."""
        message = record.getMessage()
        if record.levelno >= logging.ERROR and message.startswith(_DEPARTED_CLIENT):
            method = message[len(_DEPARTED_CLIENT) :].strip()
            record.msg, record.args = "a client went away while replies to it waited", None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
            record.method = method.strip("[]")
        return True


def quiet_client_departures() -> None:
    """Install :class:`ClientDepartureFilter` on gRPC's core logger (once: calling again changes nothing)."""
    core = logging.getLogger(GRPC_CORE_LOGGER)
    if not any(isinstance(f, ClientDepartureFilter) for f in core.filters):
        core.addFilter(ClientDepartureFilter())


WARNING_INTERVAL_S = 10.0
"""At most one warning per this many seconds for each kind of refusal (a misbehaving client would flood the log)."""


class RateLimitedWarning:
    """Logs a warning at most once per ``interval_s`` for each key, saying how many events the line stands for.

    The first event of a key is logged at once; events within ``interval_s`` of the last line for that key are only
    counted, and the next line logged for the key carries their number (itself included) in its ``count_field``.
    Events never logged because none followed the interval are lost from the log, not from the metrics that count
    them. Keys must come from a bounded set (error codes), never from clients. Safe to call from several threads.

    Args:
        logger: where to log.
        message: the warning's message (the same for every key: the fields say what happened).
        count_field: the extra field holding how many events the line stands for.
        interval_s: the least time between two lines of one key.
        clock: monotonic clock (injectable for tests).
    """

    level = logging.WARNING
    """The level of the lines."""
    with_traceback = False
    """Whether a line carries the traceback of the exception being handled (call it in an ``except`` block)."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        count_field: str,
        interval_s: float = WARNING_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._count_field = count_field
        self._interval_s = interval_s
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}  # key -> (time of its last line, events not logged since)
        self._lock = threading.Lock()

    def __call__(self, key: str, **fields: Any) -> bool:
        """Record one event of ``key`` and log it with ``fields`` (as extra fields) unless a line for ``key`` was
        logged less than ``interval_s`` ago; returns whether a line was logged."""
        with self._lock:
            now = self._clock()
            logged_at, unlogged = self._state.get(key, (-math.inf, 0))
            unlogged += 1
            if now - logged_at < self._interval_s:
                self._state[key] = (logged_at, unlogged)
                return False
            self._state[key] = (now, 0)
        extra = {**fields, self._count_field: unlogged}
        self._logger.log(self.level, self._message, exc_info=self.with_traceback, extra=extra)
        return True


class RateLimitedError(RateLimitedWarning):
    """:class:`RateLimitedWarning` at level ERROR with the traceback of the exception being handled: a failure
    that repeats on every frame logs its traceback once per ``interval_s``, the line counting the failures it
    stands for."""

    level = logging.ERROR
    with_traceback = True
