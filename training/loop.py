"""The training loop: ``fit(config, run_dir)``.

One step: tell the model how far training is (for component schedules), run the clip through the recurrent
model, sum the weighted losses, back-propagate, clip the gradient norm, step Adam and the schedule.
Evaluation, metric lines and checkpoints happen on the main process at their configured intervals.

The parts it is built from: the live objects of a run (:mod:`training.run_state`), the run folder, ``--resume`` and
the checkpoints of the run (:mod:`training.run_folder`), its training and validation data
(:mod:`training.run_data`) and the record of their files (:mod:`training.data_files`), and the optimisation step
with its checks and throughput (:mod:`training.step`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from plugins import ComponentRegistry, default_registry
from plugins.interfaces import ContractViolation
from plugins.model_files import WEIGHTS_FILE
from plugins.registry import RegistryError
from training.best import (
    BEST_MODEL_DIR,
    LOSS_SELECTION_REASON,
    Selection,
    check_metrics,
    clear_best,
    read_selection,
    run_selection_metrics,
    update_best,
    update_best_by_loss,
)
from training.checkpoint import NonFiniteWeights, cannot_write, checkpoint_step, list_checkpoints, save_model_files
from training.config import TrainConfig
from training.data_errors import reported
from training.data_files import read_data_files, record_data_files
from training.datasets import VideoClip
from training.distributed import (
    ProcessGroup,
    fail_together,
    init_from_environment,
    mean_across_processes,
    shutdown,
)
from training.environment import describe_environment, record_environment
from training.evaluation import evaluate
from training.logging_sinks import MetricSinks
from training.loss_evaluation import LOSS_METRIC, held_out_losses
from training.metrics import DiscoveryScores
from training.run_data import SAMPLE_FRAMES, ValidationData, start_batches, train_clips, validation_data
from training.run_folder import (
    COMMAND_FILE,
    FINAL_MODEL_DIR,
    SAMPLES_DIR,
    TRAIN_CONFIG_FILE,
    check_foreign_folder,
    check_same_config,
    clear_samples,
    existing_run_entries,
    maybe_checkpoint,
    record_moved_data,
    remove_created,
    restore_newest,
    resume_plugin_hint,
    write_train_config,
)
from training.run_lock import RunFolderLock
from training.run_state import Run, build_run, check_clip_length, check_components_installed
from training.step import NonFinite, Throughput, diverged, divergence_message, non_finite, optimisation_step
from training.stop_request import STOPPING, RunStopped, StopRequest
from training.visualize import save_overlay
from training.warm_start import WarmStart, check_warm_start_source, warm_start


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
        started_step: the step this invocation started training at (the restored checkpoint's; 0 for a new run).
    """

    run_dir: Path
    step: int
    wall_time_s: float
    scores: DiscoveryScores | None
    model_dir: Path | None
    best: Selection | None
    started_step: int = 0

    @property
    def best_model_dir(self) -> Path | None:
        """The best model's ``save_pretrained`` directory, when an evaluation chose one."""
        return self.run_dir / BEST_MODEL_DIR if self.best is not None else None


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

    The weights and the model's noise are drawn from ``config.seed``; under ``torchrun`` every process starts
    from the main process's weights, and process ``r > 0`` draws its noise from ``config.seed + r``.

    Before the first step the main process records where this invocation trains in ``environment.json``
    (:mod:`training.environment`; a resume appends its own part), which model cards report, and, in a run that
    starts from step 0 (or resumes without that record, deleted to accept changed data files), its local data files in
    ``data_files.json`` (:func:`~training.data_files.record_data_files`), which a resume compares its data folders
    with.

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

    The main process holds ``run_dir``'s lock (:class:`training.run_lock.RunFolderLock`) while it trains there.

    Raises:
        FileExistsError: ``run_dir`` already holds checkpoints and ``resume`` is False, or holds other files and no
            run (:func:`training.run_folder.check_foreign_folder`).
        RunFolderInUse: another process trains in ``run_dir`` (a ``FileExistsError``); nothing of the run was read
            or written.
        FileNotFoundError: ``resume`` of a ``run_dir`` that holds checkpoints without the ``train_config.json``
            they were trained with.
        DatasetError: the training or validation data cannot be read (checked before any file of the run is
            written, or met during training; the message names the file).
        FloatingPointError: the loss or the gradient norm stopped being finite (the run stops before a checkpoint
            of that step; single-process runs; under mixed precision, where the gradient scaler skips steps with
            non-finite gradients, once the weights are no longer finite or after
            :data:`training.step.AMP_NON_FINITE_LIMIT` steps in a row with a non-finite loss), or the weights of a
            step due for a checkpoint are not finite (none is written; under ``torchrun`` every process raises it).
        OSError: a checkpoint, ``best/`` or the final ``model/`` cannot be written (a full disk; the message names
            the folder, and no partial one is left).
        ValueError: ``run_dir``'s path is not valid UTF-8, ``config.select_metrics`` names something that is not
            a score, or ``resume`` continues a run that was started with another configuration (only
            :data:`training.config.RUN_ONLY_FIELDS` may change), or under other plugin code than its checkpoint
            records (another version of a component's or a loss's plugin, or a loss built with other arguments:
            :func:`training.run_folder.restore_newest`).
        RegistryError: a component or loss is not registered (resuming, the message names the plugins the
            checkpoint records, with the ``pip install`` command), or, trained with the default registry, a model
            component is registered directly rather than by an installed plugin
            (:func:`training.run_state.check_components_installed`); before any file of the run is written.
        ContractViolation: a component or loss broke its contract (a ``ValueError``). When that happens in the
            first step of a run that did not resume from a checkpoint, the files and folders the run had created
            in ``run_dir`` (``train_config.json``, ``command.txt``, ``metrics.jsonl``, ``tensorboard/``...) and
            ``run_dir`` itself, if this call created it and it is left empty, are removed again, so a run that
            never trained leaves nothing that looks like a started run; whatever was there before is kept.
    """
    try:
        str(run_dir).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{run_dir!r}: the run folder's path is not valid UTF-8 (a name in another encoding), and TensorBoard's "
            "event files need one that is: choose or rename a folder"
        ) from None
    with RunFolderLock(Path(run_dir)) as folder:
        return _fit(config, Path(run_dir), folder, resume, device, progress, stop_after, registry, command)


def _fit(
    config: TrainConfig,
    run_dir: Path,
    folder: RunFolderLock,
    resume: bool,
    device: str,
    progress: bool,
    stop_after: int | None,
    registry: ComponentRegistry | None,
    command: str | None,
) -> FitResult:
    """:func:`fit`, the main process holding ``folder``'s lock from the first look at ``run_dir`` (once it exists)."""
    check_metrics(config.select_metrics)
    started = time.perf_counter()
    group = init_from_environment(device)
    try:  # a process that stops here leaves the process group (left alive, it aborts the process at exit)
        # Under torchrun a process that cannot start stops every process, and the lowest such rank says why; each
        # block ends before a collective operation.
        with fail_together(group):
            checkpoints = _check_run_folder(config, run_dir, folder, group, resume)
            if not (resume and checkpoints):  # a refusal of the configuration before the data's notes
                check_clip_length(config, registry or default_registry())
            with torch.random.fork_rng(devices=[]):  # reading the data must not shift the training randomness
                # A bad data spec or file fails here, before the run directory holds files that look like a started
                # run.
                clips = train_clips(config)
                evaluated = validation_data(config) if group.is_main and config.data.val_videos > 0 else None
            selection = _selection_rule(config, evaluated)
        with fail_together(group):  # a block of its own: DistributedDataParallel starts with a collective operation
            torch.manual_seed(config.seed)
            restoring = bool(resume and checkpoints)
            components = registry or default_registry()
            try:
                run = build_run(config, components, device, group, restoring=restoring)  # a bad component or
            except RegistryError as error:  # --train-only fails; a resumed run's checkpoint names its plugins
                if not restoring:
                    raise
                # the run's configuration names the components: the file to read beside the plugins to install
                # what to install, for a name nothing registers (a plain RegistryError); not for a component that
                # cannot be built, or a name two installed plugins claim
                hint = resume_plugin_hint(checkpoints) if type(error) is RegistryError else ""
                raise type(error)(f"{run_dir / TRAIN_CONFIG_FILE}: {error} {hint}".rstrip()) from error
            if components is default_registry():  # what the tools that load its models build again in their process
                check_components_installed(run.model)
            if group.rank > 0:  # its own model noise; the weights are rank 0's (DistributedDataParallel sends them)
                torch.manual_seed(config.seed + group.rank)
            # The warm start is read before the run folder changes below: it may be a killed earlier attempt's best/.
            started_from = (
                warm_start(run.model, config.init_from) if config.init_from is not None and not restoring else None
            )
        # The block's end is a barrier too: every process has read the warm start before the main one may clear
        # the run folder's best/.
        existed = existing_run_entries(run_dir)  # what a failed first step must not remove
        with fail_together(group):
            _start_run_folder(config, run, run_dir, folder, group, checkpoints, device, resume, started_from, command)
            started_step = run.step
            if group.is_main:  # where this invocation trains, for the model card (a resume appends a segment)
                record_environment(run_dir, describe_environment(device, group, started_step))
    except BaseException:
        shutdown(group)
        raise
    # Signals are taken over before the data workers start, until the final model is written: a first Ctrl-C or
    # SIGTERM from here on stops at a step boundary (or lets a run that has trained every step finish).
    announcement = functools.partial(_stop_announcement, config, run)
    with StopRequest(enabled=group.world_size == 1, doing=announcement) as stop:  # one step for every process
        try:
            scores = _train(
                config, run, run_dir, group, device, progress, stop_after, clips, evaluated, selection, stop
            )
        except ContractViolation:
            if group.is_main and run.step == 0 and not (resume and checkpoints):  # nothing trained, nothing resumed
                remove_created(run_dir, existed)
            raise
        finally:
            shutdown(group)
        finished = run.step >= config.steps
        model_dir = run_dir / FINAL_MODEL_DIR if finished else None
        if finished and group.is_main and model_dir is not None:
            save_model_files(run.model, model_dir, "the final model")
    best = read_selection(run_dir) if group.is_main else None
    return FitResult(run_dir, run.step, time.perf_counter() - started, scores, model_dir, best, started_step)


