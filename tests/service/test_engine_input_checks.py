"""Every engine refuses frames outside its contract (float32 ``[B, 3, H, W]`` at the card's ``image_size``) with a
``ValueError`` naming the fix (``service.engine.check_batch``), instead of casting ``uint8`` 0-255 values to float
and running the model on them (the ``onnx`` backend did) or failing with a message from deep inside the model; and
``load_engine`` takes the model folder as a string too."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from service_helpers import SERVICE_TINY_MODEL

from service.engine import Engine, check_batch, load_engine

HEIGHT, WIDTH = SERVICE_TINY_MODEL["image_size"]


def _frames(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((batch, 3, HEIGHT, WIDTH), dtype=np.float32)


MISTAKES = {
    "uint8 0-255": (lambda f: (f * 255).astype(np.uint8), "frames are uint8", "frames.astype(np.float32) / 255"),
    "int64": (lambda f: (f * 255).astype(np.int64), "frames are int64", "frames.astype(np.float32) / 255"),
    "channels last": (lambda f: f.transpose(0, 2, 3, 1), "[2, 24, 24, 3] are not laid out", "transpose(0, 3, 1, 2)"),
    "no batch axis": (lambda f: f[0], "[3, 24, 24] are not laid out [B, 3, H, W]", "frames[None]"),
    "one channels-last frame": (lambda f: f[0].transpose(1, 2, 0), "[24, 24, 3]", "transpose(2, 0, 1)[None]"),
    "a torch tensor": (lambda f: torch.from_numpy(f), "not torch.Tensor", "tensor.cpu().numpy()"),
    "another size": (lambda f: np.pad(f, ((0, 0), (0, 0), (0, 8), (0, 8))), "frames are 32x32", "resize them"),
}  # fmt: skip


@pytest.fixture
def engine(backend, request) -> Engine:
    name, device = backend
    directory = request.getfixturevalue("model_dir" if name == "torch" else "exported_model_dir")
    return load_engine(name, directory, name="tiny", device=device, max_batch_size=4)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_every_engine_refuses_a_usual_input_mistake_naming_the_fix(engine: Engine, mistake: str) -> None:
    convert, problem, fix = MISTAKES[mistake]
    state = engine.first_step(_frames()).state  # the contract's frames run
    wrong = convert(_frames())
    for call in (lambda: engine.first_step(wrong), lambda: engine.step(wrong, state)):
        with pytest.raises(ValueError) as refused:
            call()
        assert problem in str(refused.value) and fix in str(refused.value), str(refused.value)


def test_frames_of_another_size_are_refused_naming_the_cards_image_size() -> None:
    frames = np.zeros((1, 3, 480, 854), np.float32)
    check_batch(frames)  # without the card's size only the layout is checked
    with pytest.raises(ValueError, match=re.escape("frames are 480x854 (H x W), but the model takes 24x24")) as got:
        check_batch(frames, image_size=(HEIGHT, WIDTH))
    assert "resize them to the card's image_size" in str(got.value)
    check_batch(_frames(), image_size=(HEIGHT, WIDTH))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_floating_frames_of_the_contract_layout_pass(dtype) -> None:
    """What the server sends (float32) and what the onnx and tensorrt backends convert (other floats) pass."""
    frames = _frames(3).astype(dtype)
    check_batch(frames, np.zeros((3, 4, 8), np.float32), image_size=(HEIGHT, WIDTH))


def test_a_model_folder_given_as_a_string_loads_and_runs(model_dir) -> None:
    engine = load_engine("torch", str(model_dir), name="tiny", device="cpu", max_batch_size=1)
    out = engine.first_step(_frames(1))
    assert out.slots.shape == (1, SERVICE_TINY_MODEL["num_slots"], SERVICE_TINY_MODEL["slot_dim"])
