"""A run's folder and ``--resume``: the names of what a starting run writes there (and the removal of what a
first step that broke a contract leaves), the check that a resume keeps the configuration and the data files the
run started with, the periodic checkpoints of the live run, and restoring the newest one that loads. The checkpoint
format itself is :mod:`training.checkpoint`'s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model
from tqdm import tqdm

from plugins.builtin import DEFAULT_PLUGINS
from plugins.files import write_atomically
from plugins.model_files import CONFIG_FILE as MODEL_CONFIG_FILE
from plugins.model_files import RUN_FINAL_MODEL_DIR, WEIGHTS_FILE, read_model_config, size_mismatches
from plugins.pretrained import missing_plugin_hint, plugin_changes
from training.best import BEST_MODEL_DIR
from training.checkpoint import (
    TrainerState,
    capture_rng,
    list_checkpoints,
    load_trainer_state,
    read_losses_record,
    restore_rng,
    save_checkpoint,
)
from training.config import TrainConfig, changed_fields, json_differences, read_train_config, spec_folder
from training.data_files import DATA_FILES_FILE, data_file_changes, data_files, read_data_files, write_data_files
from training.datasets.errors import DatasetError
from training.distributed import ProcessGroup, device_of, fail_together, gather_to_main
from training.environment import ENVIRONMENT_FILE
from training.logging_sinks import METRICS_FILE
from training.run_data import check_data_folder
from training.run_state import Run

TRAIN_CONFIG_FILE = "train_config.json"
COMMAND_FILE = "command.txt"
"""The command line that started a run (model cards quote it), written with ``TRAIN_CONFIG_FILE`` at the start."""
FINAL_MODEL_DIR = RUN_FINAL_MODEL_DIR
SAMPLES_DIR = "samples"
_STARTED_RUN_ENTRIES = (
    TRAIN_CONFIG_FILE,
    COMMAND_FILE,
    DATA_FILES_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    "tensorboard",
    SAMPLES_DIR,
    BEST_MODEL_DIR,
)
"""What a run writes into its folder before its first step ends; a fresh run whose first step breaks a component
contract removes those of them it created (:func:`remove_created`)."""


def check_foreign_folder(run_dir: Path) -> None:
    """Refuse to start a run in a folder that holds files but no run (no :data:`TRAIN_CONFIG_FILE`): a new run clears
    the ``samples/`` and ``best/`` it finds and writes over ``metrics.jsonl`` and ``command.txt``, which there would be
    someone else's files.

    Raises:
        FileExistsError: ``run_dir`` is a folder with entries (hidden ones and ``lost+found`` aside) and without
            :data:`TRAIN_CONFIG_FILE` (the message names a few of them).
    """
    if not run_dir.is_dir() or (run_dir / TRAIN_CONFIG_FILE).exists():
        return
    # Hidden names (.DS_Store, .gitkeep) and a volume's lost+found are no one's work a run would touch.
    entries = sorted(
        entry.name for entry in run_dir.iterdir() if not entry.name.startswith(".") and entry.name != "lost+found"
    )
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise FileExistsError(
            f"{run_dir} holds files ({shown}) but no training run ({TRAIN_CONFIG_FILE}); a run started there would "
            "delete or write over some of them: choose a new or empty folder as --out"
        )


def existing_run_entries(run_dir: Path) -> set[str] | None:
    """Which of the entries a starting run writes (:data:`_STARTED_RUN_ENTRIES`) ``run_dir`` already holds;
    ``None`` when the folder does not exist yet."""
    if not run_dir.is_dir():
        return None
    return {name for name in _STARTED_RUN_ENTRIES if (run_dir / name).exists() or (run_dir / name).is_symlink()}


def remove_created(run_dir: Path, existed: set[str] | None) -> None:
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


def clear_samples(run_dir: Path) -> None:
    """Remove the sample pictures (``samples/``) an earlier attempt in ``run_dir`` drew: a new run that starts
    from step 0 must not show pictures of steps it has not reached, or of another configuration's model."""
    shutil.rmtree(run_dir / SAMPLES_DIR, ignore_errors=True)


