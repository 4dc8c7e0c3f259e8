"""Parity judged against float64 PyTorch where fp32 PyTorch's own rounding exceeds the limit.

A model can move its outputs by more than the fp32 limit through float32 rounding alone (large slots, or an input
it amplifies rounding at); there a runtime whose own error is what fp32 rounding gives (the float64 answer
rounded, or another fp32 implementation) must not fail the export, and one wrong by more than the limit where
rounding is small must, saying how far the runtime and fp32 PyTorch each are from float64.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL

from plugins import SlotState, VideoSlotModel
from service.backends.manifest import MANIFEST_FILE, Float64Reference, Manifest
from training.export import ExportError, ExportOptions, export_model, read_manifest
from training.export.exporter import ParityFailed
from training.export.float64_reference import _moved_weights
from training.export.parity import FP32_MAX_ABS, measure_parity, synthetic_video
from training.export.parity_calls import torch_caller

AGGREGATOR_SCALE = 10.0
"""Slot Attention's weights times this give slots of about 1e3, whose fp32 rounding alone (a relative 1e-7) is
above the 1e-4 limit: fp32 PyTorch is measurably off float64 PyTorch."""


class _Output:
    def __init__(self, slots: np.ndarray, masks: np.ndarray) -> None:
        self.slots, self.masks = slots, masks


class Float64Runtime:
    """A float64 copy of ``model`` as the runtime under test: its outputs are float64 PyTorch's, rounded to
    float32 (as a runtime returns them), plus ``noise`` on the slots."""

    def __init__(self, model: VideoSlotModel, noise: float = 0.0) -> None:
        self.model, self.noise = copy.deepcopy(model).double(), noise
        self.name = "float64 torch"

    def _out(self, slots: torch.Tensor, masks: torch.Tensor) -> _Output:
        return _Output((slots.numpy() + self.noise).astype(np.float32), masks.numpy().astype(np.float32))

    def first_step(self, frames: np.ndarray) -> _Output:
        with torch.inference_mode():
            out, _ = self.model.first_step(torch.from_numpy(frames).double())
        return self._out(out.slots, out.masks)

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Output:
        with torch.inference_mode():
            slots = SlotState(slots=torch.from_numpy(state).double())
            out, _ = self.model.step(torch.from_numpy(frames).double(), slots)
        return self._out(out.slots, out.masks)


class MovedWeightsRuntime:
    """Another correct fp32 implementation of ``model``: fp32 PyTorch with every weight moved by one unit in the
    last place (directions drawn with ``seed``), the kind of difference an exported graph's folded constants make."""

    def __init__(self, model: VideoSlotModel, seed: int) -> None:
        self.call = torch_caller(_moved_weights(model, torch.Generator().manual_seed(seed)))

    def first_step(self, frames: np.ndarray) -> _Output:
        out = self.call(frames, None)[0]
        return _Output(out.slots, out.masks)

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Output:
        out = self.call(frames, state)[0]
        return _Output(out.slots, out.masks)


def amplifying_model() -> VideoSlotModel:
    """The tiny service model with Slot Attention's weights scaled by :data:`AGGREGATOR_SCALE`."""
    torch.manual_seed(0)
    model = VideoSlotModel(**SERVICE_TINY_MODEL).eval()
    with torch.no_grad():
        for parameter in model.aggregator.parameters():
            parameter.mul_(AGGREGATOR_SCALE)
    return model


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return synthetic_video(tuple(SERVICE_TINY_MODEL["image_size"]), frames=4, videos=1)


def test_a_runtime_at_float64_passes_where_fp32_pytorchs_own_rounding_exceeds_the_limit(video):
    model = amplifying_model()
    report = measure_parity(model, Float64Runtime(model), "float64", video, (1, 3))
    assert report.slots_max_abs > FP32_MAX_ABS, "the model must move fp32 PyTorch off float64 by more than the limit"
    check = report.float64_reference
    assert check is not None and not check.error
    assert report.passed, check
    assert check.excess_max_abs <= FP32_MAX_ABS
    assert check.runtime_slots_max_abs < check.pytorch_slots_max_abs <= check.rounding_slots_max_abs
    assert check.pytorch_slots_max_abs > FP32_MAX_ABS and check.moved_weight_runs > 0


def test_another_fp32_implementation_farther_from_float64_than_fp32_pytorch_passes(video):
    """fp32 PyTorch as saved is one draw of the rounding: another correct fp32 implementation can be farther from
    float64 than it by more than the limit (as a fine-tuned model's ONNX graph was), and must still pass."""
    model = amplifying_model()
    report = measure_parity(model, MovedWeightsRuntime(model, seed=1), "moved weights", video, (1, 3))
    check = report.float64_reference
    assert check is not None and report.passed, check
    assert check.runtime_slots_max_abs - check.pytorch_slots_max_abs > FP32_MAX_ABS


