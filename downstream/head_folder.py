"""A trained head on disk: ``config.json`` (the head's name, its constructor arguments and what its trainer keeps
about the training) beside ``model.safetensors``, each written atomically (:func:`save_head`) and read back
(:func:`load_head`). The dynamics, probe and VQA commands keep their heads so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from torch import nn

from plugins.files import write_atomically
from plugins.model_files import CONFIG_FILE, RUN_BEST_MODEL_DIR, RUN_FINAL_MODEL_DIR, WEIGHTS_FILE

FORMAT_VERSION = 1
"""The ``format_version`` of the ``config.json`` this code writes and reads."""


class SavableHead(Protocol):
    """A head that says what it was built with."""

    name: ClassVar[str]

    def constructor_kwargs(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...


HeadT = TypeVar("HeadT", bound=nn.Module)


def save_head(head: SavableHead, folder: Path, record: dict[str, Any]) -> None:
    """Write ``head`` into ``folder`` (made when missing) with ``record`` (what to keep about its training) in its
    ``config.json``; each file is replaced whole (a reader sees the old or the new one).

    Raises:
        ValueError: ``folder`` holds something else than a head (:func:`check_head_folder`); nothing is written.
        OSError: the folder cannot be written.
    """
    from safetensors.torch import save_file

    check_head_folder(folder, head.name)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, "head": head.name, "kwargs": head.constructor_kwargs(), **record}
    tensors = {name: tensor.detach().contiguous() for name, tensor in head.state_dict().items()}
    write_atomically(folder / WEIGHTS_FILE, lambda temporary: save_file(tensors, str(temporary)))
    text = json.dumps(config, indent=2) + "\n"
    write_atomically(folder / CONFIG_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def check_head_folder(folder: Path, head: str) -> None:
    """Refuse to write a ``head`` head into ``folder`` when its ``config.json`` is not a head's (a model folder of
    the service or of training, say) or another kind of head's, which saving would replace; a missing or empty
    folder, or one holding a ``head`` head already (a run done again), is fine.

    Raises:
        ValueError: the folder is a file, or its ``config.json`` is no head's or another head's (the message names
            it).
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; give a folder to save the head in")
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        return
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = None
    if not (isinstance(config, dict) and "head" in config):
        raise ValueError(
            f"{folder} holds a {CONFIG_FILE} that is no head's (a model folder?): saving a head there would replace "
            "it; give another folder"
        )
    if config["head"] != head:
        raise ValueError(
            f"{folder} holds a head of kind {config['head']!r}: saving one of kind {head!r} there would replace it; "
            "give another folder"
        )


def model_label(model_dir: Path) -> str:
    """``model_dir``'s name as chart titles give it: a training run's ``model/`` or ``best/`` is named with its run
    folder (``runs/smoothsa/model`` is ``smoothsa/model``), any other folder by its own name."""
    folder = model_dir.resolve()
    in_a_run = folder.name in (RUN_BEST_MODEL_DIR, RUN_FINAL_MODEL_DIR)
    return f"{folder.parent.name}/{folder.name}" if in_a_run else folder.name


def load_head(folder: Path, head_class: type[HeadT], what: str) -> tuple[HeadT, dict[str, Any]]:
    """The ``head_class`` head saved in ``folder`` (in eval mode) and its ``config.json``; ``what`` names such a
    head in messages (``"a dynamics head"``).

    Raises:
        ValueError: the folder holds no such head, or one of another format or head, or weights that do not fit
            its config; the message names the folder.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = getattr(head_class, "name", head_class.__name__)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not (config_path.is_file() and weights_path.is_file()):
        raise ValueError(f"{folder}: not {what} (it needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: cannot be read ({error})") from error
    if not isinstance(config, dict) or config.get("head") != name:
        raise ValueError(f"{config_path}: not the config of a {name} head (a model folder of the service?)")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {config.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    try:
        head = head_class(**config["kwargs"])
        head.load_state_dict(load_file(str(weights_path)))
    except (TypeError, ValueError, RuntimeError, SafetensorError, OSError) as error:
        raise ValueError(f"{folder}: the weights do not fit its {CONFIG_FILE} ({error})") from error
    return head.eval(), config


__all__ = ["FORMAT_VERSION", "check_head_folder", "load_head", "model_label", "save_head"]
