"""``slot_attention``: Slot Attention (Locatello et al., NeurIPS 2020) in the form SmoothSA/RandSF.Q use.

Per iteration: queries from the LayerNorm-ed slots, attention logits ``Q K^T / sqrt(D)``, softmax over the
*slot* axis (slots compete for each feature), renormalisation over features, weighted mean of the values, a
GRU update and a residual pre-LN MLP. The iteration count is chosen per call, which is how SmoothSA runs 3
iterations on the first frame and 1 on later frames. Optional BO-QSA bi-level truncation (Jia et al., ICLR
2023) makes the last iteration see ``sg(S) + S0 - sg(S0)``: the value of the iterated slots, the gradient of
the queries.

Epsilon conventions differ between published code bases; both are available: ``"denominator"``
(``A / (sum A + eps)``, Genera1Z and SAVi) and ``"additive"`` (``(A + eps) / sum(A + eps)``, VideoSAUR,
SlotFormer).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from plugins.interfaces import Aggregator
from plugins.types import AggregatorOutput, Features, Slots, Tensor


class SlotAttention(Aggregator):
    """Iterative competitive attention from queries to slots.

    Args:
        feature_dim: wired by the model.
        slot_dim: wired by the model.
        mlp_multiplier: hidden width of the residual MLP as a multiple of ``slot_dim``; 0 disables the MLP
            (SAVi-S).
        epsilon: the renormalisation epsilon (1e-5 in the SmoothSA code).
        epsilon_placement: ``"denominator"`` or ``"additive"``; see the module docstring.
        truncation: ``"none"`` or ``"bi_level"`` gradient truncation of the last iteration.

    Raises:
        ValueError: ``epsilon_placement`` or ``truncation`` is not one of its values.
    """

    name = "slot_attention"

    def __init__(
        self,
        feature_dim: int,
        slot_dim: int,
        mlp_multiplier: int = 4,
        epsilon: float = 1e-5,
        epsilon_placement: Literal["denominator", "additive"] = "denominator",
        truncation: Literal["none", "bi_level"] = "none",
    ) -> None:
        super().__init__()
        if epsilon_placement not in ("denominator", "additive"):
            raise ValueError(f"epsilon_placement must be 'denominator' or 'additive', not {epsilon_placement!r}")
        if truncation not in ("none", "bi_level"):
            raise ValueError(f"truncation must be 'none' or 'bi_level', not {truncation!r}")
        self.epsilon = epsilon
        self.epsilon_placement = epsilon_placement
        self.truncation = truncation
        self.scale = slot_dim**-0.5
        self.norm_features = nn.LayerNorm(feature_dim)
        self.to_k = nn.Linear(feature_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(feature_dim, slot_dim, bias=False)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        nn.init.zeros_(self.gru.bias_ih)
        nn.init.zeros_(self.gru.bias_hh)
        self.mlp: nn.Module | None = None
        if mlp_multiplier > 0:
            hidden = mlp_multiplier * slot_dim
            self.mlp = nn.Sequential(
                nn.LayerNorm(slot_dim), nn.Linear(slot_dim, hidden), nn.GELU(), nn.Linear(hidden, slot_dim)
            )
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.zeros_(layer.bias)

    def forward(
        self, features: Features, queries: Slots, num_iterations: int, slot_mask: Tensor | None = None
    ) -> AggregatorOutput:
        """Group ``features [B, P, Df]`` starting from ``queries [B, K, D]``.

        Args:
            features: tokens of one frame.
            queries: initial slots.
            num_iterations: rounds to run (>= 1).
            slot_mask: ``[B, K]`` bool, ``True`` for slots in use; masked slots get no attention.

        Returns:
            Slots ``[B, K, D]`` and attention ``[B, R, K, P]`` of every iteration.

        Raises:
            ValueError: ``num_iterations`` is below 1.
        """
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        batch, num_slots, slot_dim = queries.shape
        normed = self.norm_features(features)
        keys, values = self.to_k(normed), self.to_v(normed)  # [B, P, D] each
        slots = queries
        attentions = []
        for iteration in range(num_iterations):
            if self.truncation == "bi_level" and iteration == num_iterations - 1:
                slots = slots.detach() + queries - queries.detach()
            q = self.to_q(self.norm_slots(slots))  # [B, K, D]
            logits = torch.einsum("bkd,bpd->bkp", q, keys) * self.scale  # [B, K, D] x [B, P, D] -> [B, K, P]
            if slot_mask is not None:
                logits = logits.masked_fill(~slot_mask[:, :, None], float("-inf"))  # mask [B, K] -> [B, K, 1] over P
            attention = logits.softmax(dim=1)  # [B, K, P], softmax over slots
            attentions.append(attention)
            if self.epsilon_placement == "denominator":
                weights = attention / (attention.sum(dim=-1, keepdim=True) + self.epsilon)
            else:
                weights = (attention + self.epsilon) / (attention + self.epsilon).sum(dim=-1, keepdim=True)
                if slot_mask is not None:  # epsilon alone would give a masked slot the mean of the values
                    weights = weights.masked_fill(~slot_mask[:, :, None], 0.0)  # mask [B, K] -> [B, K, 1] over P
            updates = torch.einsum("bkp,bpd->bkd", weights, values)  # [B, K, P] x [B, P, D] -> [B, K, D]
            slots = self.gru(updates.reshape(-1, slot_dim), slots.reshape(-1, slot_dim))  # [B, K, D] -> [B*K, D]
            slots = slots.reshape(batch, num_slots, slot_dim)  # [B*K, D] -> [B, K, D]
            if self.mlp is not None:
                slots = slots + self.mlp(slots)
        return AggregatorOutput(slots=slots, attention=torch.stack(attentions, dim=1))  # R x [B, K, P] -> [B, R, K, P]
