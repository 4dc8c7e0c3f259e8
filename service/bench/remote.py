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
from service.client.errors import StreamError
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
class StreamCounts:
    """What one stream of a load run measured, filled in as its answers arrive.

    Attributes:
        latencies_ms: each answered frame's round trip, from just before its send to its answer.
        after_gap_ms: those of the frames sent first after an idle gap (:attr:`LoadSpec.idle_gap_s`).
        steady_ms: those of the others.
        server_ms: each answered frame's time in the server (``FrameResult.latency.total_ms``).
        batch_sizes: the size of the batch each answered frame was computed in.
        results: frames answered with a result.
        dropped: frames dropped (``FrameDropped``), by reason in :attr:`dropped_by_reason`.
        errors: frames answered with a ``FrameError``.
        ended: why the server ended the stream before its last frame was answered (it shut down, an operator
            ended the stream), ``None`` when it did not; the frames left then count as lost.
    """

    latencies_ms: list[float] = field(default_factory=list)
    after_gap_ms: list[float] = field(default_factory=list)
    steady_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    results: int = 0
    dropped: int = 0
    errors: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)
    ended: str | None = None


@dataclass(frozen=True)
class LoadRun:
    """One load run: what was sent, for how long, and each stream's counts; :meth:`report` gives the figures.

    Attributes:
        spec: the load.
        frame_shape: the shape of the clip's frames (H, W, 3).
        seconds: the measured part's wall time, unrounded (pooled runs sum it).
        streams: each stream's counts, in opening order.
    """

    spec: LoadSpec
    frame_shape: tuple[int, ...]
    seconds: float
    streams: list[StreamCounts]

    @property
    def sent(self) -> int:
        """Frames the measured part is to send, by every stream (``streams x frames``, however many a stream the
        server ended had sent)."""
        return self.spec.streams * self.spec.frames

    @property
    def results(self) -> int:
        """Frames answered with a result."""
        return sum(counts.results for counts in self.streams)

    @property
    def frames_per_second(self) -> float:
        """Results per second of the measured part (0 for a run that took no measurable time)."""
        return self.results / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost(self) -> int:
        """Frames of :attr:`sent` that got no answer of any kind (those a stream ended before sending included)."""
        return self.sent - sum(counts.results + counts.dropped + counts.errors for counts in self.streams)

    @property
    def latencies_ms(self) -> list[float]:
        """Every answered frame's latency, stream after stream."""
        return [ms for counts in self.streams for ms in counts.latencies_ms]

    @property
    def batch_sizes(self) -> list[int]:
        """The batch size of every answered frame."""
        return [size for counts in self.streams for size in counts.batch_sizes]

    def report(self) -> dict[str, Any]:
        """The run's figures as the JSON report gives them: the spec (without the token; ``tls`` whether it was
        on), ``seconds`` (rounded), ``frames_per_second`` (results over the unrounded time), ``sent``, ``results``,
        ``dropped`` (and ``dropped_by_reason``: ``superseded``, ``stale``, ``shutting_down``), ``errors``, ``lost``,
        ``ended_streams`` (how many streams the server ended early, and ``first_end`` why, when it did),
        ``latency_ms`` and ``server_total_ms`` percentiles, the idle-gap figures with gaps
        (:func:`_gap_figures`), ``frame_weighted_mean_batch_size`` and ``per_stream`` figures.

        ``frame_weighted_mean_batch_size`` is the mean over answered frames of the size of the batch each frame was
        computed in (from its answer), so a batch of 8 counts 8 times. The server's ``slotstream_batch_size``
        histogram counts each dispatched batch once, so its mean is lower whenever batch sizes vary.
        """
        spec = self.spec
        dropped_by_reason = sum((counts.dropped_by_reason for counts in self.streams), Counter[str]())
        ended = [counts.ended for counts in self.streams if counts.ended is not None]
        return {
            "spec": {k: v for k, v in vars(spec).items() if k not in ("token", "tls")} | {"tls": spec.tls is not None},
            "frame_shape": list(self.frame_shape),
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "sent": self.sent,
            "results": self.results,
            "dropped": sum(counts.dropped for counts in self.streams),
            "dropped_by_reason": dict(sorted(dropped_by_reason.items())),
            "errors": sum(counts.errors for counts in self.streams),
            "lost": self.lost,
            "ended_streams": len(ended),
            **({"first_end": ended[0]} if ended else {}),
            "latency_ms": summarize(self.latencies_ms),
            **_gap_figures(self.streams, spec),
            "server_total_ms": summarize([ms for counts in self.streams for ms in counts.server_ms]),
            "frame_weighted_mean_batch_size": mean_batch_size(self.batch_sizes),
            "per_stream": [
                {
                    "latency_ms": summarize(counts.latencies_ms),
                    "results": counts.results,
                    "dropped": counts.dropped,
                    "errors": counts.errors,
                }
                for counts in self.streams
            ],
        }


