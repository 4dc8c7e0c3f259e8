"""Load generator: N concurrent streams against a server, like Triton's perf_analyzer for slot streams."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.bench.stats import summarize
from service.client.connection import Client
from service.client.encoding import ImageLike, encode_image
from service.client.exchange import send_while_receiving
from service.client.tls import TlsFiles
from service.types import FrameDropped, FrameError, FrameResult, Output, StreamClosed, StreamOptions


@dataclass(frozen=True)
class LoadSpec:
    """What to send.

    Attributes:
        target: ``host:port``.
        streams: concurrent streams.
        frames: frames per stream.
        fps: per-stream send rate (``None``: as fast as the window allows).
        window: frames a stream may have in flight (1: send one, await its answer).
        live: open the streams in live mode.
        max_staleness_s: open the streams with this ``max_staleness_s`` (0: none); each frame's capture time is
            when it is sent, so the server drops frames that waited longer than this (``dropped_by_reason``).
        jpeg_quality: send JPEG at this quality instead of raw frames (each clip frame encoded once, before any
            frame is timed: see :func:`frames_to_send`).
        mask_size: ``(H, W)`` of the segmentation asked for (``None``: the model's input size).
        warmup_frames: frames per stream sent and answered before measuring.
        idle_gap_s: after every :attr:`gap_every` frames, a stream waits for its answers, then sends nothing for
            this many seconds (0: no gaps); the latencies of the first frames after the gaps are reported apart
            (``after_gap_latency_ms``), beside those of the others.
        gap_every: frames between idle gaps.
        token: bearer token.
        tls: TLS files (``None``: plaintext).
    """

    target: str
    streams: int = 1
    frames: int = 200
    fps: float | None = None
    window: int = 1
    live: bool = False
    max_staleness_s: float = 0.0
    jpeg_quality: int | None = None
    mask_size: tuple[int, int] | None = None
    warmup_frames: int = 10
    idle_gap_s: float = 0.0
    gap_every: int = 20
    token: str | None = None
    tls: TlsFiles | None = None


@dataclass
class _StreamStats:
    latencies_ms: list[float] = field(default_factory=list)
    after_gap_ms: list[float] = field(default_factory=list)  # frames sent first after an idle gap
    steady_ms: list[float] = field(default_factory=list)  # the others
    server_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    results: int = 0
    dropped: int = 0
    errors: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)


def stream_options(spec: LoadSpec) -> StreamOptions:
    """The options every stream of ``spec`` is opened with."""
    return StreamOptions(
        live=spec.live,
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=spec.mask_size,
        max_staleness_s=spec.max_staleness_s,
    )


async def run_load(spec: LoadSpec, clip: list[np.ndarray]) -> dict[str, Any]:
    """Run the load and return per-stream and overall latency percentiles, throughput and losses (drops also by
    reason: ``superseded``, ``stale``, ``shutting_down``).

    ``frame_weighted_mean_batch_size`` is the mean over answered frames of the size of the batch each frame was
    computed in (from its answer), so a batch of 8 counts 8 times. The server's ``slotstream_batch_size``
    histogram counts each dispatched batch once, so its mean is lower whenever batch sizes vary.

    ``seconds`` is rounded for reading; ``raw_seconds`` (the same time unrounded) and ``raw_latencies_ms`` (every
    answered frame's latency) are for pooling runs, whose frames per second are then those of the unrounded
    times (``--suite`` pools its rounds so); a report drops them.
    """
    frames = frames_to_send(clip, spec)
    async with Client(spec.target, token=spec.token, tls=spec.tls) as client:
        streams = [await client.open(stream_options(spec)) for _ in range(spec.streams)]
        if spec.warmup_frames:
            await asyncio.gather(*(_drive(s, frames, spec, spec.warmup_frames, _StreamStats()) for s in streams))
        stats = [_StreamStats() for _ in streams]
        started = time.perf_counter()
        await asyncio.gather(
            *(_drive(s, frames, spec, spec.frames, st, gaps=True) for s, st in zip(streams, stats, strict=True))
        )
        elapsed = time.perf_counter() - started
        for stream in streams:
            await stream.close()
    all_latencies = [ms for st in stats for ms in st.latencies_ms]
    results = sum(st.results for st in stats)
    return {
        "spec": {k: v for k, v in vars(spec).items() if k not in ("token", "tls")} | {"tls": spec.tls is not None},
        "frame_shape": list(clip[0].shape),
        "seconds": round(elapsed, 3),
        "raw_seconds": elapsed,
        "frames_per_second": round(results / elapsed, 2),
        "sent": spec.streams * spec.frames,
        "results": results,
        "dropped": sum(st.dropped for st in stats),
        "dropped_by_reason": dict(sorted(sum((st.dropped_by_reason for st in stats), Counter()).items())),
        "errors": sum(st.errors for st in stats),
        "lost": spec.streams * spec.frames - sum(st.results + st.dropped + st.errors for st in stats),
        "latency_ms": summarize(all_latencies),
        "raw_latencies_ms": all_latencies,
        **_gap_figures(stats, spec),
        "server_total_ms": summarize([ms for st in stats for ms in st.server_ms]),
        "frame_weighted_mean_batch_size": _mean([b for st in stats for b in st.batch_sizes]),
        "per_stream": [
            {
                "latency_ms": summarize(st.latencies_ms),
                "results": st.results,
                "dropped": st.dropped,
                "errors": st.errors,
            }
            for st in stats
        ],
    }


def _gap_figures(stats: list[_StreamStats], spec: LoadSpec) -> dict[str, Any]:
    """With idle gaps: the latencies of the first frames after them (``after_gap_latency_ms``), of the other frames
    (``steady_latency_ms``), and the ratio of their medians (``after_gap_ratio_p50``); nothing without gaps."""
    if spec.idle_gap_s <= 0:
        return {}
    after = summarize([ms for st in stats for ms in st.after_gap_ms])
    steady = summarize([ms for st in stats for ms in st.steady_ms])
    after_p50, steady_p50 = after.get("p50"), steady.get("p50")
    ratio = round(after_p50 / steady_p50, 3) if after_p50 is not None and steady_p50 else None
    return {"after_gap_latency_ms": after, "steady_latency_ms": steady, "after_gap_ratio_p50": ratio}


def _mean(values: list[int]) -> float | None:
    """The mean rounded to 2 decimals, ``None`` for no values."""
    return round(float(np.mean(values)), 2) if values else None


def frames_to_send(clip: list[np.ndarray], spec: LoadSpec) -> list[ImageLike]:
    """What the streams send, frame ``i`` being item ``i`` modulo its length: with :attr:`LoadSpec.jpeg_quality`,
    the clip's frames encoded as JPEG, once, before anything is timed (a camera's frames come encoded, and the
    client's encoding, about a millisecond at 640 x 480, would otherwise count as the server's latency and take
    the load's cores); only as many as a stream sends. Raw frames go as arrays: sending one only copies its
    pixels, and the client sends one that does not fit a message as PNG (encoded then, and timed)."""
    if spec.jpeg_quality is None:
        return list(clip)
    used = clip[: max(spec.frames, spec.warmup_frames)]  # frame i is clip[i % len(clip)]: these are all a stream sends
    return [encode_image(frame, spec.jpeg_quality) for frame in used]


async def _drive(
    stream: Any, frames: list[ImageLike], spec: LoadSpec, count: int, stats: _StreamStats, gaps: bool = False
) -> None:
    """Send ``count`` frames on ``stream`` and count their answers in ``stats``; with ``gaps``, pause as
    :attr:`LoadSpec.idle_gap_s` says."""
    window = asyncio.Semaphore(spec.window)
    sent_at: dict[int, float] = {}
    after_gap: set[int] = set()
    interval = 1 / spec.fps if spec.fps else 0.0

    async def send_all() -> None:
        next_time = time.perf_counter()
        for i in range(count):
            gap = gaps and spec.idle_gap_s > 0 and i > 0 and i % spec.gap_every == 0
            if gap:  # every answer in, then nothing on the stream for the gap
                for _ in range(spec.window):
                    await window.acquire()
                for _ in range(spec.window):
                    window.release()
                await asyncio.sleep(spec.idle_gap_s)
                next_time = time.perf_counter()
            await window.acquire()
            if interval:
                await asyncio.sleep(max(0.0, next_time - time.perf_counter()))
                next_time += interval
            index = stream.next_frame_index
            if gap:
                after_gap.add(index)
            sent_at[index] = time.perf_counter()  # before the send: the answer may arrive before it returns
            await stream.send(frames[i % len(frames)], frame_index=index)

    async def receive_all() -> None:
        for _ in range(count):
            answer = await stream.receive()
            now = time.perf_counter()
            window.release()
            if isinstance(answer, StreamClosed):
                return
            if isinstance(answer, FrameResult):
                stats.results += 1
                latency_ms = (now - sent_at.pop(answer.frame_index)) * 1e3
                stats.latencies_ms.append(latency_ms)
                (stats.after_gap_ms if answer.frame_index in after_gap else stats.steady_ms).append(latency_ms)
                stats.server_ms.append(answer.latency.total_ms)
                stats.batch_sizes.append(answer.latency.batch_size)
            elif isinstance(answer, FrameDropped):
                stats.dropped += 1
                stats.dropped_by_reason[answer.reason.name.lower()] += 1
                sent_at.pop(answer.frame_index, None)
            elif isinstance(answer, FrameError):
                stats.errors += 1
                sent_at.pop(answer.frame_index, None)

    await send_while_receiving(send_all(), receive_all())
