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
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.model_card")

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
from training.datasets.selection import FirstFrames, NoLabelledVideos, evaluation_videos
from training.datasets.specs import build_dataset
from training.environment import describe_environments, read_environment, recorded_processes
from training.evaluation import evaluate
from training.logging_sinks import METRICS_FILE, parsed_line
from training.metrics import DiscoveryScores
from training.object_recall import object_overlaps, recall_rows
from training.recall_chart import save_recall_chart
from training.run import argument_parser
from training.run_data import DATA_FILES_FILE, SAMPLE_FRAMES, read_data_files, training_file_count
from training.run_folder import COMMAND_FILE, FINAL_MODEL_DIR
from training.run_folder import CONFIG_FILE as TRAIN_CONFIG_FILE
from training.visualize import save_overlay

RECALL_CHART_FILE = "object_recall.png"
"""The per-object recall chart a card of a model trained on synthetic data links to."""
CARD_FILE = "MODEL_CARD.md"
SCORES_FILE = "scores.json"
SAMPLE_FILE = "sample.png"
CARD_FILES = (CARD_FILE, SCORES_FILE, SAMPLE_FILE, RECALL_CHART_FILE)
"""Every file a card may write next to the weights (``training.export`` copies the same set into an export): a
publication removes those of them it does not write again, so no file of an earlier card stays in ``--out``."""