def stream_options(spec: LoadSpec) -> StreamOptions:
    """The options every stream of ``spec`` is opened with."""
    return StreamOptions(
        live=spec.live,
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=spec.mask_size,
        max_staleness_s=spec.max_staleness_s,
    )


async def run_load(spec: LoadSpec, clip: list[np.ndarray]) -> LoadRun:
    """Run the load: open :attr:`LoadSpec.streams` streams, send :attr:`LoadSpec.warmup_frames` on each untimed,
    then :attr:`LoadSpec.frames` timed, and count each stream's answers."""
    frames = frames_to_send(clip, spec)
    async with Client(spec.target, token=spec.token, tls=spec.tls) as client:
        streams = [await client.open(stream_options(spec)) for _ in range(spec.streams)]
        if spec.warmup_frames:
            await asyncio.gather(*(_drive(s, frames, spec, spec.warmup_frames, StreamCounts()) for s in streams))
        counts = [StreamCounts() for _ in streams]
        started = time.perf_counter()
        await asyncio.gather(
            *(_drive(s, frames, spec, spec.frames, c, gaps=True) for s, c in zip(streams, counts, strict=True))
        )
        elapsed = time.perf_counter() - started
        for stream, stream_counts in zip(streams, counts, strict=True):
            if stream_counts.ended is None:  # a stream the server ended has nothing to close
                await stream.close()
    return LoadRun(spec, tuple(clip[0].shape), elapsed, counts)


def _gap_figures(stats: list[StreamCounts], spec: LoadSpec) -> dict[str, Any]:
    """With idle gaps: the latencies of the first frames after them (``after_gap_latency_ms``), of the other frames
    (``steady_latency_ms``), and the ratio of their medians (``after_gap_ratio_p50``); nothing without gaps."""
    if spec.idle_gap_s <= 0:
        return {}
    after = summarize([ms for st in stats for ms in st.after_gap_ms])
    steady = summarize([ms for st in stats for ms in st.steady_ms])
    after_p50, steady_p50 = after.get("p50"), steady.get("p50")
    ratio = round(after_p50 / steady_p50, 3) if after_p50 is not None and steady_p50 else None
    return {"after_gap_latency_ms": after, "steady_latency_ms": steady, "after_gap_ratio_p50": ratio}


def mean_batch_size(batch_sizes: list[int]) -> float | None:
    """The mean of answered frames' batch sizes rounded to 2 decimals (frame-weighted), ``None`` for no frames."""
    return round(float(np.mean(batch_sizes)), 2) if batch_sizes else None


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
    stream: Any, frames: list[ImageLike], spec: LoadSpec, count: int, stats: StreamCounts, gaps: bool = False
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
            if isinstance(answer, StreamClosed):  # drained by a server shutting down, or ended by an operator
                stats.ended = (
                    f"closed by the server ({answer.reason.name}){': ' + answer.message if answer.message else ''}"
                )
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

    try:
        await send_while_receiving(send_all(), receive_all())
    except StreamError as error:  # the server ended the call with an error status (an idle timeout, say)
        stats.ended = str(error)
