"""The training loop: ``fit(config, run_dir)``.

One step: tell the model how far training is (for component schedules), run the clip through the recurrent
model, sum the weighted losses, back-propagate, clip the gradient norm, step Adam and the schedule.
Evaluation, metric lines and checkpoints happen on the main process at their configured intervals.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from plugins import ComponentRegistry, VideoSlotModel, default_registry
from plugins.interfaces import ContractViolation, Loss
from plugins.model import RUN_FINAL_MODEL_DIR, WEIGHTS_FILE
from training.batches import SeededItems, StepBatchSampler
from training.best import BEST_MODEL_DIR, Selection, check_metrics, clear_best, read_selection, update_best
from training.checkpoint import (
    TrainerState,
    capture_rng,
    list_checkpoints,
    load_trainer_state,
    restore_rng,
    save_checkpoint,
)
from training.config import TrainConfig, changed_fields
from training.datasets import DatasetError, VideoClip, build_dataset, collate_frames
from training.datasets.augment import augmented
from training.datasets.selection import labelled_indices, unlabelled_note
from training.diagnostics import slot_similarity
from training.distributed import ProcessGroup, barrier, init_from_environment, mean_across_processes, shutdown
from training.environment import ENVIRONMENT_FILE, describe_environment, record_environment
from training.evaluation import evaluate
from training.gradients import clip_gradients
from training.logging_sinks import METRICS_FILE, MetricSinks
from training.metrics import DiscoveryScores
from training.schedule import warmup_cosine
from training.visualize import save_overlay
from training.warm_start import check_warm_start_source, freeze_all_but, warm_start

CONFIG_FILE = "train_config.json"
COMMAND_FILE = "command.txt"
"""The command line that started a run (model cards quote it), written with ``CONFIG_FILE`` at the start."""
FINAL_MODEL_DIR = RUN_FINAL_MODEL_DIR
SAMPLES_DIR = "samples"
_STARTED_RUN_ENTRIES = (
    CONFIG_FILE,
    COMMAND_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    "tensorboard",
    SAMPLES_DIR,
    BEST_MODEL_DIR,
)
"""What a run writes into its folder before its first step ends; a fresh run whose first step breaks a component
contract removes those of them it created (:func:`_remove_created`)."""


@dataclass
class FitResult:
    """What a finished (or stopped) run produced.

    Attributes:
        run_dir: the run directory.
        step: steps completed.
        wall_time_s: seconds spent in this invocation.
        scores: the last evaluation, if one ran.
        model_dir: the final ``save_pretrained`` directory (None when stopped early).
        best: the evaluation that chose the run's best model in ``best/`` (None before any evaluation).
    """

    run_dir: Path
    step: int
    wall_time_s: float
    scores: DiscoveryScores | None
    model_dir: Path | None
    best: Selection | None

    @property
    def best_model_dir(self) -> Path | None:
        """The best model's ``save_pretrained`` directory, when an evaluation chose one."""
        return self.run_dir / BEST_MODEL_DIR if self.best is not None else None


