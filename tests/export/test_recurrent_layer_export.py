"""Transitions built on PyTorch's recurrent layers export: ``nn.GRU`` and ``nn.LSTM`` check their input and state
sizes in Python, which the tracer reports as tensors turned into Python booleans; those checks compare sizes the
config and the batch fix, and only decide whether to raise, so they are on the export's allow-list. The graphs
then pass the parity run at several batch sizes and the static TensorRT check.

A conversion inside PyTorch that is not allowed is reported as PyTorch's, at the plugin's line that called it,
with advice about that call instead of advice to rewrite PyTorch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL

import plugins.manager
from plugins import ComponentRegistry, Transition, VideoSlotModel, build_plugin_manager
from plugins.testing import build_tiny, check_exportable, tiny_model_config
from training.export import ExportOptions, FrozenValueError, UnsupportedOperatorError, export_graph, export_model

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

PLUGIN = "recurrent_test_plugin"


class GRUTransition(Transition):
    """Each slot is a GRU state, updated once by the mean of the current frame's features."""

    name = "gru"

    def __init__(self, slot_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(feature_dim, slot_dim)
        self.gru = nn.GRU(slot_dim, slot_dim, batch_first=True)

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        previous = past_slots[-1]  # [B, K, D]
        batch, slots, width = previous.shape
        context = self.project(past_features[-1].mean(1))  # [B, P, Df] -> [B, D]
        inputs = context[:, None, :].expand(batch, slots, width).reshape(batch * slots, 1, width)
        out, _ = self.gru(inputs, previous.reshape(1, batch * slots, width))
        return out.reshape(batch, slots, width)


class LSTMTransition(Transition):
    """Each slot is an LSTM's hidden state (the cell state starts at zero), fed the slot itself."""

    name = "lstm"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(slot_dim, slot_dim)

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        previous = past_slots[-1]
        batch, slots, width = previous.shape
        hidden = previous.reshape(1, batch * slots, width)
        out, _ = self.lstm(hidden, (hidden, torch.zeros_like(hidden)))
        return out.reshape(batch, slots, width)


class ProjectedLSTMTransition(Transition):
    """An LSTM with a projection (``proj_size``), which PyTorch's ONNX conversion of LSTM refuses."""

    name = "projected_lstm"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(slot_dim, 2 * slot_dim, proj_size=slot_dim)

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        previous = past_slots[-1]
        batch, slots, width = previous.shape
        hidden = previous.reshape(1, batch * slots, width)
        cell = hidden.new_zeros(1, batch * slots, 2 * width)
        out, _ = self.lstm(hidden, (hidden, cell))  # PROJECTED
        return out.reshape(batch, slots, width)


class StretchTransition(Transition):
    """Stretches the slots by a factor computed from the features: PyTorch's interpolate converts it."""

    name = "stretch"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1]
        factor = past_features[-1].std() + 1
        stretched = F.interpolate(slots[:, None], scale_factor=(1.0, factor), mode="nearest")  # STRETCH
        return stretched[:, 0, :, : slots.shape[-1]]


@pytest.fixture
def own() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = PLUGIN
    for cls in (GRUTransition, LSTMTransition, ProjectedLSTMTransition, StretchTransition):
        registry.add_transition(cls)
    return registry


@pytest.mark.parametrize(("transition", "operator"), [("gru", "GRU"), ("lstm", "LSTM")])
def test_a_recurrent_layer_transition_exports_and_passes_parity_at_several_batch_sizes(
    own: ComponentRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transition: str, operator: str
) -> None:
    monkeypatch.setattr(plugins.manager, "_default_registry", own)  # from_pretrained finds the transition
    torch.manual_seed(0)
    model = VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": transition}, registry=own)
    check_exportable(model)  # the tracing and TensorRT operator checks, and the graph at other batch sizes
    model.save_pretrained(tmp_path / "model")
    manifest = export_model(tmp_path / "model", tmp_path / "out", ExportOptions(parity_frames=4, parity_videos=2))
    parity = manifest.parity["onnxruntime"]
    assert parity.passed and parity.batch_sizes == [1, 3, 8], parity
    assert manifest.graphs["step"].operators.get(operator, 0) >= 1, manifest.graphs["step"].operators
    assert manifest.tensorrt_problems == []


def test_a_conversion_inside_pytorch_is_named_as_pytorchs_with_advice_about_the_call(own: ComponentRegistry) -> None:
    model = build_tiny(tiny_model_config(transition="stretch"), own)
    with pytest.raises(FrozenValueError) as error:
        export_graph(model, "step")
    message = str(error.value)
    lines = Path(__file__).read_text().splitlines()
    (number,) = [index + 1 for index, line in enumerate(lines) if line.rstrip().endswith("# STRETCH")]
    assert f"the transition 'stretch' ({__name__}.StretchTransition, registered by plugin '{PLUGIN}')" in message
    assert f"at {__file__}:{number} `stretched = F.interpolate(" in message
    assert "(inside torch.nn.functional.interpolate, PyTorch's own code): Converting a tensor" in message
    advice = message.splitlines()[-1]
    assert advice.startswith("A conversion inside PyTorch happens in PyTorch's own code, not in the plugin's")
    assert "a tensor where it takes a Python number or size" in advice
    assert "Compute it with tensor operations instead" not in message  # that advice is for the plugin's own code


def test_a_layer_use_the_onnx_conversion_refuses_names_the_component_the_line_and_the_reason(
    own: ComponentRegistry,
) -> None:
    model = build_tiny(tiny_model_config(transition="projected_lstm"), own)
    with pytest.raises(UnsupportedOperatorError) as error:
        export_graph(model, "step")
    lines = Path(__file__).read_text().splitlines()
    (number,) = [index + 1 for index, line in enumerate(lines) if line.rstrip().endswith("# PROJECTED")]
    assert error.value.operator == "aten::lstm"
    assert str(error.value) == (
        f"the step graph cannot be exported: the transition 'projected_lstm' ({__name__}.ProjectedLSTMTransition, "
        f"registered by plugin '{PLUGIN}') calls aten::lstm at {__file__}:{number} (LSTMs with projections), which "
        "the ONNX exporter cannot convert at opset 17; replace it with operations ONNX has (or serve the model with "
        "--backend torch, which needs no export)"
    )
