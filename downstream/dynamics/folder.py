"""A trained dynamics head on disk: ``config.json`` (the head's name and arguments, the training config, the
slots it reads) and ``model.safetensors``, written atomically (:func:`save_dynamics`) and read back
(:func:`load_dynamics`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from downstream.slotformer import SlotFormer
from plugins.files import write_atomically
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE

FORMAT_VERSION = 1
"""The ``format_version`` of the ``config.json`` this code writes and reads."""


def save_dynamics(head: SlotFormer, folder: Path, record: dict[str, Any]) -> None:
    """Write ``head`` into ``folder`` (made when missing) with ``record`` (what to keep about its training) in its
    ``config.json``; each file is replaced whole (a reader sees the old or the new one).

    Raises:
        OSError: the folder cannot be written.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "head": SlotFormer.name,
        "kwargs": head.constructor_kwargs(),
        **record,
    }
    tensors = {name: tensor.detach().contiguous() for name, tensor in head.state_dict().items()}
    write_atomically(folder / WEIGHTS_FILE, lambda temporary: save_file(tensors, str(temporary)))
    text = json.dumps(config, indent=2) + "\n"
    write_atomically(folder / CONFIG_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def load_dynamics(folder: Path) -> tuple[SlotFormer, dict[str, Any]]:
    """The head saved in ``folder`` (in eval mode) and its ``config.json``.

    Raises:
        ValueError: the folder holds no dynamics head, or one of another format or head, or weights that do not
            fit its config; the message names the folder.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not (config_path.is_file() and weights_path.is_file()):
        raise ValueError(f"{folder}: not a dynamics head (it needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: cannot be read ({error})") from error
    if not isinstance(config, dict) or config.get("head") != SlotFormer.name:
        raise ValueError(f"{config_path}: not the config of a {SlotFormer.name} head (a model folder of the service?)")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {config.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    try:
        head = SlotFormer(**config["kwargs"])
        head.load_state_dict(load_file(str(weights_path)))
    except (TypeError, ValueError, RuntimeError, SafetensorError, OSError) as error:
        raise ValueError(f"{folder}: the weights do not fit its {CONFIG_FILE} ({error})") from error
    return head.eval(), config


__all__ = ["FORMAT_VERSION", "load_dynamics", "save_dynamics"]