@dataclass
class _Run:
    """The live objects of a run."""

    model: VideoSlotModel
    trained: nn.Module  # the model, or its DistributedDataParallel wrapper
    losses: list[tuple[str, float, Loss]]
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    step: int
    elapsed_before_s: float = 0.0  # training seconds of earlier invocations, restored from the checkpoint
    started: float = 0.0  # perf_counter() when this invocation's training began
    non_finite_losses: int = 0  # steps in a row whose loss was not finite
    restored_world_size: int | None = None  # processes that wrote the checkpoint resumed from (None: unknown)
    loss_plugins: dict[str, str] = field(default_factory=dict)  # the plugin that registered each loss, by name

    def elapsed_s(self) -> float:
        """Seconds trained to reach the current step, over every invocation (see ``TrainerState.elapsed_s``)."""
        return self.elapsed_before_s + time.perf_counter() - self.started


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    registry: ComponentRegistry | None = None,
    command: str | None = None,
) -> FitResult:
    """Train ``config`` into ``run_dir``; under ``torchrun`` every process calls this.

    Before the first step the main process records where this invocation trains in ``environment.json``
    (:mod:`training.environment`; a resume appends its own part), which model cards report.

    Args:
        config: the experiment.
        run_dir: where checkpoints, metrics, TensorBoard files and the final model go.
        resume: continue from the newest complete checkpoint in ``run_dir`` (start fresh when there is none).
        device: ``"cpu"`` or ``"cuda"``.
        progress: show a progress bar.
        stop_after: stop (after checkpointing) once this many steps are done, as if interrupted.
        registry: component registry (defaults to the default plugin manager's).
        command: the command line starting the run, kept in ``command.txt`` (a resumed run keeps the one that
            started it).

    Raises:
        FileExistsError: ``run_dir`` already holds checkpoints and ``resume`` is False.
        DatasetError: the training or validation data cannot be read (checked before any file of the run is
            written, or met during training; the message names the file).
        FloatingPointError: the loss stopped being finite (the run stops before a checkpoint of that step;
            single-process runs; under mixed precision once the weights are no longer finite or after
            ``AMP_NON_FINITE_LIMIT`` such steps in a row).
        ValueError: ``config.select_metrics`` names something that is not a score, or ``resume`` continues a run
            that was started with another configuration (only :data:`training.config.RUN_ONLY_FIELDS` may
            change).
        ContractViolation: a component or loss broke its contract (a ``ValueError``). When that happens in the
            first step of a run that did not resume from a checkpoint, the files and folders the run had created
            in ``run_dir`` (``train_config.json``, ``command.txt``, ``metrics.jsonl``, ``tensorboard/``...) and
            ``run_dir`` itself, if this call created it and it is left empty, are removed again, so a run that
            never trained leaves nothing that looks like a started run; whatever was there before is kept.
    """
    check_metrics(config.select_metrics)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    group = init_from_environment(device)
    checkpoints = list_checkpoints(run_dir)
    if checkpoints and not resume:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
        )
    if not checkpoints and (run_dir / FINAL_MODEL_DIR / WEIGHTS_FILE).is_file():
        raise FileExistsError(
            f"{run_dir} holds a finished run ({FINAL_MODEL_DIR}/) without checkpoints to resume from; a new run "
            "there would replace its model, best model and metrics: choose another --out, or delete the folder"
        )
    if config.init_from is not None and not (resume and checkpoints):  # before run_dir changes: it may lie inside
        check_warm_start_source(config.init_from)  # (a resumed run does not read it again)
    saved_config = run_dir / CONFIG_FILE
    if resume and saved_config.is_file():  # also before the first checkpoint: it continues the run as started
        check_same_config(saved_config, config)
    with torch.random.fork_rng(devices=[]):  # reading the data must not shift the training randomness
        # A bad data spec or file fails here, before the run directory holds files that look like a started run.
        clips = _train_clips(config)
        validation, preview = _val_dataset(config) if group.is_main and config.data.val_videos > 0 else (None, None)
    torch.manual_seed(config.seed)
    run = _build_run(config, registry or default_registry(), device, group)  # a bad component or --train-only fails
    existed = _existing_run_entries(run_dir)  # what a failed first step must not remove
    if group.is_main and not (resume and checkpoints and saved_config.is_file()):  # a new run (or not yet saved)
        run_dir.mkdir(parents=True, exist_ok=True)
        if not checkpoints:  # a best model without checkpoints is a killed earlier run's, maybe of another config
            clear_best(run_dir)
        saved_config.write_text(json.dumps(config.to_json(), indent=2) + "\n")
        command_file = run_dir / COMMAND_FILE
        if command is not None and not (resume and command_file.is_file()):
            command_file.write_text(command + "\n")
    if resume and checkpoints:
        _restore_newest(run, checkpoints, device, group)
    elif config.init_from is not None:
        started_from = warm_start(run.model, config.init_from)
        if group.is_main:
            tqdm.write(started_from.summary())
    if group.is_main:  # where this invocation trains, for the model card (a resume appends its own segment)
        record_environment(run_dir, describe_environment(device, group, run.step))
    try:
        scores = _train(config, run, run_dir, group, device, progress, stop_after, clips, validation, preview)
    except ContractViolation:
        if group.is_main and run.step == 0 and not (resume and checkpoints):  # nothing trained, nothing resumed
            _remove_created(run_dir, existed)
        raise
    finally:
        shutdown(group)
    finished = run.step >= config.steps
    model_dir = run_dir / FINAL_MODEL_DIR if finished else None
    if finished and group.is_main and model_dir is not None:
        run.model.save_pretrained(model_dir)
    best = read_selection(run_dir) if group.is_main else None
    return FitResult(run_dir, run.step, time.perf_counter() - started, scores, model_dir, best)


