"""Asking a trained VQA head a question of one's own about a video (:func:`ask`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from downstream.aloe import Aloe
from downstream.vqa.data import frames_read


def ask(head: Aloe, config: dict[str, Any], slots: Tensor, question: str) -> str:
    """The answer ``head`` gives to ``question`` about a video, given the slots of every frame of it.

    ``head`` and ``config`` are what :func:`~downstream.vqa.run.load_vqa` returns; ``slots`` ``[T, K, D]`` are the
    model's slots of each of the video's ``T`` frames, of which the head reads those it was trained on (every
    ``frame_stride``-th, counted back from the last: the last frame is "the end"). ``question`` is lower-cased and a
    question mark dropped; its words must be among the head's (``config["words"]``), which are the templates' of
    :data:`~downstream.vqa.questions.TEMPLATES`.

    Raises:
        ValueError: a word the head does not know (the message names it and lists the head's words), a question
            longer than the head reads, slots of more frames than it reads, or of another shape than the head's.
    """
    vocabulary: dict[str, int] = {word: index for index, word in enumerate(config["words"])}
    words = question.lower().replace("?", " ").split()
    unknown = [word for word in words if word not in vocabulary or vocabulary[word] == 0]  # 0: padding
    if unknown:
        known = " ".join(config["words"][1:])
        raise ValueError(f"{', '.join(map(repr, unknown))}: not among the head's words, which are: {known}")
    if not words or len(words) > head.max_words:
        raise ValueError(f"the head reads questions of 1 to {head.max_words} words, got {len(words)}: {question!r}")
    if slots.ndim != 3:
        raise ValueError(f"ask takes the slots of every frame of one video, [T, K, D], got {list(slots.shape)}")
    stride = int(config["vqa"]["frame_stride"])
    read = slots[frames_read(slots.shape[0], stride)]  # [T', K, D]
    if read.shape[0] > head.max_frames:
        raise ValueError(
            f"the head reads at most {head.max_frames} frames, one in {stride} counted back from the last: give the "
            f"slots of at most {head.max_frames * stride} frames (a longer video's last), got {slots.shape[0]}"
        )
    ids = torch.tensor([[vocabulary[word] for word in words]])  # [1, L]
    with torch.no_grad():
        logits = head(read[None].float(), ids)  # [1, answers]
    return str(config["answers"][int(logits.argmax(dim=-1))])


__all__ = ["ask"]
