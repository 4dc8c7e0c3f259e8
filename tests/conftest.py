"""Shared fixtures: a registry with the built-in plugins only, and tiny model configs."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import warnings
from collections.abc import Iterator

import pytest
import torch
from tiny_model import TINY_MODEL

from plugins import ComponentRegistry, VideoSlotModel, build_plugin_manager

torch.set_num_threads(1)  # tiny models gain nothing from threads; keeps parallel jobs from oversubscribing the CPU
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start

#: The modules each optional extra provides that tests skip without (``pytest.importorskip``).
EXTRA_MODULES = {"onnx": ("onnx", "onnxruntime")}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Put what collection built out of the garbage collector's reach (every test module, item and fixture: about
    300,000 objects). A full collection scanned them all, pausing every thread, an in-process server's too, for
    0.16 s, and for over 0.5 s on a loaded 2-core machine: as long as a test's whole margin for "at once"."""
    del session  # Unused.
    gc.collect()
    gc.freeze()


def pytest_configure(config: pytest.Config) -> None:
    """Fail at once when an extra named in ``SLOTSTREAM_REQUIRE_EXTRAS`` (comma-separated; ``make unit`` sets it)
    cannot be imported, instead of passing with the tests that need it skipped."""
    del config  # Unused.
    for extra in filter(None, (name.strip() for name in os.environ.get("SLOTSTREAM_REQUIRE_EXTRAS", "").split(","))):
        if extra not in EXTRA_MODULES:
            raise pytest.UsageError(
                f"SLOTSTREAM_REQUIRE_EXTRAS: unknown extra {extra!r} (known: {sorted(EXTRA_MODULES)})"
            )
        for module in EXTRA_MODULES[extra]:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise pytest.UsageError(
                    f"SLOTSTREAM_REQUIRE_EXTRAS names the {extra!r} extra, but {module} cannot be imported ({error}); "
                    f"the tests that need it would all be skipped. Install it: pip install -e '.[{extra}]'"
                ) from None


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Undo what a command's ``main`` run in-process does to logging (``service.logs.configure_logging``: a root
    handler on the test's captured stderr, which is closed once the test ends, a root level, Python warnings sent to
    the log), so a later test's log records do not fail on that closed stream, whatever order the tests run in."""
    root = logging.getLogger()
    handlers, level, showwarning = root.handlers[:], root.level, warnings.showwarning
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    warnings.showwarning = showwarning


@pytest.fixture(scope="session")
def registry() -> ComponentRegistry:
    """Built-in components only: installed third-party plugins must not change test results."""
    return build_plugin_manager(load_entry_points=False).registry


@pytest.fixture
def tiny_model(registry: ComponentRegistry) -> VideoSlotModel:
    torch.manual_seed(0)
    return VideoSlotModel(**TINY_MODEL, registry=registry)


@pytest.fixture
def video() -> torch.Tensor:
    """``[2, 4, 3, 16, 16]`` random frames in ``[0, 1]``."""
    return torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
