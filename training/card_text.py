"""The Markdown of a model card: the table that says how the model was trained (experiment, data, steps and the
published weights, wall time, size, the plugins it needs) and its scores section, either the object-discovery
table with its ceiling row, notes and the command that reproduces it, or, for a model whose data has no labels,
the section that says it is not scored and how to score it. Pure text from what :mod:`training.model_card`
measured and read; nothing here reads files or evaluates."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugins import VideoSlotModel
from plugins.builtin import DEFAULT_PLUGINS
from plugins.pretrained import pip_command
from training.best import Selection
from training.config import TrainConfig
from training.config_files import is_config_file
from training.data_files import DATA_FILES_FILE
from training.datasets import DatasetError
from training.datasets.specs import held_out_split
from training.loss_evaluation import LOSS_METRIC
from training.metrics import DiscoveryScores
from training.run import argument_parser

_SINGLE_OBJECT_NOTE = [
    "Every DAVIS sequence scored here has a single foreground object (as in DAVIS 2016), so FG-ARI is",
    "degenerate there (1 when the object falls in one slot); mBO and mIoU are the meaningful numbers.",
]


def format_duration(seconds: float) -> str:
    """A wall time for a card: seconds below a minute (``4.2 s``, ``42 s``), minutes above (``12.5 min``)."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{seconds / 60:.1f} min"


def davis_label(root: Path, sequences: int) -> str:
    """The model card's row label for DAVIS data at ``root``: ``DAVIS 2016 (8 sequences)`` when the root folder or
    the one above it names the edition (``davis2016/DAVIS``), else ``DAVIS <folder> (...)``, the folder being the one
    above a root named ``DAVIS`` (the name every DAVIS download unpacks to, which tells nothing)."""
    folder = root.absolute()
    for name in (folder.name, folder.parent.name):
        if edition := re.search(r"(?<!\d)(2016|2017)(?!\d)", name):
            return f"DAVIS {edition.group(1)} ({sequences} sequences)"
    name = folder.parent.name if folder.name == "DAVIS" and folder.parent.name else folder.name
    return f"DAVIS {name} ({sequences} sequences)"


def effective_batch(batch_size: int, processes: int | None) -> str:
    """The clips one optimisation step trains on: ``batch_size`` per process times the processes the run
    recorded (``environment.json``); per process only when the run did not record how many there were."""
    if processes is None:
        return f"batch {batch_size} per process (the number of processes was not recorded)"
    if processes == 1:
        return f"batch {batch_size}"
    return f"batch {batch_size * processes} ({batch_size} per process x {processes} processes)"


def _row(label: str, scores: DiscoveryScores) -> str:
    values = (scores.video_ari, scores.video_fg_ari, scores.video_mbo, scores.video_miou)
    images = (scores.image_ari, scores.image_fg_ari, scores.image_mbo, scores.image_miou)
    cells = " | ".join(f"{v:.3f}" for v in (*values, *images))
    return f"| {label} | {cells} | {scores.num_videos} |"


def _steps(
    config: TrainConfig, selection: Selection | None, done: int, checkpoint: int | None = None, held_out: bool = True
) -> str:
    """The card's steps row: the steps the run trained (``done``) of those planned, where ``--resume`` continues
    a run that stopped early after its newest ``checkpoint`` (that step, when given; said when it is not ``done``),
    and which weights are published, and on which videos they were chosen (``held_out``: videos the run did not
    train on, :func:`evaluated_on_held_out`)."""
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
    evaluated = "validation videos" if held_out else "training videos (not held out)"
    cadence = f"every {config.eval_every} steps" if 0 < config.eval_every < config.steps else "one, at the end"
    if config.init_from is not None:
        cadence += ", and of the --init-from weights at step 0"
    if selection.lower_is_better:
        return (
            f"{planned}; the published weights are those of step {selection.step}, the lowest "
            f"{_loss_kind(held_out)} loss "
            f"({metrics} {selection.score:.5g}) of the run's evaluations ({cadence}) on {videos} {evaluated} "
            "without labels"
        )
    why = f" ({selection.reason})" if selection.reason else ""
    return (
        f"{planned}; the published weights are those of step {selection.step}, the best of the run's "
        f"evaluations ({cadence}) by {metrics}{why} on {videos} {evaluated} ({selection.score:.3f})"
    )


