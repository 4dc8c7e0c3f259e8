"""A component that runs its own ``nn.Linear`` once per batch row fixes the batch size, and only that component is
blamed: the weights it fetches once per row (``prim::GetAttr`` nodes, which carry no scope in the trace) are its
own difference between the two traces, not the model's. The model's own code is still named where it really
differs."""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from plugins import ComponentRegistry, Transition, VideoSlotModel, build_plugin_manager
from plugins.testing import build_tiny, tiny_model_config
from plugins.types import Frames, SlotState, StepOutput
from training.export.batch_axis import fixed_batch_diagnosis


class LinearPerRow(Transition):
    """Applies its linear layer to each stream's slots in a Python loop: traced at batch 2, two rows."""

    name = "linear_per_row"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(slot_dim, slot_dim)

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        slots = past_slots[-1]  # [B, K, D]
        return torch.stack([self.lin(slots[i]) for i in range(slots.shape[0])])


class RowLoopModel(VideoSlotModel):
    """The model's own code loops over the batch rows of the step's slots."""

    def step(self, frames: Frames, state: SlotState) -> tuple[StepOutput, SlotState]:
        out, new_state = super().step(frames, state)
        slots = torch.stack([out.slots[i] for i in range(out.slots.shape[0])])  # B x [K, D] -> [B, K, D]
        return dataclasses.replace(out, slots=slots), new_state


def _registry() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_transition(LinearPerRow)
    return registry


def _line_of(cls: type, text: str) -> str:
    lines, start = inspect.getsourcelines(cls)
    return f"{inspect.getsourcefile(cls)}:{start + next(i for i, line in enumerate(lines) if text in line)}"


def test_a_transition_fetching_its_weights_per_row_is_blamed_alone() -> None:
    model = build_tiny(tiny_model_config(transition={"name": "linear_per_row"}), _registry())
    message = fixed_batch_diagnosis(model, "step")
    assert message is not None
    assert f"{LinearPerRow.__module__}.{LinearPerRow.__qualname__}, registered by plugin" in message
    assert f"its traced operations first differ at {_line_of(LinearPerRow, 'range(')}" in message
    assert "the model's own code" not in message, message


def test_the_models_own_loop_over_the_batch_is_still_named() -> None:
    torch.manual_seed(0)
    model = RowLoopModel(**tiny_model_config())
    message = fixed_batch_diagnosis(model, "step")
    assert message is not None
    assert f"the model's own code ({RowLoopModel.__module__}.RowLoopModel) fixes the batch size" in message, message
    assert "the transition" not in message and "the aggregator" not in message
