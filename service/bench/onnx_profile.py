"""Where ONNX Runtime spends a graph's time: kernel time per operator type, from ONNX Runtime's own profiler.

``python -m service.bench --local --model DIR --onnx-profile`` prints it for ``first_step`` and ``step`` after the
latency table, with the sessions set up as the ``onnx`` backend sets them (its graph optimisations, the
benchmark's thread count). For convolutions and matrix products it gives the rate (GFLOP/s, ``2 * M * N * K`` per
product, from the shapes the profiler records) to set beside the matrix-multiply rate of the floor report: an
operator running near that rate has no headroom left but fewer FLOPs.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_PRODUCTS = ("Conv", "MatMul", "FusedMatMul", "Gemm")
"""Operators whose FLOPs are counted (from their first input's and their output's shapes)."""


@dataclass(frozen=True)
class OperatorTime:
    """One operator type's share of a graph run.

    Attributes:
        operator: the ONNX (or ONNX Runtime fused) operator type, such as ``Conv``.
        nodes: how many nodes of it one run executes (after ONNX Runtime's graph optimisations).
        microseconds: its kernel time per run.
        gflops_per_s: its arithmetic rate, for :data:`_PRODUCTS`; ``None`` for the others.
    """

    operator: str
    nodes: int
    microseconds: float
    gflops_per_s: float | None


def profile_graph(path: Path, threads: int, runs: int, batch: int = 1) -> list[OperatorTime]:
    """Run the graph at ``path`` ``runs`` times on random inputs of batch ``batch`` under ONNX Runtime's profiler.

    Returns:
        The operator types, slowest first.

    Raises:
        BackendUnavailable: ONNX Runtime is not installed (the message says what to install).
    """
    from service.backends.onnx_backend import OnnxOptions, session_options
    from service.backends.onnx_providers import import_onnxruntime

    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="slotstream-onnx-profile-") as scratch:
        options = session_options(ort, OnnxOptions(intra_op_threads=threads, inter_op_threads=1))
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        inputs = {
            spec.name: rng.random((batch, *(int(size) for size in spec.shape[1:])), dtype=np.float32)
            for spec in session.get_inputs()
        }
        session.run(None, inputs)  # the first run allocates; it is profiled too, but one in many
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    return operator_times(events, runs + 1)


def operator_times(events: Sequence[Mapping[str, Any]], runs: int) -> list[OperatorTime]:
    """Sum the node events of an ONNX Runtime profile (its JSON trace) per operator type, per run.

    Args:
        events: the trace's events; the node kernels are those of category ``Node`` named ``..._kernel_time``.
        runs: how many runs the trace holds.
    """
    microseconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    flops: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        arguments = event.get("args", {})
        operator = str(arguments.get("op_name", "?"))
        microseconds[operator] += float(event.get("dur", 0))
        calls[operator] += 1
        if operator in _PRODUCTS:
            flops[operator] += _product_flops(operator, arguments)
    times = [
        OperatorTime(
            operator,
            round(calls[operator] / runs),
            microseconds[operator] / runs,
            flops[operator] / microseconds[operator] / 1e3
            if operator in _PRODUCTS and microseconds[operator]
            else None,
        )
        for operator in microseconds
    ]
    return sorted(times, key=lambda time: -time.microseconds)


def _product_flops(operator: str, arguments: Mapping[str, Any]) -> float:
    """``2 * (output elements) * K`` for one node: ``K`` is a convolution's ``C_in / groups * kh * kw`` (from its
    weight ``[C_out, C_in / groups, kh, kw]``), a matrix product's inner size (the axis of its first input that
    is not the output's rows)."""
    inputs = [_shape(value) for value in arguments.get("input_type_shape", [])]
    outputs = [_shape(value) for value in arguments.get("output_type_shape", [])]
    if not inputs or not outputs:
        return 0.0
    if operator == "Conv":
        if len(inputs) < 2:
            return 0.0
        inner = math.prod(inputs[1][1:])  # weight [C_out, C_in / groups, kh, kw]
    elif len(inputs[0]) >= 2 and len(outputs[0]) >= 2:
        # A [..., M, K], or [..., K, M] when transposed (Gemm's and FusedMatMul's transA): K is the axis that is
        # not the output's M (either, when they are equal)
        rows, columns = inputs[0][-2:]
        inner = columns if rows == outputs[0][-2] else rows
    else:
        inner = inputs[0][-1] if inputs[0] else 0
    return 2.0 * math.prod(outputs[0]) * inner


def _shape(value: Mapping[str, Sequence[int]]) -> list[int]:
    """The shape in one of the profiler's ``{"float": [dims]}`` entries."""
    return [int(size) for size in next(iter(value.values()), [])]


def format_profile(graph: str, times: Sequence[OperatorTime]) -> str:
    """A Markdown table of one graph's operator times, with each operator's share of the kernel time."""
    total = sum(time.microseconds for time in times) or 1.0
    rows = [
        f"{graph}: kernel time per run {total / 1e3:.2f} ms (ONNX Runtime's profiler)",
        "| operator | nodes | us per run | share | GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for time in times:
        rate = "" if time.gflops_per_s is None else f"{time.gflops_per_s:.1f}"
        share = time.microseconds / total
        rows.append(f"| {time.operator} | {time.nodes} | {time.microseconds:.1f} | {share:.1%} | {rate} |")
    return "\n".join(rows)
