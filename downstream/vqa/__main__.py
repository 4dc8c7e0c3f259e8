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
from plugins.files import user_path

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m downstream.vqa")

from downstream.head_folder import check_head_folder
from downstream.vqa.config import VqaConfig
from downstream.vqa.run import SCORES_CHART, answer_questions
from downstream.vqa.scores import format_scores
from plugins.registry import RegistryError
from training.environment import size_torch_threads_noted

_DEFAULTS = VqaConfig()
_SCHEME = "synthetic:"


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(prog="python -m downstream.vqa", description=command_description(__doc__))
    parser.add_argument("--model", type=user_path, required=True, help="a save_pretrained model directory")
    parser.add_argument("--out", type=user_path, required=True, help="folder to save the head and its scores in")
    parser.add_argument(
        "--data",
        default="synthetic:medium",
        help="synthetic:<level>: the videos and their ground truth (default: %(default)s)",
    )
    for name, kind, help_text in (
        ("train-videos", int, "train-split videos whose questions the head trains on"),
        ("test-videos", int, "validation videos whose questions it is scored on"),
        ("frame-stride", int, "every this many frames' slots are read"),
        ("model-dim", int, "Transformer width"),
        ("layers", int, "Transformer encoder layers"),
        ("heads", int, "attention heads (model-dim must be a multiple)"),
        ("ffn-dim", int, "feed-forward width"),
        ("steps", int, "optimiser steps"),
        ("batch-size", int, "questions per step"),
        ("lr", float, "peak learning rate (Adam; 10 %% warm-up, then cosine decay)"),
        ("seed", int, "seed of the train videos, the weights and the batches"),
    ):
        default = getattr(_DEFAULTS, name.replace("-", "_"))
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad arguments or data, the message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data.startswith(_SCHEME):
        parser.error(f"--data {args.data}: questions are made from the ground truth, which synthetic:<level> data has")
    names = ("train_videos", "test_videos", "frame_stride", "model_dim", "layers", "heads", "ffn_dim", "steps")
    try:
        config = VqaConfig(
            **{name: getattr(args, name) for name in names},
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
        )
        check_head_folder(args.out)
    except ValueError as error:
        parser.error(str(error))
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    try:
        result = answer_questions(
            args.model, args.data[len(_SCHEME) :], args.out, config, progress=not args.no_progress
        )
    except (ValueError, OSError, RegistryError) as error:
        print(f"python -m downstream.vqa: {error}", file=sys.stderr)
        return 2
    print(
        f"{len(result.train)} training questions about {config.train_videos} videos, {len(result.test)} held-out "
        f"about {config.test_videos}; final loss {result.final_loss:.3f}; {result.seconds:.0f} s"
    )
    print(format_scores(result.scores))
    print(f"saved to {result.folder} (chart: {result.folder / SCORES_CHART})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
