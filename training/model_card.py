"""``python -m training.model_card --run DIR --out DIR``: publish a trained run as a model with its card.

Copies the run's best model (``best/``, chosen at the periodic evaluations; see ``training/best.py``) or, with
``--checkpoint final`` or when the run has no best model, its final model (``config.json`` +
``model.safetensors``), evaluates it on the validation data of its config (all validation videos) and, when
given, on DAVIS, and writes ``MODEL_CARD.md``, ``scores.json``, a ``sample.png`` and, for synthetic data, the
``object_recall.png`` chart next to the weights. Every
figure in the card is measured by this command, except where the run trained (device, processes, threads per
process, torch version and CPU), which the run recorded in its ``environment.json`` when it started (runs
from before that file are said to be not recorded), and how many files it trained on, from its
``data_files.json``.

A run whose data has no labels (unlabelled recordings, ``--data videos:<dir>`` without masks) and no ``--data``
given here is published unscored: its card says it is not scored and why, without a table of scores (DAVIS is
scored when ``--davis`` is given), and its ``sample.png`` shows the run's first video; a note on stderr says how
to score it (``--data`` with labelled videos).

This module is the command and the publication (a staging folder moved into ``--out``); the card's text is
:mod:`training.card_text`, what the run folder records of its training :mod:`training.run_history`, and the
videos the card scores and shows :mod:`training.card_videos`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.model_card")

import torch

from plugins import VideoSlotModel
from plugins.files import temporary_prefix, user_path, user_path_text
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE
from plugins.registry import RegistryError
from training.best import BEST_MODEL_DIR, Selection, read_selection
from training.card_text import davis_label, effective_batch, evaluated_on_held_out, render_card
from training.card_videos import first_video, most_objects, scoring_videos
from training.ceiling import mask_size_ceiling
from training.checkpoint import checkpoint_step, list_checkpoints, read_losses_record
from training.cli_checks import print_note, require_output_dir
from training.config import TrainConfig, read_train_config
from training.datasets.selection import evaluation_videos
from training.environment import describe_environments, recorded_processes
from training.evaluation import evaluate
from training.metrics import DiscoveryScores
from training.object_recall import object_overlaps, recall_rows
from training.recall_chart import save_recall_chart
from training.run_data import SAMPLE_FRAMES
from training.run_folder import COMMAND_FILE, FINAL_MODEL_DIR, TRAIN_CONFIG_FILE
from training.run_history import newest_checkpoint_step, recorded_files, run_environment, steps_done, wall_time_s
from training.visualize import sample_row_names, save_overlay

RECALL_CHART_FILE = "object_recall.png"
"""The per-object recall chart a card of a model trained on synthetic data links to."""
CARD_FILE = "MODEL_CARD.md"
SCORES_FILE = "scores.json"
SAMPLE_FILE = "sample.png"
CARD_FILES = (CARD_FILE, SCORES_FILE, SAMPLE_FILE, RECALL_CHART_FILE)
"""Every file a card may write next to the weights (``training.export`` copies the same set into an export): a
publication removes those of them it does not write again, so no file of an earlier card stays in ``--out``."""


def _losses_record(run_dir: Path) -> Mapping[str, Any] | None:
    """The record of the run's losses (their plugins) in its newest checkpoint; ``None`` without one."""
    checkpoints = list_checkpoints(run_dir)
    return read_losses_record(checkpoints[-1]) if checkpoints else None


def _run_command(run_dir: Path, config: TrainConfig) -> str:
    """The command that started the run (its ``command.txt``), or a reconstruction for runs without one."""
    recorded = run_dir / COMMAND_FILE
    if recorded.is_file():
        return recorded.read_text(encoding="utf-8", errors="surrogateescape").strip()  # as the run wrote it
    return f"python -m training.run --config {config.name} --steps {config.steps} --seed {config.seed}"


