"""``--suite``: the README's figures, measured as ratios in one run with the modes interleaved.

Latency: frame by frame, alternately in-process (:class:`PipelineBench`: decode, model call, masks) and over
gRPC on loopback (one stream, send one frame and await its answer), so background load hits both alike;
the overhead is the median of the paired differences. Both halves send and decode what the load sends (raw
frames, or JPEG with ``--jpeg-quality``), and the gRPC half presents the load's ``--token``. The same run times
a bare gRPC echo with the same message sizes (:mod:`service.bench.echo`), gRPC's own floor on this machine, and
splits the overhead into the part outside the server's clock and the part inside it beyond the in-process
pipeline. Throughput: rounds alternating one stream and N concurrent streams against the same server (started
by this process); ``throughput_ratio`` pools the rounds (all frames over all time of each mode) and
``throughput_ratio_median_of_rounds`` is the median of the per-round ratios.

Everything that uses ``grpc.aio`` runs on one event loop (one ``asyncio.run``). A ratio whose terms were not
measured (no frame answered, say every frame refused by the server) is ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from service import wire
from service.bench.echo import echo_round_trips_ms
from service.bench.pipeline import PipelineBench
from service.bench.remote import LoadRun, LoadSpec, mean_batch_size, run_load, stream_options
from service.bench.spawn import SpawnedServer
from service.bench.stats import summarize
from service.client.connection import Client
from service.client.encoding import encode_image
from service.config import ConfigError, ServiceConfig
from service.engine import BackendUnavailable
from service.types import EncodedImage, FrameDropped, FrameRequest, FrameResult

#: Frames of the paired latency run answered before timing starts.
PAIRED_WARMUP_FRAMES = 10


class SuiteError(Exception):
    """The suite cannot run: the model does not load, or the server does not start (the message says which)."""


def run_suite(
    model_dir: Path, backend: str, spec: LoadSpec, clip: list[np.ndarray], rounds: int, server_args: list[str]
) -> dict[str, Any]:
    """Run ``rounds`` interleaved rounds of ``spec.frames`` frames per mode (per stream for gRPC).

    Args:
        model_dir: model directory.
        backend: engine backend, for the pipeline and the server.
        spec: the load; its ``target`` and ``streams`` are filled in per mode. Its ``jpeg_quality`` and
            ``token`` apply to the paired latency run too.
        clip: frames to send.
        rounds: rounds to run.
        server_args: more ``python -m service`` flags.

    Raises:
        ConfigError: ``server_args`` the server would refuse.
        SuiteError: the model does not load here, or the server does not start.
        StreamError: the server refused a stream (a missing ``--token``, options it does not accept).
        ValueError: a frame the client cannot send (too large for one message).
    """
    config = _server_config(["--model-dir", str(model_dir), "--backend", backend, *server_args])
    try:  # the server's settings, from the same flags
        bench = PipelineBench(config, clip, spec.jpeg_quality, spec.mask_size)
    except (BackendUnavailable, OSError, ValueError) as error:  # ValueError: a missing or damaged manifest
        raise SuiteError(f"cannot load the model: {error}") from error
    report = asyncio.run(_measure(bench, model_dir, backend, server_args, spec, clip, rounds))
    backend_options = config.backend_options().items()
    options = {name: str(value) if isinstance(value, Path) else value for name, value in backend_options}
    report["local"][0] |= {"device": config.device, "torch_threads": config.torch_threads, "backend_options": options}
    return report


def _server_config(argv: list[str]) -> ServiceConfig:
    """The server's settings from its flags.

    Raises:
        ConfigError: a value the server refuses, or a flag it does not know: then argparse's one-line message
            instead of the server's whole usage text.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return ServiceConfig.from_sources(argv)
    except SystemExit as exited:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        last = lines[-1] if lines else f"the server flags exit with {exited.code}"
        raise ConfigError(f"--server-args: {last}") from None


