"""What ``python -m service.client streams`` prints: the streams a server holds as a table, one stream in full, or
either as JSON (:class:`~service.stream_stats.StreamStats` with enum members by name)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from service.stream_stats import StreamStats

_COLUMNS = (
    ("STREAM", lambda s: s.stream_id),
    ("MODEL", lambda s: f"{s.model}@{s.model_version[:12]}"),
    ("PEER", lambda s: s.peer),
    ("STATUS", lambda s: s.status.name.lower()),
    ("OPEN", lambda s: _duration(s.open_s)),
    ("IDLE", lambda s: _duration(s.idle_s)),
    ("RECEIVED", lambda s: str(s.frames_received)),
    ("RESULTS", lambda s: str(s.frames_processed)),
    ("DROPPED", lambda s: str(s.frames_dropped)),
    ("ERRORS", lambda s: str(s.frame_errors)),
    ("IN FLIGHT", lambda s: str(s.frames_in_flight)),
    ("UNANSWERED", lambda s: str(s.frames_unanswered)),
    ("RESULTS/S", lambda s: f"{s.results_per_s:.1f}"),
    ("P50 MS", lambda s: f"{s.latency_p50_ms:.1f}"),
    ("P99 MS", lambda s: f"{s.latency_p99_ms:.1f}"),
    ("AGE P50 MS", lambda s: f"{s.capture_age_p50_ms:.1f}" if s.capture_age_p50_ms else "-"),
)
"""The table's columns: heading, and the cell of a stream."""


def _duration(seconds: float) -> str:
    """``seconds`` for a person: ``42s``, ``7m05s``, ``3h20m``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def streams_table(streams: list[StreamStats]) -> str:
    """``streams`` as a table with a heading line, columns aligned; a line saying so when there are none."""
    if not streams:
        return "no streams"
    rows = [[heading for heading, _ in _COLUMNS]] + [[cell(stats) for _, cell in _COLUMNS] for stats in streams]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def stream_details(stats: StreamStats) -> str:
    """One stream in full, a ``name: value`` line per field (breakdowns and options included; times to the
    millisecond)."""
    lines = []
    for name, value in _plain(stats).items():
        if isinstance(value, dict):
            shown = ", ".join(f"{key}={item}" for key, item in value.items()) or "-"
        elif isinstance(value, float):
            shown = f"{value:.3f}"
        else:
            shown = "-" if value is None else str(value)
        lines.append(f"{name}: {shown}")
    return "\n".join(lines)


def streams_json(streams: list[StreamStats] | StreamStats) -> str:
    """``streams`` (a list, or one stream) as indented JSON, enum members by name."""
    value = [_plain(stats) for stats in streams] if isinstance(streams, list) else _plain(streams)
    return json.dumps(value, indent=2)


def _plain(stats: StreamStats) -> dict[str, Any]:
    """``stats`` as JSON-ready values: enums by lower-case name, mask size and outputs as lists."""
    plain = dataclasses.asdict(stats)
    plain["status"] = stats.status.name.lower()
    plain["dropped_by_reason"] = {reason.name.lower(): n for reason, n in stats.dropped_by_reason.items()}
    plain["errors_by_code"] = {code.name.lower(): n for code, n in stats.errors_by_code.items()}
    options = stats.options
    plain["options"] = {
        **plain["options"],
        "outputs": sorted(output.name.lower() for output in options.outputs),
        "mask_size": list(options.mask_size) if options.mask_size else None,
        "frame_fit": options.frame_fit.name.lower(),
    }
    return plain
