"""The figures the benchmark tools report, checked against hand-made numbers: ``--agreement``'s per-clip comparison
and its verdict, ``--local``'s ratios, frames/s and distance from the compute floor, the latency summary's
percentiles and the FLOP count per model component."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plugins import VideoSlotModel
from service.bench import agreement, local
from service.bench.agreement import HeldAnswer, compare, held
from service.bench.floor import count_flops
from service.bench.local import Latency, Measurement, ratios
from service.bench.stats import summarize
from service.types import FrameResult, LatencyBreakdown

# -- --agreement ------------------------------------------------------------------------------------------

# Two slots, 2x2 masks; the soft masks of the reference leave exactly one pixel of four tied (0.5 vs 0.5).
SOFT_MASKS = np.array([[[0.9, 0.5], [0.2, 0.0]], [[0.1, 0.5], [0.8, 1.0]]], np.float32)  # [K=2, H=2, W=2]


def _result(index: int, segmentation: list[list[int]], slots: list[list[float]]) -> FrameResult:
    return FrameResult(
        "s", index, 0, "", 0, 0, "v", (0, 1), LatencyBreakdown(),
        slots=np.array(slots, np.float32), segmentation=np.array(segmentation, np.uint8), soft_masks=SOFT_MASKS,
    )  # fmt: skip


def _two_backends() -> tuple[list[HeldAnswer], list[HeldAnswer]]:
    """Two answers to a two-frame stream, as the comparison holds them: the segmentations differ on 2 of 4 pixels
    of each frame (half of all), the slots by 0.25 on the first frame and by 0.5 on the second."""
    reference = [
        _result(0, [[0, 1], [0, 1]], [[1.0, 2.0], [3.0, 4.0]]),
        _result(1, [[1, 1], [1, 1]], [[0.0, 0.0], [0.0, 0.0]]),
    ]
    other = [
        _result(0, [[0, 1], [1, 0]], [[1.25, 2.0], [3.0, 3.75]]),
        _result(1, [[1, 1], [0, 0]], [[0.0, -0.5], [0.25, 0.0]]),
    ]
    return [held(answer) for answer in reference], [held(answer) for answer in other]


def _blank_clips(seeds, frames, size):
    """Stands in for ``synthetic_clips``: black frames (the fake servers below do not look at them)."""
    return {seed: [np.zeros((size, size, 3), np.uint8)] * frames for seed in seeds}


def test_compare_counts_the_share_of_equal_pixels_the_largest_slot_difference_and_the_ties():
    reference, other = _two_backends()
    clip = compare(reference, other, seed=7)
    assert clip.seed == 7 and clip.frames == 2
    assert clip.segmentation_agreement == pytest.approx(0.5)
    assert clip.slots_max_abs == pytest.approx(0.5)
    assert clip.tied == pytest.approx(0.25)  # one tied pixel of four in each frame
    same = compare(reference, reference, seed=7)
    assert same.segmentation_agreement == 1.0 and same.slots_max_abs == 0.0


def test_agreement_command_fails_when_the_two_backends_answer_differently(monkeypatch, tmp_path, capsys):
    """The verdict compares the reference backend's answers with the other backend's, not with its own."""
    reference, other = _two_backends()
    served = {"torch": reference, "onnx": other}
    calls = []

    def fake_serve(model_dir, backend, clips, server_args=()):
        calls.append(backend)
        return {seed: served[backend] for seed in clips}

    monkeypatch.setattr(agreement, "synthetic_clips", _blank_clips)
    monkeypatch.setattr(agreement, "serve_clips", fake_serve)
    out = tmp_path / "agreement.json"
    argv = ["--agreement", "--model", str(tmp_path), "--clips", "1", "--frames", "2", "--json", str(out)]
    assert agreement.main(argv) == 1
    assert calls == ["torch", "onnx"]
    assert "clips [230]: segmentations agree on less than" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["below_min_agreement"] == [230]
    (clip,) = report["clips"]
    assert clip["segmentation_agreement"] == pytest.approx(0.5) and clip["slots_max_abs"] == pytest.approx(0.5)


def test_agreement_command_passes_when_the_two_backends_answer_alike(monkeypatch, tmp_path):
    reference, _ = _two_backends()
    monkeypatch.setattr(agreement, "synthetic_clips", _blank_clips)

    def same_answers(model_dir, backend, clips, server_args=()):
        return dict.fromkeys(clips, reference)

    monkeypatch.setattr(agreement, "serve_clips", same_answers)
    assert agreement.main(["--agreement", "--model", str(tmp_path), "--clips", "2", "--frames", "2"]) == 0


# -- --local ----------------------------------------------------------------------------------------------


def _measurement(backend: str, batch: int, first_p50_ms: float, step_p50_ms: float) -> Measurement:
    first, step = Latency(first_p50_ms, 99.0, 50.0, 3), Latency(step_p50_ms, 99.0, 50.0, 3)
    return Measurement(backend, batch, first, step, frames_per_s=1.0)


def test_ratios_divide_the_backend_by_torch_and_the_step_by_the_first_step():
    results = [
        _measurement("torch", 1, first_p50_ms=5.0, step_p50_ms=2.0),
        _measurement("onnx", 1, first_p50_ms=4.0, step_p50_ms=1.0),
        _measurement("torch", 4, first_p50_ms=10.0, step_p50_ms=8.0),
        _measurement("onnx", 4, first_p50_ms=20.0, step_p50_ms=2.0),
    ]
    assert ratios(results) == pytest.approx(
        {
            "torch_step_over_first_step_b1": 0.4,
            "onnx_step_over_first_step_b1": 0.25,
            "onnx_step_over_torch_step_b1": 0.5,
            "onnx_first_step_over_torch_first_step_b1": 0.8,
            "torch_step_over_first_step_b4": 0.8,
            "onnx_step_over_first_step_b4": 0.1,
            "onnx_step_over_torch_step_b4": 0.25,
            "onnx_first_step_over_torch_first_step_b4": 2.0,
        }
    )


def test_frames_per_second_of_each_row_uses_that_rows_batch(model_dir):
    report = local.run(model_dir, ["torch"], [1, 3], iterations=2, warmup=0, threads=1, device="cpu")
    rows = {row["batch"]: row for row in report["results"]}
    assert set(rows) == {1, 3}
    for batch, row in rows.items():
        assert row["step"]["calls"] == 2
        assert row["frames_per_s"] == pytest.approx(batch * 1000.0 / row["step"]["mean_ms"], rel=1e-9)


def test_floor_report_divides_each_rows_latency_by_its_batch(model_dir, monkeypatch):
    """With a matmul rate of 1 GFLOP/s the floor per frame is FLOPs / 1e6 ms; a batch-4 row's p50 counts per frame."""
    monkeypatch.setattr("service.bench.floor.matmul_rate", lambda: 1e9)
    results = [
        {"backend": "torch", "batch": 1, "first_step": {"p50_ms": 3.0}, "step": {"p50_ms": 2.0}},
        {"backend": "torch", "batch": 4, "first_step": {"p50_ms": 12.0}, "step": {"p50_ms": 8.0}},
    ]
    floor = local.floor_report(model_dir, results, threads=1)
    flops = floor["flops_per_frame"]
    assert flops["first_step"] > flops["step"] > 0 and floor["matmul_gflops"] == pytest.approx(1.0)
    floor_ms = {kind: flops[kind] / 1e6 for kind in ("first_step", "step")}
    assert floor["floor_ms_per_frame"] == pytest.approx(floor_ms)
    above = floor["times_floor_p50_per_frame"]
    assert set(above) == {"torch_b1", "torch_b4"}
    for key in ("torch_b1", "torch_b4"):  # 3 ms per frame of first_step and 2 ms of step in both rows
        assert above[key]["first_step"] == pytest.approx(3.0 / floor_ms["first_step"])
        assert above[key]["step"] == pytest.approx(2.0 / floor_ms["step"])


# -- latency summary and FLOP count -----------------------------------------------------------------------


def test_summarize_reports_numpys_default_percentiles():
    """numpy's linear method on 1..100: p50 at 50.5, p95 at 95.05, p99 at 99.01."""
    assert summarize(list(range(1, 101))) == {
        "count": 100,
        "mean": 50.5,
        "p50": 50.5,
        "p95": 95.05,
        "p99": 99.01,
        "max": 100.0,
    }
    assert summarize([]) == {"count": 0}


def test_flop_count_has_every_component_each_step_runs(model_dir):
    flops = count_flops(VideoSlotModel.from_pretrained(model_dir))
    first, step = flops.by_component["first_step"], flops.by_component["step"]
    assert set(first) == {"encoder", "initializer", "aggregator", "decoder"}
    assert set(step) == {"encoder", "transition", "aggregator", "decoder"}
    assert all(value > 0 for value in (*first.values(), *step.values()))
    assert first["decoder"] == step["decoder"]  # the same decoder on one frame in both steps
    assert sum(first.values()) <= flops.first_step and sum(step.values()) <= flops.step
