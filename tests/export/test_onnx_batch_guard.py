"""The ``onnx`` backend never hands ONNX Runtime an empty batch, which kills the process (SIGFPE), nor a ``step``
state of another batch size than its frames (``service.engine.check_batch``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, quick_export, save_tiny_model

from service.engine import load_engine

pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def frames(batch: int) -> np.ndarray:
    return np.random.default_rng(0).random((batch, 3, *SERVICE_TINY_MODEL["image_size"]), dtype=np.float32)


def test_an_empty_batch_is_refused_and_the_process_lives(exported):
    """Run in a child process: without the guard ONNX Runtime kills the process it runs in."""
    height, width = SERVICE_TINY_MODEL["image_size"]
    slots = (SERVICE_TINY_MODEL["num_slots"], SERVICE_TINY_MODEL["slot_dim"])
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np
        from service.engine import load_engine
        engine = load_engine("onnx", Path({str(exported)!r}), name="tiny", device="cpu", max_batch_size=2)
        empty = np.zeros((0, 3, {height}, {width}), dtype=np.float32)
        for call in (lambda: engine.first_step(empty),
                     lambda: engine.step(empty, np.zeros((0, *{slots}), np.float32)),
                     lambda: engine.warmup([0])):
            try:
                call()
            except ValueError as error:
                print("refused:", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"the process died (rc {done.returncode}): {done.stderr[-2000:]}"
    refused = [line for line in done.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 3, done.stdout
    assert all("a call needs at least one frame" in line for line in refused)


@pytest.mark.parametrize(("batch", "states"), [(1, 3), (3, 1)])
def test_a_state_of_another_batch_size_is_refused(exported, batch, states):
    engine = load_engine("onnx", exported, name="tiny", device="cpu", max_batch_size=4)
    state = engine.first_step(frames(states)).state
    with pytest.raises(ValueError, match=rf"step got {batch} frames but states of {states} streams"):
        engine.step(frames(batch), state)


def test_calls_of_one_batch_size_still_run(exported):
    engine = load_engine("onnx", exported, name="tiny", device="cpu", max_batch_size=4)
    first = engine.first_step(frames(2))
    assert engine.step(frames(2), first.state).slots.shape[0] == 2


@pytest.mark.parametrize(("batch", "states"), [(1, 3), (3, 1), (0, 0)])
def test_the_torch_backend_refuses_the_same_calls(tmp_path, batch, states):
    """The model alone would broadcast one row against the other input's three, answering rows that mix streams."""
    engine = load_engine("torch", save_tiny_model(tmp_path), name="tiny", device="cpu", max_batch_size=4)
    state = engine.first_step(frames(max(states, 1))).state[:states]
    expected = "a call needs at least one frame" if batch == 0 else rf"step got {batch} frames but states of {states}"
    with pytest.raises(ValueError, match=expected):
        engine.step(frames(batch), state)