def test_without_the_float64_reference_the_fp32_comparison_alone_decides(video):
    """fp16 checks (``float64_reference=False``) keep their own semantics: fp32 PyTorch is the reference."""
    model = amplifying_model()
    report = measure_parity(model, Float64Runtime(model), "float64", video, (1,), float64_reference=False)
    assert not report.passed and report.float64_reference is None


def test_a_runtime_within_the_limit_runs_no_float64_reference(video):
    torch.manual_seed(0)
    model = VideoSlotModel(**SERVICE_TINY_MODEL).eval()
    report = measure_parity(model, Float64Runtime(model), "float64", video, (1,))
    assert report.passed and report.slots_max_abs <= FP32_MAX_ABS and report.float64_reference is None


def save(model: VideoSlotModel, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


def test_the_export_passes_and_records_both_distances_from_float64(tmp_path, monkeypatch):
    import training.export.exporter as exporter

    source = save(amplifying_model(), tmp_path / "model")
    reloaded = VideoSlotModel.from_pretrained(source).eval()
    monkeypatch.setattr(exporter, "OrtGraphs", lambda first, step: Float64Runtime(reloaded))
    options = ExportOptions(parity_frames=3, parity_videos=1, batch_sizes=(1,))
    manifest = export_model(source, tmp_path / "out", options)
    report = read_manifest(tmp_path / "out").parity["onnxruntime"]
    assert report == manifest.parity["onnxruntime"] and report.passed
    assert report.slots_max_abs > FP32_MAX_ABS
    check = report.float64_reference
    assert isinstance(check, Float64Reference)
    assert check.runtime_slots_max_abs < check.pytorch_slots_max_abs


def test_a_runtime_off_by_1e_3_still_fails_naming_both_distances_from_float64(tmp_path, monkeypatch):
    import training.export.exporter as exporter

    torch.manual_seed(0)
    source = save(VideoSlotModel(**SERVICE_TINY_MODEL).eval(), tmp_path / "model")
    reloaded = VideoSlotModel.from_pretrained(source).eval()
    monkeypatch.setattr(exporter, "OrtGraphs", lambda first, step: Float64Runtime(reloaded, noise=1e-3))
    with pytest.raises(ExportError) as error:
        export_model(source, tmp_path / "out", ExportOptions(parity_frames=3, parity_videos=1, batch_sizes=(1,)))
    failed = error.value
    assert isinstance(failed, ParityFailed)
    check = failed.report.float64_reference
    assert check is not None and check.excess_max_abs > FP32_MAX_ABS
    assert check.runtime_slots_max_abs >= 1e-3 and check.pytorch_slots_max_abs < 1e-5
    message = str(failed)
    assert f"float64 torch is {check.runtime_at_excess:.3g} from float64" in message
    assert f"where fp32 PyTorch itself is {check.pytorch_at_excess:.3g}" in message
    assert "more than fp32 rounding explains" in message and len(message.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_float64_record_reads_back_and_older_manifests_lack_it(tmp_path, monkeypatch):
    import training.export.exporter as exporter

    source = save(amplifying_model(), tmp_path / "model")
    reloaded = VideoSlotModel.from_pretrained(source).eval()
    monkeypatch.setattr(exporter, "OrtGraphs", lambda first, step: Float64Runtime(reloaded))
    export_model(source, tmp_path / "out", ExportOptions(parity_frames=2, parity_videos=1, batch_sizes=()))
    raw = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    written = Manifest.from_json(json.dumps(raw)).parity["onnxruntime"].float64_reference
    assert written is not None and written.excess_at
    raw["parity"]["onnxruntime"]["float64_reference"]["added_by_a_newer_exporter"] = 1
    assert Manifest.from_json(json.dumps(raw)).parity["onnxruntime"].float64_reference == written
    del raw["parity"]["onnxruntime"]["float64_reference"]
    assert Manifest.from_json(json.dumps(raw)).parity["onnxruntime"].float64_reference is None


def test_the_fp16_check_runs_no_float64_reference(video):
    """The TensorRT fp16 check keeps its own thresholds against fp32 PyTorch alone."""
    from training.export.exporter import FP16_MAX_ABS, _checked_parity

    model = amplifying_model()
    with pytest.raises(ParityFailed) as error:
        _checked_parity(model, Float64Runtime(model, noise=2 * FP16_MAX_ABS), "fp16", video, (1,), fp16=True)
    assert error.value.report.max_abs_threshold == FP16_MAX_ABS and error.value.report.float64_reference is None
    assert "float64" not in str(error.value)
