"""``--suite``: the README's figures, measured as ratios in one run with the modes interleaved.

Latency: frame by frame, alternately in-process (:class:`PipelineBench`: decode, model call, masks) and over
gRPC on loopback (one stream, send one frame and await its answer), so background load hits both alike;
the overhead is the median of the paired differences. Throughput: rounds alternating one stream and N
concurrent streams against the same server (started by this process); the ratio is the median over rounds.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from service.bench.pipeline import PipelineBench
from service.bench.remote import LoadSpec, run_load
from service.bench.spawn import SpawnedServer
from service.bench.stats import summarize
from service.client.core import Client


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
    import torch

    torch.set_num_threads(1)  # as the server does (--torch-threads 1), so the baseline is comparable
    bench = PipelineBench(backend, model_dir, clip)
    runs: dict[int, list[dict[str, Any]]] = {1: [], spec.streams: []}
    per_round = []
    with SpawnedServer(model_dir, ["--backend", backend, *server_args]) as server:
        paired = asyncio.run(_paired_latency(bench, server.target, clip, spec.frames * rounds))
        pipeline_ms, model_ms, grpc_ms = paired
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
    }
    return {"local": [local], "remote": remote, "rounds": per_round, "ratios": ratios}


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


async def _paired_latency(
    bench: PipelineBench, target: str, clip: list[np.ndarray], frames: int
) -> tuple[list[float], list[float], list[float]]:
    """Alternate one in-process frame and one gRPC frame; returns pipeline, model-call and gRPC times (ms)."""
    import time

    pipeline_ms: list[float] = []
    model_ms: list[float] = []
    grpc_ms: list[float] = []
    async with Client(target) as client:
        stream = await client.open()
        for index in range(frames + 10):
            local, call = bench.time_frames(1)
            started = time.perf_counter()
            await stream.process(clip[index % len(clip)])
            if index >= 10:  # warm-up
                pipeline_ms += local
                model_ms += call
                grpc_ms.append((time.perf_counter() - started) * 1e3)
        await stream.close()
    return pipeline_ms, model_ms, grpc_ms
