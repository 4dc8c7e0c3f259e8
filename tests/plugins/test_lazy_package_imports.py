"""Importing a package imports its heavy modules only when one of their names is used: the client library and the
light helper modules load without torch or the server."""

from __future__ import annotations

import subprocess
import sys

import pytest

import plugins
import service
import training

_HEAVY = ("torch", "service.server", "prometheus_client", "plugins.model", "PIL")


def _modules_after(statement: str) -> set[str]:
    """The heavy modules a fresh interpreter has imported after ``statement``."""
    probe = f"import sys\n{statement}\nprint(' '.join(m for m in {_HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "statement",
    ["import service.client", "from service.client import Client, StreamOptions", "import plugins.frame_fit"],
)
def test_light_imports_load_no_heavy_module(statement: str):
    assert _modules_after(statement) == set()


def test_a_package_name_imports_its_module_on_first_use():
    assert _modules_after("from plugins import VideoSlotModel") >= {"torch", "plugins.model"}
    assert "service.server" in _modules_after("from service import Server")
    assert _modules_after("import training") == set()
    assert "torch" in _modules_after("from training import fit")


@pytest.mark.parametrize("package", [plugins, service, training])
def test_every_exported_name_resolves_and_others_raise(package):
    for name in package.__all__:
        value = getattr(package, name)
        assert getattr(value, "__name__", name) == name  # hookimpl is an instance, not a named object
    assert set(package.__all__) <= set(dir(package)) and "__all__" in dir(package)
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'Missing'"):
        package.Missing  # noqa: B018


def test_the_training_command_and_its_data_loaders_load_no_grpc():
    """Training runs no gRPC: a gRPC core loaded in a training process (its threads, its fork handlers) only adds
    ways for the run's worker processes and signals to fail."""
    probe = "import sys\nimport training.run, training.datasets.videos\nprint('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
