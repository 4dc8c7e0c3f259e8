"""Learning-rate schedule: linear warm-up from 0, then cosine decay to a fraction of the peak."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_fraction: float, final_fraction: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total_steps``.

    Linear up to 1 over the first ``warmup_fraction`` of the steps, then a half cosine from 1 down to
    ``final_fraction`` at the last step (SmoothSA's ``CbLinearCosine``: 5 % warm-up, end at LR/1000). Step 0
    already runs at ``1 / warmup_steps`` of the peak, where the reference's ramp starts at 0 (a step that cannot
    move the weights), so during the warm-up this schedule runs one step ahead of it (at most
    ``1 / warmup_steps`` of the peak apart).
    """
    warmup = max(round(warmup_fraction * total_steps), 0)
    if warmup and step < warmup:
        return (step + 1) / warmup
    remaining = max(total_steps - warmup - 1, 1)
    progress = min(max((step - warmup) / remaining, 0.0), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