def _existing_run_entries(run_dir: Path) -> set[str] | None:
    """Which of the entries a starting run writes (:data:`_STARTED_RUN_ENTRIES`) ``run_dir`` already holds;
    ``None`` when the folder does not exist yet."""
    if not run_dir.is_dir():
        return None
    return {name for name in _STARTED_RUN_ENTRIES if (run_dir / name).exists() or (run_dir / name).is_symlink()}


def _remove_created(run_dir: Path, existed: set[str] | None) -> None:
    """Remove the entries of :data:`_STARTED_RUN_ENTRIES` that ``run_dir`` did not hold before (``existed``),
    and ``run_dir`` itself when it did not exist and is left empty; anything else in it is never touched."""
    for name in _STARTED_RUN_ENTRIES:
        path = run_dir / name
        if existed is not None and name in existed:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    if existed is None:
        with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
            run_dir.rmdir()


def _divergence_message(loss: float, step: int, run_dir: Path) -> str:
    """What to say when the loss stops being finite at ``step``: ``--resume`` would replay the same steps (and
    refuses another ``--lr``), so the way on is a lower rate, from scratch or from the newest checkpoint's weights."""
    saved = list_checkpoints(run_dir)
    restart = "start again with a lower --lr (in another --out, or delete this one)"
    if saved:
        restart += (
            f", or continue from the newest checkpoint's weights with --init-from {saved[-1]} and a lower --lr in "
            "another --out"
        )
    return (
        f"the loss is {loss} at step {step}: training diverged, and no checkpoint of it was written. A --resume "
        f"would repeat the same steps; {restart}"
    )


def check_same_config(saved_path: Path, config: TrainConfig) -> None:
    """Refuse to resume a run with a configuration other than the one it was started with (``saved_path``).

    Raises:
        ValueError: the configurations differ; the message lists the differences.
    """
    saved = TrainConfig.from_json(json.loads(saved_path.read_text()))
    changes = changed_fields(saved, config)
    if changes:
        raise ValueError(
            f"{saved_path.parent} was started with another configuration ({saved_path}); --resume continues a run "
            "unchanged. "
            f"Differences (started with -> requested): {'; '.join(changes)}. Resume without those flags, or start "
            f"a new run in another --out (--init-from a model or checkpoint of {saved_path.parent} starts it from "
            "those weights)"
        )


def _build_run(config: TrainConfig, registry: ComponentRegistry, device: str, group: ProcessGroup) -> _Run:
    model = VideoSlotModel(**config.model, registry=registry).to(device)
    model.frame_fit = config.data.recorded_frame_fit  # every save of the run keeps it
    if config.train_only is not None:
        freeze_all_but(model, config.train_only)
    trained: nn.Module = model
    if group.distributed:
        ids = [group.local_rank] if device == "cuda" else None
        # A static graph: DDP records on the first step which parameters the loss reaches (with one-frame clips the
        # transition is unused) instead of searching the autograd graph on every step; the set must not change
        # between steps, which holds for a fixed config (the schedules change loss weights, not which parts run).
        trained = DistributedDataParallel(model, device_ids=ids, static_graph=True)
    losses = [(term.name, term.weight, _loss(registry, term.name, term.kwargs)) for term in config.losses]
    loss_plugins = {term.name: registry.owner("losses", term.name) for term in config.losses}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.optim.lr)
    schedule = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.steps, schedule.warmup_fraction, schedule.final_lr_fraction)
    )
    use_amp = device == "cuda" and config.optim.mixed_precision
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    return _Run(model, trained, losses, optimizer, scheduler, scaler, step=0, loss_plugins=loss_plugins)