def _check_run_folder(
    config: TrainConfig, run_dir: Path, folder: RunFolderLock, group: ProcessGroup, resume: bool
) -> list[Path]:
    """``run_dir``'s complete checkpoints (oldest first), once the folder is known to take this run.

    Raises the refusals :func:`fit` lists for the folder (checkpoints without ``resume``, a finished run, another
    program's files, a resume without the saved configuration or with another one) before any file of the run is
    read as data or written. The main process takes ``folder``'s lock first when ``run_dir`` exists.
    """
    if group.is_main:  # before anything of the run is read: another process may be writing it
        folder.take_if_present()
    checkpoints = list_checkpoints(run_dir)
    if checkpoints and not resume:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
        )
    if not checkpoints:
        check_foreign_folder(run_dir)
        if (run_dir / FINAL_MODEL_DIR / WEIGHTS_FILE).is_file():
            raise FileExistsError(
                f"{run_dir} holds a finished run ({FINAL_MODEL_DIR}/) without checkpoints to resume from; a "
                "new run there would replace its model, best model and metrics: choose another --out, or "
                "delete the folder"
            )
    if config.init_from is not None and not (resume and checkpoints):  # before run_dir changes (it may lie
        check_warm_start_source(config.init_from)  # inside); a resumed run does not read it again
    saved_config = run_dir / TRAIN_CONFIG_FILE
    if resume and saved_config.is_file():  # also before the first checkpoint: it continues the run as started
        moved = check_same_config(saved_config, config)
        if moved and group.is_main:  # the same files in another folder: the run names it from now on
            tqdm.write(record_moved_data(run_dir, config, moved))
    elif resume and checkpoints:  # nothing to hold the flags to: they could change what the run computes
        raise FileNotFoundError(
            f"{run_dir} holds checkpoints but not {TRAIN_CONFIG_FILE}, the configuration they were trained "
            "with, which a resume continues from: put it back (from the folder the run was copied from), "
            "or start a new run with another --out"
        )
    return checkpoints


