"""Named tensor shapes and the typed outputs that flow between model stages.

Shape letters used throughout the project:

- ``B`` batch (streams, or clips during training)
- ``T`` frames
- ``K`` slots
- ``D`` slot width
- ``P`` feature tokens of one frame (``h * w``)
- ``Df`` width of the features Slot Attention reads
- ``Pt`` / ``Ct`` tokens / channels of the reconstruction target (pixels or raw backbone features)
- ``R`` Slot Attention iterations run on a frame
- ``H``, ``W`` image height and width; ``h``, ``w`` feature grid or mask height and width
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import torch

Tensor: TypeAlias = torch.Tensor

Frames: TypeAlias = Tensor
"""``[B, 3, H, W]`` float32 in ``[0, 1]``: one frame per batch element."""
Video: TypeAlias = Tensor
"""``[B, T, 3, H, W]`` float32 in ``[0, 1]``."""
Features: TypeAlias = Tensor
"""``[B, P, Df]`` tokens of one frame."""
Slots: TypeAlias = Tensor
"""``[B, K, D]`` object vectors."""
Attention: TypeAlias = Tensor
"""``[B, R, K, P]`` Slot Attention weights of every iteration (softmax over ``K``)."""
Masks: TypeAlias = Tensor
"""``[B, K, h, w]`` soft masks; they sum to 1 over ``K``."""
Tokens: TypeAlias = Tensor
"""``[B, Pt, Ct]`` reconstruction target or reconstruction, as a sequence of tokens."""
Grid: TypeAlias = tuple[int, int]
"""``(h, w)`` of a token sequence laid out row-major."""


@dataclass
class EncoderOutput:
    """What an encoder produces for one frame.

    Attributes:
        features: ``[B, P, Df]`` tokens that Slot Attention, the initializer and the transition read.
        grid: ``(h, w)`` layout of ``features``.
        raw: ``[B, P, Ct]`` backbone features before the projection: the target of feature-reconstructing
            decoders. Detached when the backbone is frozen.
    """

    features: Features
    grid: Grid
    raw: Tokens


@dataclass
class InitializerOutput:
    """Queries for the first frame.

    Attributes:
        queries: ``[B, K, D]`` the queries Slot Attention starts from.
        preheated: ``[B, K, D]`` the preheater's prediction before the stop-gradient (SmoothSA); ``None`` for
            initializers without a preheater. The preheat loss regresses it onto the first frame's slots.
    """

    queries: Slots
    preheated: Slots | None = None


@dataclass
class AggregatorOutput:
    """Slots and the attention of every iteration.

    Attributes:
        slots: ``[B, K, D]`` slots after the last iteration.
        attention: ``[B, R, K, P]`` attention of each of the ``R`` iterations, softmax over slots.
    """

    slots: Slots
    attention: Attention


@dataclass
class DecoderOutput:
    """A reconstruction of the target and the per-slot masks that composed it.

    Attributes:
        reconstruction: ``[B, Pt, Ct]`` reconstructed target tokens.
        masks: ``[B, K, h, w]`` soft masks over the target grid, summing to 1 over slots.
        extra: ``[B, Pt, E]`` optional extra per-token predictions (e.g. VideoSAUR's next-frame similarity logits).
    """

    reconstruction: Tokens
    masks: Masks
    extra: Tokens | None = None


@dataclass
class StepOutput:
    """Everything the model produces for one frame.

    Attributes:
        slots: ``[B, K, D]``.
        masks: ``[B, K, h, w]`` decoder masks, summing to 1 over slots.
        attention: ``[B, R, K, P]`` Slot Attention weights of each iteration run on this frame.
        reconstruction: ``[B, Pt, Ct]`` the decoder's reconstruction.
        target: ``[B, Pt, Ct]`` what the decoder reconstructs (pixels or raw features), detached.
        features: ``[B, P, Df]`` the encoder tokens of this frame.
        grid: ``(h, w)`` of the encoder tokens.
        preheated: ``[B, K, D]`` preheated queries (first frame of a SmoothSA model only).
        extra: optional extra decoder predictions.
    """

    slots: Slots
    masks: Masks
    attention: Attention
    reconstruction: Tokens
    target: Tokens
    features: Features
    grid: Grid
    preheated: Slots | None = None
    extra: Tokens | None = None


@dataclass
class SlotState:
    """The recurrent state carried from one frame to the next.

    At inference ``slots`` (the previous frame's slots, ``[B, K, D]``) is the whole state: it is what the
    service keeps per stream and what an exported ``step`` graph takes as input. During training a
    transition may look further back (RandSF.Q samples slot-feature pairs inside its window), so the model
    also keeps the recent history there; it stays empty in eval mode.

    Attributes:
        slots: ``[B, K, D]`` the previous frame's slots.
        past_slots: training-only window of earlier slots, oldest first, each ``[B, K, D]`` (``slots`` last).
        past_features: training-only window of earlier encoder tokens, oldest first, each ``[B, P, Df]``.
    """

    slots: Slots
    past_slots: tuple[Slots, ...] = field(default_factory=tuple)
    past_features: tuple[Features, ...] = field(default_factory=tuple)


@dataclass
class VideoOutput:
    """Per-frame outputs of a whole clip, stacked over time.

    Attributes:
        slots: ``[B, T, K, D]``.
        masks: ``[B, T, K, h, w]``.
        reconstruction: ``[B, T, Pt, Ct]``.
        target: ``[B, T, Pt, Ct]``.
        steps: the per-frame outputs, for losses that need per-frame detail (e.g. attention of every
            iteration, whose iteration count differs between the first and later frames).
        state: the state after the last frame, to continue the video in a later call.
    """

    slots: Tensor
    masks: Tensor
    reconstruction: Tensor
    target: Tensor
    steps: list[StepOutput]
    state: SlotState

    @property
    def preheated(self) -> Slots | None:
        """``[B, K, D]`` preheated queries of the first frame, if the model has a preheater."""
        return self.steps[0].preheated