def _loss(registry: ComponentRegistry, name: str, kwargs: dict[str, Any]) -> Loss:
    loss = registry.build("losses", name, kwargs)
    assert isinstance(loss, Loss)
    return loss


def _restore_newest(run: _Run, checkpoints: list[Path], device: str, group: ProcessGroup) -> None:
    """Restore the newest of ``checkpoints`` (oldest first) that loads; a damaged one (a file cut short by a crash
    of the machine, say) is reported and the one before it used.

    Raises:
        ValueError: none loads, or the newest intact one was written by another number of processes.
    """
    problems = []
    for checkpoint in reversed(checkpoints):
        try:
            _restore(run, checkpoint, device)
        except _DAMAGED_CHECKPOINT as error:
            if isinstance(error, torch.cuda.OutOfMemoryError):  # the checkpoint is fine; the device is full
                raise
            first_line = (str(error).splitlines() or [""])[0]
            problems.append(f"{checkpoint}: {type(error).__name__}: {first_line}")
            if group.is_main:
                tqdm.write(f"warning: {problems[-1]}: the checkpoint cannot be read; trying the one before")
            continue
        _check_world_size(run, checkpoint, group)
        if problems and group.is_main:
            tqdm.write(f"resumed from {checkpoint} (step {run.step}) instead")
        return
    raise ValueError(f"no checkpoint of the run can be read: {'; '.join(problems)}")


_DAMAGED_CHECKPOINT = (SafetensorError, RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError)
"""What reading a damaged checkpoint raises: safetensors' header errors, torch's zip-archive errors, truncation."""


def _check_world_size(run: _Run, checkpoint: Path, group: ProcessGroup) -> None:
    written_by = run.restored_world_size
    if written_by is not None and written_by != group.world_size:
        raise ValueError(
            f"{checkpoint} was written by {written_by} training process(es), and this resume runs "
            f"{group.world_size}: each process draws its own clips, so the run would not continue as it started. "
            f"Resume with {written_by} process(es) (torchrun --nproc-per-node), or start a new run in another --out"
        )


def _restore(run: _Run, checkpoint: Path, device: str) -> None:
    missing, unexpected = load_model(run.model, str(checkpoint / WEIGHTS_FILE), strict=False, device=device)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {checkpoint} does not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    state = load_trainer_state(checkpoint)
    run.optimizer.load_state_dict(state.optimizer)
    run.scheduler.load_state_dict(state.scheduler)
    if run.scaler is not None and state.scaler is not None:
        run.scaler.load_state_dict(state.scaler)
    restore_rng(state.rng)
    run.step = state.step
    run.elapsed_before_s = state.elapsed_s
    run.restored_world_size = state.world_size


def _train_clips(config: TrainConfig) -> Dataset[VideoClip]:
    data = config.data
    size = _image_size(config)
    return build_dataset(data.spec, "train", data.clip_length, size, config.seed, center_crop=data.center_crop)


def _train_loader(
    config: TrainConfig, run: _Run, group: ProcessGroup, clips: Dataset[VideoClip]
) -> DataLoader[VideoClip]:
    data = config.data
    dataset = SeededItems(augmented(clips, data.augment))
    sampler = StepBatchSampler(dataset, data.batch_size, config.seed, run.step, config.steps, group.rank)
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=sampler,  # type: ignore[arg-type]
        collate_fn=collate_frames,
        num_workers=data.num_workers,
        persistent_workers=False,
    )


