"""``aloe``: Aloe's question answering on slots (Ding et al., 2021, as SlotFormer's CLEVRER VQA runs it; methods.md
section 11).

One Transformer encoder reads a ``[CLS]`` token, the slots of every frame as tokens and the question's words as
tokens, and answers from the ``[CLS]`` output. Tokens are typed by fixed one-hots concatenated to their features
before the projection to the model width: a slot token is ``[slot, 0, 1]`` (``Linear(D + 2, d)``), a word token
``[word embedding, 1, 0, 0, 1]`` (text, then the id of a descriptive question; ``Linear(word_dim + 4, d)``), as the
reference types them. Every position has a learnable absolute embedding, the ``[CLS]`` token is learnable and
starts at zero, padding words are masked out of the attention, the encoder is pre-norm (with a final layer norm,
which a pre-norm stack needs before a read-out), and the answer is an MLP ``d -> 128 -> answers`` on the ``[CLS]``
output, trained with cross-entropy. The reference's masked-slot
self-supervision is off, as the reference requires for SAVi-style slots, and so are its multiple-choice heads:
the questions here are descriptive (:mod:`downstream.vqa`). Reference shape: 12 layers of 8 heads, width 144 (18 per
head), feed-forward 512, word embeddings of 14.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plugins.interfaces import Head

PADDING = 0
"""The word id of padding (and of an empty question)."""


class Aloe(Head):
    """Answers questions about slot trajectories.

    Contract: ``forward(slots [B, T, K, D], questions [B, L] | None) -> [B, answers]``: the answer logits of each
    video's question, its words as ids (``PADDING`` after the last word; ``None``: no question, the slots alone).

    Args:
        slot_dim: D, the width of the slots.
        words: the size of the word vocabulary, padding included.
        answers: the number of answers.
        max_frames: most frames a video may have (the position embedding's length is fixed).
        max_slots: most slots a frame may have.
        max_words: most words a question may have.
        model_dim: d, the Transformer's width (reference: 144).
        layers: Transformer encoder layers (reference: 12).
        heads: attention heads; ``model_dim`` must be a multiple (reference: 8).
        ffn_dim: the feed-forward width (reference: 512).
        word_dim: the word embedding's width (reference: 14).
        dropout: dropout in the encoder layers.
    """

    name = "aloe"

    def __init__(
        self,
        slot_dim: int,
        words: int = 64,
        answers: int = 32,
        max_frames: int = 25,
        max_slots: int = 7,
        max_words: int = 20,
        model_dim: int = 144,
        layers: int = 12,
        heads: int = 8,
        ffn_dim: int = 512,
        word_dim: int = 14,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = (
            slot_dim,
            words,
            answers,
            max_frames,
            max_slots,
            max_words,
            model_dim,
            layers,
            heads,
            ffn_dim,
            word_dim,
        )
        if min(sizes) < 1 or words < 2:
            raise ValueError("aloe's sizes must be >= 1 (words >= 2: padding and one word)")
        if model_dim % heads:
            raise ValueError(f"model_dim {model_dim} is not a multiple of heads {heads}")
        self._kwargs = {
            "slot_dim": slot_dim,
            "words": words,
            "answers": answers,
            "max_frames": max_frames,
            "max_slots": max_slots,
            "max_words": max_words,
            "model_dim": model_dim,
            "layers": layers,
            "heads": heads,
            "ffn_dim": ffn_dim,
            "word_dim": word_dim,
            "dropout": dropout,
        }
        self.slot_dim, self.max_frames, self.max_slots, self.max_words = slot_dim, max_frames, max_slots, max_words
        self.embed_words = nn.Embedding(words, word_dim, padding_idx=PADDING)
        self.project_slots = nn.Linear(slot_dim + 2, model_dim)
        self.project_words = nn.Linear(word_dim + 4, model_dim)
        self.cls = nn.Parameter(torch.zeros(model_dim))
        self.positions = nn.Parameter(torch.randn(1 + max_frames * max_slots + max_words, model_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            model_dim, heads, ffn_dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(model_dim)
        self.answer = nn.Sequential(nn.Linear(model_dim, 128), nn.ReLU(), nn.Linear(128, answers))
        self.register_buffer("slot_type", torch.tensor([0.0, 1.0]), persistent=False)
        self.register_buffer("word_type", torch.tensor([1.0, 0.0, 0.0, 1.0]), persistent=False)
        self.slot_type: Tensor
        self.word_type: Tensor

    def constructor_kwargs(self) -> dict[str, int | float]:
        """The arguments this head was built with (what a saved head is built from again)."""
        return dict(self._kwargs)

    def example_inputs(self, slots: Tensor) -> tuple[Tensor, ...]:
        """A question of three words for each video of ``slots`` (what the component checks pass)."""
        words = torch.arange(1, 4, device=slots.device) % self.embed_words.num_embeddings  # [3]
        return (words.clamp_min(1).expand(slots.shape[0], -1),)

    def forward(self, slots: Tensor, questions: Tensor | None = None) -> Tensor:
        """The answer logits ``[B, answers]`` of each video's question.

        Raises:
            ValueError: ``slots`` is not ``[B, T <= max_frames, K <= max_slots, D]``, or ``questions`` not ``[B,
                L <= max_words]`` of word ids the head has.
        """
        if slots.ndim != 4 or slots.shape[1] > self.max_frames or slots.shape[2] > self.max_slots:
            raise ValueError(
                f"aloe reads slots [B, T <= {self.max_frames}, K <= {self.max_slots}, {self.slot_dim}], got "
                f"{list(slots.shape)}"
            )
        if slots.shape[3] != self.slot_dim:
            raise ValueError(f"aloe reads slots of width {self.slot_dim}, got {list(slots.shape)}")
        batch = slots.shape[0]
        if questions is None:
            questions = torch.zeros(batch, 0, dtype=torch.long, device=slots.device)
        if questions.ndim != 2 or questions.shape[0] != batch or questions.shape[1] > self.max_words:
            raise ValueError(f"aloe reads questions [{batch}, L <= {self.max_words}], got {list(questions.shape)}")
        if questions.numel():
            lowest, highest = torch.stack(torch.aminmax(questions)).tolist()  # one read from the device
            words_known = self.embed_words.num_embeddings
            if lowest < 0 or highest >= words_known:
                raise ValueError(
                    f"aloe reads word ids from 0 to {words_known - 1}, got ids from {lowest} to {highest}"
                )
        vision = slots.flatten(1, 2)  # [B, T, K, D] -> [B, T*K, D], frame by frame
        vision = self.project_slots(torch.cat([vision, self.slot_type.expand(*vision.shape[:2], 2)], dim=-1))
        words = self.embed_words(questions)  # [B, L, word_dim]
        text = self.project_words(torch.cat([words, self.word_type.expand(*words.shape[:2], 4)], dim=-1))
        cls = self.cls.expand(batch, 1, -1)  # [B, 1, d]
        vision_positions = self.positions[1 : 1 + vision.shape[1]]
        text_start = 1 + self.max_frames * self.max_slots
        text_positions = self.positions[text_start : text_start + text.shape[1]]
        tokens = torch.cat(
            [cls + self.positions[:1], vision + vision_positions, text + text_positions], dim=1
        )  # [B, 1 + T*K + L, d]
        ignored = torch.zeros(batch, tokens.shape[1], dtype=torch.bool, device=slots.device)
        ignored[:, tokens.shape[1] - questions.shape[1] :] = questions == PADDING  # [B, L] padding words
        encoded = self.encoder(tokens, src_key_padding_mask=ignored)  # [B, 1 + T*K + L, d]
        logits: Tensor = self.answer(self.norm(encoded[:, 0]))
        return logits


__all__ = ["PADDING", "Aloe"]
