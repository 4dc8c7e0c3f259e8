"""The ``slotformer`` head (SlotFormer's rollouter, methods.md section 10): its contract, an autoregressive rollout
over its own predictions, frame codes counted back from the newest frame and no code for the slot index (the
slots are a set), built through the registry like any component."""

from __future__ import annotations

import pytest
import torch

from downstream.slotformer import SlotFormer, sinusoidal_table
from plugins import default_registry

SMALL = {"history": 3, "rollout": 4, "model_dim": 16, "layers": 2, "heads": 2, "ffn_dim": 32}


def _head(**overrides) -> SlotFormer:
    torch.manual_seed(0)
    return SlotFormer(slot_dim=8, **(SMALL | overrides)).eval()


def test_the_registry_builds_it_as_a_head():
    head = default_registry().build("heads", "slotformer", {"slot_dim": 8, **SMALL})
    expected = {"slot_dim": 8, "dropout": 0.0, "residual": False, **SMALL}
    assert isinstance(head, SlotFormer) and head.constructor_kwargs() == expected


def test_it_predicts_the_rollout_frames_after_the_last_history_frames_it_reads():
    head = _head()
    slots = torch.randn(2, 5, 6, 8)  # [B, T, K, D], T above the history
    predicted = head(slots)
    assert predicted.shape == (2, 4, 6, 8) and torch.isfinite(predicted).all()
    assert torch.allclose(predicted, head(slots[:, -3:])), "only the last history frames are read"


def test_each_step_reads_the_window_of_the_steps_before_its_own_predictions_included():
    head = _head()
    observed = torch.randn(1, 3, 5, 8)
    window, expected = observed, []
    for _ in range(4):
        following = head.predict_next(window)  # [1, K, D]
        expected.append(following)
        window = torch.cat([window[:, 1:], following[:, None]], dim=1)
    assert torch.allclose(head(observed), torch.stack(expected, dim=1), atol=1e-6)


def test_a_residual_head_predicts_changes_and_starts_by_repeating_the_newest_frame():
    head = _head(residual=True)
    slots = torch.randn(2, 3, 5, 8)
    assert torch.equal(head(slots), slots[:, -1:].expand(2, 4, 5, 8)), "an untrained residual head repeats it"
    with torch.no_grad():
        head.project_out.bias.fill_(0.5)
    assert torch.allclose(head.predict_next(slots), slots[:, -1] + 0.5)


def test_the_slots_are_a_set_permuting_them_permutes_the_prediction():
    head = _head()
    slots = torch.randn(2, 3, 5, 8)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(head(slots[:, :, order]), head(slots)[:, :, order], atol=1e-5)


def test_the_frames_are_told_apart_by_codes_counted_back_from_the_newest():
    head = _head()
    table = sinusoidal_table(3, 16)
    assert torch.equal(head.frame_codes[-1], table[0]) and torch.equal(head.frame_codes[0], table[2])
    swapped = torch.randn(1, 3, 4, 8)
    assert not torch.allclose(head.predict_next(swapped), head.predict_next(swapped[:, [1, 0, 2]])), "order matters"


def test_every_parameter_learns_and_batch_elements_do_not_affect_each_other():
    head = _head().train()
    slots = torch.randn(3, 3, 4, 8)
    head(slots).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    head.eval()
    changed = slots.clone()
    changed[1] = torch.randn(3, 4, 8)
    assert torch.allclose(head(slots)[[0, 2]], head(changed)[[0, 2]], atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 2, 4, 8), (2, 3, 4, 7), (3, 4, 8)])
def test_slots_it_cannot_read_are_refused_with_the_shape_it_reads(shape):
    with pytest.raises(ValueError, match=r"slotformer reads slots \[B, T >= 3, K, 8\], got"):
        _head()(torch.randn(*shape))


def test_a_width_that_is_not_a_multiple_of_the_heads_is_refused():
    with pytest.raises(ValueError, match="model_dim 10 is not a multiple of heads 4"):
        SlotFormer(slot_dim=8, model_dim=10, heads=4)
