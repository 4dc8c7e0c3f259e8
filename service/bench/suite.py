"""``--suite``: the README's figures, measured as ratios in one run with the modes interleaved.

Latency: frame by frame, alternately in-process (:class:`PipelineBench`: decode, model call, masks) and over
gRPC on loopback (one stream, send one frame and await its answer), so background load hits both alike;
the overhead is the median of the paired differences. The same run times a bare gRPC echo with the same
message sizes (:mod:`service.bench.echo`), gRPC's own floor on this machine, and splits the overhead into
the part outside the server's clock and the part inside it beyond the in-process pipeline. Throughput:
rounds alternating one stream and N concurrent streams against the same server (started by this process);
the ratio is the median over rounds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from service import wire
from service.bench.echo import echo_round_trips_ms
from service.bench.pipeline import PipelineBench
from service.bench.remote import LoadSpec, run_load
from service.bench.spawn import SpawnedServer
from service.bench.stats import summarize
from service.client.core import Client, encode_image
from service.config import ServiceConfig
from service.types import FrameRequest, FrameResult


def run_suite(
    model_dir: Path, backend: str, spec: LoadSpec, clip: list[np.ndarray], rounds: int, server_args: list[str]
) -> dict[str, Any]:
    """Run ``rounds`` interleaved rounds of ``spec.frames`` frames per mode (per stream for gRPC).

    Args:
        model_dir: model directory.
        backend: engine backend, for the pipeline and the server.
        spec: the load; its ``target`` and ``streams`` are filled in per mode.
        clip: frames to send.
        rounds: rounds to run.
        server_args: more ``python -m service`` flags.
    """
    flags = ["--model-dir", str(model_dir), "--backend", backend, *server_args]
    bench = PipelineBench(ServiceConfig.from_sources(flags), clip)  # the server's settings, from the same flags
    runs: dict[int, list[dict[str, Any]]] = {1: [], spec.streams: []}
    per_round = []
    with SpawnedServer(model_dir, ["--backend", backend, *server_args]) as server:
        paired = asyncio.run(_paired_latency(bench, server.target, clip, spec.frames * rounds))
        pipeline_ms, model_ms, grpc_ms = paired.pipeline_ms, paired.model_ms, paired.grpc_ms
        for _ in range(rounds):
            for streams in runs:
                runs[streams].append(asyncio.run(run_load(replace(spec, target=server.target, streams=streams), clip)))
            one, many = runs[1][-1], runs[spec.streams][-1]
            per_round.append(
                {
                    "one_stream_frames_per_second": one["frames_per_second"],
                    "many_streams_frames_per_second": many["frames_per_second"],
                    "throughput_ratio": round(many["frames_per_second"] / one["frames_per_second"], 2),
                }
            )
    local: dict[str, Any] = {"backend": backend, "model": bench.card.name, "model_version": bench.card.version}
    local |= {"frame_latency_ms": summarize(pipeline_ms), "model_call_ms": summarize(model_ms)}
    local["grpc_one_stream_ms"] = summarize(grpc_ms)
    echo_ms = echo_round_trips_ms(paired.request_bytes, paired.response_bytes, frames=len(grpc_ms))
    transport = {
        "request_bytes": paired.request_bytes,
        "response_bytes": paired.response_bytes,
        "bare_grpc_echo_ms": summarize(echo_ms),
        "server_total_ms": summarize(paired.server_total_ms),
    }
    remote = [_pool(results) for results in runs.values()]
    one, many = remote[0], remote[-1]
    differences = np.subtract(grpc_ms, pipeline_ms)
    ratios = {
        "overhead_ms_median_of_pairs": round(float(np.median(differences)), 3),
        "overhead_p50_ms": round(float(np.median(grpc_ms) - np.median(pipeline_ms)), 3),
        "overhead_vs_model_call_p50_ms": round(float(np.median(grpc_ms) - np.median(model_ms)), 3),
        "throughput_ratio": round(many["frames_per_second"] / one["frames_per_second"], 2),
        "throughput_ratio_median_of_rounds": float(np.median([r["throughput_ratio"] for r in per_round])),
        "frames_lost": sum(run["lost"] for run in remote),
        # Where the overhead goes: outside the server's own clock (client, gRPC, transport) and inside it
        # beyond the in-process pipeline (sessions, batching, thread hops); the bare echo is gRPC's floor.
        "outside_server_p50_ms": round(float(np.median(np.subtract(grpc_ms, paired.server_total_ms))), 3),
        "server_beyond_pipeline_p50_ms": round(float(np.median(np.subtract(paired.server_total_ms, pipeline_ms))), 3),
        "bare_grpc_echo_p50_ms": round(float(np.median(echo_ms)), 3),
    }
    return {"local": [local], "transport": transport, "remote": remote, "rounds": per_round, "ratios": ratios}


def _pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [ms for result in results for ms in result.pop("raw_latencies_ms")]
    seconds = sum(result["seconds"] for result in results)
    total = {key: sum(result[key] for result in results) for key in ("sent", "results", "dropped", "errors", "lost")}
    return {
        "spec": results[0]["spec"] | {"rounds": len(results)},
        "frame_shape": results[0]["frame_shape"],
        "seconds": round(seconds, 3),
        "frames_per_second": round(total["results"] / seconds, 2),
        **total,
        "latency_ms": summarize(latencies),
        "mean_batch_size": round(float(np.mean([r["mean_batch_size"] for r in results])), 2),
        "rounds": results,
    }


@dataclass
class _Paired:
    """Per-frame times (ms) of the interleaved latency run, and the message sizes it sent and received."""

    pipeline_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    grpc_ms: list[float] = field(default_factory=list)
    server_total_ms: list[float] = field(default_factory=list)
    request_bytes: int = 0
    response_bytes: int = 0


async def _paired_latency(bench: PipelineBench, target: str, clip: list[np.ndarray], frames: int) -> _Paired:
    """Alternate one in-process frame and one gRPC frame, timing both (and the server's own total)."""
    import time

    paired = _Paired()
    async with Client(target) as client:
        stream = await client.open()
        for index in range(frames + 10):
            local, call = bench.time_frames(1)
            started = time.perf_counter()
            result = await stream.process(clip[index % len(clip)])
            elapsed_ms = (time.perf_counter() - started) * 1e3
            if index >= 10 and isinstance(result, FrameResult):  # the first 10 frames warm up
                paired.pipeline_ms += local
                paired.model_ms += call
                paired.grpc_ms.append(elapsed_ms)
                paired.server_total_ms.append(result.latency.total_ms)
        await stream.close()
    request = FrameRequest(0, encode_image(clip[0]), 0, "")
    paired.request_bytes = wire.request_to_proto(request).ByteSize()
    paired.response_bytes = wire.response_to_proto(result).ByteSize()
    return paired