def _start_run_folder(
    config: TrainConfig,
    run: Run,
    run_dir: Path,
    folder: RunFolderLock,
    group: ProcessGroup,
    checkpoints: list[Path],
    device: str,
    resume: bool,
    started_from: WarmStart | None,
    command: str | None,
) -> None:
    """Write a new run's files (configuration, command line, data record), or restore a resumed run's state.

    The main process of a new run (or of a resume whose configuration was never saved) makes ``run_dir``, takes
    ``folder``'s lock and, without checkpoints, clears the ``best/`` and ``samples/`` a killed run left; a resumed
    run loads its newest checkpoint into ``run`` on every process. The data record is written from step 0, or again
    when a resume finds it deleted.
    """
    saved_config = run_dir / TRAIN_CONFIG_FILE
    restoring = bool(resume and checkpoints)
    if group.is_main and not (resume and checkpoints and saved_config.is_file()):  # new (or not yet saved)
        run_dir.mkdir(parents=True, exist_ok=True)
        folder.take()  # a new run's folder: a run started at the same time may have made it first
        # best/ and samples/ without checkpoints: a killed earlier run's, maybe of another config
        if not checkpoints:
            clear_best(run_dir)
            clear_samples(run_dir)
        write_train_config(saved_config, config)
        command_file = run_dir / COMMAND_FILE
        if command is not None and not (resume and command_file.is_file()):
            command_file.write_text(command + "\n", encoding="utf-8", errors="surrogateescape")  # any path
    if restoring:
        if group.is_main:
            read_selection(run_dir)  # a damaged best/ record is refused now, not at the first evaluation
        restore_newest(run, checkpoints, device, group)
    elif group.is_main and started_from is not None:
        tqdm.write(started_from.summary())
    if group.is_main and not (restoring and read_data_files(run_dir) is not None):
        record_data_files(run_dir, config)  # from step 0, or its record deleted: what a resume compares with


