"""Conformance suites generated from the registry: every built-in component of every kind is checked.

For each component a tiny model containing it is built; the checks are the contract of its kind: output
shapes and types, finite values, a gradient for every trainable parameter from the loss that should reach
it, identical outputs after a save/load round-trip, and masks that sum to 1 over slots.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny_configs import TINY_CONFIGS

from plugins import (
    ComponentKind,
    ComponentRegistry,
    InitializerOutput,
    StepOutput,
    VideoOutput,
    VideoSlotModel,
    build_plugin_manager,
)
from plugins.interfaces import Loss

ALL_COMPONENTS = [
    (kind.value, name)
    for kind in ComponentKind
    for name in build_plugin_manager(load_entry_points=False).registry.names(kind)
]
MODEL_COMPONENTS = [(kind, name) for kind, name in ALL_COMPONENTS if kind not in ("losses", "heads")]
LOSSES = [name for kind, name in ALL_COMPONENTS if kind == "losses"]
ROLE = {"encoders": "encoder", "initializers": "initializer", "aggregators": "aggregator"}
ROLE |= {"transitions": "transition", "decoders": "decoder"}


def test_every_registered_component_has_a_tiny_config() -> None:
    """Adding a built-in component without a tiny config fails here, so nothing ships untested."""
    assert sorted(TINY_CONFIGS) == sorted(ALL_COMPONENTS)


def build(kind: str, name: str, registry: ComponentRegistry) -> VideoSlotModel:
    torch.manual_seed(0)
    model = VideoSlotModel(**TINY_CONFIGS[(kind, name)], registry=registry)
    if kind in ROLE:
        assert type(getattr(model, ROLE[kind])).name == name
    return model


def frames_for(model: VideoSlotModel, batch: int = 2, length: int = 4) -> torch.Tensor:
    height, width = model.image_size
    return torch.rand(batch, length, 3, height, width, generator=torch.Generator().manual_seed(3))


def total_loss(output: VideoOutput, registry: ComponentRegistry) -> torch.Tensor:
    """Every loss the model's outputs support: what should reach every trainable parameter."""
    loss = registry.build("losses", "reconstruction_mse", {})(output, 0.5)
    if output.preheated is not None:
        loss = loss + registry.build("losses", "preheat_mse", {})(output, 0.5)
    return loss


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_outputs_have_contract_shapes_and_are_finite(kind: str, name: str, registry: ComponentRegistry) -> None:
    model = build(kind, name, registry).eval()
    video = frames_for(model)
    batch, length = video.shape[:2]
    with torch.no_grad():
        output = model(video)
    k, d = model.num_slots, model.slot_dim
    h, w = model.mask_grid
    assert isinstance(output, VideoOutput) and all(isinstance(s, StepOutput) for s in output.steps)
    assert output.slots.shape == (batch, length, k, d)
    assert output.masks.shape == (batch, length, k, h, w)
    assert output.reconstruction.shape == output.target.shape
    assert output.reconstruction.shape[:3] == (batch, length, h * w)
    for step in output.steps:
        assert step.attention.shape[0] == batch and step.attention.shape[2] == k
        assert step.attention.shape[3] == step.features.shape[1] == step.grid[0] * step.grid[1]
    for tensor in (output.slots, output.masks, output.reconstruction):
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_masks_and_attention_sum_to_one_over_slots(kind: str, name: str, registry: ComponentRegistry) -> None:
    model = build(kind, name, registry).eval()
    with torch.no_grad():
        output = model(frames_for(model))
    torch.testing.assert_close(output.masks.sum(dim=2), torch.ones_like(output.masks[:, :, 0]))
    for step in output.steps:
        torch.testing.assert_close(step.attention.sum(dim=2), torch.ones_like(step.attention[:, :, 0]))


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_every_trainable_parameter_gets_a_gradient(kind: str, name: str, registry: ComponentRegistry) -> None:
    model = build(kind, name, registry).train()
    total_loss(model(frames_for(model)), registry).backward()
    component = getattr(model, ROLE[kind])
    trainable = {n: p for n, p in component.named_parameters() if p.requires_grad}
    starved = [n for n, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not starved, f"{name}: parameters without gradient: {starved}"


@pytest.mark.parametrize(("kind", "name"), MODEL_COMPONENTS)
def test_save_load_round_trip_gives_identical_outputs(kind: str, name: str, registry, tmp_path) -> None:
    model = build(kind, name, registry).eval()
    video = frames_for(model)
    model.save_pretrained(tmp_path)
    torch.manual_seed(123)  # a different seed: nothing random may leak into the reloaded model
    loaded = VideoSlotModel.from_pretrained(tmp_path, registry=registry)
    assert loaded.config == model.config
    with torch.no_grad():
        before, after = model(video), loaded(video)
    torch.testing.assert_close(after.slots, before.slots, rtol=0, atol=0)
    torch.testing.assert_close(after.masks, before.masks, rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_a_finite_scalar_that_trains_the_model(name: str, registry: ComponentRegistry) -> None:
    model = build("losses", name, registry).train()
    loss_fn = registry.build("losses", name, {})
    assert isinstance(loss_fn, Loss)
    value = loss_fn(model(frames_for(model)), 0.5)
    assert value.shape == () and math.isfinite(value.item())
    value.backward()
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())


def test_initializer_output_is_typed(registry: ComponentRegistry) -> None:
    model = build("initializers", "smoothsa_preheat", registry)
    out = model.initializer(torch.rand(2, 5, model.encoder.feature_dim))
    assert isinstance(out, InitializerOutput) and out.preheated is not None
    assert out.queries.shape == out.preheated.shape == (2, model.num_slots, model.slot_dim)
