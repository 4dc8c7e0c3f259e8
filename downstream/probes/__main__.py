"""``python -m downstream.probes --model DIR --out DIR``: how much of each object property a model's slots hold.

The model runs over synthetic videos of one level (``--data synthetic:<level>``); in each frame its slots are
matched to the objects they hold (Hungarian matching on mask IoU, pairs above ``--min-iou``), and a small read-out
per property (a linear layer for shape, colour, size and texture; a two-layer MLP for position, velocity and box)
is trained on the matched slots of ``--train-videos`` train-split videos, then scored on those of the level's
validation videos: accuracy, or R² and the mean squared error, each beside guessing without the slots (the most
common class, the mean). The probe is saved in ``--out`` with ``scores.json`` and the chart ``scores.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m downstream.probes")

from downstream.head_folder import check_head_folder
from downstream.probes.config import ProbeConfig
from downstream.probes.properties import PROPERTIES
from downstream.probes.run import SCORES_CHART, probe_model
from downstream.probes.scores import format_scores
from downstream.property_probe import PropertyProbe
from downstream.synthetic_cli import add_config_flags, add_model_flags, run_reported, synthetic_level
from training.environment import size_torch_threads_noted
from training.evaluation import add_mask_source_option

_DEFAULTS = ProbeConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(prog="python -m downstream.probes", description=command_description(__doc__))
    add_model_flags(parser, "the probe and its scores")
    parser.add_argument(
        "--properties",
        default=",".join(_DEFAULTS.properties),
        help=f"comma-separated properties to read out (default: all, {', '.join(p.name for p in PROPERTIES)})",
    )
    flags = (
        ("train-videos", int, "train-split videos whose matched slots the probe trains on"),
        (
            "test-videos",
            int,
            "validation videos whose matched slots it is scored on, the first of the level's fixed ones "
            "(64: those training.evaluate scores; more continue their seeds)",
        ),
        ("steps", int, "full-batch optimiser steps (AdamW)"),
        ("lr", float, "AdamW's learning rate"),
        ("min-iou", float, "IoU above which a slot and an object are a pair"),
        ("seed", int, "seed of the train videos and of the probe's weights"),
    )
    add_config_flags(parser, _DEFAULTS, flags)
    add_mask_source_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad arguments or data, the message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = synthetic_level(parser, args.data, "a probe needs")
    try:
        config = ProbeConfig(
            properties=tuple(name.strip() for name in args.properties.split(",") if name.strip()),
            train_videos=args.train_videos,
            test_videos=args.test_videos,
            steps=args.steps,
            lr=args.lr,
            min_iou=args.min_iou,
            seed=args.seed,
        )
        check_head_folder(args.out, PropertyProbe.name)
    except ValueError as error:
        parser.error(str(error))
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    result = run_reported(
        "python -m downstream.probes",
        lambda: probe_model(
            args.model, level, args.out, config, mask_source=args.mask_source, progress=not args.no_progress
        ),
    )
    if result is None:
        return 2
    train, test = result.train, result.test
    print(
        f"matched slots: {len(train)} of {train.visible_objects} visible objects in {config.train_videos} train "
        f"videos ({train.matched_fraction:.0%}), {len(test)} of {test.visible_objects} in {config.test_videos} "
        f"validation videos ({test.matched_fraction:.0%}); {result.seconds:.0f} s"
    )
    print(format_scores(result.scores))
    print(f"saved to {result.folder} (chart: {result.folder / SCORES_CHART})")
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    sys.exit(exit_status_of(main, "python -m downstream.probes"))
