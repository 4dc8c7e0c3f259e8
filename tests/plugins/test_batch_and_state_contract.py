"""The server batches the frames of independent streams together and runs one model for every stream, so a
component must compute each batch element from its own inputs and keep nothing from one call to the next.
``plugins.testing``'s conformance checks refuse transitions that break this and pass every other check: one
subtracting the batch mean, one dividing by the norm over the batch, one keeping a GRU cell's hidden state in
``self.h``. Each message names the component, its plugin and the rule. Noise an initializer samples at inference
is not such a break: it is held to element 0's own draw, and what runs after it is still checked."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from plugins import ComponentRegistry, Transition, build_plugin_manager
from plugins.interfaces import ContractViolation
from plugins.testing import (
    build_tiny,
    check_batch_independence,
    check_model_component,
    check_no_state_between_calls,
    tiny_model_config,
)

PLUGIN = "streams_test_plugin"


class BatchMeanTransition(Transition):
    """Centres the queries on the batch mean: one stream's slots move another's."""

    name = "batch_mean"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(slot_dim, slot_dim)

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        queries = self.project(past_slots[-1])
        return queries - queries.mean(dim=0, keepdim=True)


class BatchNormTransition(Transition):
    """Divides the queries by their norm over the whole batch: one stream's slots scale another's."""

    name = "batch_norm"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(slot_dim, slot_dim)

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        queries = self.project(past_slots[-1])
        return queries / queries.norm()


class HiddenStateTransition(Transition):
    """Keeps a GRU cell's hidden state in ``self.h``: one for the process, not one per stream."""

    name = "hidden_state"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(slot_dim, slot_dim)
        self.h: torch.Tensor | None = None

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        previous = past_slots[-1]  # [B, K, D]
        flat = previous.reshape(-1, previous.shape[-1])
        hidden = self.h if self.h is not None and self.h.shape == flat.shape else torch.zeros_like(flat)
        self.h = self.cell(flat, hidden)
        return previous + self.h.reshape(previous.shape)


@pytest.fixture(scope="module")
def own() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = PLUGIN
    registry.add_transition(BatchMeanTransition)
    registry.add_transition(BatchNormTransition)
    registry.add_transition(HiddenStateTransition)
    return registry


def _named(cls: type[Transition]) -> str:
    return re.escape(
        f"the transition '{cls.name}' ({__name__}.{cls.__qualname__}, registered by plugin '{PLUGIN}') returned "
    )


def test_a_transition_mixing_the_batch_is_refused(own: ComponentRegistry) -> None:
    config = tiny_model_config(transition="batch_mean")
    with pytest.raises(ContractViolation, match=_named(BatchMeanTransition)) as raised:
        check_model_component(config, "transition", own)
    message = str(raised.value)
    assert "other queries for batch element 0 in a batch of 3 clips than alone (frame 1: max |difference| " in message
    assert "the server batches independent streams together" in message
    check_no_state_between_calls(config, own)  # the same input twice: the same outputs


def test_a_transition_keeping_a_hidden_state_between_calls_is_refused(own: ComponentRegistry) -> None:
    config = tiny_model_config(transition="hidden_state")
    with pytest.raises(ContractViolation, match=_named(HiddenStateTransition)) as raised:
        check_model_component(config, "transition", own)
    message = str(raised.value)
    assert "other queries for the same input on a second call (frame 1: max |difference| " in message
    assert "must keep nothing from one call to the next in its attributes" in message
    check_batch_independence(config, own)  # each batch element is still computed from its own rows


SAMPLED_NOISE = {"name": "gaussian_shared", "kwargs": {"eval_noise": "sample"}}
"""The documented option that samples the initializer's noise at inference; with 5 slots of 12 (60 values, not a
multiple of the 16 that CPU ``randn`` draws at a time) element 0 alone draws other noise than in a batch of 3."""


def test_noise_sampled_at_inference_is_not_blamed_on_the_batch(own: ComponentRegistry) -> None:
    config = tiny_model_config(initializer=SAMPLED_NOISE, transition="identity", num_slots=5, slot_dim=12)
    model = build_tiny(config, own).eval()
    features = torch.zeros(1, 4, 16)
    torch.manual_seed(0)
    first = model.initializer(features).queries
    torch.manual_seed(1)
    assert not torch.equal(model.initializer(features).queries, first)  # random at inference indeed
    check_batch_independence(config, own)
    randsfq = {"name": "randsfq", "kwargs": {"window": 3, "num_heads": 4}}
    check_batch_independence(
        tiny_model_config(initializer=SAMPLED_NOISE, transition=randsfq, num_slots=5, slot_dim=12), own
    )


@pytest.mark.parametrize("mixing", [BatchMeanTransition, BatchNormTransition])
def test_a_transition_mixing_the_batch_is_refused_after_noise_sampled_at_inference(
    own: ComponentRegistry, mixing: type[Transition]
) -> None:
    config = tiny_model_config(initializer=SAMPLED_NOISE, transition=mixing.name, num_slots=5, slot_dim=12)
    with pytest.raises(ContractViolation, match=_named(mixing)) as raised:
        check_batch_independence(config, own)
    message = str(raised.value)
    assert "other queries for batch element 0 in a batch of 3 clips than alone (frame 1: " in message
    assert "(outputs random at inference held to element 0's own draw)" in message
