"""``python -m downstream.vqa --model DIR --out DIR``: answering questions about videos from a model's slots.

The model runs over synthetic videos of one level (``--data synthetic:<level>``), every ``--frame-stride``-th
frame's slots are kept, and descriptive questions about each video are made from its ground truth (an object's
colour or shape, how many objects there are, whether one collides, where it ends, how many move left). An ``aloe``
head (Aloe's Transformer over ``[CLS]``, slot and word tokens) is trained on the questions of ``--train-videos``
train-split videos and scored on those of the level's validation videos, by question family, beside the family's
most common training answer. It is saved in ``--out`` with ``scores.json`` and the chart ``scores.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m downstream.vqa")

from downstream.aloe import Aloe
from downstream.head_folder import check_head_folder
from downstream.synthetic_cli import add_config_flags, add_model_flags, run_reported, synthetic_level
from downstream.vqa.config import VqaConfig
from downstream.vqa.run import SCORES_CHART, answer_questions
from downstream.vqa.scores import format_scores
from training.environment import size_torch_threads_noted

_DEFAULTS = VqaConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(prog="python -m downstream.vqa", description=command_description(__doc__))
    add_model_flags(parser, "the head and its scores")
    flags = (
        ("train-videos", int, "train-split videos whose questions the head trains on"),
        (
            "test-videos",
            int,
            "validation videos whose questions it is scored on, the first of the level's fixed ones "
            "(64: those training.evaluate scores; more continue their seeds)",
        ),
        ("frame-stride", int, "every this many frames' slots are read, counted back from the last"),
        ("model-dim", int, "Transformer width"),
        ("layers", int, "Transformer encoder layers"),
        ("heads", int, "attention heads (model-dim must be a multiple)"),
        ("ffn-dim", int, "feed-forward width"),
        ("steps", int, "optimiser steps"),
        ("batch-size", int, "questions per step"),
        ("lr", float, "peak learning rate (Adam; 10 %% warm-up, then cosine decay)"),
        ("seed", int, "seed of the train videos, the weights and the batches"),
    )
    add_config_flags(parser, _DEFAULTS, flags)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad arguments or data, the message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = synthetic_level(parser, args.data, "questions are made from")
    names = ("train_videos", "test_videos", "frame_stride", "model_dim", "layers", "heads", "ffn_dim", "steps")
    try:
        config = VqaConfig(
            **{name: getattr(args, name) for name in names},
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
        )
        check_head_folder(args.out, Aloe.name)
    except ValueError as error:
        parser.error(str(error))
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    result = run_reported(
        "python -m downstream.vqa",
        lambda: answer_questions(args.model, level, args.out, config, progress=not args.no_progress),
    )
    if result is None:
        return 2
    print(
        f"{len(result.train)} training questions about {config.train_videos} videos, {len(result.test)} held-out "
        f"about {config.test_videos}; final loss {result.final_loss:.3f}; {result.seconds:.0f} s"
    )
    print(format_scores(result.scores))
    print(f"saved to {result.folder} (chart: {result.folder / SCORES_CHART})")
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    sys.exit(exit_status_of(main, "python -m downstream.vqa"))
