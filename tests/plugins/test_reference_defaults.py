"""The built-ins' defaults and their stop-gradient points are the reference code's (methods.md): what a
component built with no arguments but its wiring does, checked by behaviour where it can be (a formula, a
gradient), since the shipped configs rely on these defaults."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from plugins import default_registry

REGISTRY = default_registry()


def _build(kind: str, name: str, **wiring):
    torch.manual_seed(0)
    return REGISTRY.build(kind, name, wiring)


def test_slot_attention_renormalises_its_attention_with_an_epsilon_of_1e_5_in_the_denominator():
    aggregator = _build("aggregators", "slot_attention", feature_dim=8, slot_dim=8)
    assert (aggregator.epsilon, aggregator.epsilon_placement) == (1e-5, "denominator")


def test_randsfq_uses_the_papers_dropout_and_learns_nothing_through_its_inputs():
    transition = _build("transitions", "randsfq", slot_dim=8, feature_dim=6)
    dropouts = {module.p for module in transition.modules() if isinstance(module, torch.nn.Dropout)}
    assert dropouts == {0.5}
    slots = [torch.randn(2, 3, 8, requires_grad=True) for _ in range(3)]
    features = [torch.randn(2, 5, 6, requires_grad=True) for _ in range(3)]
    for training in (True, False):
        transition.train(training)
        transition(tuple(slots), tuple(features)).sum().backward()
        assert all(tensor.grad is None for tensor in (*slots, *features)), "its inputs are detached"


def test_the_shared_gaussian_initialiser_draws_its_mean_and_log_std_as_the_references_xavier_init():
    initializer = _build("initializers", "gaussian_shared", num_slots=4, slot_dim=64)
    bound = math.sqrt(6 / (64 + 64))  # xavier_uniform of a [1, 1, 64] tensor: fan in and out 1 * 64 each
    for parameter in (initializer.mean, initializer.log_std):
        assert parameter.abs().max() <= bound and parameter.std() > bound / 4, "xavier-uniform, not zeros"


def test_slot_contrast_defaults_to_a_temperature_of_0_1():
    loss = _build("losses", "slot_contrast")
    assert loss.temperature == 0.1


def test_the_reconstruction_loss_is_a_mean_squared_error_against_the_detached_target():
    loss = _build("losses", "reconstruction_mse")
    reconstruction = torch.randn(2, 3, 4, 5, requires_grad=True)
    target = torch.randn(2, 3, 4, 5, requires_grad=True)
    value = loss(SimpleNamespace(reconstruction=reconstruction, target=target), 0.0)
    assert torch.allclose(value, ((reconstruction - target) ** 2).mean())
    value.backward()
    assert target.grad is None and reconstruction.grad is not None


def test_the_ar_random_mask_token_is_drawn_at_a_scale_of_one_over_the_root_of_its_width():
    decoder = _build("decoders", "ar_random", slot_dim=32, target_dim=384, feature_grid=(4, 4))
    assert 0.5 / math.sqrt(384) < decoder.mask_token.std() < 2 / math.sqrt(384)


def test_the_ar_random_layers_start_from_the_same_weights_as_the_references_copied_stack():
    decoder = _build("decoders", "ar_random", slot_dim=32, target_dim=48, feature_grid=(4, 4))
    first = decoder.layers[0].state_dict()
    for layer in decoder.layers[1:]:
        state = layer.state_dict()
        assert all(torch.equal(state[name], first[name]) for name in first)


def test_the_dinov2_encoder_gives_the_last_blocks_tokens_without_the_final_norm():
    pytest.importorskip("timm", reason="the dinov2 encoder needs timm (the server extra)")
    encoder = _build("encoders", "dinov2", image_size=(28, 28), input_size=28, depth=1)
    frames = torch.rand(1, 3, 28, 28)
    output = encoder(frames)
    mean, std = encoder.get_buffer("mean"), encoder.get_buffer("std")
    with torch.no_grad():
        final = encoder.backbone.forward_features((frames - mean) / std)  # [B, prefix + P, C], final LN applied
    prefix = encoder.backbone.num_prefix_tokens
    assert torch.allclose(encoder.backbone.norm(output.raw), final[:, prefix:], atol=1e-5)
    assert not torch.allclose(output.raw, final[:, prefix:], atol=1e-3), "the final LayerNorm is left out"
    assert F.mse_loss(output.raw, final[:, prefix:]) > 0
