"""Conversion between :class:`~service.stream_stats.StreamStats` and the proto's ``StreamStats`` (the ``Admin``
service), both ways: the server sends them, the client reads them."""

from __future__ import annotations

from typing import Any

from service.errors import ErrorCode
from service.generated import pb
from service.stream_stats import StreamStats, StreamStatus
from service.types import DropReason
from service.wire import known_member, options_from_proto, options_to_proto, proto_enum


def stats_to_proto(stats: StreamStats) -> Any:
    """``stats`` as a proto ``StreamStats``."""
    message = pb.StreamStats(
        stream_id=stats.stream_id,
        model=stats.model,
        model_version=stats.model_version,
        peer=stats.peer,
        status=proto_enum(pb.StreamStatus, stats.status),
        options=options_to_proto(stats.options),
        open_s=stats.open_s,
        idle_s=stats.idle_s,
        detached_s=stats.detached_s,
        reply_waiting_s=stats.reply_waiting_s,
        frames_received=stats.frames_received,
        frames_processed=stats.frames_processed,
        frames_dropped=stats.frames_dropped,
        frame_errors=stats.frame_errors,
        frames_in_flight=stats.frames_in_flight,
        frames_unanswered=stats.frames_unanswered,
        dropped_by_reason=[
            pb.DropCount(reason=proto_enum(pb.DropReason, reason), count=count)
            for reason, count in stats.dropped_by_reason.items()
        ],
        errors_by_code=[
            pb.FrameErrorCount(code=proto_enum(pb.ErrorCode, code), count=count)
            for code, count in stats.errors_by_code.items()
        ],
        results_per_s=stats.results_per_s,
        latency_p50_ms=stats.latency_p50_ms,
        latency_p99_ms=stats.latency_p99_ms,
        capture_age_p50_ms=stats.capture_age_p50_ms,
        state_bytes=stats.state_bytes,
    )
    if stats.last_frame_index is not None:
        message.last_frame_index = stats.last_frame_index
    return message


def stats_from_proto(message: Any) -> StreamStats:
    """A proto ``StreamStats`` as :class:`StreamStats`; enum values this client does not know (a newer server's)
    become their ``UNSPECIFIED`` member, their counts added up under it."""
    dropped: dict[DropReason, int] = {}
    for entry in message.dropped_by_reason:
        reason = known_member(DropReason, entry.reason)
        dropped[reason] = dropped.get(reason, 0) + entry.count
    errors: dict[ErrorCode, int] = {}
    for entry in message.errors_by_code:
        code = known_member(ErrorCode, entry.code)
        errors[code] = errors.get(code, 0) + entry.count
    return StreamStats(
        stream_id=message.stream_id,
        model=message.model,
        model_version=message.model_version,
        peer=message.peer,
        status=known_member(StreamStatus, message.status),
        options=options_from_proto(message.options),
        open_s=message.open_s,
        idle_s=message.idle_s,
        detached_s=message.detached_s,
        reply_waiting_s=message.reply_waiting_s,
        frames_received=message.frames_received,
        frames_processed=message.frames_processed,
        frames_dropped=message.frames_dropped,
        frame_errors=message.frame_errors,
        frames_in_flight=message.frames_in_flight,
        frames_unanswered=message.frames_unanswered,
        dropped_by_reason=dropped,
        errors_by_code=errors,
        last_frame_index=message.last_frame_index if message.HasField("last_frame_index") else None,
        results_per_s=message.results_per_s,
        latency_p50_ms=message.latency_p50_ms,
        latency_p99_ms=message.latency_p99_ms,
        capture_age_p50_ms=message.capture_age_p50_ms,
        state_bytes=message.state_bytes,
    )
