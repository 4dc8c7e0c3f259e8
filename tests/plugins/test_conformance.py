"""Conformance suites generated from the registry: every built-in component of every kind is checked.

For each component a tiny model containing it is built; the checks are the contract of its kind
(``plugins.testing``, which plugin authors run on their own components): output shapes and types, finite
values, a gradient for every trainable parameter from the loss that should reach it, identical outputs after a
save/load round-trip, masks that sum to 1 over slots, batch elements that do not affect each other and no state
kept from one call to the next.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny_configs import TINY_CONFIGS, TINY_HEAD_KWARGS

from plugins import ComponentKind, ComponentRegistry, InitializerOutput, VideoSlotModel, build_plugin_manager
from plugins.interfaces import Loss
from plugins.testing import (
    TINY_MODEL,
    ContractViolation,
    build_tiny,
    check_batch_independence,
    check_gradients,
    check_loss,
    check_model_component,
    check_no_state_between_calls,
    check_outputs,
    check_round_trip,
    check_sums_to_one,
    tiny_model_config,
    tiny_video,
)

ALL_COMPONENTS = [
    (kind.value, name)
    for kind in ComponentKind
    for name in build_plugin_manager(load_entry_points=False).registry.names(kind)
]
MODEL_COMPONENTS = [(kind, name) for kind, name in ALL_COMPONENTS if kind not in ("losses", "heads")]
LOSSES = [name for kind, name in ALL_COMPONENTS if kind == "losses"]
HEADS = [name for kind, name in ALL_COMPONENTS if kind == "heads"]
ROLE = {"encoders": "encoder", "initializers": "initializer", "aggregators": "aggregator"}
ROLE |= {"transitions": "transition", "decoders": "decoder"}


def test_every_registered_component_has_a_tiny_config() -> None:
    """Adding a built-in component without a tiny config fails here, so nothing ships untested."""
    assert sorted(TINY_CONFIGS) == sorted(ALL_COMPONENTS)


def build(kind: str, name: str, registry: ComponentRegistry) -> VideoSlotModel:
    model = build_tiny(TINY_CONFIGS[(kind, name)], registry)
    if kind in ROLE:
        assert type(getattr(model, ROLE[kind])).name == name
    return model


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_outputs_have_contract_shapes_and_are_finite(kind: str, name: str, registry: ComponentRegistry) -> None:
    build(kind, name, registry)
    check_outputs(TINY_CONFIGS[(kind, name)], registry)


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_masks_and_attention_sum_to_one_over_slots(kind: str, name: str, registry: ComponentRegistry) -> None:
    check_sums_to_one(TINY_CONFIGS[(kind, name)], registry)


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_every_trainable_parameter_gets_a_gradient(kind: str, name: str, registry: ComponentRegistry) -> None:
    check_gradients(TINY_CONFIGS[(kind, name)], ROLE[kind], registry)


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_save_load_round_trip_gives_identical_outputs(kind: str, name: str, registry: ComponentRegistry) -> None:
    check_round_trip(TINY_CONFIGS[(kind, name)], registry)


def test_the_round_trip_holds_for_an_initializer_random_at_inference(registry: ComponentRegistry) -> None:
    """Both runs draw the same noise, so a component that samples at inference is not taken for a lossy save."""
    config = tiny_model_config(initializer={"name": "gaussian_shared", "kwargs": {"eval_noise": "sample"}})
    check_round_trip(config, registry)


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_batch_elements_do_not_affect_each_other(kind: str, name: str, registry: ComponentRegistry) -> None:
    check_batch_independence(TINY_CONFIGS[(kind, name)], registry)


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_no_state_is_kept_between_calls(kind: str, name: str, registry: ComponentRegistry) -> None:
    check_no_state_between_calls(TINY_CONFIGS[(kind, name)], registry)


def test_a_contract_violation_is_reported_with_its_rule(registry: ComponentRegistry) -> None:
    """What a plugin author sees: here a decoder whose masks do not sum to 1 over slots."""
    from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder

    class Unnormalised(SpatialBroadcastDecoder):
        name = "unnormalised"

        def forward(self, slots, target):  # type: ignore[no-untyped-def]
            output = super().forward(slots, target)
            return dataclasses.replace(output, masks=output.masks * 2)

    own = build_plugin_manager(load_entry_points=False).registry
    own.add_decoder(Unnormalised)
    config = tiny_model_config(decoder={"name": "unnormalised", "kwargs": TINY_MODEL["decoder"]["kwargs"]})
    with pytest.raises(ContractViolation, match="masks sum to 1 over slots only within 1"):
        check_model_component(config, "decoder", own)
    check_model_component(tiny_model_config(transition={"name": "identity"}), "transition", registry)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_a_finite_scalar_that_trains_the_model(name: str, registry: ComponentRegistry) -> None:
    model = build("losses", name, registry).train()
    loss_fn = registry.build("losses", name, {})
    assert isinstance(loss_fn, Loss)
    value = loss_fn(model(tiny_video(model)), 0.5)
    assert value.shape == () and math.isfinite(value.item())
    value.backward()
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())


@pytest.mark.parametrize("name", HEADS)
def test_a_head_reads_the_slots_of_a_model_and_every_parameter_learns(name: str, registry: ComponentRegistry) -> None:
    model = build("heads", name, registry).eval()
    with torch.no_grad():
        slots = model(tiny_video(model)).slots  # [B, T, K, D]
    head = registry.build("heads", name, {"slot_dim": slots.shape[-1], **TINY_HEAD_KWARGS[name]})
    output = head(slots, *head.example_inputs(slots))
    assert isinstance(output, torch.Tensor) and torch.isfinite(output).all()
    output.square().mean().backward()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in head.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", LOSSES)
def test_every_built_in_loss_passes_the_plugin_authors_loss_check(name: str, registry: ComponentRegistry) -> None:
    check_loss(name, registry=registry, config=TINY_CONFIGS[("losses", name)])


def test_the_loss_check_names_the_broken_rule(registry: ComponentRegistry) -> None:
    class PerSlot(Loss):
        """A vector, not a scalar."""

        name = "per_slot_example"

        def forward(self, output, progress):  # type: ignore[no-untyped-def]
            return output.slots.pow(2).mean(dim=(0, 1, 3))

    class Detached(Loss):
        """A number computed off the graph."""

        name = "detached_example"

        def forward(self, output, progress):  # type: ignore[no-untyped-def]
            return torch.tensor(float(output.slots.pow(2).mean()))

    class Diverging(Loss):
        """Infinite at the start of training."""

        name = "diverging_example"

        def forward(self, output, progress):  # type: ignore[no-untyped-def]
            return output.slots.pow(2).mean() / progress

    class Idle(Loss):
        """On the graph, but a zero at every point of training."""

        name = "idle_example"

        def forward(self, output, progress):  # type: ignore[no-untyped-def]
            return output.slots.sum() * 0.0

    own = build_plugin_manager(load_entry_points=False).registry
    for loss in (PerSlot, Detached, Diverging, Idle):
        own.add_loss(loss)
    with pytest.raises(
        ContractViolation, match=r"'per_slot_example' .* returned a torch.float32 tensor of shape \(3,\)"
    ):
        check_loss("per_slot_example", registry=own)
    with pytest.raises(ContractViolation, match=r"'detached_example' .* no parameter of the model reaches"):
        check_loss("detached_example", registry=own)
    with pytest.raises(ContractViolation, match=r"'diverging_example' .* returned inf at progress 0\.0, not a finite"):
        check_loss("diverging_example", registry=own)
    with pytest.raises(ContractViolation, match=r"'idle_example' .* no parameter of the model a non-zero gradient"):
        check_loss("idle_example", registry=own)


def test_initializer_output_is_typed(registry: ComponentRegistry) -> None:
    model = build("initializers", "smoothsa_preheat", registry)
    out = model.initializer(torch.rand(2, 5, model.encoder.feature_dim))
    assert isinstance(out, InitializerOutput) and out.preheated is not None
    assert out.queries.shape == out.preheated.shape == (2, model.num_slots, model.slot_dim)
