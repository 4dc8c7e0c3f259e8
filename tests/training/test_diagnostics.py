"""``slot_similarity``: the slot-collapse signal logged during training."""

from __future__ import annotations

import pytest
import torch

from training.diagnostics import slot_similarity


def test_identical_slots_score_one_and_orthogonal_slots_zero():
    same = torch.ones(2, 4, 8)
    assert slot_similarity(same).item() == pytest.approx(1.0)
    orthogonal = torch.eye(4).expand(3, 4, 4)  # [B=3, K=4, D=4]
    assert slot_similarity(orthogonal).item() == pytest.approx(0.0, abs=1e-7)


def test_the_score_averages_distinct_pairs_only():
    slots = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # one equal pair, two orthogonal pairs
    assert slot_similarity(slots).item() == pytest.approx(1 / 3)
    assert slot_similarity(-slots[:, :2] * torch.tensor([[[1.0], [-1.0]]])).item() == pytest.approx(-1.0)