def evaluated_on_held_out(config: TrainConfig) -> bool:
    """Whether the run's evaluations scored videos it did not train on: ``--val-data`` other than the training data,
    or data with a held-out split (:func:`training.datasets.specs.held_out_split`); True when the data can no
    longer be read to tell."""
    spec = config.data.val_spec or config.data.spec
    if spec != config.data.spec:
        return True
    try:
        return held_out_split(spec)
    except DatasetError:
        return True


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


def plugin_rows(model: VideoSlotModel, losses: Mapping[str, Any] | None = None) -> list[str]:
    """Table rows naming the installed plugins the model's components come from (training, loading and serving it
    need them), and those only its losses come from (``losses``: the run's record of its losses,
    :func:`~training.checkpoint.read_losses_record`; retraining it needs them); none for built-ins only."""
    external = sorted({plugin for plugin in model.component_plugins.values() if plugin not in DEFAULT_PLUGINS})
    losses = losses or {}
    loss_plugins = _recorded(losses, "plugins")  # loss name -> plugin
    loss_only = sorted(set(loss_plugins.values()) - set(external) - set(DEFAULT_PLUGINS))

    def named(plugin: str, versions: Mapping[str, str], distributions: Mapping[str, str]) -> str:
        distribution, version = distributions.get(plugin), versions.get(plugin)
        command = pip_command(distribution, version) if distribution and version else None
        installed = f" (`{command}`)" if command else ""  # none for names that would not make a safe command
        return f"`{plugin}`{installed}"

    rows = []
    if external:
        names = ", ".join(named(plugin, model.plugin_versions, model.plugin_distributions) for plugin in external)
        needed = "needed to train, load or serve it with the torch backend (its ONNX export serves without it)"
        rows.append(f"| plugins | {names}: {needed} |")
    if loss_only:
        versions, distributions = _recorded(losses, "plugin_versions"), _recorded(losses, "plugin_distributions")
        names = ", ".join(named(plugin, versions, distributions) for plugin in loss_only)
        losses_of = sorted(name for name, plugin in loss_plugins.items() if plugin in loss_only)
        rows.append(
            f"| loss plugins | {names}: the losses {', '.join(f'`{name}`' for name in losses_of)}, needed to train "
            "it again with this command, not to load or serve it |"
        )
    return rows


def _recorded(record: Mapping[str, Any], key: str) -> dict[str, str]:
    """``record[key]`` as a mapping of strings; empty when absent or not a mapping (a damaged record)."""
    value = record.get(key)
    return {str(name): str(item) for name, item in value.items()} if isinstance(value, Mapping) else {}


