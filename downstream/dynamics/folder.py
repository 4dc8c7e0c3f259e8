"""A trained dynamics head on disk (:mod:`downstream.head_folder`'s layout): ``config.json`` (the head's name and
arguments, the training config, the slots it reads) and ``model.safetensors``, written atomically
(:func:`save_dynamics`) and read back (:func:`load_dynamics`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from downstream.head_folder import FORMAT_VERSION, load_head, save_head
from downstream.slotformer import SlotFormer


def save_dynamics(head: SlotFormer, folder: Path, record: dict[str, Any]) -> None:
    """Write ``head`` into ``folder`` (made when missing) with ``record`` (what to keep about its training) in its
    ``config.json``; each file is replaced whole (a reader sees the old or the new one).

    Raises:
        OSError: the folder cannot be written.
    """
    save_head(head, folder, record)


def load_dynamics(folder: Path) -> tuple[SlotFormer, dict[str, Any]]:
    """The head saved in ``folder`` (in eval mode) and its ``config.json``.

    Raises:
        ValueError: the folder holds no dynamics head, or one of another format or head, or weights that do not
            fit its config; the message names the folder.
    """
    return load_head(folder, SlotFormer, "a dynamics head")


__all__ = ["FORMAT_VERSION", "load_dynamics", "save_dynamics"]
