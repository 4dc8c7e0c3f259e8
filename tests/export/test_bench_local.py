"""``python -m service.bench --local``: the in-process engine benchmark, its report and the compute floor; and
``--agreement``, two backends serving the same streams."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL as TINY_MODEL
from service_helpers import quick_export, save_tiny_model

from plugins import VideoSlotModel
from service.bench.__main__ import main as bench_main
from service.bench.floor import count_flops, matmul_rate
from service.bench.local import Latency

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_the_device_is_read_as_the_server_reads_it(model_dir, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--local", "--model", str(model_dir), "--backends", "torch", "--batch-sizes", "1", "--no-floor"]
    assert bench_main([*argv, "--device", "CPU", "--iterations", "1", "--warmup", "0", "--json", str(out)]) == 0
    assert [result["backend"] for result in json.loads(out.read_text())["results"]] == ["torch"]


def test_local_benchmark_reports_both_backends_ratios_and_floor(model_dir, tmp_path, capsys):
    """A plain model directory is exported on the fly for the onnx backend."""
    out = tmp_path / "bench.json"
    argv = ["--local", "--model", str(model_dir), "--backends", "torch,onnx", "--batch-sizes", "1,3"]
    assert bench_main([*argv, "--iterations", "3", "--warmup", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    measured = {(r["backend"], r["batch"]) for r in report["results"]}
    assert measured == {("torch", 1), ("onnx", 1), ("torch", 3), ("onnx", 3)}
    for result in report["results"]:
        for kind in ("first_step", "step"):
            assert result[kind]["calls"] == 3 and 0 < result[kind]["p50_ms"] <= result[kind]["p99_ms"]
        assert result["frames_per_s"] > 0
    assert {"onnx_step_over_torch_step_b1", "torch_step_over_first_step_b3"} <= set(report["ratios"])
    floor = report["floor"]
    assert floor["flops_per_frame"]["first_step"] > floor["flops_per_frame"]["step"] > 0
    assert floor["matmul_gflops"] > 0 and set(floor["times_floor_p50_per_frame"]) == {
        "torch_b1",
        "onnx_b1",
        "torch_b3",
        "onnx_b3",
    }
    assert "| onnx | 1 |" in capsys.readouterr().out
    record, settings = report["provenance"], report["settings"]
    assert record["argv"] == [*argv, "--iterations", "3", "--warmup", "1", "--json", str(out)]
    assert record["versions"]["onnxruntime"] and record["versions"]["numpy"] and record["machine"]["gpu"] is None
    assert settings["backends"] == ["torch", "onnx"] and settings["batch_sizes"] == [1, 3] and settings["floor"]
    assert settings["backend_options"]["onnx"]["intra_op_threads"] == settings["threads"] == 1
    assert report["load_average"]["before"] and report["load_average"]["after"]


def test_a_model_directory_without_onnx_runtime_is_refused_in_one_line(model_dir, monkeypatch, capsys):
    """The onnx backend needs the directory exported first, which runs the graphs in ONNX Runtime: without it the
    run ends before exporting, with the extra to install, as for an export directory."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    argv = ["--local", "--model", str(model_dir), "--backends", "onnx", "--batch-sizes", "1", "--no-floor"]
    assert bench_main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "has no manifest.json and must be exported first" in error
    assert "pip install 'slotstream[onnx]'" in error


def test_bench_without_local_explains(capsys):
    assert bench_main([]) == 2
    assert "--local" in capsys.readouterr().err


def test_flop_count_grows_with_iterations(model_dir):
    model = VideoSlotModel.from_pretrained(model_dir)
    flops = count_flops(model)
    more = VideoSlotModel(**{**TINY_MODEL, "later_iters": 3}).eval()
    assert count_flops(more).step > flops.step
    assert "aten.convolution" in flops.by_operator
    first, step = flops.by_component["first_step"], flops.by_component["step"]
    assert "initializer" in first and "transition" not in first
    assert "transition" in step and "initializer" not in step
    assert first["encoder"] == step["encoder"] and first["aggregator"] > step["aggregator"]  # 3 iterations vs 1
    assert sum(first.values()) <= flops.first_step


def test_matmul_rate_is_plausible():
    assert 1e8 < matmul_rate(size=64, repeats=3) < 1e14


def test_latency_percentiles():
    stats = Latency.of([0.001] * 99 + [0.101])
    assert stats.p50_ms == pytest.approx(1.0) and stats.p99_ms > 1.0 and stats.calls == 100


def test_provenance_does_not_need_onnxruntime(monkeypatch):
    """A torch-only benchmark must not fail at its end for want of ONNX Runtime."""
    from service.bench.provenance import provenance

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes ``import onnxruntime`` raise ImportError
    report = provenance(["--local"], device="cpu")
    assert report["versions"]["onnxruntime"] is None and report["versions"]["torch"]


def test_agreement_serves_the_same_streams_with_two_backends_and_compares_them(model_dir, tmp_path, capsys):
    export, out = quick_export(model_dir, tmp_path / "export"), tmp_path / "agreement.json"
    argv = ["--agreement", "--model", str(export), "--clips", "2", "--frames", "5", "--size", "32"]
    assert bench_main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["backends"] == ["torch", "onnx"] and [c["seed"] for c in report["clips"]] == [230, 231]
    for clip in report["clips"]:
        assert clip["frames"] == 5 and clip["segmentation_agreement"] >= 0.999 and clip["slots_max_abs"] < 1e-3
    assert "| 230 | 5 |" in capsys.readouterr().out
    assert report["passed"] is True and report["below_min_agreement"] == []
    assert report["settings"] == {
        "clips": 2,
        "seed": 230,
        "frames": 5,
        "size": 32,
        "min_agreement": 0.999,
        "server_args": [],
        "device": "cpu",
    }
    assert report["provenance"]["argv"] == [*argv, "--json", str(out)] and report["provenance"]["machine"]["cpu"]


def test_agreement_verdict_compares_each_clip_with_the_mark():
    from service.bench.agreement import ClipAgreement, failing_clips

    results = [ClipAgreement(230, 5, 1.0, 0.0, 0.0), ClipAgreement(231, 5, 0.998, 0.0, 0.0)]
    assert failing_clips(results, 0.999) == [231] and failing_clips(results, 0.998) == []


def test_agreement_refuses_bad_flags_before_starting_servers(tmp_path, capsys):
    assert bench_main(["--agreement", "--model", str(tmp_path), "--backends", "torch", "--clips", "0"]) == 2
    err = capsys.readouterr().err
    assert "--backends names two backends" in err and "need --clips and --frames >= 1" in err
