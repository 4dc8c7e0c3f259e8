"""The ``step`` graph fails on ``frames`` and ``prev_slots`` of different batch sizes instead of broadcasting one
against the other (``training.export.batch_check``), in ONNX Runtime at every optimisation level and in PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, quick_export, save_tiny_model

from plugins import SlotState, VideoSlotModel
from training.export import check_operators
from training.export.batch_check import same_batch
from training.export.graphs import StepGraph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def exported(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(source, tmp_path_factory.mktemp("export"))


def inputs(frames: int, slots: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    num_slots, slot_dim = SERVICE_TINY_MODEL["num_slots"], SERVICE_TINY_MODEL["slot_dim"]
    return {
        "frames": rng.random((frames, 3, *SERVICE_TINY_MODEL["image_size"]), dtype=np.float32),
        "prev_slots": rng.standard_normal((slots, num_slots, slot_dim)).astype(np.float32),
    }


def session(exported: Path, level: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4  # the failing node's error is what the test expects
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(exported / "step.onnx"), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("frames", "slots"), [(1, 4), (4, 1), (3, 2)])
def test_the_step_graph_fails_on_two_batch_sizes(exported, level, frames, slots):
    with pytest.raises(Exception, match=r"Concat") as failed:
        session(exported, level).run(None, inputs(frames, slots))
    assert type(failed.value).__module__.startswith("onnxruntime")


@pytest.mark.parametrize("level", LEVELS)
def test_one_batch_size_runs_as_pytorch_does(exported, source, level):
    feed = inputs(3, 3)
    slots, masks = session(exported, level).run(None, feed)
    model = VideoSlotModel.from_pretrained(source).eval()
    with torch.no_grad():
        out, _ = model.step(torch.from_numpy(feed["frames"]), SlotState(slots=torch.from_numpy(feed["prev_slots"])))
    np.testing.assert_allclose(slots, out.slots.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(masks, out.masks.numpy(), atol=1e-5, rtol=0)


def test_the_check_adds_only_operators_tensorrt_parses_and_no_shape_computation(exported):
    proto = onnx.load(str(exported / "step.onnx"))
    report = check_operators(proto)
    assert report.ok, report.problems
    assert "Concat" in report.operators and "Shape" not in report.operators


def test_the_traced_module_refuses_two_batch_sizes_in_pytorch(source):
    model = VideoSlotModel.from_pretrained(source).eval()
    graph = StepGraph(model)
    for frames, slots in ((1, 4), (4, 1)):
        feed = {name: torch.from_numpy(array) for name, array in inputs(frames, slots).items()}
        with pytest.raises(ValueError, match=rf"step got {frames} frames but previous slots of {slots} streams"):
            graph(feed["frames"], feed["prev_slots"])


def test_same_batch_gives_the_slots_back_unchanged():
    slots = torch.randn(2, 3, 5)
    passed = same_batch(slots, torch.rand(2, 3, 4, 4), 3, 5)
    assert torch.equal(passed, slots)
