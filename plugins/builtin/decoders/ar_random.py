"""``ar_random``: the random-order masked Transformer decoder of DIAS / RandSF.Q / SmoothSA (Zhao et al.).

The decoder reconstructs the frozen backbone tokens from a partly masked copy of them, reading the slots
through cross-attention. In training each sample keeps a random subset of ``k`` tokens visible (``k`` uniform
in ``{0..P-2}`` with probability 0.5, otherwise a fixed count) and replaces the rest by a learned mask
token; every token keeps the position embedding of its place in the image. The published code draws a
random permutation, keeps its first ``k`` entries and un-permutes the output without any causal mask, which
is the same computation as a random visible subset: that is what is implemented here. At inference every
token is visible. The masks are the last layer's cross-attention from tokens to slots (averaged over heads,
softmax over slots).

The fixed count: the published code hard-codes 24 tokens, ``int(0.1 * 256) - 1`` for its 16x16 grid (methods.md
§1.5). Here it defaults to ``int(0.1 * P) - 1``, the same 24 at 16x16 and the same tenth of the tokens on any other
grid (5 at 8x8, 101 at 32x32); ``fixed_visible=24`` keeps the published count on another grid.

Architecture: queries ``LN(W1 F)``, memory ``LN(W2 S)``, learned 1-D position embedding, pre-norm decoder
layers without biases, the first layer's self-attention norm applied once to the whole query sequence, no
final norm, then the output as it is (as the published video configs) or, when ``dim`` differs from the
target width, a linear read-out to it. The layers start from the same weights, as the published stack
(``nn.TransformerDecoder`` copies one layer) does.
"""

from __future__ import annotations

import torch
from torch import nn

from plugins.interfaces import Decoder
from plugins.types import DecoderOutput, Slots, Tokens


class _DecoderLayer(nn.Module):
    """Pre-norm self-attention -> cross-attention -> FFN, bias-free; can return cross-attention weights."""

    def __init__(self, dim: int, num_heads: int, ffn_multiplier: int, first: bool) -> None:
        super().__init__()
        self.self_norm = nn.Identity() if first else nn.LayerNorm(dim, bias=False)
        self.self_attention = nn.MultiheadAttention(dim, num_heads, bias=False, batch_first=True)
        self.cross_norm = nn.LayerNorm(dim, bias=False)
        self.cross_attention = nn.MultiheadAttention(dim, num_heads, bias=False, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, bias=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_multiplier * dim, bias=False),
            nn.GELU(),
            nn.Linear(ffn_multiplier * dim, dim, bias=False),
        )

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, want_attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.self_norm(x)
        x = x + self.self_attention(normed, normed, normed, need_weights=False)[0]
        cross, weights = self.cross_attention(self.cross_norm(x), memory, memory, need_weights=want_attention)
        x = x + cross
        x = x + self.ffn(self.ffn_norm(x))
        return x, weights  # weights: [B, P, K] averaged over heads, or None


class RandomOrderTransformerDecoder(Decoder):
    """Masked Transformer decoder of backbone features; masks from its last cross-attention.

    Args:
        slot_dim: wired by the model.
        target_dim: wired by the model (the raw feature width, 384 for ViT-S).
        feature_grid: wired by the model.
        dim: model width; defaults to ``target_dim`` (384 in the papers).
        depth: decoder layers (4).
        num_heads: attention heads (4).
        ffn_multiplier: FFN width as a multiple of ``dim`` (4).
        fixed_visible: tokens left visible in the training samples that do not draw their count (half of them);
            None: ``int(0.1 * P) - 1`` (see the module docstring).

    Raises:
        ValueError: for a ``fixed_visible`` outside ``[0, P - 1]``.
    """

    name = "ar_random"
    target_kind = "features"
    mask_kind = "last-layer cross-attention weights (softmax over slots, mean over heads)"

    def __init__(
        self,
        slot_dim: int,
        target_dim: int,
        feature_grid: tuple[int, int],
        dim: int | None = None,
        depth: int = 4,
        num_heads: int = 4,
        ffn_multiplier: int = 4,
        fixed_visible: int | None = None,
    ) -> None:
        super().__init__()
        width = dim or target_dim
        self.target_grid = tuple(feature_grid)  # type: ignore[assignment]
        self.num_tokens = feature_grid[0] * feature_grid[1]
        if fixed_visible is None:
            fixed_visible = max(int(0.1 * self.num_tokens) - 1, 0)
        if not 0 <= fixed_visible < self.num_tokens:
            raise ValueError(
                f"ar_random: fixed_visible must be in [0, {self.num_tokens - 1}] for a {feature_grid[0]}x"
                f"{feature_grid[1]} token grid, got {fixed_visible}"
            )
        self.fixed_visible = fixed_visible
        self.embed_target = nn.Sequential(nn.Linear(target_dim, width, bias=False), nn.LayerNorm(width))
        self.embed_slots = nn.Sequential(nn.Linear(slot_dim, width, bias=False), nn.LayerNorm(width))
        self.position = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, self.num_tokens, width)))
        self.mask_token = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.input_norm = nn.LayerNorm(width, bias=False)
        self.layers = nn.ModuleList(
            _DecoderLayer(width, num_heads, ffn_multiplier, first=i == 0) for i in range(depth)
        )
        for layer in self.layers[1:]:  # the reference's stack copies one layer: all start from the same weights
            layer.load_state_dict(self.layers[0].state_dict(), strict=False)  # (the first has no self_norm)
        # The published video configs read the last layer out directly (width == target_dim); a read-out layer
        # exists only when the width differs from the target's.
        self.readout: nn.Module = nn.Identity() if width == target_dim else nn.Linear(width, target_dim, bias=False)

    def visible_tokens(self, batch: int, device: torch.device) -> torch.Tensor:
        """``[B, P]`` bool: which target tokens the decoder may read (all at inference)."""
        if not self.training:
            return torch.ones(batch, self.num_tokens, dtype=torch.bool, device=device)
        uniform = torch.randint(0, self.num_tokens - 1, (batch,), device=device)  # k in {0..P-2}
        fixed = torch.full_like(uniform, self.fixed_visible)
        counts = torch.where(torch.rand(batch, device=device) < 0.5, uniform, fixed)  # [B]
        ranks = torch.rand(batch, self.num_tokens, device=device).argsort(dim=1).argsort(dim=1)  # random order
        return ranks < counts[:, None]  # counts [B] -> [B, 1]; [B, P]: the first k of a random permutation

    def forward(self, slots: Slots, target: Tokens) -> DecoderOutput:
        """Slots ``[B, K, D]`` and target ``[B, P, Ct]`` -> reconstruction ``[B, P, Ct]``, masks ``[B, K, h, w]``."""
        batch = slots.shape[0]
        tokens = self.embed_target(target)  # [B, P, width]
        visible = self.visible_tokens(batch, target.device)
        # visible [B, P] -> [B, P, 1], mask token [1, 1, width]; tokens stay [B, P, width]
        tokens = torch.where(visible[..., None], tokens, self.mask_token.to(tokens.dtype))
        x = self.input_norm(tokens + self.position)
        memory = self.embed_slots(slots)  # [B, K, width]
        weights: torch.Tensor | None = None
        for index, layer in enumerate(self.layers):
            x, weights = layer(x, memory, want_attention=index == len(self.layers) - 1)
        assert weights is not None
        masks = weights.transpose(1, 2).reshape(batch, -1, *self.target_grid)  # [B, P, K] -> [B, K, h, w]
        return DecoderOutput(reconstruction=self.readout(x), masks=masks)