_SINGLE_OBJECT_NOTE = [
    "Every DAVIS sequence scored here has a single foreground object (as in DAVIS 2016), so FG-ARI is",
    "degenerate there (1 when the object falls in one slot); mBO and mIoU are the meaningful numbers.",
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


def wall_time_s(run_dir: Path, model_dir: Path, step: int, recorded: float | None = None) -> float:
    """Seconds the run trained to reach ``step``, the published weights' step.

    ``recorded`` when the run recorded them with its best model (``selection.json``'s ``elapsed_s``); 0 for the
    starting weights of step 0 (an ``--init-from`` model selected before any step). Else read from the
    ``elapsed_s`` of the training lines of ``metrics.jsonl``, which sum the invocations of a resumed run and leave
    out the pauses between them: that of ``step``'s own line, or for a step without one (an evaluation between two
    logged steps) the straight line between the logged steps around it, from step 0 at 0 s (past the last logged
    step, its pace so far continued). Runs logged before ``elapsed_s`` existed fall back to file times: from
    ``train_config.json`` (written when the run started) to the published weights, which counts such pauses.
    """
    if step == 0:
        return 0.0
    if recorded is not None:
        return recorded
    logged = [
        (record["step"], float(record["elapsed_s"])) for record in _train_records(run_dir) if "elapsed_s" in record
    ]
    if logged:
        return _elapsed_at(logged, step)
    return (model_dir / WEIGHTS_FILE).stat().st_mtime - (run_dir / TRAIN_CONFIG_FILE).stat().st_mtime


def _elapsed_at(logged: list[tuple[int, float]], step: int) -> float:
    """The seconds at ``step`` (at least 1) from ``logged`` (step, elapsed seconds) pairs: the pair of ``step``, or
    the straight line between the pairs around it (step 0 at 0 s before the first), or past the last pair the
    pace up to it continued."""
    points = [(0, 0.0), *sorted(logged)]
    before = max((point for point in points if point[0] <= step), key=lambda point: point[0])
    after = [point for point in points if point[0] > step]
    if before[0] == step:
        return before[1]
    if after:
        (start, start_s), (end, end_s) = before, after[0]
        return start_s + (end_s - start_s) * (step - start) / (end - start)
    return before[1] * step / before[0]  # before[0] > 0: a logged step, as logged is not empty


def _train_records(run_dir: Path) -> list[dict[str, Any]]:
    """The training lines of the run's ``metrics.jsonl``, in order (none without the file); the cut-off last line
    of a killed run is skipped."""
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        return []
    records = (parsed_line(line) for line in metrics.read_text().splitlines())
    return [record for record in records if record and record.get("kind") == "train"]


def _run_command(run_dir: Path, config: TrainConfig) -> str:
    """The command that started the run (its ``command.txt``), or a reconstruction for runs without one."""
    recorded = run_dir / COMMAND_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
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


def steps_done(run_dir: Path, config: TrainConfig) -> int:
    """``config.steps`` for a finished run, else the last step the run trained: the newest of its newest
    checkpoint, its best model's step and its last training line in ``metrics.jsonl`` (0 without any)."""
    if (run_dir / FINAL_MODEL_DIR / WEIGHTS_FILE).is_file():
        return config.steps
    selection = read_selection(run_dir)
    steps = [newest_checkpoint_step(run_dir), selection.step if selection else 0]
    return max(steps + [int(record["step"]) for record in _train_records(run_dir)])


def newest_checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest checkpoint, where ``--resume`` continues it (0 without one)."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoint_step(checkpoints[-1]) if checkpoints else 0


def _row(label: str, scores: DiscoveryScores) -> str:
    values = (scores.video_ari, scores.video_fg_ari, scores.video_mbo, scores.video_miou)
    images = (scores.image_ari, scores.image_fg_ari, scores.image_mbo, scores.image_miou)
    cells = " | ".join(f"{v:.3f}" for v in (*values, *images))
    return f"| {label} | {cells} | {scores.num_videos} |"


def _steps(config: TrainConfig, selection: Selection | None, done: int, checkpoint: int | None = None) -> str:
    """The card's steps row: the steps the run trained (``done``) of those planned, where ``--resume`` continues
    a run that stopped early after its newest ``checkpoint`` (that step, when given; said when it is not ``done``),
    and which weights are published."""
    if done >= config.steps:
        planned = f"{config.steps}"
    else:
        resume = ""
        if checkpoint is not None and checkpoint < done:
            resume = (
                f"; --resume continues it from its checkpoint of step {checkpoint}"
                if checkpoint > 0
                else "; it has no checkpoint: --resume starts it again from step 0"
            )
        planned = f"{done} of the planned {config.steps} (stopped early{resume})"
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
    named = _config_argument(command)
    if named is not None and is_config_file(named):
        return f"`{named}` (a config file; the run's `train_config.json` records what it gave)"
    return f"`training/configs/{config.name}.py`"


def _config_argument(command: str) -> str | None:
    """The ``--config`` a recorded training command gives, read as ``training.run`` reads it (``--config=FILE``,
    an abbreviation such as ``--conf FILE``); None for a command that does not parse (a hand-written
    ``--command``, say). The words before ``training.run`` (the launcher) are not its arguments."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if "training.run" in words:
        words = words[words.index("training.run") + 1 :]
    try:  # argparse reports a command it cannot read on stderr and exits: neither belongs to the card
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            known, _ = argument_parser().parse_known_args(words)
    except SystemExit:
        return None
    return str(known.config)


def real_video_note(config: TrainConfig, model: VideoSlotModel) -> list[str]:
    """The card's caveat on DAVIS scores of a model trained on synthetic shapes only (a ``synthetic:`` training
    spec), naming its encoder; none for a model that trained on real video."""
    if config.data.spec.partition(":")[0] != "synthetic":
        return []
    return [
        f"A model with the `{model.specs['encoder'].name}` encoder trained on synthetic shapes only is not expected",
        "to segment real video well; the DAVIS numbers are reported, not tuned for.",
        "",
    ]


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

    needed = "needed to train, load or serve it with the torch backend (its ONNX export serves without it)"
    return [f"| plugins | {', '.join(map(named, external))}: {needed} |"]


def render_card(
    config: TrainConfig, model: VideoSlotModel, scores: dict[str, DiscoveryScores], extra: dict[str, Any]
) -> str:
    """The Markdown model card; ``scores`` is empty for an unscored model (``extra["unscored"]`` says why)."""
    parameters = sum(p.numel() for p in model.parameters())
    (height, width), (mask_height, mask_width) = model.image_size, model.mask_grid
    lines = [
        f"# Model card: {config.name}",
        "",
        f"Trained with `{extra['command']}` on {extra['machine']}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| experiment | {_experiment_source(config, extra['command'])} |",
        f"| data | `{config.data.spec}`, clips of {config.data.clip_length} frames, {extra['batch']}"
        f"{_data_files_note(extra.get('data_files'))} |",
        f"| steps | {_steps(config, extra['selection'], extra['steps_done'], extra.get('checkpoint'))} |",
        f"| wall time | {format_duration(extra['wall_time_s'])} of training to the published weights |",
        f"| parameters | {parameters:,} |",
        f"| input | {height}x{width} RGB in [0, 1]; masks at {mask_height}x{mask_width} |",
        f"| slots | {model.num_slots} x {model.slot_dim}; {model.first_iters}+{model.later_iters} iterations |",
        *plugin_rows(model),
        "",
        *(_discovery(config, model, scores, extra) if scores else _not_scored(extra)),
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


def _data_files_note(files: int | None) -> str:
    """The data row's count of the files the run trained on, from its record (nothing for a run without one)."""
    if files is None:
        return ""
    return f"; {files} file{'' if files == 1 else 's'}, listed in the run's `{DATA_FILES_FILE}`"


