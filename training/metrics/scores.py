"""Per-sample metric values with a validity mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SampleScores"]


@dataclass(frozen=True)
class SampleScores:
    """One metric evaluated on ``S`` samples (videos or frames).

    Attributes:
        values: ``[S]`` float64; NaN where the sample is invalid.
        valid: ``[S]`` bool; invalid samples have no defined score (e.g. FG-ARI of a sample without foreground)
            and are excluded from ``mean``.
    """

    values: Tensor
    valid: Tensor

    @property
    def num_valid(self) -> int:
        """Number of samples that have a score."""
        return int(self.valid.sum())

    @property
    def num_invalid(self) -> int:
        """Number of samples excluded from the mean."""
        return int(self.valid.numel()) - self.num_valid

    def total(self) -> float:
        """Sum of the valid scores (0.0 when none)."""
        return float(torch.where(self.valid, self.values, torch.zeros_like(self.values)).sum())

    def mean(self) -> float:
        """Mean over valid samples; NaN when no sample is valid."""
        return self.total() / self.num_valid if self.num_valid else float("nan")