def _val_dataset(config: TrainConfig) -> tuple[Dataset[VideoClip] | None, Dataset[VideoClip] | None]:
    """The evaluation videos and the videos whose sample pictures the evaluations draw.

    The first are the first ``val_videos`` labelled videos of the validation data, each loaded once here so that a
    bad file fails the run at its start, not at its first evaluation; the second the same videos. When the
    training data (no ``--val-data`` given) has no labelled video, there is nothing to evaluate on (None, with a
    note), and the samples show its first video.

    Raises:
        DatasetError: ``--val-data`` has no labelled video, or a video cannot be loaded (the message names the
            file).
    """
    data = config.data
    spec = data.val_spec or data.spec
    size = _image_size(config)
    dataset = build_dataset(spec, "val", data.val_frames, size, config.seed, center_crop=data.center_crop)
    labelled = labelled_indices(dataset)
    validation = Subset(dataset, labelled[: data.val_videos])
    for index in range(len(validation)):
        if validation[index].masks is None:
            raise DatasetError(
                f"{spec}: {validation[index].name} has no masks, so the run cannot be evaluated on it; pass "
                "--val-data with labelled videos"
            )
    unlabelled = len(dataset) - len(labelled)  # type: ignore[arg-type]
    if labelled and unlabelled:  # a folder labelled in part: say so, as training.evaluate does
        tqdm.write(f"{unlabelled_note(unlabelled, spec)} of the evaluations during training")
    if not len(validation):
        if data.val_spec is None:  # unlabelled training videos (a camera's recordings): train without evaluating
            tqdm.write(
                f"note: no video of {spec} has masks, so this run is not evaluated: no best/ (model/ is the result), "
                "and samples/ show its first video; pass --val-data with labelled videos to evaluate, or "
                "--val-videos 0 to silence this note"
            )
            return None, Subset(dataset, [0])
        raise DatasetError(f"{spec}: no video has masks to evaluate on; pass --val-data with labelled videos")
    return validation, validation  # type: ignore[return-value]


#: Under mixed precision, steps in a row with a non-finite loss after which a run counts as diverged (the
#: gradient scaler skips such steps, so the weights may stay finite while nothing is learned).
AMP_NON_FINITE_LIMIT = 10


def _diverged(run: _Run, group: ProcessGroup) -> bool:
    """After a step with a non-finite loss: whether to stop the run. Under mixed precision the gradient scaler
    skips such a step and lowers its scale, so only weights that are no longer finite, or
    :data:`AMP_NON_FINITE_LIMIT` such steps in a row, mean divergence; under ``torchrun`` the ranks would have to
    agree to stop together, so a rank never stops alone."""
    if group.distributed:
        return False
    if run.scaler is None or run.non_finite_losses >= AMP_NON_FINITE_LIMIT:
        return True
    return not all(bool(torch.isfinite(parameter).all()) for parameter in run.model.parameters())


def _reported(batches: Iterator[VideoClip]) -> Iterator[VideoClip]:
    """``batches``, with a data error raised in a worker process cut back to its own message (the DataLoader
    prefixes the worker's whole traceback)."""
    try:
        yield from batches
    except DatasetError as error:
        text = str(error)
        marker = f"{type(error).__name__}: "
        if "Original Traceback" in text and marker in text:
            raise DatasetError(text.rsplit(marker, 1)[1].strip()) from None
        raise


def _image_size(config: TrainConfig) -> tuple[int, int]:
    size = config.model.get("image_size", (64, 64))
    return int(size[0]), int(size[1])