def check_same_config(saved_path: Path, config: TrainConfig) -> dict[str, str]:
    """Refuse to resume a run with a configuration other than the one it was started with (``saved_path``), or,
    when it has a checkpoint to continue from, on other data files than it recorded (:func:`check_same_data`).
    Data folders that moved (:func:`moved_data_folders`) are no change when they hold the files the run recorded.

    Returns:
        The data specs that moved, old -> new (empty: none did).

    Raises:
        ValueError: the configurations differ, or the data files; the message lists the differences.
        DatasetError: a data folder is missing or cannot be read (a ``ValueError``).
    """
    saved = read_train_config(saved_path)
    moved = moved_data_folders(saved, config)
    changes = changed_fields(saved, _with_data_folders_of(config, saved) if moved else config)
    if changes:
        raise ValueError(
            f"{saved_path.parent} was started with another configuration ({saved_path}); --resume continues a run "
            "unchanged. "
            f"Differences (started with -> requested): {'; '.join(changes)}. Resume without those flags, or start "
            f"a new run in another --out (--init-from a model or checkpoint of {saved_path.parent} starts it from "
            "those weights)"
        )
    if moved and list_checkpoints(saved_path.parent) and read_data_files(saved_path.parent) is None:
        raise ValueError(
            f"{saved_path.parent} was started on {_moves(moved)}, and it holds no record of its files "
            f"({DATA_FILES_FILE}) to check the new folder holds the same ones: resume it on the folder it started "
            "on, or start a new run in another --out (--init-from a model or checkpoint of it starts it from those "
            "weights)"
        )
    check_same_data(saved_path.parent, config, moved)
    return moved


def moved_data_folders(saved: TrainConfig, config: TrainConfig) -> dict[str, str]:
    """The data specs of ``saved`` (the configuration a run started with) that ``config`` gives as another folder of
    the same kind (``davis:/old/data`` -> ``davis:/new/data``: the run and its data moved), the new spec of each;
    empty when none moved. Whether the new folders hold the same files is :func:`check_same_data`'s to say."""
    moved = {}
    for before, after in ((saved.data.spec, config.data.spec), (saved.data.val_spec, config.data.val_spec)):
        if before is None or after is None or before == after:
            continue
        if spec_folder(before) is not None and spec_folder(after) is not None and _scheme(before) == _scheme(after):
            moved[before] = after
    return moved


def _scheme(spec: str) -> str:
    return spec.partition(":")[0]


def _moves(moved: Mapping[str, str]) -> str:
    return ", ".join(f"{before} (now given as {after})" for before, after in moved.items())