def _discovery(
    config: TrainConfig, model: VideoSlotModel, scores: dict[str, DiscoveryScores], extra: dict[str, Any]
) -> list[str]:
    """The card's scores: the table, how it was scored and how to reproduce it. For a model whose own data has
    no labels (``extra["unscored"]``) only DAVIS is scored: the card says so, and has no ceiling row."""
    first = next(iter(scores.values()))
    unscored = extra.get("unscored")
    spec = f"davis:{extra['davis']}" if unscored else extra.get("spec") or config.data.val_spec or config.data.spec
    fit = " --frame-fit stretch" if config.data.frame_fit == "stretch" else ""
    header = ["data"] + [f"{mode} {name}" for mode in ("video", "image") for name in ("ARI", "FG-ARI", "mBO", "mIoU")]
    (mask_height, mask_width), (image_height, image_width) = model.mask_grid, model.image_size
    ceiling_command = f"python -m training.ceiling --data {spec}"
    if mask_height == mask_width and image_height == image_width:  # the command takes square sizes only
        ceiling_command += f" --mask-size {mask_height} --image-size {image_height}"
    ceiling_command += f" --num-slots {model.num_slots}{fit}"
    ceiling = [
        "The ceiling row scores the ground truth itself area-averaged to this model's mask size, then",
        f"upsampled like the model's masks (`{ceiling_command}`), keeping the {model.num_slots - 1}",
        "largest objects (one slot holds the background) and merging any others into the background: in video",
        "mode the video's largest, in image mode each frame's. It is a reference for a model that is perfect at",
        "this mask size and slot count, not a bound: sharper soft masks can place an edge inside a cell",
        "(the same command with `--fit-steps N` searches for such masks).",
    ]
    return [
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
        *([f"{_unscored_data(extra)}, so the model is scored on DAVIS only."] if unscored else ceiling),
        "",
        *(_SINGLE_OBJECT_NOTE if extra.get("davis") and extra["davis_objects"] <= 1 else []),
        *(real_video_note(config, model) if extra.get("davis") else []),
        f"Reproduce: `OMP_NUM_THREADS={extra['threads']} python -m training.evaluate --model {extra['out']} "
        f"--data {spec}{fit}`. With another thread count or CPU the scores can move in the third decimal (float sums",
        "differ and near-ties in the argmax flip).",
        "",
    ]


def _unscored_data(extra: dict[str, Any]) -> str:
    """Why the run's own data is not scored, as a sentence's start."""
    return f"The run's data (`{extra['spec']}`) has no labels ({extra['unscored']})"


def _not_scored(extra: dict[str, Any]) -> list[str]:
    """The card's section for a model without scores: that it is not scored, why, and how to score it."""
    return [
        "## Not scored",
        "",
        f"{_unscored_data(extra)}, so this model is not scored: there is no ground truth to measure its",
        "slot masks against, and this card reports no object-discovery numbers. The picture below shows what it does",
        "on the run's first video. To score it, publish it again with `--data SPEC` naming labelled videos (a few",
        "annotated clips of the same scene: `videos:<dir>` with each video's masks in `<stem>/00000.png`, ...) or",
        "with `--davis ROOT`.",
        "",
    ]


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
    print((args.out / CARD_FILE).read_text())
    return 0


