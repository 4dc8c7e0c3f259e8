"""build_plugin_manager: built-ins through the hook, blocking, check_pending, entry-point discovery, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from plugins import build_plugin_manager, hookimpl, hookspecs
from plugins.builtin import DEFAULT_PLUGINS
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.manager import BLOCK_ENV_VAR
from plugins.registry import ComponentRegistry, RegistryError


class Frozen(IdentityTransition):
    """A transition only the rogue test plugin registers."""

    name = "frozen_example"


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
    with pytest.warns(RuntimeWarning, match=f"{BLOCK_ENV_VAR} names 'something_else', which is no plugin here"):
        setup = build_plugin_manager(load_entry_points=False)
    assert setup.registry.names("decoders") == []
    assert "plugins.builtin.decoders" in setup.blocked
    with pytest.raises(RegistryError, match=r"Plugin 'plugins.builtin.decoders' was left out \(blocked\)"):
        setup.registry.get("decoders", "broadcast")


def _rogue_entry_point(monkeypatch: pytest.MonkeyPatch, name: str, module: types.ModuleType) -> EntryPoint:
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return EntryPoint(name=name, value=module.__name__, group="slotstream")


def test_a_broken_installed_plugin_is_left_out_and_the_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown hook, an import error or a registration that raises (here a duplicate component name) leaves
    that one plugin out with a warning; built-in models still build, and asking for its components says why."""
    unknown_hook = types.ModuleType("rogue_unknown_hook")

    @hookimpl
    def slotstream_no_such_hook() -> None:
        """Not a spec."""

    unknown_hook.slotstream_no_such_hook = slotstream_no_such_hook  # type: ignore[attr-defined]
    duplicate = types.ModuleType("rogue_duplicate")

    @hookimpl
    def slotstream_register_components(registry: ComponentRegistry) -> None:
        registry.add_transition(Frozen)  # a new name, then one a built-in holds: undone together
        registry.add_transition(IdentityTransition)

    duplicate.slotstream_register_components = slotstream_register_components  # type: ignore[attr-defined]
    entry_points = [
        _rogue_entry_point(monkeypatch, "unknown_hook", unknown_hook),
        EntryPoint(name="missing", value="no_such_module_anywhere", group="slotstream"),
        _rogue_entry_point(monkeypatch, "duplicate", duplicate),
    ]
    monkeypatch.setattr("plugins.manager._entry_points", lambda: entry_points)
    with pytest.warns(RuntimeWarning, match="was left out") as warned:
        setup = build_plugin_manager()
    assert len(warned) == 3
    assert set(setup.failed) == {"unknown_hook", "missing", "duplicate"}
    assert "slotstream_no_such_hook" in setup.failed["unknown_hook"]
    assert "ModuleNotFoundError" in setup.failed["missing"]
    assert "duplicate transitions name 'identity'" in setup.failed["duplicate"]
    assert setup.external == [] and "frozen_example" not in setup.registry.names("transitions")
    assert setup.registry.owner("transitions", "identity") == "plugins.builtin.transitions"
    with pytest.raises(RegistryError, match=r"Plugin 'duplicate' was left out \(its registration: RegistryError"):
        setup.registry.get("transitions", "frozen_example")


def test_a_plugin_without_the_registration_hook_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    forgot = types.ModuleType("rogue_forgot_hookimpl")
    forgot.slotstream_register_components = lambda registry: None  # type: ignore[attr-defined]  # no @hookimpl
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [_rogue_entry_point(monkeypatch, "forgot", forgot)])
    with pytest.warns(RuntimeWarning, match="'forgot' implements no slotstream_register_components hook"):
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
