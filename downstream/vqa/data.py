"""A model's slots and the questions about each video, as tensors (:func:`question_set`)."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from downstream.aloe import PADDING
from downstream.vqa.questions import Question, video_questions
from plugins import VideoSlotModel
from training.datasets import VideoClip
from training.evaluation import model_outputs


@dataclass(frozen=True)
class QuestionSet:
    """Videos' slots and the questions about them.

    Attributes:
        slots: ``[V, T, K, D]`` each video's slots, at the frames read.
        video_ids: ``[Q]`` the video each question is about (a row of :attr:`slots`).
        questions: ``[Q, L]`` each question's word ids, padded with ``PADDING``.
        answers: ``[Q]`` each question's answer id.
        families: each question's family.
    """

    slots: Tensor
    video_ids: Tensor
    questions: Tensor
    answers: Tensor
    families: list[str]

    def __len__(self) -> int:
        return len(self.families)


def frames_read(length: int, frame_stride: int) -> list[int]:
    """The frames of a ``length``-frame video the head reads: every ``frame_stride``-th, counted back from the last
    (so the last is always read)."""
    return list(range((length - 1) % frame_stride, length, frame_stride))


def question_set(
    model: VideoSlotModel, dataset: Dataset[VideoClip], frame_stride: int, progress: bool = False, desc: str = "slots"
) -> QuestionSet:
    """Run ``model`` over every video of ``dataset`` (synthetic videos of equal length) and gather its slots at
    every ``frame_stride``-th frame, counted back from the last, with the video's questions about those frames
    (:func:`~downstream.vqa.questions.video_questions`).

    Raises:
        ValueError: a video has no synthetic metadata (the message names it), the videos differ in length, or
            ``frame_stride`` leaves fewer than two of a video's frames.
    """
    slots: list[Tensor] = []
    asked: list[tuple[int, Question]] = []
    with closing(model_outputs(model, dataset, progress=progress, desc=desc)) as outputs:
        for video, (batch, output) in enumerate(outputs):
            metadata = batch.metadata[0]
            if metadata is None:
                raise ValueError(f"{batch.names[0]}: questions need synthetic metadata (synthetic:<level> data)")
            length = int(output.slots.shape[1])
            frames = frames_read(length, frame_stride)
            if len(frames) < 2:
                raise ValueError(
                    f"a frame stride of {frame_stride} reads 1 of the videos' {length} frames, and a question needs "
                    f"two (the end and the frame before it): use a stride of at most {length - 1} (--frame-stride)"
                )
            slots.append(output.slots[0, frames].float().clone())  # [T', K, D]
            start = batch.starts[0]  # the clip's frames in the video the metadata describes
            asked += [(video, question) for question in video_questions(metadata, [start + t for t in frames])]
    if len({tuple(video.shape) for video in slots}) > 1:
        raise ValueError("the videos differ in length or slot count; questions need videos of one shape")
    word_ids = [question.word_ids() for _, question in asked]
    words = torch.full((len(asked), max(map(len, word_ids), default=0)), PADDING, dtype=torch.long)
    for row, ids in enumerate(word_ids):
        words[row, : len(ids)] = torch.tensor(ids)
    return QuestionSet(
        slots=torch.stack(slots),
        video_ids=torch.tensor([video for video, _ in asked], dtype=torch.long),
        questions=words,
        answers=torch.tensor([question.answer_id for _, question in asked], dtype=torch.long),
        families=[question.family for _, question in asked],
    )


__all__ = ["QuestionSet", "question_set"]
