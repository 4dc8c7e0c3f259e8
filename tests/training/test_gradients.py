"""Gradient clipping over the whole model or per component."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.gradients import clip_gradients


class _TwoComponents(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.decoder = nn.Linear(4, 4)
        self.extra = nn.Parameter(torch.zeros(3))


def _with_gradients(encoder: float, decoder: float, extra: float) -> _TwoComponents:
    model = _TwoComponents()
    for parameter in model.encoder.parameters():
        parameter.grad = torch.full_like(parameter, encoder)
    for parameter in model.decoder.parameters():
        parameter.grad = torch.full_like(parameter, decoder)
    model.extra.grad = torch.full_like(model.extra, extra)
    return model


def _norm(module: nn.Module | nn.Parameter) -> float:
    grads = [module.grad] if isinstance(module, nn.Parameter) else [p.grad for p in module.parameters()]
    return float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads if g is not None])))


def test_global_scope_scales_every_gradient_by_one_factor() -> None:
    model = _with_gradients(encoder=100.0, decoder=0.01, extra=0.0)
    before = _norm(model.decoder)
    total = clip_gradients(model, 1.0, "global")
    assert float(total) > 100.0
    assert _norm(model.encoder) + _norm(model.decoder) == pytest.approx(1.0, rel=1e-3)
    assert _norm(model.decoder) == pytest.approx(before / float(total), rel=1e-4)  # the small one shrank too


def test_component_scope_leaves_a_small_component_alone() -> None:
    model = _with_gradients(encoder=100.0, decoder=0.01, extra=5.0)
    decoder_before = _norm(model.decoder)
    expected_total = (_norm(model.encoder) ** 2 + decoder_before**2 + _norm(model.extra) ** 2) ** 0.5
    total = clip_gradients(model, 1.0, "component")
    assert float(total) == pytest.approx(expected_total, rel=1e-4)  # the logged norm is still the global one
    assert _norm(model.encoder) == pytest.approx(1.0, rel=1e-4)
    assert _norm(model.decoder) == pytest.approx(decoder_before, rel=1e-6)
    assert _norm(model.extra) == pytest.approx(1.0, rel=1e-4)  # parameters outside components form a group


def test_no_limit_only_measures() -> None:
    model = _with_gradients(encoder=3.0, decoder=4.0, extra=0.0)
    before = _norm(model.encoder)
    clip_gradients(model, None, "component")
    assert _norm(model.encoder) == pytest.approx(before)


def test_unknown_scope_is_rejected() -> None:
    with pytest.raises(ValueError, match="grad_clip_scope"):
        clip_gradients(_with_gradients(1.0, 1.0, 1.0), 1.0, "per_layer")  # type: ignore[arg-type]