def _unfinished_hint(run_dir: Path, config: TrainConfig) -> str:
    """For a run that has neither finished nor evaluated: how to finish it (its command with ``--resume``) and,
    when it has one, its newest checkpoint, a model directory that other tools take (``training.export
    --model``, ``python -m service --model-dir``); an empty string when it has no checkpoint either."""
    checkpoints = list_checkpoints(run_dir)
    newest = next((path for path in reversed(checkpoints) if (path / WEIGHTS_FILE).is_file()), None)
    if newest is None:
        return ""
    command = _run_command(run_dir, config)
    resumed = command if "--resume" in command.split() else f"{command} --resume"
    return (
        f"; it stopped at its checkpoint of step {checkpoint_step(newest)}: finish it with `{resumed}` and write "
        f"the card then, or use that checkpoint, {newest}, which is a model directory, with the other tools"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=command_description(__doc__))
    parser.add_argument("--run", type=user_path, required=True, help="a finished training run directory")
    parser.add_argument("--out", type=user_path, required=True, help="where to publish the model")
    parser.add_argument("--davis", type=user_path_text, help="a DAVIS root to evaluate on as well")
    parser.add_argument(
        "--data",
        help="labelled data to score the model on instead of the run's validation data (needed for a run on "
        "unlabelled videos)",
    )
    parser.add_argument("--command", default="", help="the training command, for the card")
    parser.add_argument(
        "--checkpoint", choices=["best", "final"], default="best", help="which model of the run to publish"
    )
    args = parser.parse_args(argv)
    require_output_dir(parser, "--out", args.out, "the model")
    if others := _not_published_here(args.out):
        parser.error(
            f"--out {args.out} holds other files than a model published there ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''}): publishing would mix this model with them (an export's graphs "
            "would no longer match its weights); give a new or empty folder, or one this command published to"
        )
    if not (args.run / TRAIN_CONFIG_FILE).is_file():
        parser.error(f"--run {args.run}: no {TRAIN_CONFIG_FILE} there; expected a training run directory")
    try:
        config = read_train_config(args.run / TRAIN_CONFIG_FILE)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        selection = read_selection(args.run) if args.checkpoint == "best" else None
        source = args.run / (BEST_MODEL_DIR if selection is not None else FINAL_MODEL_DIR)
        evaluated = not (source / WEIGHTS_FILE).is_file() and read_selection(args.run) is not None
    except ValueError as error:  # a damaged best/ record, named
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not (source / WEIGHTS_FILE).is_file():
        if args.checkpoint == "final" and evaluated:
            problem = "the run has not finished; publish its best evaluation with --checkpoint best"
        else:
            problem = f"the run has neither finished nor evaluated{_unfinished_hint(args.run, config)}"
        print(f"error: {source} holds no model: {problem}", file=sys.stderr)
        return 2
    try:
        publish(args, config, source, selection)
    # DatasetError is a ValueError (missing masks, no DAVIS there, ...); RegistryError a LookupError (a component
    # name that no installed plugin registers).
    except (ValueError, OSError, RegistryError) as error:
        print(f"error: {error} ({args.out} was left as it was)", file=sys.stderr)
        return 2
    card = (args.out / CARD_FILE).read_bytes()
    print(card.decode("utf-8", errors="replace"))  # a path in another encoding shows as U+FFFD in the terminal
    return 0