def _train(
    config: TrainConfig,
    run: _Run,
    run_dir: Path,
    group: ProcessGroup,
    device: str,
    progress: bool,
    stop_after: int | None,
    clips: Dataset[VideoClip],
    validation: Dataset[VideoClip] | None,
    preview: Dataset[VideoClip] | None,
) -> DiscoveryScores | None:
    last_step = min(config.steps, stop_after) if stop_after is not None else config.steps
    sinks = MetricSinks(run_dir, start_step=run.step) if group.is_main else None
    scores: DiscoveryScores | None = None
    bar = tqdm(total=config.steps, initial=run.step, desc=config.name, disable=not (progress and group.is_main))
    run.trained.train()
    run.started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # creating the iterator draws a worker seed: keep it off the run's RNG
        batches = iter(_train_loader(config, run, group, clips))
    try:
        if config.init_from is not None and run.step == 0:  # the starting weights compete for best/ too
            scores = _maybe_evaluate(config, run, sinks, validation, preview, device, due=True)
        throughput = _Throughput(config.data.batch_size * group.world_size)
        for batch in _reported(batches):
            if run.step >= last_step:
                break
            terms = _optimisation_step(config, run, batch.frames.to(device), device)
            run.non_finite_losses = 0 if math.isfinite(terms["loss"]) else run.non_finite_losses + 1
            if run.non_finite_losses and _diverged(run, group):
                raise FloatingPointError(_divergence_message(terms["loss"], run.step + 1, run_dir))
            run.step += 1
            throughput.steps += 1
            bar.update(1)
            if run.step % config.log_every == 0 or run.step == last_step:  # on every process: a collective
                logged = mean_across_processes(group, terms, device)  # each process trained on its own clips
                clips_per_s = throughput.clips_per_s()
                bar.set_postfix(
                    loss=f"{logged['loss']:.4f}", sim=f"{logged['slot_similarity']:.2f}", clips_s=f"{clips_per_s:.1f}"
                )
                if sinks:
                    values = {**logged, "clips_per_s": clips_per_s, "elapsed_s": run.elapsed_s()}
                    sinks.write(run.step, "train", values)
            paused = time.perf_counter()
            scores = _maybe_evaluate(config, run, sinks, validation, preview, device) or scores
            _maybe_checkpoint(config, run, run_dir, group, last_step)
            throughput.paused_s += time.perf_counter() - paused
    finally:
        bar.close()
        if sinks:
            sinks.close()
    return scores


class _Throughput:
    """Training clips per second over the steps since the last training line, all processes together, leaving
    out the time evaluations and checkpoints took in between (:attr:`paused_s`).

    Args:
        clips_per_step: clips one step trains on, all processes together (batch size x processes).
    """

    def __init__(self, clips_per_step: int) -> None:
        self.clips_per_step = clips_per_step
        self.steps = 0
        self.paused_s = 0.0
        self.since = time.perf_counter()

    def clips_per_s(self) -> float:
        """The rate over the steps counted since the last call (or since construction), then start again."""
        now = time.perf_counter()
        seconds = max(now - self.since - self.paused_s, 1e-9)
        rate = self.clips_per_step * self.steps / seconds
        self.steps, self.paused_s, self.since = 0, 0.0, now
        return rate


def _optimisation_step(config: TrainConfig, run: _Run, frames: torch.Tensor, device: str) -> dict[str, float]:
    run.model.set_training_progress(run.step / max(config.steps, 1))
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=run.scaler is not None):
        output = run.trained(frames)
        values = {name: loss(output, run.step / max(config.steps, 1)) for name, _, loss in run.losses}
        for name, _, loss in run.losses:
            _check_loss_value(run, name, loss, values[name])
        total = sum((weight * values[name] for name, weight, _ in run.losses), torch.zeros((), device=device))
    run.optimizer.zero_grad(set_to_none=True)
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler moves on below)
    if run.scaler is not None:
        run.scaler.scale(total).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        total.backward()
    grad_norm = clip_gradients(run.model, config.optim.grad_clip, config.optim.grad_clip_scope)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    with warnings.catch_warnings():
        # The gradient scaler skips the optimizer step while it lowers its scale after inf/NaN gradients (the
        # first steps of a run); the schedule still follows the step count, so --resume and the logged lr agree.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        run.scheduler.step()
    return {
        "loss": total.item(),
        "lr": float(lr),
        "grad_norm": grad_norm.item(),
        **{k: v.item() for k, v in values.items()},
        "slot_similarity": slot_similarity(output.steps[0].slots).item(),
    }


