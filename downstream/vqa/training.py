"""Training an ``aloe`` head on a question set (:func:`fit_vqa`): mini-batches of questions with their videos'
slots, cross-entropy on the answer, Adam with a linear warm-up then cosine decay, as the reference trains it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from downstream.aloe import Aloe
from downstream.vqa.config import VqaConfig
from downstream.vqa.data import QuestionSet
from downstream.vqa.questions import ANSWERS, MAX_WORDS, WORDS
from training.schedule import warmup_cosine


def fit_vqa(questions: QuestionSet, config: VqaConfig, progress: bool = True) -> tuple[Aloe, float]:
    """Train an ``aloe`` head on ``questions``; returns it (in eval mode) and its last step's loss.

    Raises:
        ValueError: there are no questions to train on.
    """
    if not len(questions):
        raise ValueError("there are no questions to train a VQA head on")
    torch.manual_seed(config.seed)
    _, frames, slots, width = questions.slots.shape
    head = Aloe(
        width,
        words=len(WORDS),
        answers=len(ANSWERS),
        max_frames=frames,
        max_slots=slots,
        max_words=MAX_WORDS,
        **config.head_kwargs(),
    )
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    head.train()
    loss = math.nan
    for step in tqdm(range(config.steps), desc="vqa", disable=not progress, leave=False):
        for group in optimiser.param_groups:
            group["lr"] = config.lr * warmup_cosine(step, config.steps, config.warmup_fraction, 0.0)
        rows = torch.randint(len(questions), (config.batch_size,), generator=order)  # [b]
        logits = head(questions.slots[questions.video_ids[rows]], questions.questions[rows])  # [b, answers]
        batch_loss = F.cross_entropy(logits, questions.answers[rows])
        optimiser.zero_grad()
        batch_loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        loss = float(batch_loss.detach())
    return head.eval(), loss


__all__ = ["fit_vqa"]
