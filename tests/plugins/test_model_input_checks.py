"""``VideoSlotModel.first_step`` / ``step`` / ``forward`` refuse input the model cannot run with a ``ValueError``
naming the fix, before the encoder sees it (``uint8`` frames would otherwise be blamed on the encoder plugin, other
sizes fail on a shape deep inside, other layouts and dtypes in the first layer), and the check stays out of ONNX
export tracing."""

from __future__ import annotations

import copy
import inspect
import re
import warnings

import numpy as np
import pytest
import torch

from plugins import SlotState, VideoSlotModel

FRAME_MISTAKES = {
    "uint8 0-255": (lambda f: (f * 255).to(torch.uint8), "floating-point frames in [0, 1], got torch.uint8", "/ 255"),
    "float64": (lambda f: f.double(), "weights are torch.float32, got frames of torch.float64", ".to(torch.float32)"),
    "channels last": (
        lambda f: f.permute(0, 2, 3, 1), "laid out [B, 3, H, W], got shape (2, 16, 16, 3)", "permute(0, 3, 1, 2)"
    ),
    "no batch axis": (lambda f: f[0], "laid out [B, 3, H, W], got shape (3, 16, 16)", "unsqueeze(0)"),
    "a video": (lambda f: f[:, None], "got shape (2, 1, 3, 16, 16)", "model(video)"),
    "another size": (
        lambda f: torch.nn.functional.interpolate(f, size=(24, 32)),
        "image_size 16x16 (H x W), got 24x32",
        "resize to image_size",
    ),
    "a numpy array": (lambda f: f.numpy(), "torch.Tensor [B, 3, H, W], got numpy.ndarray", "torch.from_numpy"),
}  # fmt: skip


def _frames() -> torch.Tensor:
    """``[2, 3, 16, 16]`` in ``[0, 1]``: the tiny model's input."""
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mistake", FRAME_MISTAKES)
def test_first_step_and_step_name_the_fix_for_a_usual_input_mistake(tiny_model: VideoSlotModel, mistake) -> None:
    convert, problem, fix = FRAME_MISTAKES[mistake]
    tiny_model.eval()
    with torch.no_grad():
        _, state = tiny_model.first_step(_frames())  # the right input runs
        wrong = convert(_frames())
        for call in (lambda: tiny_model.first_step(wrong), lambda: tiny_model.step(wrong, state)):
            with pytest.raises(ValueError) as refused:
                call()
            assert problem in str(refused.value) and fix in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("convert", "problem", "fix"),
    [
        (lambda v: (v * 255).to(torch.uint8), "floating-point video in [0, 1], got torch.uint8", "video.float()"),
        (lambda v: v.permute(0, 1, 3, 4, 2), "got shape (2, 4, 16, 16, 3)", "video.permute(0, 1, 4, 2, 3)"),
        (lambda v: v[:, 0], "laid out [B, T, 3, H, W], got shape (2, 3, 16, 16)", "model.first_step"),
        (lambda v: v[..., :8], "image_size 16x16 (H x W), got 16x8", "resize to image_size"),
        (lambda v: v[:, :0], "with T >= 1", "(2, 0, 3, 16, 16)"),
    ],
)  # fmt: skip
def test_forward_names_the_fix_in_the_video_layout(tiny_model: VideoSlotModel, video, convert, problem, fix) -> None:
    with pytest.raises(ValueError) as refused:
        tiny_model(convert(video))
    assert problem in str(refused.value) and fix in str(refused.value), str(refused.value)


def test_a_model_converted_to_another_dtype_takes_frames_of_that_dtype(tiny_model: VideoSlotModel) -> None:
    """The check remembers the dtype it last matched; converting a copy of the model (which keeps that memory) to
    float64 must neither refuse float64 frames nor let float32 ones through to the first layer."""
    tiny_model.eval()
    with torch.no_grad():
        tiny_model.first_step(_frames())
        double = copy.deepcopy(tiny_model).double()
        out, state = double.first_step(_frames().double())
        assert out.slots.dtype == torch.float64
        double.step(_frames().double(), state)
        with pytest.raises(ValueError, match=re.escape("weights are torch.float64, got frames of torch.float32")):
            double.step(_frames(), state)


def test_autocast_runs_frames_of_another_dtype_than_the_weights(tiny_model: VideoSlotModel) -> None:
    """Mixed precision feeds weights of one dtype with inputs of another; the dtype is not compared under it, and
    what passed there is still refused outside it."""
    tiny_model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = tiny_model.first_step(_frames().bfloat16())
        assert torch.isfinite(out.slots.float()).all()
        with pytest.raises(ValueError, match=re.escape("weights are torch.float32, got frames of torch.bfloat16")):
            tiny_model.first_step(_frames().bfloat16())


def test_the_checks_stay_out_of_a_torchscript_trace(tiny_model: VideoSlotModel) -> None:
    """ONNX export traces the model (sizes are tensors there): the input check adds no tracer warning and the
    traced step runs other batch sizes."""

    class Step(torch.nn.Module):
        def __init__(self, model: VideoSlotModel) -> None:
            super().__init__()
            self.model = model

        def forward(self, frames: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
            out, _ = self.model.step(frames, SlotState(slots=slots))
            return out.slots

    tiny_model.eval()
    with torch.no_grad():
        _, state = tiny_model.first_step(_frames())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(Step(tiny_model), (_frames(), state.slots), check_trace=False)
        lines, first = inspect.getsourcelines(VideoSlotModel._check_input)
        source = inspect.getsourcefile(VideoSlotModel)
        inside = [w for w in caught if w.filename == source and first <= w.lineno < first + len(lines)]
        assert not inside, [f"line {w.lineno}: {w.message}" for w in inside]
        single = _frames()[:1]
        expected, _ = tiny_model.step(single, SlotState(slots=state.slots[:1]))
        torch.testing.assert_close(traced(single, state.slots[:1]), expected.slots)


def test_right_frames_from_numpy_run(tiny_model: VideoSlotModel) -> None:
    """The fix the messages name works: uint8 numpy frames, converted as told, run."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)  # [B, H, W, 3]
    frames = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    tiny_model.eval()
    with torch.no_grad():
        out, _ = tiny_model.first_step(frames)
    assert out.slots.shape == (1, 3, 16)


@pytest.mark.parametrize(("frames_rows", "state_rows"), [(1, 2), (2, 1)])
def test_step_refuses_a_state_of_another_batch_than_its_frames(
    tiny_model: VideoSlotModel, frames_rows: int, state_rows: int
) -> None:
    """Without it a batch of one was broadcast against the other input's rows: an answer per row, each mixing
    videos."""
    with torch.no_grad():
        _, state = tiny_model.first_step(_frames())
        with pytest.raises(ValueError, match=f"batch of {frames_rows} frames and a state of {state_rows} rows"):
            tiny_model.step(_frames()[:frames_rows], SlotState(slots=state.slots[:state_rows]))
