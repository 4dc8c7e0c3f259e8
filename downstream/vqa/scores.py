"""How often a question-answering head answers held-out questions right, by family, beside the answer a blind
guess gives: the family's most common answer in the training questions."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch

from downstream.aloe import Aloe
from downstream.vqa.data import QuestionSet
from downstream.vqa.questions import ANSWERS

ALL = "all"
"""The family name of the row over every question."""


@dataclass(frozen=True)
class FamilyScore:
    """A family's accuracy on held-out questions.

    Attributes:
        family: the family (:data:`ALL` for every question).
        questions: how many held-out questions it has.
        accuracy: the head's share of right answers.
        guess: the most common answer of the family's training questions.
        guess_accuracy: that answer's share of right answers (for :data:`ALL`, each family's guess).
    """

    family: str
    questions: int
    accuracy: float
    guess: str
    guess_accuracy: float

    def to_json(self) -> dict[str, Any]:
        """The score as a JSON object."""
        return asdict(self)


def answer_ids(head: Aloe, questions: QuestionSet, batch_size: int = 256) -> torch.Tensor:
    """The head's answer (an index of :data:`~downstream.vqa.questions.ANSWERS`) to each question, ``[Q]``."""
    answers = []
    with torch.no_grad():
        for start in range(0, len(questions), batch_size):
            rows = slice(start, start + batch_size)
            logits = head(questions.slots[questions.video_ids[rows]], questions.questions[rows])  # [b, answers]
            answers.append(logits.argmax(dim=-1))
    return torch.cat(answers) if answers else torch.zeros(0, dtype=torch.long)


def vqa_scores(head: Aloe, test: QuestionSet, train: QuestionSet) -> list[FamilyScore]:
    """The :data:`ALL` row, then one per family of ``test`` (in the order first met), each beside the guess made
    from ``train``.

    Raises:
        ValueError: there are no test questions.
    """
    if not len(test):
        raise ValueError("scoring a VQA head needs held-out questions")
    right = (answer_ids(head, test) == test.answers).tolist()
    truth = [ANSWERS[i] for i in test.answers.tolist()]
    by_family: dict[str, Counter[str]] = {}
    for family, answer in zip(train.families, train.answers.tolist(), strict=True):
        by_family.setdefault(family, Counter())[ANSWERS[answer]] += 1
    # the most common answer; on a tie, the answer that sorts last
    guesses = {
        family: max(counts.items(), key=lambda item: (item[1], item[0]))[0] for family, counts in by_family.items()
    }
    guessed = [guesses.get(family) == answer for family, answer in zip(test.families, truth, strict=True)]
    rows = [FamilyScore(ALL, len(test), _mean(right), "", _mean(guessed))]
    for family in dict.fromkeys(test.families):
        members = [i for i, f in enumerate(test.families) if f == family]
        rows.append(
            FamilyScore(
                family,
                len(members),
                _mean([right[i] for i in members]),
                guesses.get(family, ""),
                _mean([guessed[i] for i in members]),
            )
        )
    return rows


def format_scores(rows: list[FamilyScore]) -> str:
    """A text table: one line per family, the head's accuracy beside the guess's."""
    lines = [f"{'family':>12}  {'questions':>9}  {'head':>6}  {'guess':>6}  guessed answer"]
    for row in rows:
        lines.append(
            f"{row.family:>12}  {row.questions:>9}  {row.accuracy:>6.3f}  {row.guess_accuracy:>6.3f}  {row.guess}"
        )
    return "\n".join(lines)


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


__all__ = ["ALL", "FamilyScore", "answer_ids", "format_scores", "vqa_scores"]
