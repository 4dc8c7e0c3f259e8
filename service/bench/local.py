"""``python -m service.bench --local``: latency of the engines themselves, in this process, without gRPC.

Example::

    python -m service.bench --local --model service/models/default --backends torch,onnx --json runs/engines.json

For each batch size the backends are timed *interleaved* (one ``first_step`` and one ``step`` call of each
backend per round), so background load hits them alike and the ratios of one run are comparable. A model
directory without ``manifest.json`` is exported first (into a temporary directory) for the ``onnx`` and
``tensorrt`` backends; a training run folder is refused with its models named (``RUN/best``, ``RUN/model``).
The report holds p50/p99/mean latency of both steps, frames/s of a stream of later
frames (``batch / mean step latency``), the ratios, and the compute floor (:mod:`service.bench.floor`); and what
ran them: the command line, machine and versions (:mod:`service.bench.provenance`), the load average before and
after, and every setting including the ONNX Runtime / TensorRT options (``SLOTSTREAM_*`` variables applied).
Backend names are checked before anything is exported. A model that does not load (for the ``torch`` backend or the
export: a component whose plugin is not installed, say) ends the run with one error line, exit status 2. The floor
rebuilds the PyTorch model from the directory's ``config.json``; where that fails (an ONNX export benchmarked with
``--backends onnx`` without its plugin installed), the floor is skipped with a note saying why (``floor_skipped`` in
the report) and the timings are still printed and written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.cli_help import command_description
from plugins.files import user_path
from plugins.model_files import run_folder_hint
from plugins.registry import RegistryError
from service.bench.cli import backend_names, json_output_problems, unknown_backends, usage_error
from service.bench.onnx_profile import OperatorTime, format_profile, profile_graph
from service.bench.provenance import provenance
from service.config import MAX_BATCH_SIZE, MAX_THREADS
from service.engine import BackendUnavailable, Engine, load_engine, normalise_device

DEFAULT_BACKENDS = ("torch", "onnx")


class FloorUnavailable(Exception):
    """The floor cannot be computed: the PyTorch model does not rebuild (the message says why)."""


@dataclass(frozen=True)
class Latency:
    """Latency statistics of one kind of call, in milliseconds."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Statistics of ``seconds``."""
        values = np.asarray(seconds) * 1e3
        return cls(
            p50_ms=float(np.percentile(values, 50)),
            p99_ms=float(np.percentile(values, 99)),
            mean_ms=float(values.mean()),
            calls=len(values),
        )


