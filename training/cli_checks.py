"""Argument checks shared by the ``training`` command lines: each failure is a usage error (exit status 2)
naming the flag, raised before any slow work starts."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path


def require_at_least(parser: argparse.ArgumentParser, least: int, values: Mapping[str, int | None]) -> None:
    """Exit with a usage error when a given (not ``None``) flag value in ``values`` is below ``least``."""
    for flag, value in values.items():
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")


def require_output_folder(parser: argparse.ArgumentParser, flag: str, path: Path | None) -> None:
    """Exit with a usage error when the folder that would hold the output file ``path`` does not exist, so a
    long run does not fail only when it writes its result."""
    if path is not None and not path.resolve().parent.is_dir():
        parser.error(f"{flag} {path}: the folder {path.resolve().parent} does not exist")


def require_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Exit with a usage error when ``--device cuda`` is asked for without a usable CUDA device."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda was requested but no CUDA device is available")
