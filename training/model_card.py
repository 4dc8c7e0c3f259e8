"""``python -m training.model_card --run DIR --out DIR``: publish a trained run as a model with its card.

Copies the run's best model (``best/``, chosen at the periodic evaluations; see ``training/best.py``) or, with
``--checkpoint final`` or when the run has no best model, its final model (``config.json`` +
``model.safetensors``), evaluates it on the validation data of its config (all validation videos) and, when
given, on DAVIS, and writes ``MODEL_CARD.md``, ``scores.json``, a ``sample.png`` and, for synthetic data, the
``object_recall.png`` chart next to the weights. Every
figure in the card is measured by this command, except where the run trained (device, processes, threads per
process, torch version and CPU), which the run recorded in its ``environment.json`` when it started (runs
from before that file are said to be not recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from plugins import VideoSlotModel
from plugins.builtin import DEFAULT_PLUGINS
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE
from plugins.registry import RegistryError
from training.best import BEST_MODEL_DIR, Selection, read_selection
from training.ceiling import mask_size_ceiling
from training.checkpoint import checkpoint_step, list_checkpoints
from training.cli_checks import print_note, require_output_dir
from training.config import TrainConfig, read_train_config
from training.config_files import is_config_file
from training.datasets.clips import VideoClip
from training.datasets.selection import NoLabelledVideos, evaluation_videos
from training.environment import describe_environments, read_environment, recorded_processes
from training.evaluation import evaluate
from training.logging_sinks import METRICS_FILE, parsed_line
from training.metrics import DiscoveryScores
from training.object_recall import object_overlaps, recall_rows
from training.recall_chart import save_recall_chart
from training.run_folder import COMMAND_FILE, FINAL_MODEL_DIR
from training.run_folder import CONFIG_FILE as TRAIN_CONFIG_FILE
from training.visualize import save_overlay

RECALL_CHART_FILE = "object_recall.png"
"""The per-object recall chart a card of a model trained on synthetic data links to."""

_SINGLE_OBJECT_NOTE = [
    "Every DAVIS sequence scored here has a single foreground object (as in DAVIS 2016), so FG-ARI is",
    "degenerate there (1 when the object falls in one slot); mBO and mIoU are the meaningful numbers.",
]
_REAL_VIDEO_NOTE = [
    "A CNN trained on synthetic shapes is not expected to segment real video well; the DAVIS numbers are",
    "reported, not tuned for.",
    "",
]


def most_objects(videos: Dataset[VideoClip]) -> int:
    """The largest number of distinct foreground ids (non-zero) in one video of ``videos`` (labelled videos)."""
    counts = [0]
    for index in range(len(videos)):  # type: ignore[arg-type]
        masks = videos[index].masks
        if masks is not None:
            counts.append(int((torch.unique(masks) > 0).sum()))  # neither background (0) nor void (-1)
    return max(counts)


def format_duration(seconds: float) -> str:
    """A wall time for a card: seconds below a minute (``4.2 s``, ``42 s``), minutes above (``12.5 min``)."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{seconds / 60:.1f} min"


def effective_batch(batch_size: int, processes: int | None) -> str:
    """The clips one optimisation step trains on: ``batch_size`` per process times the processes the run
    recorded (``environment.json``); per process only when the run did not record how many there were."""
    if processes is None:
        return f"batch {batch_size} per process (the number of processes was not recorded)"
    if processes == 1:
        return f"batch {batch_size}"
    return f"batch {batch_size * processes} ({batch_size} per process x {processes} processes)"


