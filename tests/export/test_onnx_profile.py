"""``python -m service.bench --local --onnx-profile``: ONNX Runtime's kernel time per operator type, with the rate
of convolutions and matrix products."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from service.bench.__main__ import main as bench_main
from service.bench.onnx_profile import operator_times

pytest.importorskip("onnxruntime", reason="the profile runs in ONNX Runtime: pip install -e '.[onnx]'")


def _node(operator: str, microseconds: float, inputs: list[list[int]], output: list[int]) -> dict:
    return {
        "cat": "Node",
        "name": f"/{operator.lower()}_kernel_time",
        "dur": microseconds,
        "args": {
            "op_name": operator,
            "input_type_shape": [{"float": shape} for shape in inputs],
            "output_type_shape": [{"float": output}],
        },
    }


def test_operator_times_sum_per_run_and_count_product_flops():
    """Hand-computed: a 3x3 convolution of 4 -> 8 channels on 10 x 10 makes 2 * 8 * 100 * 4 * 9 = 57,600 FLOPs
    per run in 2 us (28.8 GFLOP/s); a [5, 6] @ [6, 7] product 2 * 35 * 6 = 420 FLOPs in 1 us."""
    runs = 2
    events = [
        {"cat": "Session", "name": "model_run", "dur": 999},  # not a node: ignored
        {"cat": "Node", "name": "/conv_fence_before", "dur": 50, "args": {"op_name": "Conv"}},  # not a kernel
    ]
    for _ in range(runs):
        events += [
            _node("Conv", 2.0, [[1, 4, 10, 10], [8, 4, 3, 3], [8]], [1, 8, 10, 10]),
            _node("MatMul", 1.0, [[5, 6], [6, 7]], [5, 7]),
            _node("Gemm", 1.0, [[6, 5], [6, 7], [7]], [5, 7]),  # transA: A is [K, M]
            _node("Add", 0.5, [[5, 7], [5, 7]], [5, 7]),
            _node("Add", 0.5, [[5, 7], [5, 7]], [5, 7]),
        ]
    times = {time.operator: time for time in operator_times(events, runs)}
    assert list(times) == ["Conv", "MatMul", "Gemm", "Add"]  # slowest first (ties keep their order)
    assert times["Gemm"].gflops_per_s == pytest.approx(420 / 1.0 / 1e3)  # K = 6 whichever way A is stored
    assert (times["Conv"].nodes, times["Conv"].microseconds) == (1, 2.0)
    assert times["Conv"].gflops_per_s == pytest.approx(57_600 / 2.0 / 1e3)
    assert times["MatMul"].gflops_per_s == pytest.approx(420 / 1.0 / 1e3)
    assert (times["Add"].nodes, times["Add"].microseconds, times["Add"].gflops_per_s) == (2, 1.0, None)


def test_the_local_benchmark_profiles_both_graphs(tmp_path, capsys):
    """A plain model directory is exported on the fly for the profile, even when only torch is timed."""
    model_dir = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "bench.json"
    argv = ["--local", "--model", str(model_dir), "--backends", "torch", "--batch-sizes", "1", "--no-floor"]
    assert bench_main([*argv, "--iterations", "3", "--warmup", "1", "--onnx-profile", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["onnx_profile"]) == {"first_step", "step"} and report["settings"]["onnx_profile"]
    for times in report["onnx_profile"].values():
        assert times and all(time["microseconds"] > 0 and time["nodes"] >= 1 for time in times)
        assert [time["microseconds"] for time in times] == sorted(
            (time["microseconds"] for time in times), reverse=True
        )
        products = [time for time in times if time["operator"] in ("Conv", "MatMul", "Gemm", "FusedMatMul")]
        assert products and all(time["gflops_per_s"] > 0 for time in products)
    printed = capsys.readouterr().out
    assert "step: kernel time per run" in printed and "| operator | nodes | us per run | share | GFLOP/s |" in printed
