"""The export's parity check fails on segmentation disagreement alone: a runtime whose slots and soft masks stay
within the 1e-4 bound, but whose segmentation differs from PyTorch's on more pixels than the 99.9 % agreement
allows, fails ``measure_parity`` and the export, which says how much the segmentations agree.

The reference model's alpha logits are zeroed, so its soft masks are exactly ``1/K`` everywhere: every pixel is a
near-tie that the tie rule gives to slot 0. The runtime under test lowers slot 0 and raises slot 1 by 0.6e-4 at a
few pixels: the gap of 1.2e-4 is beyond the tie tolerance, so those pixels go to slot 1, while no soft mask moved
by more than 1e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import training.export.exporter as exporter
from plugins import SlotState, VideoSlotModel
from plugins.testing import TINY_MODEL, build_tiny
from training.export import ExportError, ExportOptions, export_model
from training.export.parity import FP32_AGREEMENT, FP32_MAX_ABS, measure_parity, synthetic_video

SHIFT = 0.6e-4
"""What the runtime moves two slots' soft masks by: within the 1e-4 bound, yet their gap (2 * SHIFT) is not a tie."""


def _tied_model() -> VideoSlotModel:
    """The tiny model with its decoder's alpha logits zeroed: soft masks exactly 1/K at every pixel."""
    model = build_tiny(TINY_MODEL, seed=0).eval()
    last = model.decoder.net[-1]  # Conv2d(channels, 4): RGB, then the alpha logit
    with torch.no_grad():
        last.weight[3].zero_()
        last.bias[3].zero_()
    return model


@dataclass(frozen=True)
class _Outputs:
    slots: np.ndarray
    masks: np.ndarray


def _break_ties(masks: np.ndarray, pixels: int) -> np.ndarray:
    """``masks [B, K, h, w]`` with slot 0 lowered and slot 1 raised by :data:`SHIFT` on the first ``pixels`` pixels
    of row 0."""
    masks = masks.copy()
    masks[:, 0, 0, :pixels] -= SHIFT
    masks[:, 1, 0, :pixels] += SHIFT
    return masks


class _TorchWithTieBreaks:
    """PyTorch itself as the runtime (exact slots), with :func:`_break_ties` applied to its soft masks."""

    def __init__(self, model: VideoSlotModel, pixels: int) -> None:
        self.model, self.pixels = model, pixels

    def _outputs(self, frames: np.ndarray, state: np.ndarray | None) -> _Outputs:
        with torch.inference_mode():
            tensor = torch.from_numpy(frames)
            if state is None:
                out, _ = self.model.first_step(tensor)
            else:
                out, _ = self.model.step(tensor, SlotState(slots=torch.from_numpy(state)))
        return _Outputs(out.slots.numpy(), _break_ties(out.masks.numpy(), self.pixels))

    def first_step(self, frames: np.ndarray) -> _Outputs:
        return self._outputs(frames, None)

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Outputs:
        return self._outputs(frames, state)


def test_the_reference_masks_are_all_ties() -> None:
    model = _tied_model()
    video = synthetic_video(tuple(TINY_MODEL["image_size"]), frames=1, videos=1)
    with torch.inference_mode():
        out, _ = model.first_step(torch.from_numpy(video[0]))
    assert torch.equal(out.masks, torch.full_like(out.masks, 1 / TINY_MODEL["num_slots"]))


def test_parity_fails_when_only_the_segmentation_disagrees_beyond_the_threshold() -> None:
    model = _tied_model()
    height, width = TINY_MODEL["image_size"]  # the decoder's masks are at the image size
    video = synthetic_video((height, width), frames=3, videos=2)
    assert measure_parity(model, _TorchWithTieBreaks(model, pixels=0), "exact", video, (1,)).passed

    report = measure_parity(model, _TorchWithTieBreaks(model, pixels=1), "tie breaks", video, (1,))
    assert report.slots_max_abs == 0.0
    assert report.masks_max_abs == pytest.approx(SHIFT, rel=1e-3) and report.masks_max_abs <= FP32_MAX_ABS
    assert report.argmax_tied == 1.0
    # One pixel of each 16x16 mask goes to slot 1 instead of slot 0: agreement 255/256 = 99.61 % < 99.9 %.
    assert report.argmax_agreement == pytest.approx(1 - 1 / (height * width))
    assert report.argmax_agreement < FP32_AGREEMENT == report.agreement_threshold
    assert not report.passed, "segmentations that disagree on 0.4 % of the pixels must fail parity"

    # The same runtime passes under a looser agreement threshold: the agreement alone decided the failure.
    loose = measure_parity(model, _TorchWithTieBreaks(model, pixels=1), "tie breaks", video, (1,), 1e-4, 0.99)
    assert loose.passed


class _OrtWithTieBreaks:
    """The exported graphs in ONNX Runtime, with :func:`_break_ties` applied to their soft masks."""

    def __init__(self, first_step: Path, step: Path) -> None:
        from training.export.parity import OrtGraphs

        self.inner = OrtGraphs(first_step, step)
        self.name = "tie-breaking onnxruntime"

    def first_step(self, frames: np.ndarray) -> _Outputs:
        out = self.inner.first_step(frames)
        return _Outputs(out.slots, _break_ties(out.masks, 1))

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Outputs:
        out = self.inner.step(frames, state)
        return _Outputs(out.slots, _break_ties(out.masks, 1))


def test_the_export_fails_on_segmentation_disagreement_and_says_how_much(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")
    _tied_model().save_pretrained(tmp_path / "model")
    monkeypatch.setattr(exporter, "OrtGraphs", _OrtWithTieBreaks)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"segmentations agree on 99\.6094% of the pixels \(need 99\.9%\)") as error:
        export_model(tmp_path / "model", out, ExportOptions(parity_frames=2, batch_sizes=(1,)))
    report = error.value.report  # type: ignore[attr-defined]
    assert report.masks_max_abs <= FP32_MAX_ABS and report.slots_max_abs <= FP32_MAX_ABS and not report.passed
    assert not out.exists() or list(out.iterdir()) == [], "a failed export publishes nothing"
