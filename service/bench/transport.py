"""Frames as bytes against frames through shared memory, side by side: :func:`compare_transports` sends the same raw
frames on two streams of one server, in alternation (one frame in flight), one stream's frames in the request and
the other's in a :class:`~service.client.shared_frames.SharedFrameRing`, and reports both round trips and their
ratio (``python -m service.bench --target HOST:PORT --compare-shared-memory``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from service.bench.stats import summarize
from service.client.connection import Client
from service.client.shared_frames import SharedFrameRing
from service.client.tls import TlsFiles
from service.types import FrameResult, Output, StreamOptions

WARMUP_FRAMES = 10
"""Frames per stream sent and answered before timing."""


async def compare_transports(
    target: str, clip: list[np.ndarray], frames: int, token: str | None = None, tls: TlsFiles | None = None
) -> dict[str, Any]:
    """Round trips of ``frames`` frames of ``clip`` (uint8 ``[H, W, 3]``, one shape) sent as bytes and through
    shared memory, alternating, after :data:`WARMUP_FRAMES` untimed ones each: ``{"bytes": ..., "shared_memory":
    ..., "ratio_p50": shared memory p50 / bytes p50}``, each side with its client round trip and the server's own
    time (``latency_ms``, ``server_total_ms``: percentiles).

    Raises:
        ValueError: the server does not read shared memory for this client (``ModelCard.shared_memory``), or a
            frame was not answered with a result.
        StreamError: the server refused a stream.
    """
    options = StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}))
    timings: dict[str, tuple[list[float], list[float]]] = {"bytes": ([], []), "shared_memory": ([], [])}
    async with Client(target, token=token, tls=tls) as client:
        if not (await client.describe()).shared_memory:
            raise ValueError(
                f"{target} does not read shared memory for this client: start it with --shared-memory, on this host, "
                "and connect over loopback"
            )
        with SharedFrameRing(clip[0].shape[:2], slots=2) as ring:  # one frame in flight: two slots suffice
            streams = {"bytes": await client.open(options), "shared_memory": await client.open(options)}
            for index in range(WARMUP_FRAMES + frames):
                frame = clip[index % len(clip)]
                for kind, stream in streams.items():
                    started = time.perf_counter()
                    await stream.send(frame if kind == "bytes" else ring.put(frame))
                    answer = await stream.receive()
                    elapsed_ms = (time.perf_counter() - started) * 1e3
                    if not isinstance(answer, FrameResult):
                        raise ValueError(f"frame {index} sent as {kind.replace('_', ' ')} was answered {answer!r}")
                    if index >= WARMUP_FRAMES:
                        timings[kind][0].append(elapsed_ms)
                        timings[kind][1].append(answer.latency.total_ms)
            for stream in streams.values():
                await stream.close()
    report: dict[str, Any] = {
        kind: {"latency_ms": summarize(round_trips), "server_total_ms": summarize(server)}
        for kind, (round_trips, server) in timings.items()
    }
    report["frame_shape"] = list(clip[0].shape)
    report["frames"] = frames
    bytes_p50, shared_p50 = report["bytes"]["latency_ms"]["p50"], report["shared_memory"]["latency_ms"]["p50"]
    report["ratio_p50"] = round(shared_p50 / bytes_p50, 3) if bytes_p50 else None
    return report


__all__ = ["WARMUP_FRAMES", "compare_transports"]