async def _measure(
    bench: PipelineBench,
    model_dir: Path,
    backend: str,
    server_args: list[str],
    spec: LoadSpec,
    clip: list[np.ndarray],
    rounds: int,
) -> dict[str, Any]:
    """Everything after loading the pipeline's engine, on one event loop: the server, the paired latency run,
    the load rounds and the echo floor."""
    runs: dict[int, list[LoadRun]] = {1: [], spec.streams: []}
    per_round = []
    try:
        server = SpawnedServer(model_dir, ["--backend", backend, *server_args])
    except RuntimeError as error:
        raise SuiteError(str(error)) from error
    with server:
        paired = await _paired_latency(bench, replace(spec, target=server.target), clip, spec.frames * rounds)
        for _ in range(rounds):
            for streams in runs:
                runs[streams].append(await run_load(replace(spec, target=server.target, streams=streams), clip))
            one, many = runs[1][-1], runs[spec.streams][-1]
            per_round.append(
                {
                    "one_stream_frames_per_second": round(one.frames_per_second, 2),
                    "many_streams_frames_per_second": round(many.frames_per_second, 2),
                    "throughput_ratio": _ratio(many.frames_per_second, one.frames_per_second),
                }
            )
    pipeline_ms, model_ms, grpc_ms, server_ms = paired.pipeline_ms, paired.model_ms, paired.grpc_ms, paired.server_ms
    echo_ms: list[float] = []
    if grpc_ms and paired.response_bytes is not None:  # the echo needs an answer's size
        echo_ms = await echo_round_trips_ms(paired.request_bytes, paired.response_bytes, frames=len(grpc_ms))
    local: dict[str, Any] = {"backend": backend, "model": bench.card.name, "model_version": bench.card.version}
    local |= {"jpeg_quality": spec.jpeg_quality, "frame_latency_ms": summarize(pipeline_ms)}
    local |= {"model_call_ms": summarize(model_ms), "grpc_one_stream_ms": summarize(grpc_ms)}
    local |= {"grpc_one_stream_errors": paired.errors, "grpc_one_stream_dropped": paired.dropped}
    local["grpc_first_error"] = paired.first_error
    transport = {
        "request_bytes": paired.request_bytes,
        "response_bytes": paired.response_bytes,
        "bare_grpc_echo_ms": summarize(echo_ms),
        "server_total_ms": summarize(server_ms),
    }
    remote = [_pool(results) for results in runs.values()]
    pooled_one, pooled_many = remote[0], remote[-1]
    round_ratios = [r["throughput_ratio"] for r in per_round if r["throughput_ratio"] is not None]
    ratios = {
        "overhead_ms_median_of_pairs": _median(np.subtract(grpc_ms, pipeline_ms)),
        "overhead_p50_ms": _difference(grpc_ms, pipeline_ms),
        "overhead_vs_model_call_p50_ms": _difference(grpc_ms, model_ms),
        "throughput_ratio": _ratio(pooled_many["frames_per_second"], pooled_one["frames_per_second"]),
        "throughput_ratio_median_of_rounds": float(np.median(round_ratios)) if round_ratios else None,
        "frames_lost": sum(run["lost"] for run in remote),
        # Where the overhead goes: outside the server's own clock (client, gRPC, transport) and inside it
        # beyond the in-process pipeline (sessions, batching, thread hops); the bare echo is gRPC's floor.
        "outside_server_p50_ms": _median(np.subtract(grpc_ms, server_ms)),
        "server_beyond_pipeline_p50_ms": _median(np.subtract(server_ms, pipeline_ms)),
        "bare_grpc_echo_p50_ms": _median(echo_ms),
    }
    return {"local": [local], "transport": transport, "remote": remote, "rounds": per_round, "ratios": ratios}


def _median(values: Sequence[float] | np.ndarray) -> float | None:
    """The median rounded to 3 decimals; ``None`` for no values."""
    return round(float(np.median(values)), 3) if len(values) else None


