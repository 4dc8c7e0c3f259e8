"""Run directories and atomic checkpoints.

A checkpoint is a directory ``checkpoints/step-<N>/`` holding the model in the ``save_pretrained`` format
(``config.json`` + ``model.safetensors``) plus ``trainer_state.pt`` (optimizer, scheduler and RNG states,
loaded back with ``weights_only=True``, so no code is ever unpickled) and ``losses.json`` (the losses the run trains
with and the plugins they come from, :data:`LOSSES_FILE`). It is written under a temporary name
and renamed into place in one step: a run killed at any moment leaves either the complete checkpoint or
none, never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from plugins import VideoSlotModel
from plugins.files import sync_file, sync_folder, umask
from plugins.model_files import WEIGHTS_FILE

CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
LOSSES_FILE = "losses.json"
"""The losses of the run that wrote a checkpoint (:func:`training.run_state.losses_record`): ``losses``, each term's
``name``, ``weight`` and ``kwargs`` (its constructor arguments, defaults filled in, as a saved ``config.json`` pins a
model component's), and ``plugins`` (loss name -> the plugin that registered it), ``plugin_versions`` and
``plugin_distributions`` as ``config.json`` records them for the model's components. ``--resume`` compares them
with the losses it builds; checkpoints written before it was recorded lack it."""
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """What a resumed run needs besides the weights.

    Attributes:
        step: optimisation steps completed.
        optimizer: ``optimizer.state_dict()``.
        scheduler: ``scheduler.state_dict()``.
        rng: torch CPU (and the current CUDA device's) generator states, Python's and NumPy's
            (:func:`capture_rng`), of the process that writes the checkpoint (rank 0).
        scaler: the AMP gradient scaler's state (CUDA only), or None.
        elapsed_s: seconds the run has trained (evaluations included) to reach ``step``, summed over the
            invocations that led to it; pauses between a kill and its resume are not counted.
        world_size: training processes (``torchrun``) that wrote it; ``None`` in checkpoints written before it
            was recorded. Each process draws its own clips, so a resume with another count is not exact.
        process_rng: under ``torchrun``, every process's ``rng``, by rank (each draws its own model noise);
            ``None`` for a single process, and in checkpoints written before it was recorded (their processes
            resume with rank 0's).
    """

    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    scaler: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    world_size: int | None = None
    process_rng: list[dict[str, Any]] | None = None

    def rng_of(self, rank: int) -> dict[str, Any]:
        """The generator states process ``rank`` resumes with: its own when they were recorded, else rank 0's."""
        if self.process_rng is not None and rank < len(self.process_rng):
            return self.process_rng[rank]
        return self.rng


def capture_rng() -> dict[str, Any]:
    """Every random generator's state, in tensors and plain types (loadable with ``weights_only``)."""
    numpy_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _python_state_to_plain(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),  # a cached second normal deviate of the Box-Muller pair
            "cached_gaussian": float(numpy_state[4]),
        },
    }
    if torch.cuda.is_available():  # this process's device only: every other GPU would get a context of its own
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    gauss = (numpy_state.get("has_gauss", 0), numpy_state.get("cached_gaussian", 0.0))  # absent in older checkpoints
    np.random.set_state(("MT19937", keys, numpy_state["pos"], *gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list):  # written before: every device's state
            index = torch.cuda.current_device()
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, SafetensorError)
"""What writing a saved model's files raises when the disk is full or the folder cannot be written: ``OSError``
from Python's own writes, ``SafetensorError`` ("I/O error: No space left on device (os error 28)") from the
weights file's."""

_TORCH_WRITE_ERRORS: tuple[type[Exception], ...] = (*WRITE_ERRORS, RuntimeError)
""":data:`WRITE_ERRORS` and what torch raises for a full disk, or for a damaged file it reads (``RuntimeError``)."""


def cannot_write(what: str, folder: Path, error: BaseException) -> OSError:
    """The error a run stops with when ``what`` (``"the checkpoint"``, ``"the best model"``...) cannot be written in
    ``folder``: it names the folder and the first line of the underlying ``error``."""
    first_line = (str(error).splitlines() or [""])[0]
    return OSError(f"cannot write {what} in {folder} ({first_line}); is the disk full?")


def save_model_files(model: VideoSlotModel, directory: Path, what: str) -> None:
    """``model.save_pretrained(directory)``, for a model the run keeps (``what``: ``"the final model"``...).

    Raises:
        OSError: a file cannot be written (:func:`cannot_write`, naming ``directory``); the folder is removed again
            when this call made it (``save_pretrained`` leaves no half-written file under a final name).
    """
    made = not directory.exists()
    try:
        model.save_pretrained(directory)
    except WRITE_ERRORS as error:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise cannot_write(what, directory, error) from error


class NonFiniteWeights(FloatingPointError):
    """The weights a checkpoint would hold are not finite (a diverged run): :func:`save_checkpoint` refuses them."""


def finite_weights(model: torch.nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (buffers are not judged: a component may keep an infinite
    constant, such as an attention mask, in one)."""
    return all(_finite(parameter) for parameter in model.parameters())


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def save_checkpoint(
    run_dir: Path, model: VideoSlotModel, state: TrainerState, keep: int, losses: Mapping[str, Any] | None = None
) -> Path:
    """Write ``checkpoints/step-<N>`` atomically and delete all but the ``keep`` newest checkpoints; ``losses``, the
    record of the run's losses (:data:`LOSSES_FILE`), is written with it when given.

    Raises:
        NonFiniteWeights: a weight of ``model`` is not finite (NaN or infinite); nothing is written or deleted,
            so the checkpoints already there, which a diverged run's error suggests to go on from, stay.
        OSError: a file cannot be written (:func:`cannot_write`); no partial checkpoint is left.
    """
    if not finite_weights(model):
        raise NonFiniteWeights(f"the weights of step {state.step} are not finite: no checkpoint of them is written")
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    staging = make_staging_dir(root, prefix=f".step-{state.step:08d}.")
    try:
        _write_checkpoint(staging, model, state, losses)
        if final.exists():
            _discard(final)
        os.replace(staging, final)
        sync_folder(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        _discard(old)
    for leftover in root.glob(".*"):  # staging or discarded directories of an earlier, killed run
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def _write_checkpoint(
    staging: Path, model: VideoSlotModel, state: TrainerState, losses: Mapping[str, Any] | None
) -> None:
    """Write the checkpoint's files into ``staging`` (:data:`LOSSES_FILE` when ``losses`` is given) and flush them
    to disk.

    Raises:
        OSError: a file cannot be written (the message names the folder; torch reports a full disk as a
            ``RuntimeError`` that names nothing, safetensors as a ``SafetensorError``).
    """
    try:
        model.save_pretrained(staging)
        torch.save(
            {
                "step": state.step,
                "optimizer": state.optimizer,
                "scheduler": state.scheduler,
                "rng": state.rng,
                "scaler": state.scaler,
                "elapsed_s": state.elapsed_s,
                "world_size": state.world_size,
                "process_rng": state.process_rng,
            },
            staging / TRAINER_STATE,
        )
        sync_file(staging / TRAINER_STATE)  # on disk before the rename publishes it (save_pretrained flushes its own)
        if losses is not None:
            (staging / LOSSES_FILE).write_text(json.dumps(losses, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            sync_file(staging / LOSSES_FILE)
    except _TORCH_WRITE_ERRORS as error:
        if _DATA_WORKER_ENDED in str(error):  # a data worker died meanwhile (torch's SIGCHLD check): not the disk
            raise
        raise cannot_write("the checkpoint", staging.parent, error) from error


_DATA_WORKER_ENDED = "DataLoader worker"
"""How the errors torch raises in the main process when one of its data workers dies begin."""


def make_staging_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder in ``parent`` to fill before renaming it into place, with the permissions a plain
    ``mkdir`` gives under the process umask (``tempfile.mkdtemp`` makes it 0700, which the rename would keep,
    so other users of a shared machine could not read the checkpoint or the best model)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~umask())
    return path


def _discard(checkpoint: Path) -> None:
    """Remove a checkpoint without ever exposing a half-deleted one under its ``step-<N>`` name."""
    doomed = checkpoint.with_name(f".discard-{checkpoint.name}")
    os.replace(checkpoint, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = run_dir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [path for _, path in sorted(found)]


def newest_finite_checkpoint(run_dir: Path, names: Collection[str] | None = None) -> Path | None:
    """The newest checkpoint of the run whose weights file reads and whose tensors ``names`` (the model's
    parameters; every tensor when None) are finite, which a diverged run's error suggests going on from, or None
    when no checkpoint qualifies. Reads the weights files, newest first."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            weights = load_file(str(checkpoint / WEIGHTS_FILE))
        except _TORCH_WRITE_ERRORS:  # missing or damaged: not one to go on from
            continue
        if all(_finite(tensor) for name, tensor in weights.items() if names is None or name in names):
            return checkpoint
    return None


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint directory holds, from its ``step-<N>`` name (no file is read).

    Raises:
        ValueError: the directory's name is not ``step-<N>``.
    """
    match = _STEP_DIR.match(checkpoint.name)
    if match is None:
        raise ValueError(f"{checkpoint} is not a checkpoint directory (step-<N>)")
    return int(match.group(1))


def load_trainer_state(checkpoint: Path) -> TrainerState:
    """Read ``trainer_state.pt`` of a checkpoint (tensors and plain data only)."""
    data = torch.load(checkpoint / TRAINER_STATE, map_location="cpu", weights_only=True)
    return TrainerState(
        step=int(data["step"]),
        optimizer=data["optimizer"],
        scheduler=data["scheduler"],
        rng=data["rng"],
        scaler=data.get("scaler"),
        elapsed_s=float(data.get("elapsed_s", 0.0)),  # 0 in checkpoints written before it was recorded
        world_size=data.get("world_size"),
        process_rng=data.get("process_rng"),
    )


def read_losses_record(checkpoint: Path) -> Mapping[str, Any] | None:
    """The record of the losses ``checkpoint`` was written with (:data:`LOSSES_FILE`); ``None`` when it has none (it
    was written before the record was) or the file cannot be read as one (damaged: only the record is lost)."""
    try:
        record = json.loads((checkpoint / LOSSES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable, not UTF-8 or not JSON
        return None
    if not isinstance(record, Mapping) or not isinstance(record.get("losses"), list):
        return None
    return record


def _python_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]