def publish(args: argparse.Namespace, config: TrainConfig, source: Path, selection: Selection | None) -> None:
    """Evaluate the model in ``source`` and write it with its card into ``args.out``.

    Everything is written into a staging folder next to ``args.out`` first and moved in at the end, so a
    failure (unreadable data, a DAVIS folder without annotations) leaves ``args.out`` as it was. When the run's
    own data has no labelled video and no ``--data`` is given, the model is published unscored
    (:func:`scoring_videos`).

    Raises:
        ValueError: the validation or DAVIS data cannot be evaluated on, or ``--data`` has no labelled video (the
            message names the file or spec).
        OSError: a file cannot be read or written.
    """
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}."))
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
        if validation is not None:
            label = f"{spec} (given with --data)" if args.data else f"{spec} (validation)"
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
            scores[f"DAVIS {Path(args.davis).name} ({len(davis)} sequences)"] = evaluate(  # type: ignore[arg-type]
                model, davis, progress=True
            )
        # The first scored video; unscored, the run's first video (its first frames only are read).
        shown = validation[0] if validation is not None else first_video(spec, model.image_size, crop)
        with torch.inference_mode():
            frames = shown.frames[:SAMPLE_FRAMES].unsqueeze(0)  # [T, 3, H, W] -> [1, T, 3, H, W]
            save_overlay(frames, model(frames), staging / SAMPLE_FILE)
        recall_chart = None
        if spec.startswith("synthetic:") and validation is not None:
            overlaps = object_overlaps(model, validation, progress=True)
            save_recall_chart(recall_rows(overlaps), staging / RECALL_CHART_FILE, f"{config.name} on {spec}")
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
            "command": args.command or _run_command(args.run, config),
            "machine": describe_environments(environment, done),  # recorded by the run, not this process
            "batch": effective_batch(config.data.batch_size, recorded_processes(environment)),
            "threads": torch.get_num_threads(),  # this process's: the card's scores were computed with them
            "wall_time_s": wall_time_s(args.run, source, selection.step if selection else done, recorded),
            "steps_done": done,
            "checkpoint": newest_checkpoint_step(args.run),
            "selection": selection,
            "data_files": recorded_files(args.run),
        }
        (staging / CARD_FILE).write_text(render_card(config, model, scores, extra))
        payload: dict[str, Any] = {label: value.to_dict() for label, value in scores.items()}
        if unscored is not None:  # why the run's data has no scores here (none of it is labelled)
            payload["not_scored"] = {"data": spec, "reason": unscored}
        payload.update(wall_time_s=extra["wall_time_s"], selected_step=selection.step if selection else None)
        payload["environment"] = environment  # the run's environment.json segments (empty: not recorded)
        (staging / SCORES_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        move_in(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def scoring_videos(
    spec: str, image_size: tuple[int, int], center_crop: bool, *, given: bool
) -> tuple[Dataset[VideoClip] | None, str | None]:
    """The labelled videos of ``spec`` to score the model on (as ``training.evaluate`` scores them: a note says
    how many unlabelled ones were left out), and None; or, when none is labelled and ``spec`` is the run's own
    data (not ``given`` with ``--data``), no videos and why the model is not scored (``"no video has masks"``),
    with a note on stderr that says how to score it.

    Raises:
        NoLabelledVideos: ``spec`` was ``given`` and has no labelled video.
        DatasetError: the data cannot be read.
    """
    notes: list[str] = []
    try:
        videos = evaluation_videos(spec, image_size, None, on_unlabelled=notes.append, center_crop=center_crop)
    except NoLabelledVideos:
        if given:
            raise
        print_note(
            f"note: no video of {spec} (the run's data) has masks: the model is published without scores, and its "
            "card says so; to score it, pass --data SPEC with labelled videos (a few annotated clips of the same "
            "scene, say) or --davis ROOT"
        )
        return None, "no video has masks"
    for note in notes:
        print_note(note)
    return videos, None


def first_video(spec: str, image_size: tuple[int, int], center_crop: bool) -> VideoClip:
    """The first :data:`~training.run_data.SAMPLE_FRAMES` frames of the first video of ``spec`` (the whole video
    when shorter), fitted as in training: what the sample picture of an unscored model shows, as the run's own
    samples do.

    Raises:
        DatasetError: the video cannot be read.
    """
    videos = build_dataset(spec, "val", None, image_size, center_crop=center_crop)
    return FirstFrames(videos, SAMPLE_FRAMES)[0]


def recorded_files(run_dir: Path) -> int | None:
    """How many files the run trained on, from its ``data_files.json``; None for a run without one (or one that
    cannot be read, with a note: the card then gives no count)."""
    try:
        record = read_data_files(run_dir)
    except (ValueError, OSError) as error:
        print_note(f"note: {error}; the card gives no count of the run's data files")
        return None
    return None if record is None else training_file_count(record)


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
    raise SystemExit(main())
