"""``slotformer``: SlotFormer's rollouter (Wu et al., ICLR 2023), a dynamics model of slot trajectories.

It reads the slots of the last ``history`` frames as ``history * K`` tokens (each slot projected to the model width,
plus a sinusoidal code of its frame's place in the window, the same for every slot of a frame, with no code for
the slot's index, so the model treats the slots as a set), runs a pre-norm Transformer encoder over them, and maps
the last frame's ``K`` output tokens back to slots: the slots of the next frame. A rollout slides the window over
its own predictions. The frame codes count back from the newest frame, as the reference code indexes its table
(from ``history - 1`` down to 0 over the window, oldest first). Reference configuration for CLEVRER: history 6,
rollout 10, model width 256, 4 layers of 8 heads, feed-forward 1024 (methods.md, section 10).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from plugins.interfaces import Head


def sinusoidal_table(positions: int, width: int) -> Tensor:
    """The fixed sinusoidal codes ``[positions, width]`` of Vaswani et al.: sines on even, cosines on odd columns,
    wavelengths from 2 pi to 10000 * 2 pi."""
    position = torch.arange(positions, dtype=torch.float32)[:, None]  # [P, 1]
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))  # [W/2]
    table = torch.zeros(positions, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table


class SlotFormer(Head):
    """Predicts the next frames' slots from the slots of the frames before.

    Contract: ``forward(slots [B, T, K, D]) -> [B, rollout, K, D]``: the slots of the ``rollout`` frames after the
    last of ``slots``, predicted from its last ``history`` frames (``T >= history``), each step from the window of
    the steps before (its own predictions once the observed frames are used up).

    Args:
        slot_dim: D, the width of the slots it reads and predicts.
        history: frames in the window a prediction reads (the burn-in; reference: 6).
        rollout: frames :meth:`forward` predicts (reference: 10).
        model_dim: the Transformer's width (reference: 256 for 128-wide slots).
        layers: Transformer encoder layers (reference: 4).
        heads: attention heads; ``model_dim`` must be a multiple (reference: 8).
        ffn_dim: the feed-forward width (reference: 4 * ``model_dim``).
        dropout: dropout in the encoder layers.
        residual: predict the change from the newest frame's slots (added to them; the read-out starts at zero, so
            an untrained head repeats the newest frame) instead of the slots themselves (the reference).
    """

    name = "slotformer"

    def __init__(
        self,
        slot_dim: int,
        history: int = 6,
        rollout: int = 10,
        model_dim: int = 128,
        layers: int = 4,
        heads: int = 8,
        ffn_dim: int = 512,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if min(slot_dim, history, rollout, model_dim, layers, heads, ffn_dim) < 1:
            raise ValueError("slot_dim, history, rollout, model_dim, layers, heads and ffn_dim must be >= 1")
        if model_dim % heads:
            raise ValueError(f"model_dim {model_dim} is not a multiple of heads {heads}")
        self.slot_dim, self.history, self.rollout = slot_dim, history, rollout
        self._kwargs = {
            "slot_dim": slot_dim,
            "history": history,
            "rollout": rollout,
            "model_dim": model_dim,
            "layers": layers,
            "heads": heads,
            "ffn_dim": ffn_dim,
            "dropout": dropout,
            "residual": residual,
        }
        self.project_in = nn.Linear(slot_dim, model_dim)
        layer = nn.TransformerEncoderLayer(
            model_dim, heads, ffn_dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.project_out = nn.Linear(model_dim, slot_dim)
        self.residual = residual
        if residual:  # a change from the newest frame, starting at none: the rollout starts as repeating it
            nn.init.zeros_(self.project_out.weight)
            nn.init.zeros_(self.project_out.bias)
        # the window's frames, oldest first, get the codes of history - 1 down to 0
        self.register_buffer("frame_codes", sinusoidal_table(history, model_dim).flip(0), persistent=False)
        self.frame_codes: Tensor

    def constructor_kwargs(self) -> dict[str, int | float | bool]:
        """The arguments this head was built with (what a saved head is built from again)."""
        return dict(self._kwargs)

    def forward(self, slots: Tensor) -> Tensor:
        """The slots ``[B, rollout, K, D]`` of the :attr:`rollout` frames after ``slots`` ``[B, T, K, D]``."""
        return self.roll_out(slots, self.rollout)

    def roll_out(self, slots: Tensor, steps: int) -> Tensor:
        """The slots ``[B, steps, K, D]`` of the ``steps`` frames after ``slots`` ``[B, T, K, D]`` (``T >=``
        :attr:`history`), each predicted from the window of the :attr:`history` frames before it.

        Raises:
            ValueError: ``slots`` is not ``[B, T, K, D]`` with ``T >= history`` and this head's ``D``.
        """
        if slots.ndim != 4 or slots.shape[1] < self.history or slots.shape[3] != self.slot_dim:
            raise ValueError(
                f"slotformer reads slots [B, T >= {self.history}, K, {self.slot_dim}], got {list(slots.shape)}"
            )
        window = slots[:, -self.history :]  # [B, L, K, D]
        predicted = []
        for _ in range(steps):
            following = self.predict_next(window)  # [B, K, D]
            predicted.append(following)
            window = torch.cat([window[:, 1:], following[:, None]], dim=1)  # slide: drop the oldest frame
        return torch.stack(predicted, dim=1)  # steps x [B, K, D] -> [B, steps, K, D]

    def predict_next(self, window: Tensor) -> Tensor:
        """The slots ``[B, K, D]`` of the frame after ``window`` ``[B, L, K, D]`` (``L <= history``; its newest
        frame gets the code of 0)."""
        batch, frames, slots, _ = window.shape
        tokens = self.project_in(window) + self.frame_codes[-frames:, None, :]  # [B, L, K, d] + [L, 1, d]
        tokens = tokens.reshape(batch, frames * slots, -1)  # [B, L, K, d] -> [B, L*K, d], frame by frame
        encoded = self.encoder(tokens)  # [B, L*K, d]
        following: Tensor = self.project_out(encoded[:, -slots:])  # the newest frame's K tokens: [B, K, D]
        return window[:, -1] + following if self.residual else following


__all__ = ["SlotFormer", "sinusoidal_table"]
