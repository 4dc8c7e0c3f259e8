"""``time_similarity``: VideoSAUR's temporal feature-similarity loss (Zadaianchuk et al., NeurIPS 2023).

The decoder predicts, for every token of frame ``t``, logits over the tokens of frame ``t + 1``
(``DecoderOutput.extra`` with ``P`` channels: configure the ``mlp`` decoder with ``extra_dim = P``). The target
is the softmax of the cosine similarities between that token's features and every token of the next frame,
divided by a temperature, with similarities below a threshold excluded. VideoSAUR computes the similarities
on the backbone's last-block keys; we use the decoder's target tokens (the raw backbone features), which are
what the model has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugins.interfaces import Loss
from plugins.types import Tensor, VideoOutput


class TimeSimilarityLoss(Loss):
    """Cross-entropy between predicted and measured next-frame token affinities.

    Args:
        temperature: similarity temperature (0.075 for MOVi-C, 0.15 for YTVIS with DINOv2 in VideoSAUR).
        threshold: similarities below it are excluded from the target softmax (0.0).
    """

    name = "time_similarity"

    def __init__(self, temperature: float = 0.075, threshold: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.threshold = threshold

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Mean over frame pairs and tokens; 0 for single-frame clips.

        Raises:
            ValueError: the decoder does not predict ``P`` extra channels.
        """
        del progress  # Unused.
        target = F.normalize(output.target.detach(), dim=-1)  # [B, T, P, C]
        _batch, frames, tokens, _ = target.shape
        extras = [step.extra for step in output.steps if step.extra is not None]  # each [B, P, P]
        if len(extras) != frames or extras[0].shape[-1] != tokens:
            got = f"{len(extras)} frames of {tuple(extras[0].shape)}" if extras else "none"
            raise ValueError(
                f"time_similarity needs decoder extras with {tokens} channels per token on every frame "
                f"(set the mlp decoder's extra_dim={tokens}); got {got}"
            )
        predicted = torch.stack(extras, dim=1)  # T x [B, P, P] -> [B, T, P, P]
        if frames < 2:
            return predicted.sum() * 0.0
        # [B, T-1, P, C] @ ([B, T-1, P, C] -> [B, T-1, C, P]) -> [B, T-1, P, P]
        similarity = target[:, :-1] @ target[:, 1:].transpose(-1, -2)  # [B, T-1, P, P]
        similarity = similarity.masked_fill(similarity < self.threshold, float("-inf")) / self.temperature
        # A token whose similarities are all below the threshold gets a uniform target instead of NaNs.
        similarity = torch.where(similarity.isinf().all(-1, keepdim=True), torch.zeros_like(similarity), similarity)
        target_distribution = similarity.softmax(dim=-1)
        log_predicted = predicted[:, :-1].log_softmax(dim=-1)  # [B, T-1, P, P]
        return -(target_distribution * log_predicted).sum(-1).mean()
