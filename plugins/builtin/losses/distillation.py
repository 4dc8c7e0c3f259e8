"""``attention_distillation``: DIAS's first-to-last-iteration attention self-distillation (Zhao et al., "Slot
Attention with Re-Initialization and Self-Distillation", ACM MM 2025).

On every frame that ran more than one Slot Attention iteration, the first iteration's attention is pushed
towards the (detached) last iteration's, slots matched by index, with a weight that ramps from 0 to 1 along a
half cosine over training. As in the published code the loss is PyTorch's soft-target cross-entropy with the
slot axis as the class axis, applied to the attention probabilities themselves (so they pass through one more
log-softmax); ``faithful=False`` uses ``log`` of the probabilities instead (a plain cross-entropy).

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


class AttentionDistillationLoss(Loss):
    """Distil the last iteration's attention into the first.

    Args:
        faithful: reproduce the published loss exactly (see the module docstring).
    """

    name = "attention_distillation"

    def __init__(self, faithful: bool = True) -> None:
        super().__init__()
        self.faithful = faithful

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Ramp-weighted mean over frames with at least two iterations; 0 if there are none."""
        ramp = 0.5 * (1.0 - math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        terms = []
        for step in output.steps:
            attention = step.attention  # [B, R, K, P]
            if attention.shape[1] < 2:
                continue
            first, last = attention[:, 0], attention[:, -1].detach()  # [B, K, P]
            if self.faithful:
                terms.append(F.cross_entropy(first, last))
            else:
                terms.append(-(last * first.clamp_min(1e-8).log()).sum(1).mean())
        if not terms:
            return output.slots.sum() * 0.0
        return ramp * torch.stack(terms).mean()  # T x [] -> [T], the frames with R >= 2
