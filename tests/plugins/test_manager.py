"""build_plugin_manager: built-ins through the hook, blocking, check_pending, entry-point discovery, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pluggy
import pytest

from plugins import build_plugin_manager, hookimpl, hookspecs
from plugins.builtin import DEFAULT_PLUGINS
from plugins.manager import BLOCK_ENV_VAR

REQUIRED = {
    "encoders": {"small_cnn", "dinov2"},
    "initializers": {"gaussian_shared", "gaussian_per_slot", "smoothsa_preheat"},
    "aggregators": {"slot_attention"},
    "transitions": {"randsfq", "transformer", "identity"},
    "decoders": {"broadcast", "mlp", "ar_random"},
}


def test_builtins_are_registered_as_plugins_through_the_hook() -> None:
    setup = build_plugin_manager(load_entry_points=False)
    names = {name for name, _ in setup.manager.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names
    for kind, required in REQUIRED.items():
        assert required <= set(setup.registry.names(kind))
        for name in required:
            assert setup.registry.owner(kind, name) in DEFAULT_PLUGINS


def test_blocking_a_plugin_by_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV_VAR, "plugins.builtin.decoders, something_else")
    setup = build_plugin_manager(load_entry_points=False)
    assert setup.registry.names("decoders") == []
    assert "plugins.builtin.decoders" in setup.blocked


def test_check_pending_rejects_an_unknown_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    rogue = types.ModuleType("rogue_plugin")

    @hookimpl
    def slotstream_no_such_hook() -> None:
        """Not a spec."""

    rogue.slotstream_no_such_hook = slotstream_no_such_hook  # type: ignore[attr-defined]

    def load_rogue(self: pluggy.PluginManager, group: str, name: str | None = None) -> int:
        self.register(rogue, name="rogue_plugin")
        return 1

    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", load_rogue)
    with pytest.raises(pluggy.PluginValidationError, match="slotstream_no_such_hook"):
        build_plugin_manager()


def test_every_hook_is_documented() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith("slotstream_")]
    assert specs, "no hook specs found"
    manager = build_plugin_manager(load_entry_points=False).manager
    for name in specs:
        function = getattr(hookspecs, name)
        doc = function.__doc__ or ""
        assert hasattr(manager.hook, name)
        for section in ("Args:", "Returns:", "firstresult", "versionadded"):
            assert section in doc, f"{name} docstring lacks {section!r}"
        for argument in function.__code__.co_varnames[: function.__code__.co_argcount]:
            assert f"{argument}:" in doc, f"{name} does not document argument {argument!r}"


def test_cli_lists_components_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plugins", "list", "--json"], capture_output=True, text=True, check=True
    )
    listing = json.loads(result.stdout)
    for kind, required in REQUIRED.items():
        assert required <= set(listing[kind])
        assert listing[kind] == sorted(listing[kind])


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "slotstream-example-plugin"
version = "0.0.1"

[project.entry-points.slotstream]
example = "slotstream_example_plugin"
"""

PLUGIN_MODULE = '''
"""A third-party plugin adding one transition."""
from plugins import hookimpl
from plugins.builtin.transitions.identity import IdentityTransition


class Frozen(IdentityTransition):
    name = "frozen_example"


@hookimpl
def slotstream_register_components(registry):
    registry.add_transition(Frozen)
'''


def test_an_installed_distribution_is_discovered_through_its_entry_point(tmp_path: Path) -> None:
    """Build and install a real throw-away distribution, then list components in a fresh interpreter."""
    source, target = tmp_path / "src", tmp_path / "site"
    (source / "slotstream_example_plugin").mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (source / "slotstream_example_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run(
        [sys.executable, "-m", "plugins", "list", "--json"], capture_output=True, text=True, check=True, env=env
    )
    assert "frozen_example" in json.loads(listing.stdout)["transitions"]
    text = subprocess.run(
        [sys.executable, "-m", "plugins", "list"], capture_output=True, text=True, check=True, env=env
    )
    assert "frozen_example  [example]" in text.stdout
    blocked = subprocess.run(
        [sys.executable, "-m", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, BLOCK_ENV_VAR: "example"},
    )
    assert "frozen_example" not in json.loads(blocked.stdout)["transitions"]