def render_card(
    config: TrainConfig, model: VideoSlotModel, scores: dict[str, DiscoveryScores], extra: dict[str, Any]
) -> str:
    """The Markdown model card; ``scores`` is empty for an unscored model (``extra["unscored"]`` says why), and
    ``extra["held_out"]`` (default True) says whether the run's evaluations scored videos it did not train on
    (:func:`evaluated_on_held_out`)."""
    held_out = extra.get("held_out", True)
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
        f"| steps | {_steps(config, extra['selection'], extra['steps_done'], extra.get('checkpoint'), held_out)} |",
        f"| wall time | {format_duration(extra['wall_time_s'])} of training to the published weights |",
        f"| parameters | {parameters:,} |",
        f"| input | {height}x{width} RGB in [0, 1]; masks at {mask_height}x{mask_width} |",
        f"| slots | {model.num_slots} x {model.slot_dim}; {model.first_iters}+{model.later_iters} iterations |",
        *plugin_rows(model, extra.get("losses")),
        "",
        *(_discovery(config, model, scores, extra) if scores else _not_scored(config, extra)),
        f"![{', '.join(extra['sample_rows'])}](sample.png)",
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
    ceiling_command = f"python -m training.ceiling --data {shlex.quote(spec)}"
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
        *([f"{_unscored_data(config, extra)}, so the model is scored on DAVIS only."] if unscored else ceiling),
        "",
        *(_SINGLE_OBJECT_NOTE if extra.get("davis") and extra["davis_objects"] <= 1 else []),
        *(real_video_note(config, model) if extra.get("davis") else []),
        f"Reproduce: `OMP_NUM_THREADS={extra['threads']} python -m training.evaluate --model "
        f"{shlex.quote(str(extra['out']))} --data {shlex.quote(spec)}{fit}`. With another thread count or CPU the "
        "scores can move in the third decimal (float sums",
        "differ and near-ties in the argmax flip).",
        "",
    ]


def _unscored_data(config: TrainConfig, extra: dict[str, Any]) -> str:
    """Why the run's own data (its ``--val-data``, when it has one) is not scored, as a sentence's start."""
    data = "evaluation data" if config.data.val_spec is not None and extra["spec"] == config.data.val_spec else "data"
    return f"The run's {data} (`{extra['spec']}`) has no labels ({extra['unscored']})"


def _not_scored(config: TrainConfig, extra: dict[str, Any]) -> list[str]:
    """The card's section for a model without scores: that it is not scored, why, and how to score it; for a model
    chosen by the lowest held-out loss (a run whose ``--val-data`` has no labels), which step that was and what
    the loss measured."""
    return [
        "## Not scored",
        "",
        f"{_unscored_data(config, extra)}, so this model is not scored: there is no ground truth to measure its",
        "slot masks against, and this card reports no object-discovery numbers. The picture below shows what it does",
        "on the run's first video. To score it, publish it again with `--data SPEC` naming labelled videos (a few",
        "annotated clips of the same scene: `videos:<dir>` with each video's masks in `<stem>/00000.png`, ...) or",
        "with `--davis ROOT`.",
        "",
        *_loss_selection(config, extra.get("selection"), extra.get("held_out", True)),
    ]


def _loss_kind(held_out: bool) -> str:
    """What a selection loss is called: ``held-out`` on videos the run does not train on, else ``evaluation``."""
    return "held-out" if held_out else "evaluation"


def _loss_selection(config: TrainConfig, selection: Selection | None, held_out: bool = True) -> list[str]:
    """The paragraph on a model chosen by the lowest held-out loss (an evaluation loss when not ``held_out``: the
    run trains on those videos): its step, the loss and the data it was computed on, and what that says; nothing
    for other models."""
    if selection is None or not selection.lower_is_better:
        return []
    videos = selection.scores.get("num_videos", config.data.val_videos)
    terms = [
        f"{name.removeprefix('val_')} {value:.5g}"
        for name, value in selection.scores.items()
        if name.startswith("val_") and name != LOSS_METRIC and value is not None
    ]
    per_term = f" ({', '.join(terms)}, unweighted)" if terms else ""
    meaning = (
        ["held-out loss says the model reconstructs or predicts unseen video better, not that it segments objects"]
        if held_out
        else [
            "evaluation loss says the model fits these videos better, which it also trains on (they are not held",
            "out), not that it segments objects",
        ]
    )
    return [
        f"The published weights are the run's best/, those of step {selection.step}: selected by the lowest "
        f"{_loss_kind(held_out)}",
        f"loss, val_loss {selection.score:.5g}{per_term}: the run's loss terms, weighted as in training, but without",
        "the self-distillation terms (preheat_mse, attention_distillation), whose targets are the model's own",
        "outputs,",
        f"on the first {videos} videos of `{config.data.val_spec or config.data.spec}`, which have no labels. A lower",
        *meaning,
        "better.",
        "",
    ]
