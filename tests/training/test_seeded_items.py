"""Each training clip is drawn with its own seeded CPU generator, and loading one leaves every other generator as
it was: the global CPU one (restored) and the CUDA ones (never touched), which hold the model's GPU noise."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from training.batches import SeededItems


class RandomItems(Dataset[torch.Tensor]):
    """Items drawn from the global torch generator."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(4)


def test_an_item_depends_only_on_its_seed_and_leaves_the_global_generator_as_it_was() -> None:
    items = SeededItems(RandomItems())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = items[(0, 123)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(7)  # the global generator moves on; the item does not change
    assert torch.equal(items[(1, 123)], first)
    assert not torch.equal(items[(0, 124)], first)


def test_loading_an_item_does_not_reseed_the_cuda_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.manual_seed`` would call ``torch.cuda.manual_seed_all`` (queued until CUDA starts, on a machine
    without one), resetting the model's GPU noise at every clip loaded in the main process."""
    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    SeededItems(RandomItems())[(0, 5)]
    assert reseeded == []
