"""``smoothsa_preheat``: the training noise on the queries and its initial scale."""

from __future__ import annotations

import pytest
import torch

from plugins.builtin.initializers.preheat import SmoothSAPreheat


def _spread(initializer: SmoothSAPreheat, features: torch.Tensor) -> float:
    out = initializer(features)
    return (out.queries - out.preheated).std().item()  # the noise alone: queries = sg(Q_pre) + noise


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_query_noise_starts_at_the_given_scale_in_training_only(scale):
    torch.manual_seed(0)
    initializer = SmoothSAPreheat(num_slots=6, slot_dim=32, feature_dim=16, query_noise_std=scale)
    features = torch.randn(64, 20, 16)
    assert _spread(initializer.train(), features) == pytest.approx(scale, rel=0.1)
    assert _spread(initializer.eval(), features) == 0.0


def test_query_noise_scale_must_be_positive():
    with pytest.raises(ValueError, match="query_noise_std"):
        SmoothSAPreheat(num_slots=2, slot_dim=8, feature_dim=8, query_noise_std=0.0)
