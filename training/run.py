"""``python -m training.run --config NAME``: train a shipped experiment (or a config file), CLI flags overriding it.

Examples:
    python -m training.run --config tiny --out runs/tiny
    python -m training.run --config smoothsa_cnn --out runs/smoothsa_cnn --resume   # as it was started
    torchrun --nproc-per-node 2 -m training.run --config smoothsa_cnn --out runs/ddp
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.run")

from plugins import default_registry
from plugins.config import ComponentSpec
from plugins.cpus import available_cores
from plugins.files import user_path_text
from plugins.interfaces import Component
from plugins.model import COMPONENT_NAMES, VideoSlotModel
from plugins.model_files import WEIGHTS_FILE
from plugins.model_sizes import check_model_sizes, count_problem
from plugins.registry import RegistryError
from service.host import memory_limit_bytes
from training.best import BEST_MODEL_DIR, read_selection
from training.checkpoint import checkpoint_step, list_checkpoints
from training.cli_checks import file_in_the_way
from training.config import FRAME_FITS, TrainConfig, read_train_config
from training.config_files import config_label, is_config_file, load_config
from training.configs import available
from training.datasets.augment import AUGMENTATIONS
from training.datasets.decoding import DecoderMissing
from training.distributed import peer_gone, shared_failure
from training.environment import size_torch_threads
from training.loop import FitResult, fit
from training.machine_fit import machine_fit_problems
from training.run_folder import FINAL_MODEL_DIR, TRAIN_CONFIG_FILE, check_same_config
from training.stop_request import RunStopped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    return argument_parser().parse_args(argv)


def argument_parser() -> argparse.ArgumentParser:
    """The parser of the command line (model cards read a run's recorded ``command.txt`` with it too)."""
    parser = argparse.ArgumentParser(prog="python -m training.run", description=command_description(__doc__))
    parser.add_argument(
        "--config",
        required=True,
        help=f"experiment name ({', '.join(available())}), or a .py file defining get_config() -> TrainConfig, or "
        "a .json file as a run's train_config.json",
    )
    parser.add_argument("--data", help="training data spec (synthetic:<level>, davis:<root>, videos:<dir>)")
    parser.add_argument("--val-data", help="evaluation data spec (default: the training spec)")
    parser.add_argument("--steps", type=int, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, help="clips per step (per process)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes")
    parser.add_argument("--augment", choices=AUGMENTATIONS, help="training-clip augmentation")
    parser.add_argument(
        "--clip-length", type=int, help="frames per training clip (videos must have at least this many)"
    )
    parser.add_argument(
        "--frame-fit",
        choices=FRAME_FITS,
        help="fit real frames of another aspect ratio to the model's input: crop (centre crop, the default) or "
        "stretch (the whole frame resized); the model records it, and the service fits frames the same way",
    )
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--num-slots", type=int, help="slots per frame (the model's K)")
    parser.add_argument(
        "--val-videos",
        type=int,
        help="validation videos each evaluation during training scores (0: none); more make the choice of best/ "
        "less noisy and each evaluation slower",
    )
    parser.add_argument(
        "--val-frames",
        type=_val_frames,
        metavar="N|all",
        help="frames of each validation video the evaluations during training score: the first N (each "
        "evaluation video needs at least N), or all of every video",
    )
    parser.add_argument(
        "--eval-every", type=int, help="steps between evaluations during training (0: only at the end)"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="steps between checkpoints (the last step is always saved); a --resume may change it",
    )
    parser.add_argument(
        "--keep-checkpoints",
        type=int,
        help="how many of the newest checkpoints stay on disk; a --resume may change it",
    )
    parser.add_argument(
        "--log-every",
        type=int,
        help="steps between metric lines (metrics.jsonl, TensorBoard); a --resume may change it",
    )
    parser.add_argument(
        "--init-from",
        type=user_path_text,
        help="warm-start from this saved model's weights (matching names and shapes)",
    )
    parser.add_argument(
        "--encoder-weights",
        type=user_path_text,
        help="local file of pretrained encoder weights, for encoders that take them (dinov2: timm ViT-S/14 with "
        "registers, .safetensors or .pth); never downloaded",
    )
    parser.add_argument(
        "--train-only", nargs="+", metavar="COMPONENT", help="train only these components (e.g. decoder)"
    )
    parser.add_argument("--out", type=user_path_text, default=None, help="run directory (default: runs/<config>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint as it was started (changing flags are refused)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, help="seed for weights, data and noise")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


_ALL_FRAMES = "all"
"""``--val-frames all``: evaluate on whole videos (``DataConfig.val_frames = None``)."""


def _val_frames(text: str) -> int | str:
    """``--val-frames``: a frame count of at least 1, or ``all``."""
    if text == _ALL_FRAMES:
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames or 'all', got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (or 'all' for whole videos), got {count}")
    return count


def apply_overrides(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """Return ``config`` with every flag that was given applied.

    Raises:
        ValueError: a flag's value is out of range (negative ``--val-videos`` or ``--eval-every``; ``--steps``,
            ``--checkpoint-every``, ``--keep-checkpoints`` or ``--log-every`` below 1; ``--num-slots`` outside
            ``[1, MAX_SLOTS]``: :func:`plugins.model_sizes.count_problem`; ``--lr`` not finite and positive;
            ``--seed`` outside ``[0, 2**30)``), or ``--encoder-weights`` is given for an encoder that takes none, or
            names no file.
    """
    for flag, value in (("--val-videos", args.val_videos), ("--eval-every", args.eval_every)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be 0 or more, got {value}")
    at_least_one = {
        "--steps": args.steps,
        "--checkpoint-every": args.checkpoint_every,
        "--keep-checkpoints": args.keep_checkpoints,
        "--log-every": args.log_every,
    }
    for flag, value in at_least_one.items():
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    data = dataclasses.replace(
        config.data,
        **{
            key: value
            for key, value in {
                "spec": args.data,
                "val_spec": args.val_data,
                "batch_size": args.batch_size,
                "num_workers": args.workers,
                "augment": args.augment,
                "val_videos": args.val_videos,
                "clip_length": args.clip_length,
                "frame_fit": args.frame_fit,
            }.items()
            if value is not None
        },
    )
    if args.val_frames is not None:  # "all" -> None: whole videos
        data = dataclasses.replace(data, val_frames=None if args.val_frames == _ALL_FRAMES else args.val_frames)
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number above 0, got {args.lr}")
    optim = dataclasses.replace(config.optim, lr=args.lr) if args.lr is not None else config.optim
    if args.seed is not None and not 0 <= args.seed < 2**30:
        raise ValueError(f"--seed must be in [0, 2**30), got {args.seed}")
    given = {
        "steps": args.steps,
        "seed": args.seed,
        "init_from": args.init_from,
        "train_only": args.train_only,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "log_every": args.log_every,
    }
    top = {key: value for key, value in given.items() if value is not None}
    model = dict(config.model)
    if args.num_slots is not None:
        if (problem := count_problem("num_slots", args.num_slots, "--num-slots")) is not None:
            raise ValueError(problem)
        model["num_slots"] = args.num_slots
    if args.encoder_weights is not None:
        encoder = _encoder_spec(model)
        if "weights" not in _encoder_class(encoder["name"]).initial_weight_arguments:
            raise ValueError(f"--encoder-weights: the {encoder['name']!r} encoder takes no pretrained weights")
        if not (weights := Path(args.encoder_weights)).is_file():
            problem = "a folder, not a file" if weights.is_dir() else "no such file"
            raise ValueError(f"--encoder-weights {args.encoder_weights}: {problem}")
        model["encoder"] = {**encoder, "kwargs": {**encoder.get("kwargs", {}), "weights": args.encoder_weights}}
    if model != config.model:
        top["model"] = model
    return dataclasses.replace(config, data=data, optim=optim, **top)


def _encoder_spec(model: dict[str, Any]) -> dict[str, Any]:
    """The model config's encoder as ``{"name": ..., "kwargs": ...}`` (a config may give just its name)."""
    encoder = model["encoder"]
    return dict(encoder) if isinstance(encoder, dict) else {"name": encoder}


def _encoder_class(name: str) -> type[Component]:
    return default_registry().get("encoders", name)


def missing_pretrained_weights(config: TrainConfig) -> str | None:
    """A warning when the config's encoder takes pretrained weights but none are given, else ``None``."""
    encoder = _encoder_spec(config.model)
    try:
        wanted = _encoder_class(encoder["name"]).initial_weight_arguments
    except RegistryError:
        return None  # fit() reports the unknown name
    kwargs = encoder.get("kwargs") or {}
    missing = sorted(name for name in wanted if kwargs.get(name) is None)
    if not missing:
        return None
    return (
        f"warning: the {encoder['name']!r} encoder has no pretrained weights ({', '.join(missing)} unset): it trains "
        "from random weights, which only checks that the recipe runs; pass --encoder-weights FILE"
    )


def check_model_config(model: dict[str, Any]) -> None:
    """Check the keys of a config's ``model`` section before anything is built: the arguments of
    :class:`~plugins.model.VideoSlotModel`, each component given as a name or ``{"name": ..., "kwargs": ...}``.
    (The registry checks each component's own kwargs when the model is built.)

    Raises:
        ValueError: an unknown or missing key, a component spec that cannot be read, or a size or count of the
            wrong type or out of bounds (:func:`plugins.model_sizes.check_model_sizes`; the message names it).
    """
    parameters = inspect.signature(VideoSlotModel).parameters
    accepted = [name for name in parameters if name != "registry"]
    unknown = sorted(set(model) - set(accepted))
    if unknown:
        raise ValueError(f"the model config has unknown keys {unknown}; it accepts {accepted}")
    missing = [role for role in COMPONENT_NAMES if role not in model]
    if missing:
        raise ValueError(
            f"the model config lacks {', '.join(missing)}: it names a component for each of the roles "
            f"{', '.join(COMPONENT_NAMES)}"
        )
    for role in COMPONENT_NAMES:
        try:
            ComponentSpec.parse(model[role])
        except TypeError as error:
            raise ValueError(f"the model config's {role}: {error}") from None
    sizes = ("num_slots", "slot_dim", "image_size", "first_iters", "later_iters")
    try:
        check_model_sizes(*(model.get(name, parameters[name].default) for name in sizes))
    except TypeError as error:
        raise ValueError(f"the model config: {error}") from None


def base_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration flags apply to: the named experiment, or with ``--resume`` of a run that was started
    (it has a ``train_config.json``, with or without a checkpoint yet), the one it was started with, so
    ``--resume`` alone continues a run as it was started.

    Raises:
        KeyError: unknown experiment name.
        ValueError: the run in ``--out`` was started from another experiment.
    """
    run_dir = Path(args.out or default_out(args.config))
    saved = run_dir / TRAIN_CONFIG_FILE
    if not (args.resume and saved.is_file()):
        return load_config(args.config)
    try:
        config = read_train_config(saved)
    except ValueError as error:
        raise ValueError(f"{error}; it records how the run was started: restore it, or use another --out") from error
    expected = load_config(args.config).name if is_config_file(args.config) else args.config
    if config.name != expected:
        raise ValueError(f"{saved.parent} was started with the experiment {config.name!r}, not {expected!r}")
    return config


def default_out(config_spec: str) -> str:
    """The run folder without ``--out``: ``runs/<experiment name or config file stem>``."""
    return f"runs/{config_label(config_spec)}"


def _launcher() -> str:
    """``python``, or under torchrun the node and process counts it was started with (its rendezvous flags are
    not visible to the workers), so a model card quotes a distributed run as one."""
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if world is None or local is None or int(world) <= 1:
        return "python"
    return f"torchrun --nnodes {int(world) // int(local)} --nproc-per-node {local}"


def _interrupted_note(run_dir: Path) -> str:
    """What a run stopped by Ctrl-C leaves: where ``--resume`` continues it from, or that it has no checkpoint yet
    (a run stopped before its first checkpoint starts again from step 0, with or without ``--resume``, and replaces
    a ``best/`` its evaluations saved)."""
    saved = list_checkpoints(run_dir)
    if not saved:
        best = read_selection(run_dir)
        kept = (
            f"; its best model so far (step {best.step}) is in {run_dir / BEST_MODEL_DIR}, which a new start "
            "replaces: copy it elsewhere to keep it"
            if best is not None
            else ""
        )
        return f"interrupted: no checkpoint yet: running the command again starts from step 0{kept}"
    step = checkpoint_step(saved[-1])
    return f"interrupted: the last checkpoint is step {step}; continue with the same command and --resume"


def _trained(result: FitResult) -> str:
    """What this invocation trained, for the closing line: its own steps with its own seconds
    (``result.wall_time_s``), and for a resumed run the step it continued from and the step the run reached."""
    resumed_at = result.started_step
    trained = result.step - resumed_at
    steps = f"{trained} step{'' if trained == 1 else 's'} in {result.wall_time_s:.0f} s"
    return steps if resumed_at == 0 else f"{steps} (resumed at step {resumed_at}, now at step {result.step})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    main_process = rank == 0  # under torchrun only rank 0 reports what every process meets alike
    try:
        config = apply_overrides(base_config(args), args)
        check_model_config(config.model)
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes on this machine
        if problems := machine_fit_problems(config, available_cores(), memory_limit_bytes(), processes):
            raise ValueError("; ".join(problems))
    except (KeyError, ValueError, RegistryError) as error:
        if not main_process:  # every process refuses the same flags: one says so (exiting first: see _stopped)
            return 0
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # said by every process: another machine of the job may have one
            print("error: --device cuda was requested but no CUDA device is available", file=sys.stderr)
            return 2
    if main_process and (warning := missing_pretrained_weights(config)):
        print(warning, file=sys.stderr)
    out = args.out or default_out(args.config)
    if (blocking := file_in_the_way(Path(out))) is not None:
        if not main_process:
            return 0
        print(f"error: --out {out}: {blocking} is a file; give a folder for the run", file=sys.stderr)
        return 2
    words = sys.argv[1:] if argv is None else list(argv)
    command = f"{_launcher()} -m training.run {shlex.join(words)}"
    try:
        checkpoints = list_checkpoints(Path(out))
    except PermissionError as error:  # a folder this user may not enter (the run's, or one above it)
        if main_process:
            print(f"error: --out {out}: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2
    final_model = Path(out) / FINAL_MODEL_DIR
    if args.resume and (Path(out) / TRAIN_CONFIG_FILE).is_file():
        try:  # before saying anything of the run: a resume with other flags is refused, finished or not
            check_same_config(Path(out) / TRAIN_CONFIG_FILE, config)
        except ValueError as error:
            if not main_process:  # every process refuses the same flags: one says so
                return 0
            print(f"error: {error}", file=sys.stderr)
            return 2
    finished = (final_model / WEIGHTS_FILE).is_file()  # not merely begun: a kill while saving leaves config.json alone
    if args.resume and checkpoints and checkpoint_step(checkpoints[-1]) >= config.steps and finished:
        if main_process:  # every process stops here: the run directory is shared
            print(f"{out} has finished all {config.steps} steps; its model is in {final_model}")
        return 0
    if args.resume and main_process:  # checkpoints without the run's configuration: fit() refuses the resume
        started = (Path(out) / TRAIN_CONFIG_FILE).is_file()
        if checkpoints and started:
            print(f"resuming {out} from its checkpoint of step {checkpoint_step(checkpoints[-1])}", file=sys.stderr)
        elif not checkpoints and not started:
            print(f"note: {out} holds no run to resume: starting a new one", file=sys.stderr)
        elif not checkpoints:  # started, but stopped before its first checkpoint
            print(f"note: {out} holds no checkpoint of its run yet: it starts again from step 0", file=sys.stderr)
    # torch's default is a thread per core of the node; this process's share of its container's is what it may use
    if (lowered := size_torch_threads()) is not None and main_process:
        print(lowered, file=sys.stderr)
    try:
        result = fit(
            config, out, resume=args.resume, device=args.device, progress=not args.no_progress, command=command
        )
    except KeyboardInterrupt as interrupt:  # Ctrl-C at once, or a RunStopped at a step boundary (first signal)
        if main_process:
            print(f"\n{_interrupted_note(Path(out))}", file=sys.stderr)
        return 128 + (interrupt.signal_number if isinstance(interrupt, RunStopped) else signal.SIGINT)
    except (FileExistsError, FileNotFoundError, ValueError, RegistryError, DecoderMissing) as error:
        return _stopped(error, rank, status=2)
    except (FloatingPointError, OSError) as error:  # a diverged run; a checkpoint that cannot be written
        return _stopped(error, rank, status=1)
    except RuntimeError as error:
        if os.environ.get("WORLD_SIZE", "1") == "1" or not peer_gone(error):
            raise
        # Another process stopped (on an error it reports itself, or with its node): one line, not the collective's
        # traceback, and a failure, so that torchrun's agents restart the workers of an elastic job.
        print(f"error (process {rank}): another process of the run is gone; this one stops too", file=sys.stderr)
        return 1
    if not main_process:
        return 0
    print(f"{config.name}: {_trained(result)}; model in {result.model_dir}")
    if result.scores is not None:
        scores = result.scores
        print(f"video FG-ARI {scores.video_fg_ari:.3f}  mBO {scores.video_mbo:.3f}  mIoU {scores.video_miou:.3f}")
    return 0


def _stopped(error: BaseException, rank: int, status: int) -> int:
    """The exit status of process ``rank`` when the run stopped with ``error`` (``status``), which it prints unless
    another process does. Under ``torchrun`` every process raises an error one of them met where they agree
    (:func:`training.distributed.shared_failure`: starting the run, a checkpoint): the main process prints it,
    naming the process that met it, and the others stop silently with status 0, since torchrun stops every
    process as soon as one fails, which could cut the main one short before it has said why (the job's status
    and torchrun's summary are the main process's). An error a process met on its own (in a training step, say)
    it prints itself, naming itself."""
    met_on = shared_failure(error)
    if met_on is not None and rank != 0:
        return 0
    where = met_on if met_on is not None else rank
    print(f"error{f' (process {where})' if where > 0 else ''}: {error}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