def _with_data_folders_of(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """``config`` with the data specs (and working directory) ``saved`` records, to compare the rest."""
    data = dataclasses.replace(
        config.data, spec=saved.data.spec, val_spec=saved.data.val_spec, workdir=saved.data.workdir
    )
    return dataclasses.replace(config, data=data)


def record_moved_data(run_dir: Path, config: TrainConfig, moved: Mapping[str, str]) -> str:
    """Make the run in ``run_dir`` name its data by its new folders (``moved``: old spec -> new spec, checked by
    :func:`check_same_config`): its configuration (:data:`TRAIN_CONFIG_FILE`) becomes ``config``, and its record of the
    files (:data:`~training.data_files.DATA_FILES_FILE`) names the new specs. Returns the note to print."""
    recorded = read_data_files(run_dir)
    if recorded is not None:
        write_data_files(run_dir, _respecified(recorded, moved))
    write_train_config(run_dir / TRAIN_CONFIG_FILE, config)
    return (
        f"the run's data moved: {_moves(moved)}; the same files are there, and {TRAIN_CONFIG_FILE} and "
        f"{DATA_FILES_FILE} now name the new folder"
    )


def write_train_config(path: Path, config: TrainConfig) -> None:
    """Write ``config`` as a run's :data:`TRAIN_CONFIG_FILE` at ``path`` (atomically: a resume reads it whole or
    not)."""
    text = json.dumps(config.to_json(), indent=2) + "\n"
    write_atomically(path, lambda temporary: temporary.write_text(text))


def _respecified(record: dict[str, Any], moved: Mapping[str, str]) -> dict[str, Any]:
    """A :func:`~training.data_files.data_files` record with its sources' specs renamed by ``moved``."""
    sources = [{**source, "spec": moved.get(source["spec"], source["spec"])} for source in record["sources"]]
    return {**record, "sources": sources}


def check_same_data(run_dir: Path, config: TrainConfig, moved: Mapping[str, str] | None = None) -> None:
    """Refuse to resume the run in ``run_dir`` on other data files than it started on: files added to or removed
    from its data folders, or changed, since it recorded them (:data:`~training.data_files.DATA_FILES_FILE`). Its
    clips are drawn from the seed, the step and the list of files, so the resumed run would not end with the
    weights it would have reached unstopped. Nothing is checked for a run without a checkpoint (it starts again
    from step 0 and records its files again) or without the record (it started before runs recorded their files,
    or reads no local data). ``moved`` (old spec -> new spec, :func:`moved_data_folders`) compares the files a
    spec recorded with those of its new folder.

    Raises:
        ValueError: the files differ (the message lists the files added, removed and changed), or the record cannot
            be read.
        DatasetError: a data folder is missing or cannot be read (a ``ValueError``).
    """
    if not list_checkpoints(run_dir):
        return
    recorded = read_data_files(run_dir)
    if recorded is None:
        return
    for spec in filter(None, (config.data.spec, config.data.val_spec)):
        try:
            check_data_folder(spec, config.data)
        except DatasetError as error:
            listed = run_dir / DATA_FILES_FILE
            raise DatasetError(
                f"{error}; if the run's data moved (with the run, or to another machine), resume with --data (or "
                f"--val-data) naming its new folder: a resume checks that it holds the files {listed} lists"
            ) from error
    current = data_files(config) or {"sources": []}
    changes = data_file_changes(_respecified(recorded, moved or {}), current)
    if changes:
        raise ValueError(
            f"{run_dir} was started on other data files than its data folders hold now "
            f"({run_dir / DATA_FILES_FILE} lists those it started on); --resume continues a run unchanged, and its "
            f"clips depend on the list of files. Differences since it started: {'; '.join(changes)}. Put the files "
            f"back as they were to resume; or, to continue on the files as they are now (the run then draws other "
            f"clips than it would have), delete {run_dir / DATA_FILES_FILE} and --resume: the run records them anew; "
            f"or start a new run in another --out (--init-from a model or checkpoint of {run_dir} starts it from "
            "those weights)"
        )


def restore_newest(run: Run, checkpoints: list[Path], device: str, group: ProcessGroup) -> None:
    """Restore the newest of ``checkpoints`` (oldest first) that loads; a damaged one (a file cut short by a crash
    of the machine, say) is reported and the one before it used.

    Before a checkpoint's weights are read, the plugins its ``config.json`` records are compared with those that
    built ``run.model``, and those its :data:`~training.checkpoint.LOSSES_FILE` records with those that built
    ``run.losses``: a plugin change is refused as such (a new version may change its tensors' shapes, which is no
    damage of the file).

    Raises:
        ValueError: the checkpoint was written under other plugin code (another version of a component's or a
            loss's plugin, or another plugin registering its name: the message names both, and how to go back; a
            loss its plugin now builds with other arguments: the message names them); its tensors have
            other shapes than ``run.model``'s without a recorded plugin change (the message keeps PyTorch's list
            of tensors and shapes); none loads; or the newest intact one was written by another number of
            processes.
    """
    problems = []
    for checkpoint in reversed(checkpoints):
        _check_same_plugins(run, checkpoint)
        try:
            _restore(run, checkpoint, device, group)
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
"""What reading a damaged checkpoint raises: safetensors' header errors, torch's zip-archive errors, truncation.
(Tensors of other shapes than the model's are no damage: :func:`_restore` raises ``ValueError`` for them.)"""


def _check_world_size(run: Run, checkpoint: Path, group: ProcessGroup) -> None:
    written_by = run.restored_world_size
    if written_by is not None and written_by != group.world_size:
        raise ValueError(
            f"{checkpoint} was written by {written_by} training process(es), and this resume runs "
            f"{group.world_size}: each process draws its own clips, so the run would not continue as it started. "
            f"Resume with {written_by} process(es) (torchrun --nproc-per-node), or start a new run in another --out"
        )


def _check_same_plugins(run: Run, checkpoint: Path) -> None:
    """Refuse to resume with another version of a component's or a loss's plugin, or another plugin under its
    name, than ``checkpoint`` was written with (:func:`~plugins.pretrained.plugin_changes`: both versions or
    plugins, and the ``pip install`` command to go back), or with a loss that its plugin now builds with other
    arguments than the checkpoint records (:func:`_loss_argument_changes`), or a model whose settings differ from
    those the checkpoint records (:func:`_model_argument_changes`): the run would continue under other code,
    and its final model would record only the new plugin. Checked before the checkpoint's weights are read, which
    another version may no longer fit. A checkpoint without a readable record (of its model's plugins in
    ``config.json``, of its losses in :data:`~training.checkpoint.LOSSES_FILE`) is not checked for it."""
    changes = []
    try:
        payload = read_model_config(checkpoint / MODEL_CONFIG_FILE)
    except (OSError, ValueError):  # damaged: reading its weights decides; only the record of its plugins is lost
        payload = None
    if payload is not None:
        changes += plugin_changes(payload, run.model.component_plugins, run.model.plugin_versions)
        if not changes:  # another plugin explains other arguments: it is named alone
            changes += _model_argument_changes(payload.get("model"), run.model.saved_config)
    losses = read_losses_record(checkpoint)
    if losses is not None and run.loss_record:
        described = {name: f"the loss {name!r}" for name in run.loss_plugins}
        installed = run.loss_record.get("plugin_versions", {})
        changes += plugin_changes(losses, run.loss_plugins, installed, described)
        changes += _loss_argument_changes(losses, run.loss_record)
    if changes:
        raise ValueError(
            f"{checkpoint} was written under other plugin code: {'; '.join(changes)}. --resume continues a run "
            "unchanged: install the plugin as it was (or put its code back) to resume, or start a new run in "
            f"another --out from this checkpoint (--init-from {checkpoint})"
        )


def _model_argument_changes(recorded: Any, current: Mapping[str, Any]) -> list[str]:
    """One clause listing the settings of the model (``current``: :attr:`~plugins.model.VideoSlotModel.saved_config`
    of the model the run builds now) that differ from those a checkpoint's ``config.json`` records (``recorded``,
    its ``model`` section), built-in components included: a default that changed between versions of slotstream,
    or a plugin's edited in place without a new version. Empty when they agree or nothing readable is recorded."""
    if not isinstance(recorded, Mapping):
        return []
    differing = [f"{key} {old} -> {new}" for key, old, new in json_differences(recorded, current, "model")]
    if not differing:
        return []
    return [
        f"its model was built with other settings than this run now builds ({', '.join(differing)}): a default "
        "changed (another slotstream or plugin version, or a plugin edited in place)"
    ]


def _loss_argument_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One clause per loss of an installed plugin that the run now builds with other arguments than a checkpoint
    records (``recorded`` and ``current``: records of :func:`~training.run_state.losses_record`, their terms in the
    configuration's order): a plugin that changed a default without a new version (edited in place, say). The
    project's own losses are left out, as their versions are (:func:`~plugins.pretrained.plugin_changes`)."""
    saved_terms, terms = recorded.get("losses"), current.get("losses", [])
    if not isinstance(saved_terms, list) or len(saved_terms) != len(terms):
        return []
    plugins = current.get("plugins", {})
    changes = []
    for saved, term in zip(saved_terms, terms, strict=True):
        name, plugin = term["name"], plugins.get(term["name"])
        if not isinstance(saved, Mapping) or saved.get("name") != name or plugin in DEFAULT_PLUGINS:
            continue
        before, now = saved.get("kwargs"), term["kwargs"]
        if not isinstance(before, Mapping):
            continue
        differing = [
            f"{key} {_shown(before, key)} -> {_shown(now, key)}"
            for key in sorted(before.keys() | now.keys())
            if _shown(before, key) != _shown(now, key)
        ]
        if differing:
            changes.append(
                f"the loss {name!r} was built with other arguments than plugin {plugin!r} now gives it "
                f"({', '.join(differing)}: its defaults changed without a new version)"
            )
    return changes


def _shown(arguments: Mapping[str, Any], key: str) -> str:
    """An argument's value as JSON (``<absent>`` when ``arguments`` lacks it), to compare and to show."""
    return json.dumps(arguments[key], sort_keys=True) if key in arguments else "<absent>"


def resume_plugin_hint(checkpoints: list[Path]) -> str:
    """What to install when a resumed run's components or losses are not registered: the plugins the newest of
    ``checkpoints`` (oldest first) records for its model and its losses, for the message of the registry's error."""
    records: list[Mapping[str, Any]] = []
    with contextlib.suppress(OSError, ValueError):  # a damaged config.json: the record of the losses may stand
        records.append(read_model_config(checkpoints[-1] / MODEL_CONFIG_FILE))
    losses = read_losses_record(checkpoints[-1])
    if losses is not None:
        records.append(losses)
    if not records:  # nothing recorded, or damaged: the registry's error stands alone
        return ""
    # one record of both, as missing_plugin_hint reads it: the plugins (keyed apart: a role and a loss may share
    # a name), with their versions and distributions
    merged: dict[str, dict[str, Any]] = {"plugins": {}, "plugin_versions": {}, "plugin_distributions": {}}
    for index, record in enumerate(records):
        merged["plugins"].update({f"{index}.{name}": plugin for name, plugin in _mapping(record, "plugins")})
        merged["plugin_versions"].update(_mapping(record, "plugin_versions"))
        merged["plugin_distributions"].update(_mapping(record, "plugin_distributions"))
    return missing_plugin_hint(merged)


def _mapping(record: Mapping[str, Any], key: str) -> list[tuple[str, Any]]:
    """The items of ``record[key]`` when it is a mapping, else none."""
    value = record.get(key)
    return [(str(name), item) for name, item in value.items()] if isinstance(value, Mapping) else []


def _restore(run: Run, checkpoint: Path, device: str, group: ProcessGroup) -> None:
    """Load ``checkpoint`` into ``run`` (this process's random generators: those of its rank).

    Raises:
        ValueError: its tensors have other names or shapes than ``run.model``'s (the file is whole: the code that
            builds the model changed; the message keeps PyTorch's list of tensors and shapes).
        SafetensorError, RuntimeError, OSError, ...: a damaged file (:data:`_DAMAGED_CHECKPOINT`).
    """
    try:
        weights = str(checkpoint / WEIGHTS_FILE)
        missing, unexpected = load_model(run.model, weights, strict=False, device=device_of(device, group))
    except RuntimeError as error:
        if not size_mismatches(str(error)):
            raise
        raise ValueError(
            f"{checkpoint / WEIGHTS_FILE} holds tensors of other shapes than the model this run's configuration "
            "builds, though no plugin its config.json records has changed: the components' code changed without "
            "a new plugin version (a plugin edited in place, say). --resume continues a run unchanged: put that "
            f"code back to resume, or start a new run in another --out (--init-from {checkpoint} starts it from "
            f"the tensors that still fit). PyTorch: {str(error).strip()}"
        ) from error
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {checkpoint} does not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    state = load_trainer_state(checkpoint)
    run.optimizer.load_state_dict(state.optimizer)
    run.scheduler.load_state_dict(state.scheduler)
    if run.scaler is not None and state.scaler is not None:
        run.scaler.load_state_dict(state.scaler)
    restore_rng(state.rng_of(group.rank))
    run.step = state.step
    run.elapsed_before_s = state.elapsed_s
    run.restored_world_size = state.world_size


def maybe_checkpoint(
    config: TrainConfig, run: Run, run_dir: Path, group: ProcessGroup, last_step: int, force: bool = False
) -> None:
    """At every ``config.checkpoint_every``-th step and at ``last_step`` (at any step with ``force``): the main
    process writes a checkpoint of ``run`` into ``run_dir`` (keeping ``config.keep_checkpoints``) with every
    process's random generators, and every process waits for it.

    Raises:
        NonFiniteWeights: the weights are not finite (:func:`~training.checkpoint.save_checkpoint`), on every
            process (:func:`~training.distributed.fail_together`: the others stop with the main one, which
            reports it).
        OSError: the checkpoint cannot be written; on every process too.
    """
    if not (force or run.step % config.checkpoint_every == 0 or run.step == last_step):
        return
    generators = gather_to_main(group, capture_rng())
    with fail_together(group):
        if generators is not None:  # the main process
            state = TrainerState(
                step=run.step,
                optimizer=run.optimizer.state_dict(),
                scheduler=run.scheduler.state_dict(),
                rng=generators[0],
                scaler=run.scaler.state_dict() if run.scaler is not None else None,
                elapsed_s=run.elapsed_s(),
                world_size=group.world_size,
                process_rng=generators if group.distributed else None,
            )
            save_checkpoint(run_dir, run.model, state, config.keep_checkpoints, losses=run.loss_record or None)
