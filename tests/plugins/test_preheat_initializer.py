"""``smoothsa_preheat``: the training noise on the queries, its initial scale and the noise at inference."""

from __future__ import annotations

import math

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


def test_fixed_query_eval_noise_is_the_training_scale_times_one_sample_per_slot():
    torch.manual_seed(0)
    initializer = SmoothSAPreheat(num_slots=6, slot_dim=32, feature_dim=16, query_eval_noise="fixed").eval()
    with torch.no_grad():
        initializer.query_log_std.fill_(math.log(0.5))
    features = torch.randn(3, 20, 16)
    first, second = initializer(features), initializer(features)
    noise = first.queries - first.preheated  # [B, K, D]
    fixed = initializer.get_buffer("fixed_query_noise")
    torch.testing.assert_close(noise, 0.5 * fixed.expand(3, -1, -1))
    torch.testing.assert_close(second.queries, first.queries)  # deterministic inference
    assert fixed.std().item() == pytest.approx(1.0, rel=0.2)


def test_models_without_query_eval_noise_keep_their_state_dict_keys():
    without = SmoothSAPreheat(num_slots=2, slot_dim=8, feature_dim=8)
    with_noise = SmoothSAPreheat(num_slots=2, slot_dim=8, feature_dim=8, query_eval_noise="fixed")
    assert set(with_noise.state_dict()) - set(without.state_dict()) == {"fixed_query_noise"}


def test_query_eval_noise_must_be_known():
    with pytest.raises(ValueError, match="query_eval_noise must be 'none' or 'fixed', not 'sample'"):
        SmoothSAPreheat(num_slots=2, slot_dim=8, feature_dim=8, query_eval_noise="sample")  # type: ignore[arg-type]