def publish(args: argparse.Namespace, config: TrainConfig, source: Path, selection: Selection | None) -> None:
    """Evaluate the model in ``source`` and write it with its card into ``args.out``.

    Everything is written into a staging folder next to ``args.out`` first and moved in at the end, so a
    failure (unreadable data, a DAVIS folder without annotations) leaves ``args.out`` as it was. When the run's
    own data has no labelled video and no ``--data`` is given, the model is published unscored
    (:func:`~training.card_videos.scoring_videos`).

    Raises:
        ValueError: the validation or DAVIS data cannot be evaluated on, or ``--data`` has no labelled video (the
            message names the file or spec).
        OSError: a file cannot be read or written.
    """
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=temporary_prefix(args.out.name)))
    try:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(source / name, staging / name)
        model = load_copy(staging, source)
        spec = args.data or config.data.val_spec or config.data.spec
        crop = config.data.center_crop  # real frames fitted as in training
        validation, unscored = scoring_videos(spec, model.image_size, crop, given=bool(args.data))
        davis = (
            evaluation_videos(f"davis:{args.davis}", model.image_size, None, print_note, center_crop=crop)
            if args.davis
            else None
        )
        scores: dict[str, DiscoveryScores] = {}
        held_out = evaluated_on_held_out(config)  # reads a davis: folder's split lists: once, for the whole card
        if validation is not None:
            if args.data:
                label = f"{spec} (given with --data)"
            else:
                label = f"{spec} ({'validation' if held_out else 'training videos, not held out'})"
            scores[label] = evaluate(model, validation, progress=True)
            mask_height, mask_width = model.mask_grid
            ceiling_label = (
                f"{label}, ground truth through {mask_height}x{mask_width} masks and {model.num_slots} slots: "
                "the ceiling"
            )
            scores[ceiling_label] = mask_size_ceiling(
                validation, model.mask_grid, progress=True, num_slots=model.num_slots
            )
        if davis is not None:
            scores[davis_label(Path(args.davis), len(davis))] = evaluate(  # type: ignore[arg-type]
                model, davis, progress=True
            )
        # The first scored video; unscored, the run's first video (its first frames only are read).
        shown = validation[0] if validation is not None else first_video(spec, model.image_size, crop)
        truth = shown.masks[:SAMPLE_FRAMES] if shown.masks is not None else None  # [T, H, W]
        with torch.inference_mode():
            frames = shown.frames[:SAMPLE_FRAMES].unsqueeze(0)  # [T, 3, H, W] -> [1, T, 3, H, W]
            output = model(frames)
        target_kind = model.decoder.target_kind
        save_overlay(frames, output, staging / SAMPLE_FILE, target_kind=target_kind, truth=truth)
        recall_chart = None
        if spec.startswith("synthetic:") and validation is not None:
            overlaps = object_overlaps(model, validation, progress=True)
            videos = len(validation)  # type: ignore[arg-type]
            subtitle = f"{len(overlaps)} objects of {videos} videos, decoder masks"
            save_recall_chart(recall_rows(overlaps), staging / RECALL_CHART_FILE, f"{config.name} on {spec}", subtitle)
            recall_chart = RECALL_CHART_FILE
        done = steps_done(args.run, config)
        recorded = selection.elapsed_s if selection else None
        environment = run_environment(args.run)
        extra = {
            "davis": args.davis,
            "davis_objects": most_objects(davis) if davis is not None else 0,
            "out": args.out,
            "spec": spec,
            "unscored": unscored,
            "recall_chart": recall_chart,
            "sample_rows": sample_row_names(target_kind, truth is not None),
            "command": args.command or _run_command(args.run, config),
            "machine": describe_environments(environment, done),  # recorded by the run, not this process
            "batch": effective_batch(config.data.batch_size, recorded_processes(environment)),
            "threads": torch.get_num_threads(),  # this process's: the card's scores were computed with them
            "wall_time_s": wall_time_s(args.run, source, selection.step if selection else done, recorded),
            "steps_done": done,
            "checkpoint": newest_checkpoint_step(args.run),
            "selection": selection,
            "data_files": recorded_files(args.run),
            "held_out": held_out,
            "losses": _losses_record(args.run),
        }
        card = render_card(config, model, scores, extra)  # paths as the file system spells them, UTF-8 or not
        (staging / CARD_FILE).write_text(card, encoding="utf-8", errors="surrogateescape")
        payload: dict[str, Any] = {label: value.to_dict() for label, value in scores.items()}
        if unscored is not None:  # why the run's data has no scores here (none of it is labelled)
            payload["not_scored"] = {"data": spec, "reason": unscored}
        payload.update(wall_time_s=extra["wall_time_s"], selected_step=selection.step if selection else None)
        payload["environment"] = environment  # the run's environment.json segments (empty: not recorded)
        (staging / SCORES_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        move_in(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_copy(staging: Path, source: Path) -> VideoSlotModel:
    """``VideoSlotModel.from_pretrained(staging)`` for the copy in ``staging`` of the model directory ``source``,
    its errors and warnings naming ``source`` where they name ``staging``: the staging folder is gone when the
    command ends, and the files to fix (a ``config.json`` whose plugin is missing, say) are the ones in ``source``.

    Raises:
        as ``from_pretrained``, of the same type (a ``ValueError`` where that type cannot be built from a
        message alone).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = VideoSlotModel.from_pretrained(staging)
        except (ValueError, OSError, RegistryError) as error:
            raise _naming(error, staging, source) from error
    for warning in caught:
        message = str(warning.message).replace(str(staging), str(source))
        warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)
    return model


def _naming(error: Exception, staging: Path, source: Path) -> Exception:
    """``error`` again, of the same type where it can be built from a message, with ``source`` for ``staging``."""
    message = str(error).replace(str(staging), str(source))
    try:
        return type(error)(message)
    except TypeError:  # an exception type that takes other arguments
        return ValueError(message)


def _not_published_here(out: Path) -> list[str]:
    """The entries of an existing ``out`` that a publication does not write there (a model directory's files and
    :data:`CARD_FILES`), sorted; empty for a new or empty folder, or one published to before."""
    if not out.is_dir():
        return []
    own = {CONFIG_FILE, WEIGHTS_FILE, *CARD_FILES}
    return sorted(entry.name for entry in out.iterdir() if entry.name not in own)


def move_in(staging: Path, out: Path) -> None:
    """Move the files written in ``staging`` into ``out`` (created if needed), the card last, after removing the
    files of :data:`CARD_FILES` that ``staging`` does not hold: an earlier card's (the recall chart of a model
    trained on synthetic data, say) would otherwise stay next to weights it does not describe, and be exported
    with them."""
    out.mkdir(exist_ok=True)
    for name in CARD_FILES:
        if not (staging / name).exists():
            (out / name).unlink(missing_ok=True)
    for entry in sorted(staging.iterdir(), key=lambda path: path.name == CARD_FILE):  # the card last
        os.replace(entry, out / entry.name)


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.model_card"))
