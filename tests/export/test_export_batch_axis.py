"""A component that fixes the batch size (a Python loop or branch over ``x.shape[0]``) is named by the export and by
``check_exportable``: the graphs are traced at one batch size and their batch axis is dynamic, so such a graph fails
or answers wrongly at every other batch size, and ONNX Runtime's own error names whichever later node the wrong
batch size reached (the aggregator's ``Einsum``), not the component."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import plugins.manager
from plugins import ComponentRegistry, Transition, VideoSlotModel, build_plugin_manager
from plugins.interfaces import ContractViolation
from plugins.testing import build_tiny, check_exportable, tiny_model_config
from training.export import ExportError, ExportOptions, export_model
from training.export.batch_axis import fixed_batch_diagnosis
from training.export.graphs import EXAMPLE_BATCH
from training.export.parity import BatchSizeError, measure_parity, synthetic_video

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

FAST = ExportOptions(parity_frames=2, parity_videos=1, batch_sizes=(1, 3))


class LoopOverBatch(Transition):
    """Handles each stream of the batch on its own, in a Python loop: traced at batch 2, the graph has 2 rows."""

    name = "loop_over_batch"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1]  # [B, K, D]
        return torch.stack([slots[i] * 0.5 for i in range(slots.shape[0])])


class RowByRow(Transition):
    """Damps each stream's slots in place, row by row: traced at batch 2, the graph damps rows 0 and 1 only (the
    tracer warns about no Python value here: the loop count is a size, not a tensor)."""

    name = "row_by_row"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1].clone()  # [B, K, D]
        for i in range(slots.shape[0]):
            slots[i] = slots[i] * 0.5
        return slots


def _line_of(cls: type, text: str) -> str:
    lines, start = inspect.getsourcelines(cls)
    return f"{inspect.getsourcefile(cls)}:{start + next(i for i, line in enumerate(lines) if text in line)}"


@pytest.fixture
def own() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_transition(LoopOverBatch)
    registry.add_transition(RowByRow)
    return registry


def _component(cls: type[Transition]) -> str:
    return re.escape(f"the transition '{cls.name}' ({cls.__module__}.{cls.__qualname__}, registered by plugin")


def _saved(own: ComponentRegistry, transition: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(plugins.manager, "_default_registry", own)  # from_pretrained finds the transition
    build_tiny(tiny_model_config(transition={"name": transition}), own).save_pretrained(folder)
    return folder


def test_check_exportable_names_a_loop_over_the_batch(own: ComponentRegistry, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(ContractViolation) as raised:
        check_exportable(tiny_model_config(transition={"name": "loop_over_batch"}), own)
    assert "onnxruntime" not in capfd.readouterr().err  # its log line would repeat the error before the report
    message = str(raised.value)
    assert f"the step graph was traced at batch {EXAMPLE_BATCH} and fails at batch 3" in message
    assert re.search(f"{_component(LoopOverBatch)} .*\\) fixes the batch size", message), message
    assert f"its traced operations first differ at {_line_of(LoopOverBatch, 'range(')}" in message
    assert "Python loop or branch over x.shape[0]" in message and "The batch axis of the exported graphs is dynamic"
    assert "InvalidArgument" not in message


def test_check_exportable_names_a_loop_that_leaves_the_shapes_alone(own: ComponentRegistry) -> None:
    """A graph that runs at batch 3 but answers as at batch 2: only values differ."""
    with pytest.raises(
        ContractViolation, match=r"traced at batch 2 and fails at batch 3 \(its slots differ"
    ) as raised:
        check_exportable(tiny_model_config(transition={"name": "row_by_row"}), own)
    assert re.search(f"{_component(RowByRow)} .*\\) fixes the batch size", str(raised.value))
    assert f"first differ at {_line_of(RowByRow, 'slots[i] = ')}" in str(raised.value)


def test_export_of_a_loop_over_the_batch_names_the_component_not_the_aggregator(
    own: ComponentRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _saved(own, "loop_over_batch", tmp_path / "model", monkeypatch)
    with pytest.raises(ExportError) as raised:
        export_model(source, tmp_path / "export", FAST)
    message = str(raised.value)
    assert message.startswith(f"the step graph was traced at batch {EXAMPLE_BATCH} and fails at batch 3"), message
    assert re.search(_component(LoopOverBatch), message)
    assert "(ONNX Runtime's own error: " in message  # kept, after the diagnosis
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    ("options", "fails_at", "after"),
    [
        (FAST, 1, "(onnxruntime "),  # the video at batch 1: the step graph's row 1 is out of range
        (ExportOptions(parity_frames=2, parity_videos=3, batch_sizes=(3,)), 3, "(parity: onnxruntime "),
    ],
    ids=["graph_fails", "parity_fails"],
)
def test_export_of_a_row_by_row_loop_names_the_component_where_the_parity_run_fails(
    own: ComponentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: ExportOptions,
    fails_at: int,
    after: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = _saved(own, "row_by_row", tmp_path / "model", monkeypatch)
    with pytest.raises(
        ExportError, match=f"the step graph was traced at batch 2 and fails at batch {fails_at}"
    ) as raised:
        export_model(source, tmp_path / "export", options)
    assert re.search(_component(RowByRow), str(raised.value))
    assert after in str(raised.value)
    assert "[E:onnxruntime" not in capfd.readouterr().err  # said once, in the error, not also in the runtime's log


class _FirstRows:
    """The model itself as a runtime, answering at most ``rows`` rows (as a graph traced at ``rows`` would)."""

    def __init__(self, model: VideoSlotModel, rows: int) -> None:
        self.model, self.rows = model, rows

    def first_step(self, frames: np.ndarray) -> object:
        with torch.inference_mode():
            out, _ = self.model.first_step(torch.from_numpy(frames))
        return _Rows(out.slots[: self.rows].numpy(), out.masks[: self.rows].numpy())

    def step(self, frames: np.ndarray, state: np.ndarray) -> object:
        return self.first_step(frames)


class _Rows:
    def __init__(self, slots: np.ndarray, masks: np.ndarray) -> None:
        self.slots, self.masks = slots, masks


def test_parity_names_the_graph_and_batch_size_a_runtime_answers_wrongly() -> None:
    model = build_tiny(tiny_model_config()).eval()
    video = synthetic_video(model.image_size, frames=2, videos=2)
    with pytest.raises(
        BatchSizeError, match=r"rows: the first_step graph answers 3 frames with slots \(2, "
    ) as raised:
        measure_parity(model, _FirstRows(model, 2), "rows", video, (1, 3))  # type: ignore[arg-type]
    assert (raised.value.which, raised.value.batch) == ("first_step", 3)


def test_a_model_that_keeps_the_batch_axis_dynamic_gets_no_diagnosis() -> None:
    model = build_tiny(tiny_model_config())
    assert fixed_batch_diagnosis(model, "first_step") is None and fixed_batch_diagnosis(model, "step") is None
    assert model.training, "the model's mode is restored"
