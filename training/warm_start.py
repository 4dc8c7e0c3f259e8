"""Warm starts: initialise a new run's model from a trained model's weights.

A warm start copies every parameter and buffer whose name and shape match the source model and leaves the
rest at their fresh initialisation, so a model can be fine-tuned on new data (``videos:<dir>`` recordings) or
given a different component (for instance a finer decoder on top of trained slots) without starting from
the symmetric phase again. Unlike ``--resume`` it starts a new run: step, optimizer and schedule start at 0.
A new component trained against the others at once can undo what they learned (a random decoder's first
gradients collapse trained slots within a hundred steps), so :func:`freeze_all_but` lets a run train only some
components.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from plugins.model import COMPONENT_NAMES
from plugins.model_files import WEIGHTS_FILE, run_folder_models


@dataclass(frozen=True)
class WarmStart:
    """What a warm start copied.

    Attributes:
        loaded: names copied from the source.
        reshaped: names present in both with different shapes (left at their initialisation).
        missing: names of the new model that the source lacks (left at their initialisation).
    """

    loaded: list[str]
    reshaped: list[str]
    missing: list[str]

    def summary(self) -> str:
        """One line for the log; it warns when most of the model's tensors were not in the source."""
        line = (
            f"warm start: {_tensors(len(self.loaded))} loaded, {len(self.reshaped)} with another shape and "
            f"{len(self.missing)} absent from the source left at their initialisation"
        )
        total = len(self.loaded) + len(self.reshaped) + len(self.missing)
        if 2 * len(self.loaded) < total:
            line += f"; warning: only {len(self.loaded)} of the model's {total} start from the source (another model?)"
        return line


def _tensors(count: int) -> str:
    return f"{count} tensor" if count == 1 else f"{count} tensors"


def check_warm_start_source(source: str | Path) -> None:
    """Check that ``source`` holds a readable ``model.safetensors`` (its header, not the tensors).

    Raises:
        FileNotFoundError: there is no ``model.safetensors``.
        ValueError: the file is damaged (the message names it).
    """
    folder = Path(source)
    path = folder / WEIGHTS_FILE
    if folder.is_file():
        raise FileNotFoundError(f"--init-from {source} is a file; give the folder that holds {WEIGHTS_FILE}")
    if not folder.is_dir():
        raise FileNotFoundError(f"--init-from {source}: no such folder")
    if not path.is_file():
        run_models = [str(model) for model in run_folder_models(folder)]
        hint = f"; it looks like a training run, whose models are in {' and '.join(run_models)}" if run_models else ""
        raise FileNotFoundError(
            f"--init-from {source}: no {WEIGHTS_FILE} there (expected a saved model directory){hint}"
        )
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError) as error:
        raise ValueError(f"--init-from {source}: {path} cannot be read ({error})") from error


def warm_start(model: nn.Module, source: str | Path) -> WarmStart:
    """Copy into ``model`` every tensor of the model directory ``source`` with the same name and shape.

    Raises:
        FileNotFoundError: ``source`` holds no ``model.safetensors``.
        ValueError: the weights file is damaged, or no tensor of ``source`` fits ``model`` (wrong model family).
    """
    check_warm_start_source(source)
    path = Path(source) / WEIGHTS_FILE
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"--init-from {source}: {path} cannot be read ({error})") from error
    state = model.state_dict()
    loaded = [name for name, value in weights.items() if name in state and state[name].shape == value.shape]
    reshaped = sorted(name for name, value in weights.items() if name in state and state[name].shape != value.shape)
    if not loaded:
        raise ValueError(f"--init-from {source}: none of its {len(weights)} tensors fits this model")
    with torch.no_grad():
        for name in loaded:
            state[name].copy_(weights[name])
    missing = sorted(name for name in state if name not in weights)
    return WarmStart(sorted(loaded), reshaped, missing)


def freeze_all_but(model: nn.Module, components: list[str]) -> None:
    """Stop the gradients of every component of ``model`` not named in ``components`` (and of any parameter
    outside the components).

    Raises:
        ValueError: a name is not one of the model's components.
    """
    present = [name for name in COMPONENT_NAMES if isinstance(getattr(model, name, None), nn.Module)]
    unknown = sorted(set(components) - set(present))
    if unknown or not components:
        raise ValueError(f"train_only {components}: choose one or more of the model's components {present}")
    trained = {id(parameter) for name in components for parameter in getattr(model, name).parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trained)
