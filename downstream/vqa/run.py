"""A question-answering head for one model, end to end (:func:`answer_questions`): its slots on synthetic videos
with the questions about them, an ``aloe`` head trained on the train-split videos' questions and scored on the
validation videos', and the head saved with its scores and their chart."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downstream.aloe import Aloe
from downstream.head_folder import load_head, model_label, save_head
from downstream.vqa.config import VqaConfig
from downstream.vqa.data import QuestionSet, question_set
from downstream.vqa.questions import ANSWERS, FAMILIES, WORDS
from downstream.vqa.scores import FamilyScore, vqa_scores
from downstream.vqa.training import fit_vqa
from plugins import VideoSlotModel
from plugins.files import write_atomically
from service.engine import model_version
from training.bar_chart import BarRow, draw_paired_bars
from training.datasets.synthetic.levels import get_level
from training.datasets.synthetic_dataset import SyntheticDataset

SCORES_FILE = "scores.json"
"""The held-out scores :func:`answer_questions` writes beside the head."""
SCORES_CHART = "scores.png"
"""Their chart."""


@dataclass(frozen=True)
class VqaResult:
    """What :func:`answer_questions` measured and saved.

    Attributes:
        folder: where the head was saved (:func:`load_vqa` reads it).
        train: the questions (and slots) it was trained on.
        test: those it was scored on.
        scores: accuracy over every held-out question, then by family, each beside the blind guess.
        final_loss: the training loss of the last step.
        seconds: the whole run's time, running the model included.
    """

    folder: Path
    train: QuestionSet
    test: QuestionSet
    scores: list[FamilyScore]
    final_loss: float
    seconds: float


def answer_questions(model_dir: Path, level: str, out: Path, config: VqaConfig, *, progress: bool = True) -> VqaResult:
    """Train and score an ``aloe`` head on the slots of the model saved in ``model_dir`` on the synthetic level
    ``level``, and save it in ``out``.

    Raises:
        ValueError: an unknown level, a model that cannot be loaded, or no question to train or score on.
        OSError: ``out`` cannot be written.
    """
    started = time.perf_counter()
    chosen = get_level(level)
    model = VideoSlotModel.from_pretrained(model_dir)
    size = model.image_size
    train_videos = SyntheticDataset(chosen, "train", None, size, config.seed, num_videos=config.train_videos)
    test_videos = SyntheticDataset(chosen, "val", None, size, num_videos=config.test_videos)
    train = question_set(model, train_videos, config.frame_stride, progress, desc="slots (train)")
    test = question_set(model, test_videos, config.frame_stride, progress, desc="slots (test)")
    head, final_loss = fit_vqa(train, config, progress)
    scores = vqa_scores(head, test, train)
    record: dict[str, Any] = {
        "model": str(model_dir.resolve()),
        "model_version": model_version(model_dir),
        "data": f"synthetic:{chosen.name}",
        "vqa": config.to_json(),
        "families": list(FAMILIES),
        "words": list(WORDS),
        "answers": list(ANSWERS),
        "questions": {"train": len(train), "test": len(test)},
        "final_loss": final_loss,
    }
    save_head(head, out, record)
    text = json.dumps({**record, "scores": [row.to_json() for row in scores]}, indent=2) + "\n"
    write_atomically(out / SCORES_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    rows = [
        BarRow(
            f"{row.family} ({row.questions})",
            row.accuracy,
            row.guess_accuracy,
            f"{row.accuracy:.2f} / {row.guess_accuracy:.2f}",
        )
        for row in scores
    ]
    chart = draw_paired_bars(
        rows,
        ("aloe head on the slots", "most common answer of the family"),
        f"question answering on the slots of {model_label(model_dir)}",
        f"{len(test)} held-out questions about {config.test_videos} videos, {chosen.name} level",
    )
    write_atomically(out / SCORES_CHART, lambda temporary: chart.save(temporary, format="PNG"))
    return VqaResult(out, train, test, scores, final_loss, time.perf_counter() - started)


def load_vqa(folder: Path) -> tuple[Aloe, dict[str, Any]]:
    """The head saved in ``folder`` by :func:`answer_questions` (in eval mode) and its ``config.json`` (which also
    holds the word and answer vocabularies it was trained with).

    Raises:
        ValueError: the folder holds no ``aloe`` head, or weights that do not fit its config.
    """
    return load_head(folder, Aloe, "a VQA head")


__all__ = ["SCORES_CHART", "SCORES_FILE", "VqaResult", "answer_questions", "load_vqa"]
