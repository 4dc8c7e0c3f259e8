"""The optional parts of the install (pyproject.toml's extras) that commands need, and the refusal without them.

``pip install slotstream`` installs the client alone (:mod:`service.client`); serving, training and exporting
need the ``server``, ``train`` and ``export`` extras. A command that needs one calls :func:`require_extra` before
it imports anything from it, so a client-only install gets a one-line answer naming the extra instead of a
traceback. This module imports nothing outside the standard library, and checking imports nothing at all: a
module is looked up (:func:`importlib.util.find_spec`), never run.
"""

from __future__ import annotations

import importlib.util
import sys

PROJECT = "slotstream"

_SERVER = (
    "torch",
    "torchvision",
    "timm",
    "pluggy",
    "safetensors",
    "scipy",
    "tqdm",
    "grpc_reflection",
    "prometheus_client",
    "simplejpeg",
    "opentelemetry",  # the namespace of opentelemetry-sdk and its OTLP exporter (service/tracing.py checks both)
)

#: Extra -> the top-level modules its requirements provide, in the order they are checked. Requirements behind an
#: environment marker (decord, x86-64 only) are left out: the code that uses them says what to do without them.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": _SERVER,
    "train": (*_SERVER, "tensorboard"),
    "export": (*_SERVER, "onnx", "onnxscript"),
    "ros": ("rosbags",),
}


def missing_module(extra: str) -> str | None:
    """The first module of ``extra`` (a key of :data:`EXTRA_MODULES`) that cannot be imported, or ``None``.

    "Cannot be imported" means not found on ``sys.path``, or blocked (``None`` in ``sys.modules``); a module that is
    found but fails when run (a broken install) is not detected here: its own import reports that.

    Raises:
        KeyError: ``extra`` is not one of :data:`EXTRA_MODULES`.
    """
    for name in EXTRA_MODULES[extra]:
        if name in sys.modules:  # imported already, or blocked (None)
            if sys.modules[name] is None:
                return name
        elif importlib.util.find_spec(name) is None:
            return name
    return None


def install_command(extra: str) -> str:
    """The ``pip install`` line that brings ``extra`` (any extra of pyproject.toml, e.g. ``onnx``)."""
    return f"pip install '{PROJECT}[{extra}]'"


def require_extra(extra: str, command: str) -> None:
    """Return when ``extra`` is installed; otherwise print one line to stderr and exit with status 2.

    The line starts with ``command`` (as the user typed it, e.g. ``python -m training.run``) and names the missing
    module and the ``pip install`` that brings it.

    Raises:
        SystemExit: status 2, when a module of ``extra`` is missing.
        KeyError: ``extra`` is not one of :data:`EXTRA_MODULES`.
    """
    missing = missing_module(extra)
    if missing is None:
        return
    print(
        f"{command}: needs the {extra!r} extra (its module {missing!r} is not installed): {install_command(extra)}",
        file=sys.stderr,
    )
    raise SystemExit(2)
