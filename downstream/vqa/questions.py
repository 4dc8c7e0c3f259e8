"""Descriptive questions about a synthetic video, with their answers, made from its ground truth
(:class:`~training.datasets.synthetic.metadata.VideoMetadata`), in the spirit of CLEVRER's descriptive questions:
what an object looks like, how many there are, what one did and where it ended.

Families (one question per object its description singles out, or per video):

- ``colour``: "what colour is the {shape}" for each shape only one object has;
- ``shape``: "what shape is the {colour} object" for each colour only one object has;
- ``count``: "how many objects are there";
- ``collide``: "does the {colour} object collide with another object" (yes / no), for each unique colour;
- ``side``: "is the {colour} object on the left or right at the end" (left / right: which half of the frame its
  centre is in at the end), for each unique colour;
- ``moving_left``: "how many objects move to the left at the end" (their centres moved left from the second last
  frame to the end).

"The end" is the last frame a head reads (:func:`video_questions`' ``frames``), so that every answer can be seen in
the frames it is given; the velocities the metadata records are left out, the last frame's being the motion after
the video.

Words and answers come from fixed vocabularies (:data:`WORDS`, :data:`ANSWERS`), so questions of any video and
level are encoded alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from training.datasets.synthetic.levels import COLOURS, SHAPES
from training.datasets.synthetic.metadata import VideoMetadata

TEMPLATES: dict[str, str] = {
    "colour": "what colour is the {shape}",
    "shape": "what shape is the {colour} object",
    "count": "how many objects are there",
    "collide": "does the {colour} object collide with another object",
    "side": "is the {colour} object on the left or right at the end",
    "moving_left": "how many objects move to the left at the end",
}
"""Each family's question, ``{shape}`` and ``{colour}`` standing for an object's."""
FAMILIES: tuple[str, ...] = tuple(TEMPLATES)
"""The question families, in the order questions are made."""

_TEMPLATE_WORDS = [word for text in TEMPLATES.values() for word in text.split() if not word.startswith("{")]
WORDS: tuple[str, ...] = ("<pad>", *dict.fromkeys((*_TEMPLATE_WORDS, *COLOURS, *SHAPES)))
"""Every word a question can hold; index 0 is padding."""
_WORD_IDS = {word: i for i, word in enumerate(WORDS)}
MAX_WORDS = max(len(text.split()) for text in TEMPLATES.values())
"""The most words a question has."""
MAX_COUNT = 9
"""Counts are answered from "0" to this."""
ANSWERS: tuple[str, ...] = (*COLOURS, *SHAPES, *(str(n) for n in range(MAX_COUNT + 1)), "yes", "no", "left", "right")
"""Every answer."""


@dataclass(frozen=True)
class Question:
    """One question about a video and its answer.

    Attributes:
        family: one of :data:`FAMILIES`.
        text: the question's words, separated by spaces.
        answer: one of :data:`ANSWERS`.
    """

    family: str
    text: str
    answer: str

    def word_ids(self) -> list[int]:
        """The question's words as indices of :data:`WORDS`."""
        return [_WORD_IDS[word] for word in self.text.split()]

    @property
    def answer_id(self) -> int:
        """The answer as an index of :data:`ANSWERS`."""
        return ANSWERS.index(self.answer)


def video_questions(metadata: VideoMetadata, frames: Sequence[int] | None = None) -> list[Question]:
    """Every question :mod:`this module <downstream.vqa.questions>` makes about the video ``metadata`` describes,
    seen through the frames ``frames`` (indices in increasing order; ``None``: every frame): "the end" is the last
    of them, "moving" the change from the one before it to the last.

    Raises:
        ValueError: fewer than two frames, or a frame the video does not have.
    """
    frames = list(range(metadata.num_frames)) if frames is None else list(frames)
    if len(frames) < 2 or frames != sorted(set(frames)) or not 0 <= frames[0] <= frames[-1] < metadata.num_frames:
        raise ValueError(f"questions need two or more increasing frames of the {metadata.num_frames}, got {frames}")
    objects = metadata.objects
    shapes = Counter(obj.shape for obj in objects)
    colours = Counter(obj.colour for obj in objects)
    unique_colour = [obj for obj in objects if colours[obj.colour] == 1]
    collided = {object_id for event in metadata.collisions if event.kind == "object" for object_id in event.object_ids}
    last = {state.object_id: state for state in metadata.frames[frames[-1]]}
    before = {state.object_id: state for state in metadata.frames[frames[-2]]}
    questions = [
        Question("colour", TEMPLATES["colour"].format(shape=obj.shape), obj.colour)
        for obj in objects
        if shapes[obj.shape] == 1
    ]
    questions += [Question("shape", TEMPLATES["shape"].format(colour=obj.colour), obj.shape) for obj in unique_colour]
    questions.append(Question("count", TEMPLATES["count"], str(min(len(objects), MAX_COUNT))))
    questions += [
        Question(
            "collide", TEMPLATES["collide"].format(colour=obj.colour), "yes" if obj.object_id in collided else "no"
        )
        for obj in unique_colour
    ]
    questions += [
        Question(
            "side",
            TEMPLATES["side"].format(colour=obj.colour),
            "left" if last[obj.object_id].center_norm[0] < 0.5 else "right",
        )
        for obj in unique_colour
    ]
    moving_left = sum(1 for i, state in last.items() if state.center_norm[0] < before[i].center_norm[0])
    questions.append(Question("moving_left", TEMPLATES["moving_left"], str(min(moving_left, MAX_COUNT))))
    return questions


__all__ = ["ANSWERS", "FAMILIES", "MAX_COUNT", "MAX_WORDS", "TEMPLATES", "WORDS", "Question", "video_questions"]
