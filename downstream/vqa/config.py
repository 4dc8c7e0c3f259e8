"""A question-answering head's settings (:class:`VqaConfig`): the ``aloe`` head's shape, the videos, and how it is
trained."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VqaConfig:
    """How an ``aloe`` head is built and trained (methods.md, section 11: the reference reads 25 frames of 7 slots
    and questions of up to 20 words with 12 layers of 8 heads at width 144, feed-forward 512, trained with Adam at
    1e-3, 10 % warm-up then cosine decay, batch 256, about 240k steps, no clipping). The defaults here are sized for
    a CPU: every second frame, 4 layers of 4 heads at width 72 (18 per head, as the reference), feed-forward 256,
    3,000 steps of 64 questions.

    Attributes:
        train_videos: train-split videos whose questions the head trains on.
        test_videos: validation videos whose questions it is scored on (the level's fixed set is 64).
        frame_stride: every this many frames of a video are read, counted back from its last (which the questions'
            "end" is).
        model_dim: the Transformer's width.
        layers: Transformer encoder layers.
        heads: attention heads.
        ffn_dim: feed-forward width.
        word_dim: word embedding width.
        steps: optimiser steps.
        batch_size: questions per step.
        lr: peak learning rate (Adam).
        warmup_fraction: of the steps, the linear warm-up before the cosine decay to 0.
        seed: the train videos' dataset seed, the weights' and the batches'.
    """

    train_videos: int = 1024
    test_videos: int = 64
    frame_stride: int = 2
    model_dim: int = 72
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 256
    word_dim: int = 14
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        positive = (
            "train_videos",
            "test_videos",
            "frame_stride",
            "model_dim",
            "layers",
            "heads",
            "ffn_dim",
            "word_dim",
            "steps",
            "batch_size",
        )
        problems = [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        if self.model_dim % self.heads:
            problems.append(f"model_dim {self.model_dim} must be a multiple of heads {self.heads}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if problems:
            raise ValueError("invalid VQA config: " + "; ".join(problems))

    def head_kwargs(self) -> dict[str, Any]:
        """The ``aloe`` head's shape arguments (the slot and vocabulary sizes come from the data)."""
        names = ("model_dim", "layers", "heads", "ffn_dim", "word_dim")
        return {name: getattr(self, name) for name in names}

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object."""
        return dataclasses.asdict(self)


__all__ = ["VqaConfig"]
