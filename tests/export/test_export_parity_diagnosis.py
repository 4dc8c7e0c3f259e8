"""A failed parity check says when the difference began and how large PyTorch's own slots are, so a model that
diverges (slots growing over the frames amplify float rounding) can be told from an exporter bug."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, quick_export, save_tiny_model

from plugins import SlotState, VideoSlotModel
from service.backends.manifest import MANIFEST_FILE
from training.export import ExportError, ExportOptions, export_model, read_manifest
from training.export.parity import measure_parity, synthetic_video


class _Output:
    def __init__(self, slots: np.ndarray, masks: np.ndarray) -> None:
        self.slots, self.masks = slots, masks


class TorchRuntime:
    """PyTorch itself as the runtime under test, with ``noise`` added to the slots from frame ``start`` on."""

    def __init__(self, model: VideoSlotModel, noise: float, start: int) -> None:
        self.model, self.noise, self.start, self.calls = model, noise, start, 0
        self.name = "torch with noise"

    def _out(self, out) -> _Output:  # type: ignore[no-untyped-def]
        noise = self.noise if self.calls >= self.start else 0.0
        self.calls += 1
        return _Output(out.slots.numpy() + noise, out.masks.numpy())

    def first_step(self, frames: np.ndarray) -> _Output:
        with torch.inference_mode():
            out, _ = self.model.first_step(torch.from_numpy(frames))
        return self._out(out)

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Output:
        with torch.inference_mode():
            out, _ = self.model.step(torch.from_numpy(frames), SlotState(slots=torch.from_numpy(state)))
        return self._out(out)


@pytest.fixture(scope="module")
def model() -> VideoSlotModel:
    torch.manual_seed(0)
    return VideoSlotModel(**SERVICE_TINY_MODEL).eval()


def reference_slot_magnitude(model: VideoSlotModel, video: np.ndarray) -> float:
    largest, state = 0.0, None
    with torch.inference_mode():
        for frames in video:
            tensor = torch.from_numpy(frames)
            out, next_state = model.first_step(tensor) if state is None else model.step(tensor, state)
            state = SlotState(slots=next_state.slots)
            largest = max(largest, float(out.slots.abs().max()))
    return largest


def test_the_report_records_the_first_frame_over_the_limit_and_pytorchs_slot_magnitude(model):
    video = synthetic_video(tuple(SERVICE_TINY_MODEL["image_size"]), frames=5, videos=1)
    report = measure_parity(model, TorchRuntime(model, 1e-2, start=3), "late", video, ())
    assert not report.passed and report.first_frame_over_limit == 3
    assert report.reference_slots_max_abs == pytest.approx(reference_slot_magnitude(model, video), rel=1e-6)
    exact = measure_parity(model, TorchRuntime(model, 0.0, start=0), "exact", video, ())
    assert exact.passed and exact.first_frame_over_limit is None


def test_a_failed_export_says_when_the_difference_began_and_how_large_the_slots_are(model, tmp_path, monkeypatch):
    import training.export.exporter as exporter

    source = save_tiny_model(tmp_path / "model")
    reloaded = VideoSlotModel.from_pretrained(source).eval()
    monkeypatch.setattr(exporter, "OrtGraphs", lambda first, step: TorchRuntime(reloaded, 1e-2, start=2))
    with pytest.raises(ExportError) as error:
        export_model(source, tmp_path / "out", ExportOptions(parity_frames=4, parity_videos=1, batch_sizes=()))
    message = str(error.value)
    assert "first exceeded the limit at frame 2 of 4 (frame 0 is first_step)" in message
    video = synthetic_video(tuple(SERVICE_TINY_MODEL["image_size"]), frames=4, videos=1)
    assert f"PyTorch's own slots reach max |slot| {reference_slot_magnitude(reloaded, video):.3g}" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


def test_parity_records_written_before_the_diagnosis_fields_still_read(tmp_path):
    out = quick_export(save_tiny_model(tmp_path / "model"), tmp_path / "export")
    parity = read_manifest(out).parity["onnxruntime"]
    assert parity.first_frame_over_limit is None and parity.reference_slots_max_abs > 0
    raw = json.loads((out / MANIFEST_FILE).read_text())
    for field in ("first_frame_over_limit", "reference_slots_max_abs"):
        del raw["parity"]["onnxruntime"][field]
    (out / MANIFEST_FILE).write_text(json.dumps(raw))
    older = read_manifest(out).parity["onnxruntime"]
    assert older.passed and older.first_frame_over_limit is None and older.reference_slots_max_abs == 0.0