def _difference(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The difference of the medians rounded to 3 decimals; ``None`` when either has no values."""
    return round(float(np.median(a) - np.median(b)), 3) if len(a) and len(b) else None


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` rounded to 2 decimals; ``None`` when the denominator is 0 (nothing answered)."""
    return round(numerator / denominator, 2) if denominator else None


def _pool(runs: list[LoadRun]) -> dict[str, Any]:
    """The rounds of one mode (:func:`~service.bench.remote.run_load`'s runs) as one run's report: all frames over
    all time, from the rounds' unrounded times, so that one round's pooled frames per second are its own; each
    round's own report is kept under ``rounds``."""
    seconds = sum(run.seconds for run in runs)
    reports = [run.report() for run in runs]
    counted = ("sent", "results", "dropped", "errors", "lost", "ended_streams")
    total = {key: sum(report[key] for report in reports) for key in counted}
    first_end = next((report["first_end"] for report in reports if "first_end" in report), None)
    return {
        "spec": reports[0]["spec"] | {"rounds": len(runs)},
        "frame_shape": reports[0]["frame_shape"],
        "seconds": round(seconds, 3),
        "frames_per_second": round(total["results"] / seconds, 2),
        **total,
        **({"first_end": first_end} if first_end is not None else {}),
        "latency_ms": summarize([ms for run in runs for ms in run.latencies_ms]),
        "frame_weighted_mean_batch_size": mean_batch_size([size for run in runs for size in run.batch_sizes]),
        "rounds": reports,
    }


@dataclass
class _Paired:
    """Per-frame times (ms) of the interleaved latency run, what failed, and the mean sizes of the messages it
    sent (every timed frame) and received (every answered frame; ``None`` when none was answered)."""

    pipeline_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    grpc_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: int = 0
    dropped: int = 0
    first_error: str | None = None
    request_bytes: int = 0
    response_bytes: int | None = None


async def _paired_latency(bench: PipelineBench, spec: LoadSpec, clip: list[np.ndarray], frames: int) -> _Paired:
    """Alternate one in-process frame and one gRPC frame, timing both (and the server's own total).

    The gRPC frames go to ``spec.target`` as the load sends them: ``spec.token``, ``spec.jpeg_quality`` and the
    load's stream options.
    """
    paired = _Paired()
    encoded: dict[int, EncodedImage] = {}
    request_sizes, response_sizes = [], []
    async with Client(spec.target, token=spec.token) as client:
        stream = await client.open(stream_options(spec))
        for index in range(frames + PAIRED_WARMUP_FRAMES):
            # Encoded before the clock starts, as the in-process half's frames are: the gRPC side is timed from
            # the encoded image to the answer, like the other.
            if index % len(clip) not in encoded:
                encoded[index % len(clip)] = encode_image(clip[index % len(clip)], spec.jpeg_quality)
            image = encoded[index % len(clip)]
            local, call = bench.time_frames(1)
            started = time.perf_counter()
            result = await stream.process(image)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            if index < PAIRED_WARMUP_FRAMES:
                continue
            request = FrameRequest(result.frame_index, image, time.time_ns(), "")
            request_sizes.append(wire.request_to_proto(request).ByteSize())
            if isinstance(result, FrameResult):
                paired.pipeline_ms += local
                paired.model_ms += call
                paired.grpc_ms.append(elapsed_ms)
                paired.server_ms.append(result.latency.total_ms)
                response_sizes.append(wire.response_to_proto(result).ByteSize())
            elif isinstance(result, FrameDropped):
                paired.dropped += 1
            else:
                paired.errors += 1
                if paired.first_error is None:
                    paired.first_error = f"frame {result.frame_index}: {result.code.name}: {result.message}"
        await stream.close()
    paired.request_bytes = round(float(np.mean(request_sizes)))
    paired.response_bytes = round(float(np.mean(response_sizes))) if response_sizes else None
    return paired
