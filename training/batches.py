"""Deterministic batches: the clips of step ``s`` depend only on the run seed and ``s``.

That makes ``--resume`` exact even with DataLoader worker processes: a resumed run draws the same clips
(videos and random windows) for every later step as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Dataset, Sampler

from training.datasets import VideoClip

ItemKey = tuple[int, int]
"""(dataset index, seed of the item's own randomness, e.g. its clip window)."""


class SeededItems(Dataset[VideoClip]):
    """Wraps a dataset so each item is drawn with its own seeded torch CPU RNG (isolated from the global one).

    Only the CPU generator is seeded and restored: ``torch.manual_seed`` would also reseed every CUDA generator,
    which ``fork_rng(devices=[])`` does not restore, so with ``--workers 0`` each clip loaded in the main process
    would reset the model's GPU noise (query noise, dropout) to that clip's seed."""

    def __init__(self, dataset: Dataset[VideoClip]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: ItemKey) -> VideoClip:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


class StepBatchSampler(Sampler[list[ItemKey]]):
    """Yields the item keys of steps ``start_step .. total_steps - 1``.

    Args:
        dataset: the (wrapped) training dataset; only its length is used.
        batch_size: clips per step and process.
        seed: the run seed.
        start_step: first step to yield (the resumed step).
        total_steps: one past the last step.
        rank: this process's rank under ``torchrun`` (ranks draw different clips).
    """

    def __init__(
        self, dataset: Sized, batch_size: int, seed: int, start_step: int, total_steps: int, rank: int = 0
    ) -> None:
        super().__init__()
        self.size = len(dataset)
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for step in range(self.start_step, self.total_steps):
            generator = torch.Generator().manual_seed(hash((self.seed, self.rank, step)) & 0x7FFF_FFFF_FFFF_FFFF)
            indices = torch.randint(self.size, (self.batch_size,), generator=generator).tolist()
            seeds = torch.randint(2**62, (self.batch_size,), generator=generator).tolist()
            yield list(zip(indices, seeds, strict=True))