def _train(
    config: TrainConfig,
    run: Run,
    run_dir: Path,
    group: ProcessGroup,
    device: str,
    progress: bool,
    stop_after: int | None,
    clips: Dataset[VideoClip],
    evaluated: ValidationData | None,
    selection: _SelectionRule,
    stop: StopRequest,
) -> DiscoveryScores | None:
    """Train ``run`` from its step to ``config.steps`` (or ``stop_after``), evaluating and checkpointing as
    configured; a signal ``stop`` records stops the run at a step boundary (:func:`_stop`) unless every step is
    trained by then.

    Raises:
        RunStopped: ``stop`` recorded a signal before the last step was trained.
        FloatingPointError: the run diverged (:func:`_train_step`), or the weights of a step due for a checkpoint
            are not finite (no checkpoint of them is written, also when an evaluation failed on them).
    """
    last_step = min(config.steps, stop_after) if stop_after is not None else config.steps
    sinks = MetricSinks(run_dir, start_step=run.step) if group.is_main else None
    scores: DiscoveryScores | None = None
    bar = tqdm(total=config.steps, initial=run.step, desc=config.name, disable=not (progress and group.is_main))
    run.trained.train()
    run.started = time.perf_counter()
    try:
        batches = start_batches(config, run, group, clips)
        warm_started = config.init_from is not None and run.step == 0
        if warm_started and stop.signal_number is None:  # the starting weights compete for best/ too
            with fail_together(group):
                scores = _maybe_evaluate(config, run, sinks, evaluated, selection, device, due=True)
        throughput = Throughput(config.data.batch_size * group.world_size)
        for batch in reported(batches):
            if run.step >= last_step:
                break
            if stop.signal_number is None:  # else it came while this batch was awaited: stop before it
                _train_step(config, run, run_dir, group, device, batch.frames, last_step, throughput, bar, sinks)
                paused = time.perf_counter()
                try:  # the main process evaluates; the others wait for it to agree on how it ended
                    with fail_together(group) if _evaluation_due(config, run) else contextlib.nullcontext():
                        scores = _maybe_evaluate(config, run, sinks, evaluated, selection, device) or scores
                except Exception:  # the step itself trained: keep its checkpoint before the error stops the run
                    maybe_checkpoint(config, run, run_dir, group, last_step)
                    raise
                maybe_checkpoint(config, run, run_dir, group, last_step)
                throughput.paused_s += time.perf_counter() - paused
            if stop.signal_number is not None and run.step < last_step:  # a checkpoint of this step, then stop
                _stop(config, run, run_dir, group, last_step, stop.signal_number)
    except NonFiniteWeights as error:  # weights that overflowed from finite gradients, or a torchrun rank's
        problem = NonFinite("the weights are not finite", "found when checkpointing them")
        message = divergence_message(problem, run.step, run_dir, parameters=_parameter_names(run))
        raise FloatingPointError(message) from error
    finally:
        bar.close()
        if sinks:
            sinks.close()
    return scores


_FINISHING = "every step is trained: finishing the run with its final model ({again} again stops at once, without it)"


