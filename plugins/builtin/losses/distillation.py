"""``attention_distillation``: DIAS's first-to-last-iteration attention self-distillation (Zhao et al., "Slot
Attention with Re-Initialization and Self-Distillation", ACM MM 2025).

On every frame that ran more than one Slot Attention iteration, the first iteration's attention is pushed
towards the (detached) last iteration's, with a weight that ramps from 0 to 1 along a half cosine over training.

The paper and its published code define the target differently, and ``target`` chooses:

- ``"code"`` (default, what the published code trains): the last iteration's soft attention, slots matched by
  index. The loss is PyTorch's soft-target cross-entropy with the slot axis as the class axis, applied to the
  attention probabilities themselves (so they pass through one more log-softmax); ``faithful=False`` uses ``log``
  of the probabilities instead (a plain cross-entropy).
- ``"paper"`` (the paper's Eq. 14-15): both maps binarised along the slot axis (each pixel's largest slot), the
  last iteration's slots matched to the first's by the Hungarian algorithm on their pixel overlap, and the
  cross-entropy of the first iteration's probabilities with that matched hard target. Relabelling the last
  iteration's slots does not change it. ``faithful`` does not apply.

The published code runs this loss with untruncated Slot Attention (its aggregator's comment calls it "not
compatible with bi-level"). Here it also runs under ``truncation="bi_level"``, where the first iteration's
attention still receives this loss's gradient but the last iteration's input is detached from the earlier ones;
no shipped config combines the two, and that combination has not been trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from plugins.interfaces import Loss
from plugins.types import Tensor, VideoOutput

TARGETS = ("code", "paper")
"""The distillation targets ``target`` chooses from (see the module docstring)."""


class AttentionDistillationLoss(Loss):
    """Distil the last iteration's attention into the first.

    Args:
        faithful: with ``target="code"``, reproduce the published loss exactly (see the module docstring).
        target: ``"code"`` (the published code's soft, index-matched target) or ``"paper"`` (the paper's
            binarised, Hungarian-matched target).

    Raises:
        ValueError: ``target`` is not one of :data:`TARGETS`.
    """

    name = "attention_distillation"

    def __init__(self, faithful: bool = True, target: str = "code") -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.faithful = faithful
        self.target = target

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Ramp-weighted mean over frames with at least two iterations; 0 if there are none."""
        ramp = 0.5 * (1.0 - math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        terms = []
        for step in output.steps:
            attention = step.attention  # [B, R, K, P]
            if attention.shape[1] < 2:
                continue
            first, last = attention[:, 0], attention[:, -1].detach()  # [B, K, P]
            if self.target == "paper":
                terms.append(F.nll_loss(first.clamp_min(1e-8).log(), matched_hard_target(first.detach(), last)))
            elif self.faithful:
                terms.append(F.cross_entropy(first, last))
            else:
                terms.append(-(last * first.clamp_min(1e-8).log()).sum(1).mean())
        if not terms:
            return output.slots.sum() * 0.0
        return ramp * torch.stack(terms).mean()  # T x [] -> [T], the frames with R >= 2


def matched_hard_target(first: Tensor, last: Tensor) -> Tensor:
    """The paper's ``Hungarian(bin_s(first), bin_s(last))``: each pixel's largest slot of ``last``, relabelled with
    the slot of ``first`` that the Hungarian algorithm matches to it (maximum pixel overlap of the binarised maps).

    Args:
        first, last: attention ``[B, K, P]`` (slots on axis 1).

    Returns:
        Slot indices ``[B, P]`` (int64) in ``first``'s numbering.
    """
    from scipy.optimize import linear_sum_assignment

    slots = first.shape[1]
    first_hard = F.one_hot(first.argmax(1), slots).float()  # [B, P] -> [B, P, K]
    last_index = last.argmax(1)  # [B, P]
    last_hard = F.one_hot(last_index, slots).float()  # [B, P, K]
    overlap = torch.einsum("bpk,bpj->bkj", first_hard, last_hard)  # [B, K first, K last]: pixels both give the pair
    relabel = torch.empty(overlap.shape[0], slots, dtype=torch.long)  # [B, K last] -> slot of first
    for item, pixels in enumerate(overlap.cpu().numpy()):
        first_slots, last_slots = linear_sum_assignment(pixels, maximize=True)
        relabel[item, torch.as_tensor(last_slots)] = torch.as_tensor(first_slots)
    return relabel.to(last_index.device).gather(1, last_index)  # [B, K] indexed by [B, P] -> [B, P]