def run_environment(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``environment.json`` segments; none (said as not recorded) for a run that predates the file or
    whose file cannot be read, with a note."""
    try:
        return read_environment(run_dir)
    except (ValueError, OSError) as error:
        print_note(f"note: {error}; the card says where the run trained was not recorded")
        return []


def wall_time_s(run_dir: Path, model_dir: Path, step: int) -> float:
    """Seconds the run trained to reach ``step``, the published weights' step.

    Read from the ``elapsed_s`` of the last training line of ``metrics.jsonl`` at or before ``step``, which
    sums the invocations of a resumed run and leaves out the pauses between them. Runs logged before
    ``elapsed_s`` existed fall back to file times: from ``train_config.json`` (written when the run started)
    to the published weights, which counts such pauses.
    """
    metrics = run_dir / METRICS_FILE
    elapsed = None
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            record = parsed_line(line)  # None for the cut-off last line of a killed run
            if record and record.get("kind") == "train" and record["step"] <= step and "elapsed_s" in record:
                elapsed = float(record["elapsed_s"])
    if elapsed is not None:
        return elapsed
    return (model_dir / WEIGHTS_FILE).stat().st_mtime - (run_dir / TRAIN_CONFIG_FILE).stat().st_mtime


def _run_command(run_dir: Path, config: TrainConfig) -> str:
    """The command that started the run (its ``command.txt``), or a reconstruction for runs without one."""
    recorded = run_dir / COMMAND_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
    return f"python -m training.run --config {config.name} --steps {config.steps} --seed {config.seed}"


def steps_done(run_dir: Path, config: TrainConfig) -> int:
    """``config.steps`` for a finished run, else the step of its newest checkpoint (0 without one)."""
    if (run_dir / FINAL_MODEL_DIR / WEIGHTS_FILE).is_file():
        return config.steps
    checkpoints = list_checkpoints(run_dir)
    return checkpoint_step(checkpoints[-1]) if checkpoints else 0


def _row(label: str, scores: DiscoveryScores) -> str:
    values = (scores.video_ari, scores.video_fg_ari, scores.video_mbo, scores.video_miou)
    images = (scores.image_ari, scores.image_fg_ari, scores.image_mbo, scores.image_miou)
    cells = " | ".join(f"{v:.3f}" for v in (*values, *images))
    return f"| {label} | {cells} | {scores.num_videos} |"


def _steps(config: TrainConfig, selection: Selection | None, done: int) -> str:
    planned = f"{config.steps}" if done >= config.steps else f"{done} of the planned {config.steps} (stopped early)"
    if selection is None:
        return f"{planned}; the final model"
    metrics = " + ".join(selection.metrics)
    videos = selection.scores.get("num_videos", config.data.val_videos)
    cadence = f"every {config.eval_every} steps" if 0 < config.eval_every < config.steps else "one, at the end"
    if config.init_from is not None:
        cadence += ", and of the --init-from weights at step 0"
    why = f" ({selection.reason})" if selection.reason else ""
    return (
        f"{planned}; the published weights are those of step {selection.step}, the best of the run's "
        f"evaluations ({cadence}) by {metrics}{why} on {videos} validation videos ({selection.score:.3f})"
    )


def _experiment_source(config: TrainConfig, command: str) -> str:
    """Where the run's configuration came from: the config file its command names, or the shipped experiment."""
    try:
        words = shlex.split(command)
    except ValueError:  # a hand-written --command that does not parse: fall back to the experiment's name
        words = []
    named = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--config"]
    if named and is_config_file(named[-1]):
        return f"`{named[-1]}` (a config file; the run's `train_config.json` records what it gave)"
    return f"`training/configs/{config.name}.py`"


def plugin_rows(model: VideoSlotModel) -> list[str]:
    """A table row naming the installed plugins the model's components come from (none for built-ins only):
    training, loading and serving the model need them."""
    external = sorted({plugin for plugin in model.component_plugins.values() if plugin not in DEFAULT_PLUGINS})
    if not external:
        return []

    def named(plugin: str) -> str:
        distribution, version = model.plugin_distributions.get(plugin), model.plugin_versions.get(plugin)
        installed = f" (`pip install '{distribution}=={version}'`)" if distribution and version else ""
        return f"`{plugin}`{installed}"

    return [f"| plugins | {', '.join(map(named, external))}: needed to train, load or serve it |"]


def render_card(
    config: TrainConfig, model: VideoSlotModel, scores: dict[str, DiscoveryScores], extra: dict[str, Any]
) -> str:
    """The Markdown model card."""
    parameters = sum(p.numel() for p in model.parameters())
    first = next(iter(scores.values()))
    (height, width), (mask_height, mask_width) = model.image_size, model.mask_grid
    spec = extra.get("spec") or config.data.val_spec or config.data.spec
    fit = " --frame-fit stretch" if config.data.frame_fit == "stretch" else ""
    header = ["data"] + [f"{mode} {name}" for mode in ("video", "image") for name in ("ARI", "FG-ARI", "mBO", "mIoU")]
    lines = [
        f"# Model card: {config.name}",
        "",
        f"Trained with `{extra['command']}` on {extra['machine']}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| experiment | {_experiment_source(config, extra['command'])} |",
        f"| data | `{config.data.spec}`, clips of {config.data.clip_length} frames, {extra['batch']} |",
        f"| steps | {_steps(config, extra['selection'], extra['steps_done'])} |",
        f"| wall time | {format_duration(extra['wall_time_s'])} of training to the published weights |",
        f"| parameters | {parameters:,} |",
        f"| input | {height}x{width} RGB in [0, 1]; masks at {mask_height}x{mask_width} |",
        f"| slots | {model.num_slots} x {model.slot_dim}; {model.first_iters}+{model.later_iters} iterations |",
        *plugin_rows(model),
        "",
        "## Object discovery",
        "",
        "Video mode: all frames of a video form one clustering (a slot that swaps objects is penalised); image",
        "mode: each frame scored alone.",
        f"Background: {first.background_policy} ({first.background_convention}). Masks: {first.mask_source};",
        f"{first.mask_upsampling}.",
        "",
        "| " + " | ".join([*header, "videos"]) + " |",
        "|" + " --- |" * (len(header) + 1),
        *(_row(label, value) for label, value in scores.items()),
        "",
        "The ceiling row scores the ground truth itself area-averaged to this model's mask size, then",
        f"upsampled like the model's masks (`python -m training.ceiling{fit}`), with the smallest objects of a video",
        "that has more than one object per slot besides the background merged into it: what a model that is",
        "perfect at this mask size and slot count scores. It is a reference rather than a strict bound: sharper",
        "soft masks can place an edge inside a cell (`python -m training.ceiling --fit-steps N` searches for such",
        "masks).",
        "",
        *(_SINGLE_OBJECT_NOTE if extra.get("davis") and extra["davis_objects"] <= 1 else []),
        *(_REAL_VIDEO_NOTE if extra.get("davis") else []),
        f"Reproduce: `OMP_NUM_THREADS={extra['threads']} python -m training.evaluate --model {extra['out']} "
        f"--data {spec}{fit}`. With another thread count or CPU the scores can move in the third decimal (float sums",
        "differ and near-ties in the argmax flip).",
        "",
        "![frames, reconstruction, slot masks, overlay](sample.png)",
        "",
    ]
    if extra.get("recall_chart"):
        lines += [
            "Objects found (best overlap above 0.5 over the video) and their mean best overlap, by the synthetic",
            "metadata (`python -m training.object_recall`):",
            "",
            f"![objects found by size, texture and shape]({extra['recall_chart']})",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished training run directory")
    parser.add_argument("--out", type=Path, required=True, help="where to publish the model")
    parser.add_argument("--davis", help="a DAVIS root to evaluate on as well")
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
    if not (args.run / TRAIN_CONFIG_FILE).is_file():
        parser.error(f"--run {args.run}: no {TRAIN_CONFIG_FILE} there; expected a training run directory")
    try:
        config = read_train_config(args.run / TRAIN_CONFIG_FILE)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    selection = read_selection(args.run) if args.checkpoint == "best" else None
    source = args.run / (BEST_MODEL_DIR if selection is not None else FINAL_MODEL_DIR)
    if not (source / WEIGHTS_FILE).is_file():
        if args.checkpoint == "final" and read_selection(args.run) is not None:
            problem = "the run has not finished; publish its best evaluation with --checkpoint best"
        else:
            problem = "the run has neither finished nor evaluated"
        print(f"error: {source} holds no model: {problem}", file=sys.stderr)
        return 2
    try:
        publish(args, config, source, selection)
    # DatasetError is a ValueError (missing masks, no DAVIS there, ...); RegistryError a LookupError (a component
    # name that no installed plugin registers).
    except (ValueError, OSError, RegistryError) as error:
        print(f"error: {error} ({args.out} was left as it was)", file=sys.stderr)
        return 2
    print((args.out / "MODEL_CARD.md").read_text())
    return 0


def publish(args: argparse.Namespace, config: TrainConfig, source: Path, selection: Selection | None) -> None:
    """Evaluate the model in ``source`` and write it with its card into ``args.out``.

    Everything is written into a staging folder next to ``args.out`` first and moved in at the end, so a
    failure (unreadable data, a DAVIS folder without annotations) leaves ``args.out`` as it was.

    Raises:
        ValueError: the validation or DAVIS data cannot be evaluated on (the message names the file).
        OSError: a file cannot be read or written.
    """
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}."))
    try:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(source / name, staging / name)
        model = VideoSlotModel.from_pretrained(staging)
        spec = args.data or config.data.val_spec or config.data.spec
        # Labelled videos only, as training.evaluate scores them (a note says how many were left out).
        crop = config.data.center_crop  # real frames fitted as in training
        try:
            validation = evaluation_videos(spec, model.image_size, None, on_unlabelled=print_note, center_crop=crop)
        except NoLabelledVideos as error:
            if args.data:
                raise
            raise NoLabelledVideos(
                f"{error}; the run's data has no labels to score the model on: pass --data SPEC with labelled videos "
                "(a few annotated clips of the same scene, say)"
            ) from error
        davis = (
            evaluation_videos(f"davis:{args.davis}", model.image_size, None, print_note, center_crop=crop)
            if args.davis
            else None
        )
        label = f"{spec} (given with --data)" if args.data else f"{spec} (validation)"
        scores = {label: evaluate(model, validation, progress=True)}
        mask_height, mask_width = model.mask_grid
        ceiling_label = (
            f"{label}, ground truth through {mask_height}x{mask_width} masks and {model.num_slots} slots: the ceiling"
        )
        scores[ceiling_label] = mask_size_ceiling(
            validation, model.mask_grid, progress=True, num_slots=model.num_slots
        )
        if davis is not None:
            scores[f"DAVIS {Path(args.davis).name} ({len(davis)} sequences)"] = evaluate(  # type: ignore[arg-type]
                model, davis, progress=True
            )
        with torch.inference_mode():
            frames = validation[0].frames[:8].unsqueeze(0)  # [T, 3, H, W] -> [1, T, 3, H, W]
            save_overlay(frames, model(frames), staging / "sample.png")
        recall_chart = None
        if spec.startswith("synthetic:"):
            overlaps = object_overlaps(model, validation, progress=True)
            save_recall_chart(recall_rows(overlaps), staging / RECALL_CHART_FILE, f"{config.name} on {spec}")
            recall_chart = RECALL_CHART_FILE
        done = steps_done(args.run, config)
        environment = run_environment(args.run)
        extra = {
            "davis": args.davis,
            "davis_objects": most_objects(davis) if davis is not None else 0,
            "out": args.out,
            "spec": spec,
            "recall_chart": recall_chart,
            "command": args.command or _run_command(args.run, config),
            "machine": describe_environments(environment, done),  # recorded by the run, not this process
            "batch": effective_batch(config.data.batch_size, recorded_processes(environment)),
            "threads": torch.get_num_threads(),  # this process's: the card's scores were computed with them
            "wall_time_s": wall_time_s(args.run, source, selection.step if selection else done),
            "steps_done": done,
            "selection": selection,
        }
        (staging / "MODEL_CARD.md").write_text(render_card(config, model, scores, extra))
        payload: dict[str, Any] = {label: value.to_dict() for label, value in scores.items()}
        payload.update(wall_time_s=extra["wall_time_s"], selected_step=selection.step if selection else None)
        payload["environment"] = environment  # the run's environment.json segments (empty: not recorded)
        (staging / "scores.json").write_text(json.dumps(payload, indent=2) + "\n")
        args.out.mkdir(exist_ok=True)
        for entry in sorted(staging.iterdir(), key=lambda path: path.name == "MODEL_CARD.md"):  # the card last
            os.replace(entry, args.out / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