def _check_loss_value(run: _Run, name: str, loss: Loss, value: object) -> None:
    """Raise :class:`ContractViolation` unless ``value``, what the loss ``name`` returned, is a 0-dim tensor (its
    contract: a scalar; finite or not, which the divergence check judges), naming the loss, its class, its plugin
    and what it returned, instead of an autograd error about implicit gradients that names none of them."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return
    cls = type(loss)
    returned = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
    raise ContractViolation(
        f"the loss {name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin "
        f"{run.loss_plugins.get(name, '?')!r}) returned {returned}; a loss must return a scalar tensor (shape ()), "
        "for example its mean over the batch"
    )


def _maybe_evaluate(
    config: TrainConfig,
    run: _Run,
    sinks: MetricSinks | None,
    validation: Dataset[VideoClip] | None,
    preview: Dataset[VideoClip] | None,
    device: str,
    due: bool = False,
) -> DiscoveryScores | None:
    """When an evaluation is ``due`` (or the schedule says so): evaluate on ``validation`` (when there is any) and
    update ``best/``, and draw the sample picture of ``preview``'s first video (:func:`_val_dataset` gives a
    preview whenever it gives validation videos)."""
    due = due or bool(config.eval_every and run.step % config.eval_every == 0) or run.step == config.steps
    if sinks is None or preview is None or not due:
        return None
    with torch.random.fork_rng(devices=[]):  # evaluation must not shift the training randomness
        scores = evaluate(run.model, validation, device=device) if validation is not None else None
        _save_sample(run, preview, sinks.run_dir / SAMPLES_DIR / f"step-{run.step:08d}.png", device)
    if scores is None:
        return None
    sinks.write(run.step, "eval", scores.to_dict(), settings=evaluation_settings(config))
    best = update_best(sinks.run_dir, run.model, run.step, scores, tuple(config.select_metrics))
    tqdm.write(
        f"step {run.step}: video FG-ARI {scores.video_fg_ari:.3f}  mBO {scores.video_mbo:.3f}  "
        f"mIoU {scores.video_miou:.3f}  ARI {scores.video_ari:.3f}" + ("  (new best)" if best else "")
    )
    return scores


def evaluation_settings(config: TrainConfig) -> dict[str, Any]:
    """How the evaluations during training score, recorded on their ``metrics.jsonl`` lines: ``val_frames``
    (frames per video, None for whole videos) and ``frame_fit``, how real frames are fitted to the model's input
    (None for ``synthetic:`` validation data, generated at that size)."""
    data = config.data
    synthetic = (data.val_spec or data.spec).partition(":")[0] == "synthetic"
    return {"val_frames": data.val_frames, "frame_fit": None if synthetic else data.frame_fit}


@torch.inference_mode()
def _save_sample(run: _Run, dataset: Dataset[VideoClip], path: Path, device: str) -> None:
    """Frames, reconstruction and slot masks of the dataset's first video (up to 8 frames) as a PNG."""
    frames = dataset[0].frames[:8].unsqueeze(0).to(device)  # [T, 3, H, W] -> [1, T, 3, H, W]
    run.model.eval()
    try:
        save_overlay(frames, run.model(frames), path)
    finally:
        run.model.train()


def _maybe_checkpoint(config: TrainConfig, run: _Run, run_dir: Path, group: ProcessGroup, last_step: int) -> None:
    if run.step % config.checkpoint_every != 0 and run.step != last_step:
        return
    if group.is_main:
        state = TrainerState(
            step=run.step,
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            rng=capture_rng(),
            scaler=run.scaler.state_dict() if run.scaler is not None else None,
            elapsed_s=run.elapsed_s(),
            world_size=group.world_size,
        )
        save_checkpoint(run_dir, run.model, state, config.keep_checkpoints)
    barrier(group)
