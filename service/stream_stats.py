"""Per-stream statistics for operators (the ``Admin`` service): what a stream's answers were, and how fast.

:class:`StreamActivity` is kept on each :class:`~service.session.Session` and updated on the event loop as frames
are taken and answered; :func:`stream_stats` reads a session into a :class:`StreamStats`, the domain form of the
proto's ``StreamStats``. Memory per stream is bounded: the last :data:`RECENT_RESULTS` results' latencies and one
counter per second of the last :data:`RATE_WINDOW_S` seconds.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.errors import ErrorCode
from service.types import DropReason, FrameDropped, FrameError, FrameResult, StreamOptions

if TYPE_CHECKING:
    from service.session import Session

RECENT_RESULTS = 100
"""Results whose latencies the percentiles are taken over."""
RATE_WINDOW_S = 10
"""Seconds over which :attr:`StreamStats.results_per_s` is counted."""


class StreamStatus(enum.IntEnum):
    """Where a stream stands (proto ``StreamStatus``)."""

    UNSPECIFIED = 0  # a value this client does not know (a newer server's); never sent
    ATTACHED = 1
    DETACHED = 2
    HANDING_OFF = 3


@dataclass
class StreamActivity:
    """A stream's counts and recent timings, across the calls that serve it (kept on its session).

    Attributes:
        received: frames taken for processing.
        processed: frames answered with a result.
        dropped: frames answered with a ``FrameDropped``, by reason.
        errors: frames answered with a ``FrameError``, by code.
        unanswered: frames taken whose call ended (or was taken over) before they were answered.
        latencies_ms: the server's time per result (``LatencyBreakdown.total_ms``) of the last
            :data:`RECENT_RESULTS` results.
        capture_ages_ms: the age at answer (wall clock minus capture time) of the last :data:`RECENT_RESULTS`
            results that carried a capture time.
        results_by_second: ``[second, results answered in it]`` for the last :data:`RATE_WINDOW_S` seconds that had
            any (monotonic seconds).
    """

    received: int = 0
    processed: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    errors: Counter[ErrorCode] = field(default_factory=Counter)
    unanswered: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_RESULTS))
    capture_ages_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_RESULTS))
    results_by_second: deque[list[int]] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW_S))

    def taken(self) -> None:
        """A frame was taken for processing."""
        self.received += 1

    def answered(self, response: FrameResult | FrameDropped | FrameError, now: float, now_ns: int) -> None:
        """Count ``response``, answered at monotonic time ``now`` and wall-clock time ``now_ns``."""
        if isinstance(response, FrameDropped):
            self.dropped[response.reason] += 1
            return
        if isinstance(response, FrameError):
            self.errors[response.code] += 1
            return
        self.processed += 1
        self.latencies_ms.append(response.latency.total_ms)
        if response.capture_time_ns > 0:
            self.capture_ages_ms.append((now_ns - response.capture_time_ns) / 1e6)
        second = int(now)
        if self.results_by_second and self.results_by_second[-1][0] == second:
            self.results_by_second[-1][1] += 1
        else:
            self.results_by_second.append([second, 1])

    def results_per_s(self, now: float, open_s: float) -> float:
        """Results per second over about the last :data:`RATE_WINDOW_S` seconds before ``now`` (monotonic): the
        results of the current second so far and of the ``RATE_WINDOW_S - 1`` whole seconds before it, over the time
        those cover (``RATE_WINDOW_S - 1`` seconds and the current one's elapsed part), or over ``open_s``, the
        stream's life, when that is shorter (at least one second)."""
        first = int(now) - RATE_WINDOW_S + 1
        results = sum(count for second, count in self.results_by_second if second >= first)
        return results / max(1.0, min(now - first, open_s))


@dataclass(frozen=True)
class StreamStats:
    """One stream as the server holds it (proto ``StreamStats``; its comments give each field's meaning).

    Attributes:
        stream_id: the stream's id.
        model: the model serving it.
        model_version: that model's version.
        peer: the gRPC peer of the client that opened or last resumed it.
        status: attached, detached or handing off.
        options: the options it runs with.
        open_s: seconds since it was opened on this server.
        idle_s: seconds since a frame of it was last received or answered.
        detached_s: seconds since its call ended, while detached; 0 otherwise.
        reply_waiting_s: seconds its newest reply has waited for the client to read it; 0 when none waits.
        frames_received: frames taken for processing.
        frames_processed: frames answered with a result.
        frames_dropped: frames answered with a ``FrameDropped``.
        frame_errors: frames answered with a ``FrameError``.
        frames_in_flight: frames taken and not yet answered.
        frames_unanswered: frames taken whose call ended (or was taken over) before they were answered.
        dropped_by_reason: ``frames_dropped`` by reason, the reasons that occurred.
        errors_by_code: ``frame_errors`` by code, the codes that occurred.
        last_frame_index: the last frame folded into the state, ``None`` before the first.
        results_per_s: results per second, recently (:meth:`StreamActivity.results_per_s`).
        latency_p50_ms: median server time per result over the recent results; 0 before the first.
        latency_p99_ms: their 99th percentile.
        capture_age_p50_ms: median age at answer of the recent results that carried a capture time; 0 if none.
        state_bytes: bytes held by the state and its resume history.
    """

    stream_id: str
    model: str
    model_version: str
    peer: str
    status: StreamStatus
    options: StreamOptions
    open_s: float
    idle_s: float
    detached_s: float
    reply_waiting_s: float
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frame_errors: int
    frames_in_flight: int
    frames_unanswered: int
    dropped_by_reason: dict[DropReason, int]
    errors_by_code: dict[ErrorCode, int]
    last_frame_index: int | None
    results_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    capture_age_p50_ms: float
    state_bytes: int


def percentile(values: deque[float] | list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` at ``fraction`` (0.5: the median; 0.99 of fewer than 100 values:
    the largest); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def stream_status(session: Session) -> StreamStatus:
    """Where ``session`` stands."""
    if session.handing_off:
        return StreamStatus.HANDING_OFF
    return StreamStatus.ATTACHED if session.owner is not None else StreamStatus.DETACHED


def stream_stats(session: Session, now: float) -> StreamStats:
    """``session`` as :class:`StreamStats`, at time ``now`` of the session manager's clock (which its times were
    taken with)."""
    activity = session.activity
    open_s = max(0.0, now - session.opened_at)
    dropped, errors = sum(activity.dropped.values()), sum(activity.errors.values())
    return StreamStats(
        stream_id=session.stream_id,
        model=session.model,
        model_version=session.model_version,
        peer=session.peer,
        status=stream_status(session),
        options=session.options,
        open_s=open_s,
        idle_s=max(0.0, now - session.last_activity),
        detached_s=_since(now, session.detached_at),
        reply_waiting_s=_since(now, session.reply_waiting_since),
        frames_received=activity.received,
        frames_processed=activity.processed,
        frames_dropped=dropped,
        frame_errors=errors,
        frames_in_flight=session.inflight,
        frames_unanswered=activity.unanswered,
        dropped_by_reason=dict(sorted(activity.dropped.items())),
        errors_by_code=dict(sorted(activity.errors.items())),
        last_frame_index=session.last_frame_index,
        results_per_s=activity.results_per_s(now, open_s),
        latency_p50_ms=percentile(activity.latencies_ms, 0.5),
        latency_p99_ms=percentile(activity.latencies_ms, 0.99),
        capture_age_p50_ms=percentile(activity.capture_ages_ms, 0.5),
        state_bytes=session.state_bytes,
    )


def _since(now: float, then: float | None) -> float:
    """Seconds from ``then`` to ``now``; 0 when ``then`` is ``None``."""
    return 0.0 if then is None else max(0.0, now - then)
