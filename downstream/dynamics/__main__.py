"""``python -m downstream.dynamics train|evaluate``: a SlotFormer dynamics head on slot trajectories.

``train TRAJECTORIES --out DIR`` trains a ``slotformer`` head on the ``.npz`` trajectory files in the folder
``TRAJECTORIES`` (``python -m service.extract`` writes them), keeping a fraction of the files out to score it on;
``evaluate --model DIR TRAJECTORIES`` scores a trained head on a folder of trajectories. Both print the rollout's
mean squared error at each step ahead next to repeating the last observed frame's slots.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("server", "python -m downstream.dynamics")

from downstream.dynamics.chart import save_rollout_chart
from downstream.dynamics.config import DynamicsConfig
from downstream.dynamics.folder import load_dynamics
from downstream.dynamics.scores import RolloutScores, rollout_scores
from downstream.dynamics.training import ROLLOUT_CHART, fit_dynamics
from downstream.dynamics.windows import TrajectoryError, trajectory_files, trajectory_windows
from plugins.files import user_path, write_atomically

_DEFAULTS = DynamicsConfig()


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` and ``evaluate`` commands."""
    parser = argparse.ArgumentParser(prog="python -m downstream.dynamics", description=command_description(__doc__))
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a slotformer head on a folder of trajectory files")
    train.add_argument(
        "trajectories", type=user_path, help="folder of .npz trajectory files (python -m service.extract)"
    )
    train.add_argument("--out", type=user_path, required=True, help="folder to save the head in")
    for name, kind, help_text in (
        ("history", int, "observed frames a prediction reads"),
        ("rollout", int, "frames predicted from them, each from the ones before"),
        ("model-dim", int, "Transformer width"),
        ("layers", int, "Transformer encoder layers"),
        ("heads", int, "attention heads (model-dim must be a multiple)"),
        ("ffn-dim", int, "feed-forward width"),
        ("steps", int, "optimiser steps"),
        ("batch-size", int, "windows per step"),
        ("lr", float, "peak learning rate (Adam; 5 %% warm-up, then cosine decay)"),
        ("held-out", float, "fraction of the files kept out of training and scored"),
        ("stride", int, "frames between two training windows of a file"),
        ("seed", int, "seed of the weights, the file split and the batches"),
    ):
        default = getattr(_DEFAULTS, name.replace("-", "_"))
        train.add_argument(f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)")
    train.add_argument(
        "--absolute",
        dest="residual",
        action="store_false",
        help="predict the slots themselves, as SlotFormer does (default: each frame as a change from the one before)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate = commands.add_parser("evaluate", help="score a trained head on a folder of trajectory files")
    evaluate.add_argument("trajectories", type=user_path, help="folder of .npz trajectory files")
    evaluate.add_argument("--model", type=user_path, required=True, help="a folder written by train --out")
    evaluate.add_argument("--json", type=user_path, help="also write the scores to this JSON file")
    evaluate.add_argument("--plot", type=user_path, help="also draw them as a PNG chart at this path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad arguments or data, the message on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        files = trajectory_files(args.trajectories)
        if args.command == "train":
            return _train(args, files)
        return _evaluate(args, files)
    except (TrajectoryError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace, files: list[Path]) -> int:
    names = [name for name in DynamicsConfig.__dataclass_fields__ if name != "warmup_fraction"]
    config = DynamicsConfig(**{name: getattr(args, name) for name in names})
    result = fit_dynamics(files, args.out, config, progress=not args.no_progress)
    print(
        f"trained on {result.train_windows} windows of {len(result.train_files)} files in {result.seconds:.0f} s "
        f"(final loss {result.final_loss:.4g}); saved to {result.folder}"
    )
    if result.scores is None:
        print("no held-out file had a window to score (--held-out 0, or too few files or frames)")
    else:
        print(f"held-out files ({len(result.held_out_files)}):")
        print(_table(result.scores))
        print(f"chart: {result.folder / ROLLOUT_CHART}")
    return 0


def _evaluate(args: argparse.Namespace, files: list[Path]) -> int:
    head, _ = load_dynamics(args.model)
    windows = trajectory_windows(files, head.history + head.rollout, head.history + head.rollout)
    if windows.slot_shape is not None and windows.slot_shape[0][1] != head.slot_dim:
        (count, width), first = windows.slot_shape
        raise TrajectoryError(
            f"{first}: slots of {count} x {width}, but the head in {args.model} reads slots of width "
            f"{head.slot_dim}: the trajectories come from another model than the one it was trained on"
        )
    if len(windows.slots) == 0:
        raise TrajectoryError(
            f"no file in {args.trajectories} has {head.history + head.rollout} consecutive frames to score on"
        )
    scores = rollout_scores(head, windows.slots)
    print(_table(scores))
    if args.json is not None:
        text = json.dumps(scores.to_json(), indent=2) + "\n"
        with _failure_named("--json", args.json):
            write_atomically(args.json, lambda temporary: temporary.write_text(text), through_links=True)
    if args.plot is not None:
        with _failure_named("--plot", args.plot):
            save_rollout_chart(
                scores, args.plot, f"rollout error on {args.trajectories.name}, {scores.windows} windows"
            )
    return 0


@contextlib.contextmanager
def _failure_named(flag: str, path: Path) -> Iterator[None]:
    """An ``OSError`` inside names ``flag`` and ``path`` (a write's own names the temporary file beside it)."""
    try:
        yield
    except OSError as error:
        raise OSError(f"cannot write {flag} {path}: {error.strerror or error}") from error


def _table(scores: RolloutScores) -> str:
    """The rollout error per step ahead, against repeating the last observed frame, as text."""
    lines = [f"{scores.windows} windows; mean squared error of the slots, by frames ahead:", "ahead  head  copy-last"]
    for step, (mse, copied) in enumerate(zip(scores.mse, scores.copy_last_mse, strict=True), start=1):
        lines.append(f"{step:>5}  {mse:.4g}  {copied:.4g}")
    lines.append(f"mean   {scores.mean_mse:.4g}  {scores.mean_copy_last_mse:.4g}")
    return "\n".join(lines)


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    sys.exit(exit_status_of(main, "python -m downstream.dynamics"))
