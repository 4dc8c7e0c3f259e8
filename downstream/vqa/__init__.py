"""Question answering on slots: descriptive questions about synthetic videos (:mod:`downstream.vqa.questions`)
answered by an Aloe head (:class:`~downstream.aloe.Aloe`) reading a model's slots (``python -m downstream.vqa``).

Example:
    >>> from pathlib import Path
    >>> from downstream.vqa import VqaConfig, answer_questions
    >>> result = answer_questions(Path("service/models/default"), "medium", Path("runs/vqa"), VqaConfig())
    ... # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from downstream.vqa.answering import ask
    from downstream.vqa.config import VqaConfig
    from downstream.vqa.data import QuestionSet, question_set
    from downstream.vqa.questions import ANSWERS, FAMILIES, WORDS, Question, video_questions
    from downstream.vqa.run import VqaResult, answer_questions, load_vqa
    from downstream.vqa.scores import FamilyScore, vqa_scores
    from downstream.vqa.training import fit_vqa

_EXPORTS = {
    "ANSWERS": "downstream.vqa.questions",
    "answer_questions": "downstream.vqa.run",
    "ask": "downstream.vqa.answering",
    "FAMILIES": "downstream.vqa.questions",
    "FamilyScore": "downstream.vqa.scores",
    "fit_vqa": "downstream.vqa.training",
    "load_vqa": "downstream.vqa.run",
    "Question": "downstream.vqa.questions",
    "question_set": "downstream.vqa.data",
    "QuestionSet": "downstream.vqa.data",
    "video_questions": "downstream.vqa.questions",
    "VqaConfig": "downstream.vqa.config",
    "VqaResult": "downstream.vqa.run",
    "vqa_scores": "downstream.vqa.scores",
    "WORDS": "downstream.vqa.questions",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ANSWERS",
    "FAMILIES",
    "WORDS",
    "FamilyScore",
    "Question",
    "QuestionSet",
    "VqaConfig",
    "VqaResult",
    "answer_questions",
    "ask",
    "fit_vqa",
    "load_vqa",
    "question_set",
    "video_questions",
    "vqa_scores",
]
