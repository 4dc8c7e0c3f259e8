"""Command-line pieces the ``python -m service.bench`` modes share."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from plugins.files import output_folder_problem
from plugins.model_files import replaces_model_file
from service.engine import BACKEND_MODULES


def backend_names(text: str) -> list[str]:
    """``"torch, onnx"`` -> ``["torch", "onnx"]`` (blank entries dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def unknown_backends(flag: str, names: Sequence[str]) -> list[str]:
    """The problem with ``names`` given to ``flag`` when one is not a backend (empty when all are)."""
    unknown = [name for name in names if name not in BACKEND_MODULES]
    if not unknown:
        return []
    return [f"{flag} names unknown backends {', '.join(map(repr, unknown))}: choose from {', '.join(BACKEND_MODULES)}"]


def usage_error(mode: str, problems: Sequence[str]) -> int:
    """Print every problem with the flags of ``mode`` (e.g. ``--local``) on one line; returns exit status 2."""
    print(f"python -m service.bench {mode}: " + "; ".join(problems), file=sys.stderr)
    return 2


def json_output_problems(path: Path | None, model_dir: Path | None = None) -> list[str]:
    """The problem with ``--json PATH``, found before the benchmark runs rather than after it: a folder, a folder
    (the nearest that exists, as the report's folders are created) this process cannot write in, or a file of
    ``model_dir``, the model measured (:func:`plugins.model_files.replaces_model_file`)."""
    if path is None:
        return []
    if model_dir is not None and replaces_model_file(path, model_dir):
        return [f"--json {path} is a file of the model in {model_dir}: it would be replaced; give another file"]
    if path.is_dir():
        return [f"--json {path} is a folder; give a file name"]
    if path.exists() and not path.is_file():  # a device such as /dev/stdout: writing is what tells
        return []
    if (problem := output_folder_problem(path.resolve().parent)) is not None:
        return [f"--json {path}: {problem}"]
    return []