def _stop_announcement(config: TrainConfig, run: Run) -> str:
    """What a first signal does, as :class:`training.stop_request.StopRequest` announces it: stop after the step
    with a checkpoint of it, or, once every step is trained, finish the run."""
    return _FINISHING if run.step >= config.steps else STOPPING


def _stop(
    config: TrainConfig, run: Run, run_dir: Path, group: ProcessGroup, last_step: int, signal_number: int
) -> NoReturn:
    """Stop the run at ``run.step`` on ``signal_number`` (:class:`training.stop_request.StopRequest`), with a
    checkpoint of that step unless one was written already or nothing has been trained yet.

    Raises:
        RunStopped: always.
    """
    saved = list_checkpoints(run_dir)
    if run.step > 0 and not (saved and checkpoint_step(saved[-1]) == run.step):
        maybe_checkpoint(config, run, run_dir, group, last_step, force=True)
    raise RunStopped(signal_number, run.step)


def _train_step(
    config: TrainConfig,
    run: Run,
    run_dir: Path,
    group: ProcessGroup,
    device: str,
    frames: torch.Tensor,
    last_step: int,
    throughput: Throughput,
    bar: tqdm[Any],
    sinks: MetricSinks | None,
) -> None:
    """One optimisation step on ``frames`` ([B, T, 3, H, W]), counted in ``run.step``, the progress bar and the
    throughput, and its losses written to the metric files every ``config.log_every`` steps and at ``last_step``.

    Raises:
        FloatingPointError: the loss or the gradient norm is not finite, and the run counts as diverged
            (:func:`training.step.diverged`).
    """
    terms = optimisation_step(config, run, frames.to(device), device)
    run.non_finite_losses = 0 if math.isfinite(terms["loss"]) else run.non_finite_losses + 1
    problem = non_finite(terms, run.losses)  # the loss, or a gradient that clipping would spread to every weight
    if problem is not None and diverged(run, group):  # before the step counts, so before any checkpoint of it
        # Steps before this run of non-finite losses (the gradient scaler skipped those in it): none, and the loss
        # and gradients were those of the starting weights.
        updated = run.step - max(0, run.non_finite_losses - 1) > 0
        raise FloatingPointError(
            divergence_message(problem, run.step + 1, run_dir, updated=updated, parameters=_parameter_names(run))
        )
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


def _parameter_names(run: Run) -> set[str]:
    """The names of the model's parameters in its saved weights (its ``state_dict`` keys that are parameters)."""
    return {name for name, _ in run.model.named_parameters()}


@dataclass(frozen=True)
class _SelectionRule:
    """The metrics that choose the run's best model and why they differ from the configured ones (None when they
    do not): :func:`training.best.run_selection_metrics`."""

    metrics: tuple[str, ...]
    reason: str | None


def _selection_rule(config: TrainConfig, evaluated: ValidationData | None) -> _SelectionRule:
    """How this run selects its best model, from the objects of its evaluation videos (read at its start); a run
    that selects otherwise than configured says so in one line. Evaluation videos without masks select by the
    lowest held-out loss (:func:`training.run_data.validation_data` has said so already)."""
    if evaluated is None or evaluated.videos is None:
        return _SelectionRule(tuple(config.select_metrics), None)
    if evaluated.by_loss:
        return _SelectionRule((LOSS_METRIC,), LOSS_SELECTION_REASON)
    metrics, reason = run_selection_metrics(config.select_metrics, evaluated.most_objects)
    if reason is not None:
        tqdm.write(f"note: {reason}")
    return _SelectionRule(metrics, reason)


