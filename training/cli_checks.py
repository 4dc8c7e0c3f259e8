"""Argument checks shared by the ``training`` command lines: each failure is a usage error (exit status 2)
naming the flag, raised before any slow work starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from plugins.files import check_writable
from plugins.model_files import replaces_model_file


def require_at_least(parser: argparse.ArgumentParser, least: int, values: Mapping[str, int | None]) -> None:
    """Exit with a usage error when a given (not ``None``) flag value in ``values`` is below ``least``."""
    for flag, value in values.items():
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")


def require_output_folder(
    parser: argparse.ArgumentParser,
    flag: str,
    path: Path | None,
    suffixes: tuple[str, ...] = (),
    model_dir: Path | None = None,
) -> None:
    """Exit with a usage error when the output file ``path`` cannot be written: its folder does not exist, it is
    a folder itself, its name lacks one of ``suffixes`` (when given), no file can be created in its folder, or it
    would replace a file of ``model_dir``, the model the command reads (:func:`plugins.model_files.
    replaces_model_file`), so a long run does not fail only when it writes its result, nor break its model."""
    if path is None:
        return
    if model_dir is not None and replaces_model_file(path, model_dir):
        parser.error(f"{flag} {path} is a file of the model in {model_dir}: it would be replaced; give another file")
    if not path.resolve().parent.is_dir():
        parser.error(f"{flag} {path}: the folder {path.resolve().parent} does not exist")
    if path.is_dir():
        parser.error(f"{flag} {path} is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        parser.error(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if path.exists() and not path.is_file():  # a device such as /dev/stdout: writing is what tells
        return
    try:
        check_writable(path.resolve().parent)
    except OSError as error:
        parser.error(f"{flag} {path}: cannot write in {path.resolve().parent} ({error.strerror})")


def file_in_the_way(folder: Path) -> Path | None:
    """The file (not folder) at ``folder`` or at one of its parents, which would stop ``folder`` from being
    created; ``None`` when there is none."""
    for path in (folder, *folder.parents):
        try:
            if path.exists() and not path.is_dir():
                return path
        except PermissionError:  # a folder this process may not enter: creating the folder will say so
            return None
    return None


def require_output_dir(parser: argparse.ArgumentParser, flag: str, folder: Path, what: str) -> None:
    """Exit with a usage error when the output folder ``folder`` (for ``what``) is a file or lies below one."""
    if (blocking := file_in_the_way(folder)) is not None:
        parser.error(f"{flag} {folder}: {blocking} is a file; give a folder for {what}")


def require_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Exit with a usage error when ``--device cuda`` is asked for without a usable CUDA device."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda was requested but no CUDA device is available")


def print_note(message: str) -> None:
    """Print a note about the inputs (not an error) on stderr, where the tools' progress bars go."""
    print(message, file=sys.stderr)
