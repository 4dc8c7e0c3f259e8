"""The bounds of a :class:`~plugins.model.VideoSlotModel`'s sizes and counts, checked when it is built.

A model is built from a ``config.json`` a user may have edited, or from a training command line; a count far past
any published recipe would otherwise be found only by the allocator (an out-of-memory kill) or never (a billion
Slot Attention iterations run for weeks). Each upper bound is set well above the published recipes (SmoothSA:
7 slots of 256, 3+1 iterations, 224 px frames; methods.md §2) and says what it protects.
"""

from __future__ import annotations

import numbers

__all__ = [
    "MAX_INPUT_SIDE",
    "MAX_ITERATIONS",
    "MAX_SLOTS",
    "MAX_SLOT_DIM",
    "check_model_sizes",
    "count_problem",
]

MAX_SLOTS = 256
"""Slots per frame: the service's segmentation map holds each pixel's slot index in one byte."""

MAX_SLOT_DIM = 4096
"""Slot width: well above the widest ViT feature (1536, ViT-g); the published recipes use 64 to 256."""

MAX_ITERATIONS = 100
"""Slot Attention iterations on a frame (first or later): the published recipes use 1 to 7."""

MAX_INPUT_SIDE = 4096
"""Each side of the model's input: the service's default frame limit is 4096 x 4096 pixels."""

_COUNT_BOUNDS = {
    "num_slots": (MAX_SLOTS, "the service's segmentation map holds a slot index in one byte"),
    "slot_dim": (MAX_SLOT_DIM, "the published recipes use 64 to 256"),
    "first_iters": (MAX_ITERATIONS, "the published recipes use 1 to 7"),
    "later_iters": (MAX_ITERATIONS, "the published recipes use 1 to 7"),
}
"""Each count's largest value and why."""


def _is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (a NumPy one too) and not a bool (``true`` in a config file is no slot
    count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def count_problem(name: str, value: int, shown_as: str | None = None) -> str | None:
    """What is wrong with the integer ``value`` of the count ``name`` (``num_slots``, ``slot_dim``, ``first_iters``
    or ``later_iters``): below 1 or above its bound, said with the bound's reason and under ``shown_as`` (a flag
    such as ``--num-slots``; default: ``name``); ``None`` when it is within them."""
    largest, why = _COUNT_BOUNDS[name]
    return None if 1 <= value <= largest else f"{shown_as or name} must be in [1, {largest}] ({why}), got {value}"


def check_model_sizes(
    num_slots: int, slot_dim: int, image_size: tuple[int, int] | list[int], first_iters: int, later_iters: int
) -> None:
    """Refuse sizes and counts a model cannot be built or run with; the values come from files and command lines,
    so their types are checked too.

    Raises:
        TypeError: ``num_slots``, ``slot_dim``, ``first_iters`` or ``later_iters`` is not an integer (a bool is
            not), or ``image_size`` is not two integers >= 1.
        ValueError: one of them is below 1 or above its bound (:data:`MAX_SLOTS`, :data:`MAX_SLOT_DIM`,
            :data:`MAX_ITERATIONS`, :data:`MAX_INPUT_SIDE`), naming each such value, its bound and the reason.
    """
    counts = {"num_slots": num_slots, "slot_dim": slot_dim, "first_iters": first_iters, "later_iters": later_iters}
    for name, value in counts.items():
        if not _is_integer(value):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    if isinstance(image_size, str) or not hasattr(image_size, "__len__") or len(image_size) != 2:
        raise TypeError(f"image_size must be two integers (height, width), got {image_size!r}")
    if not all(_is_integer(side) and side >= 1 for side in image_size):
        raise TypeError(f"image_size must be two integers >= 1 (height, width), got {image_size!r}")
    wrong = [problem for name, value in counts.items() if (problem := count_problem(name, value)) is not None]
    if max(image_size) > MAX_INPUT_SIDE:
        wrong.append(
            f"image_size must be at most {MAX_INPUT_SIDE} a side (the service's default frame limit), "
            f"got {list(image_size)}"
        )
    if wrong:
        raise ValueError("; ".join(wrong))