def _maybe_evaluate(
    config: TrainConfig,
    run: Run,
    sinks: MetricSinks | None,
    evaluated: ValidationData | None,
    selection: _SelectionRule,
    device: str,
    due: bool = False,
) -> DiscoveryScores | None:
    """When an evaluation is ``due`` (or the schedule says so): evaluate on the evaluation videos (when there are
    any) and update ``best/`` by ``selection``, then draw the sample picture of the preview's first video
    (:func:`training.run_data.validation_data` gives a preview whenever it gives evaluation videos). Videos
    without masks (``evaluated.by_loss``) are evaluated by the run's held-out losses instead
    (:func:`_evaluate_losses`), which return no scores."""
    due = due or _evaluation_due(config, run)
    if sinks is None or evaluated is None or evaluated.preview is None or not due:
        return None
    scores: DiscoveryScores | None = None
    best: Selection | None = None
    with torch.random.fork_rng(devices=[]):  # evaluation must not shift the training randomness
        if evaluated.videos is not None and evaluated.by_loss:  # recorded before the sample, as scores are
            _evaluate_losses(config, run, sinks, evaluated.videos, selection, device)
        elif evaluated.videos is not None:  # scored and recorded before the sample: a failing picture loses neither
            trained_s = run.elapsed_s()  # the seconds of training to these weights, for their model card
            scores = evaluate(run.model, evaluated.videos, device=device)
            sinks.write(run.step, "eval", scores.to_dict(), settings=evaluation_settings(config))
            best = update_best(
                sinks.run_dir, run.model, run.step, scores, selection.metrics, selection.reason, elapsed_s=trained_s
            )
        _save_sample(run, evaluated.preview, sinks.run_dir / SAMPLES_DIR / f"step-{run.step:08d}.png", device)
    if scores is None:
        return None
    tqdm.write(
        f"step {run.step}: video FG-ARI {scores.video_fg_ari:.3f}  mBO {scores.video_mbo:.3f}  "
        f"mIoU {scores.video_miou:.3f}  ARI {scores.video_ari:.3f}" + ("  (new best)" if best else "")
    )
    return scores


def _evaluate_losses(
    config: TrainConfig,
    run: Run,
    sinks: MetricSinks,
    videos: Dataset[VideoClip],
    selection: _SelectionRule,
    device: str,
) -> None:
    """Evaluate ``run`` on ``videos`` without masks by its held-out losses (:mod:`training.loss_evaluation`: the
    run's own losses and weights, the model in eval mode, the generators seeded with the run's seed), record them
    as an ``eval`` line (``val_loss``, ``val_<term>``, with the settings scored evaluations record) and keep the
    model in ``best/`` when its ``val_loss`` is the lowest so far."""
    trained_s = run.elapsed_s()  # the seconds of training to these weights, for their model card
    losses = held_out_losses(run.model, run.losses, videos, seed=config.seed, device=device)
    sinks.write(run.step, "eval", losses.to_dict(), settings=evaluation_settings(config))
    best = update_best_by_loss(sinks.run_dir, run.model, run.step, losses, selection.reason, elapsed_s=trained_s)
    left_out = "".join(f"; {name} left out ({error})" for name, error in losses.skipped.items())
    tqdm.write(f"step {run.step}: {LOSS_METRIC} {losses.total:.5g}" + ("  (new best)" if best else "") + left_out)


def _evaluation_due(config: TrainConfig, run: Run) -> bool:
    """Whether the schedule evaluates after ``run.step`` (every ``eval_every`` steps, and after the last), on the
    main process: every process knows it."""
    return bool(config.eval_every and run.step % config.eval_every == 0) or run.step == config.steps


def evaluation_settings(config: TrainConfig) -> dict[str, Any]:
    """How the evaluations during training score, recorded on their ``metrics.jsonl`` lines: ``val_frames``
    (frames per video, None for whole videos) and ``frame_fit``, how real frames are fitted to the model's input
    (None for ``synthetic:`` validation data, generated at that size)."""
    data = config.data
    synthetic = (data.val_spec or data.spec).partition(":")[0] == "synthetic"
    return {"val_frames": data.val_frames, "frame_fit": None if synthetic else data.frame_fit}


@torch.inference_mode()
def _save_sample(run: Run, dataset: Dataset[VideoClip], path: Path, device: str) -> None:
    """Frames, ground truth (where the video has masks), reconstruction and slot masks of the dataset's first video
    (up to :data:`~training.run_data.SAMPLE_FRAMES` frames) as a PNG.

    Raises:
        OSError: the picture cannot be written (:func:`~training.checkpoint.cannot_write`, naming the folder).
    """
    shown = dataset[0]
    frames = shown.frames[:SAMPLE_FRAMES].unsqueeze(0).to(device)  # [T, 3, H, W] -> [1, T, 3, H, W]
    truth = shown.masks[:SAMPLE_FRAMES] if shown.masks is not None else None  # [T, H, W]
    run.model.eval()
    try:
        output = run.model(frames)
    finally:
        run.model.train()
    try:
        save_overlay(frames, output, path, target_kind=run.model.decoder.target_kind, truth=truth)
    except OSError as error:
        raise cannot_write(f"the sample picture {path.name}", path.parent, error) from error