@dataclass(frozen=True)
class Measurement:
    """One backend at one batch size.

    Attributes:
        backend: backend name.
        batch: frames per call.
        first_step: latency of ``first_step`` calls.
        step: latency of ``step`` calls.
        frames_per_s: later frames per second at this batch size (``batch / mean step latency``).
    """

    backend: str
    batch: int
    first_step: Latency
    step: Latency
    frames_per_s: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The ``--local`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m service.bench --local", description=command_description(__doc__), allow_abbrev=False
    )
    parser.add_argument("--local", action="store_true", required=True, help="benchmark engines in-process")
    parser.add_argument("--model", required=True, type=user_path, help="model or export directory")
    parser.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated backends (default: {','.join(DEFAULT_BACKENDS)})",
    )
    parser.add_argument(
        "--batch-sizes", default="1,8", help=f"comma-separated batch sizes, 1 to {MAX_BATCH_SIZE} (default: 1,8)"
    )
    parser.add_argument("--iterations", type=int, default=200, help="timed rounds per batch size (default: 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds per batch size (default: 20)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=f"intra-op threads of torch and ONNX Runtime, 1 to {MAX_THREADS} (default: 1)",
    )
    parser.add_argument("--device", default="cpu", help="device of every backend (cpu, cuda:0; tensorrt: cuda:0)")
    parser.add_argument("--json", type=user_path, help="write the report here as JSON")
    parser.add_argument("--no-floor", action="store_true", help="skip the FLOP count and matmul-rate floor")
    parser.add_argument(
        "--onnx-profile",
        action="store_true",
        help="also profile the exported graphs in ONNX Runtime on the CPU at batch 1: kernel time per operator type",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(args_list)
    args.device = normalise_device(args.device)  # as the server reads it: CPU is cpu
    backends = backend_names(args.backends)
    try:
        sizes = [int(size) for size in args.batch_sizes.split(",")]
    except ValueError:
        sizes = []
    problems = json_output_problems(args.json, args.model)
    if not backends:
        problems.append(f"--backends names no backend: {args.backends!r}")
    problems += unknown_backends("--backends", backends)  # before exporting the model for them
    if not sizes or min(sizes) < 1:
        problems.append(f"--batch-sizes must be comma-separated integers >= 1, got {args.batch_sizes!r}")
    elif max(sizes) > MAX_BATCH_SIZE:
        problems.append(
            f"--batch-sizes must be at most {MAX_BATCH_SIZE} frames a call (the most a server takes: its "
            f"--max-batch-size), got {max(sizes)}"
        )
    if args.iterations < 1 or args.warmup < 0 or args.threads < 1:
        problems.append("need --iterations >= 1, --warmup >= 0 and --threads >= 1")
    if args.threads > MAX_THREADS:
        problems.append(
            f"--threads must be at most {MAX_THREADS}, as the server's thread settings (a thread team that large "
            f"ends the process), got {args.threads}"
        )
    if not args.model.is_dir():
        problems.append(f"--model {args.model} is not a directory")
    elif not (args.model / "manifest.json").is_file() and (hint := run_folder_hint(args.model)):
        problems.append(f"--model {args.model} holds no model (no config.json or manifest.json){hint}")
    if problems:
        return usage_error("--local", problems)
    from training.export import ExportError

    try:
        with tempfile.TemporaryDirectory(prefix="slotstream-bench-") as scratch:
            options = backend_options(backends, args.threads)  # a bad SLOTSTREAM_* variable: before exporting
            needs_graphs = [*backends, "onnx"] if args.onnx_profile else backends
            model_dir = prepare_model_dir(args.model, needs_graphs, Path(scratch))
            report = run(model_dir, backends, sizes, args.iterations, args.warmup, args.threads, args.device, options)
            if args.onnx_profile:
                report["onnx_profile"] = onnx_profiles(model_dir, args.threads, args.iterations)
            if not args.no_floor:
                add_floor(report, model_dir, args.threads, args.device)
    # ValueError: bad --device, manifest; RegistryError: the torch backend or the export lacks a component's plugin
    except (BackendUnavailable, OSError, ValueError, ExportError, RegistryError) as error:
        print(f"python -m service.bench --local: cannot load the model: {error}", file=sys.stderr)
        return 2
    report["model"]["dir"] = str(args.model)
    report["settings"] |= {"backends": backends, "batch_sizes": sizes, "floor": not args.no_floor}
    report["settings"]["onnx_profile"] = args.onnx_profile
    report = {"provenance": provenance(args_list, device=args.device), **report}
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def onnx_profiles(model_dir: Path, threads: int, runs: int) -> dict[str, list[dict[str, Any]]]:
    """Graph name -> its :func:`~service.bench.onnx_profile.profile_graph` operator times (JSON-ready), at batch 1."""
    from service.backends.manifest import read_manifest

    manifest = read_manifest(model_dir)
    return {
        name: [asdict(time) for time in profile_graph(model_dir / spec.file, threads, runs)]
        for name, spec in manifest.graphs.items()
    }


def prepare_model_dir(model_dir: Path, backends: Sequence[str], scratch: Path) -> Path:
    """``model_dir``, or an export of it in ``scratch`` when a backend needs graphs the directory lacks.

    Raises:
        BackendUnavailable: the export is needed and ONNX Runtime, which it runs its graphs in, is not installed
            (the message names the extra), as loading an export directory without it is refused.
    """
    if set(backends) <= {"torch"} or (model_dir / "manifest.json").is_file():
        return model_dir
    from training.export import export_model
    from training.export.parity import import_onnxruntime

    try:
        import_onnxruntime()  # before exporting, which would fail only once half done
    except ImportError as error:
        message = f"{model_dir} has no manifest.json and must be exported first, but {error}"
        raise BackendUnavailable(message) from error
    print(f"{model_dir} has no manifest.json: exporting it to {scratch} first", file=sys.stderr)
    export_model(model_dir, scratch)
    return scratch


def backend_options(backends: Sequence[str], threads: int) -> dict[str, Any]:
    """Backend name -> its options object, for the backends that take options (``onnx``: ONNX Runtime, with
    ``threads`` intra-op threads and 1 inter-op thread whatever the variables say, as torch runs; ``tensorrt``):
    the other ``SLOTSTREAM_ONNX_*`` and the ``SLOTSTREAM_TENSORRT_*`` variables apply as they do in the server.

    Raises:
        ValueError: a variable does not parse (the message names it).
    """
    options: dict[str, Any] = {}
    if "onnx" in backends:
        from service.backends.onnx_backend import OnnxOptions

        options["onnx"] = dataclasses.replace(OnnxOptions.from_environ(), intra_op_threads=threads, inter_op_threads=1)
    if "tensorrt" in backends:
        from service.backends.tensorrt_backend import TensorRTOptions

        options["tensorrt"] = TensorRTOptions.from_environ()
    return options


def run(
    model_dir: Path,
    backends: Sequence[str],
    batch_sizes: Sequence[int],
    iterations: int,
    warmup: int,
    threads: int,
    device: str,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time every backend at every batch size; returns the report (JSON-ready).

    ``options``: backend name -> its options object (:func:`backend_options`); a backend without one loads with
    its defaults.
    """
    import torch

    options = options or {}
    torch.set_num_threads(threads)
    engines = {name: _load(name, model_dir, device, max(batch_sizes), options.get(name)) for name in backends}
    card = next(iter(engines.values())).card
    load_before = os.getloadavg()
    results = []
    for batch in batch_sizes:
        frames = np.random.default_rng(batch).random((batch, 3, *card.image_size), dtype=np.float32)
        states = {name: engine.first_step(frames).state for name, engine in engines.items()}
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in engines}
        for round_index in range(warmup + iterations):
            for name, engine in engines.items():  # interleaved: load hits every backend alike
                first_s, step_s = _time_pair(engine, frames, states[name])
                if round_index >= warmup:
                    samples[name][0].append(first_s)
                    samples[name][1].append(step_s)
        for name, (first_samples, step_samples) in samples.items():
            step = Latency.of(step_samples)
            results.append(Measurement(name, batch, Latency.of(first_samples), step, batch / (step.mean_ms / 1e3)))
    for engine in engines.values():
        engine.close()
    return {
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "model": {"version": card.version, "image_size": list(card.image_size), "slots": card.num_slots},
        "settings": {
            "iterations": iterations,
            "warmup": warmup,
            "threads": threads,
            "device": device,
            "backend_options": {name: _jsonable(asdict(value)) for name, value in options.items()},
        },
        "results": [asdict(result) for result in results],
        "ratios": ratios(results),
    }


def ratios(results: Sequence[Measurement]) -> dict[str, float]:
    """Backend-vs-torch step ratios and step-vs-first_step ratios, per batch size (from p50 latencies)."""
    by_key = {(result.backend, result.batch): result for result in results}
    out: dict[str, float] = {}
    for (backend, batch), result in sorted(by_key.items()):
        out[f"{backend}_step_over_first_step_b{batch}"] = result.step.p50_ms / result.first_step.p50_ms
        torch_result = by_key.get(("torch", batch))
        if backend != "torch" and torch_result is not None:
            out[f"{backend}_step_over_torch_step_b{batch}"] = result.step.p50_ms / torch_result.step.p50_ms
            out[f"{backend}_first_step_over_torch_first_step_b{batch}"] = (
                result.first_step.p50_ms / torch_result.first_step.p50_ms
            )
    return out


def add_floor(report: dict[str, Any], model_dir: Path, threads: int, device: str) -> None:
    """Put :func:`floor_report` into ``report["floor"]``; where there is none (a GPU run, or a PyTorch model that
    does not rebuild) put why into ``report["floor_skipped"]`` instead (:func:`format_table` prints it as a
    ``no floor: ...`` line): the timings stand."""
    try:
        if not device.startswith("cpu"):  # the matmul rate is measured on the CPU: no floor to compare a GPU run with
            raise FloorUnavailable(f"the matmul rate is measured on the CPU, not on --device {device}")
        report["floor"] = floor_report(model_dir, report["results"], threads)
    except FloorUnavailable as error:
        report["floor_skipped"] = str(error)


def floor_report(model_dir: Path, results: Sequence[dict[str, Any]], threads: int) -> dict[str, Any]:
    """FLOPs per frame, the matmul rate, the floor per frame and each measurement's distance from it.

    Raises:
        FloorUnavailable: the PyTorch model of ``model_dir`` does not load (its message, e.g. the
            :class:`~plugins.registry.RegistryError` of a component whose plugin is not installed).
    """
    import torch

    from plugins import VideoSlotModel
    from service.bench.floor import count_flops, matmul_rate

    torch.set_num_threads(threads)
    try:
        model = VideoSlotModel.from_pretrained(model_dir)
    except (RegistryError, OSError, ValueError) as error:  # the FLOPs are counted on the PyTorch model
        raise FloorUnavailable(f"cannot rebuild the PyTorch model to count its FLOPs: {error}") from error
    flops = count_flops(model)
    rate = matmul_rate()
    floor_ms = {"first_step": flops.first_step / rate * 1e3, "step": flops.step / rate * 1e3}
    above = {
        f"{r['backend']}_b{r['batch']}": {
            kind: r[kind]["p50_ms"] / r["batch"] / floor_ms[kind] for kind in ("first_step", "step")
        }
        for r in results
    }
    return {
        "flops_per_frame": {"first_step": flops.first_step, "step": flops.step},
        "step_flops_by_operator": flops.by_operator,
        "flops_by_component": flops.by_component,
        "matmul_gflops": rate / 1e9,
        "floor_ms_per_frame": floor_ms,
        "times_floor_p50_per_frame": above,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table plus ratio and floor lines."""
    lines = [
        "| backend | batch | first_step p50 / p99 (ms) | step p50 / p99 (ms) | frames/s (step) |",
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        first, step = r["first_step"], r["step"]
        lines.append(
            f"| {r['backend']} | {r['batch']} | {first['p50_ms']:.2f} / {first['p99_ms']:.2f} | "
            f"{step['p50_ms']:.2f} / {step['p99_ms']:.2f} | {r['frames_per_s']:.0f} |"
        )
    lines += [f"{name}: {value:.2f}" for name, value in report["ratios"].items()]
    if "floor_skipped" in report:
        lines.append(f"no floor: {report['floor_skipped']}")
    floor = report.get("floor")
    if floor:
        flops, ms = floor["flops_per_frame"], floor["floor_ms_per_frame"]
        lines.append(
            f"FLOPs/frame: first_step {flops['first_step'] / 1e6:.1f} M, step {flops['step'] / 1e6:.1f} M; matmul "
            f"{floor['matmul_gflops']:.1f} GFLOP/s; floor {ms['first_step']:.2f} / {ms['step']:.2f} ms per frame"
        )
        lines += [
            f"{key}: {value['first_step']:.1f}x / {value['step']:.1f}x the floor (first_step / step, p50 per frame)"
            for key, value in floor["times_floor_p50_per_frame"].items()
        ]
    for graph, times in report.get("onnx_profile", {}).items():
        lines += ["", format_profile(graph, [OperatorTime(**time) for time in times])]
    return "\n".join(lines)


def _load(backend: str, model_dir: Path, device: str, max_batch_size: int, options: Any | None) -> Engine:
    settings = asdict(options) if options is not None else None  # the options class's keyword arguments
    return load_engine(
        backend, model_dir, name="bench", device=device, max_batch_size=max_batch_size, options=settings
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}


def _time_pair(engine: Engine, frames: np.ndarray, state: np.ndarray) -> tuple[float, float]:
    started = time.perf_counter()
    engine.first_step(frames)
    middle = time.perf_counter()
    engine.step(frames, state)
    return middle - started, time.perf_counter() - middle
