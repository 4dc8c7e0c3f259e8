"""What the commands that train a head on a model's slots over synthetic videos share (``python -m
downstream.probes``, ``python -m downstream.vqa``): the model, output and data flags, the refusal of data
without ground truth, flags taken from a config's fields, and how a failed run is reported."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from plugins.files import user_path

SCHEME = "synthetic:"
"""The only data these commands take: videos whose ground truth says what every object is and does."""

_T = TypeVar("_T")


def add_model_flags(parser: argparse.ArgumentParser, saved: str) -> None:
    """``--model`` (a model directory), ``--out`` (the folder ``saved`` goes to) and ``--data``."""
    parser.add_argument("--model", type=user_path, required=True, help="a save_pretrained model directory")
    parser.add_argument("--out", type=user_path, required=True, help=f"folder to save {saved} in")
    parser.add_argument(
        "--data",
        default=f"{SCHEME}medium",
        help=f"{SCHEME}<level>: the videos and their ground truth (default: %(default)s)",
    )


def add_config_flags(
    parser: argparse.ArgumentParser, defaults: object, flags: Sequence[tuple[str, type, str]]
) -> None:
    """One flag per ``(name, type, help)`` of ``flags``, its default the field of ``defaults`` of that name (with
    ``-`` for ``_``)."""
    for name, kind, help_text in flags:
        default = getattr(defaults, name.replace("-", "_"))
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)")


def synthetic_level(parser: argparse.ArgumentParser, data: str, needs: str) -> str:
    """The level of the data spec ``data``; a usage error (exit status 2) saying that ``needs`` the ground truth
    when it is not ``synthetic:<level>``."""
    if not data.startswith(SCHEME):
        parser.error(f"--data {data}: {needs} the objects' ground truth, which {SCHEME}<level> data has")
    return data[len(SCHEME) :]


def run_reported(prog: str, run: Callable[[], _T]) -> _T | None:
    """``run()``, or ``None`` after printing ``prog: <error>`` to stderr when it raises what a run can meet (a
    model that cannot be loaded, an unknown level, nothing to train on, a folder that cannot be written)."""
    from plugins.registry import RegistryError

    try:
        return run()
    except (ValueError, OSError, RegistryError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None


__all__ = ["SCHEME", "add_config_flags", "add_model_flags", "run_reported", "synthetic_level"]
