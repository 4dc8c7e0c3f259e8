"""What a plugin author is told: where a plugin's import failed, which components a left-out plugin takes with it,
blocked names that match no plugin, config keys a component does not take, and kinds named in the singular."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

from plugins import build_plugin_manager, hookimpl
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.manager import BLOCK_ENV_VAR, PluginWarning
from plugins.registry import ComponentConfigError, ComponentRegistry, RegistryError


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, files: dict[str, str]) -> Path:
    """Write the package ``package`` (``files``: relative path -> source) with an installed distribution's metadata
    whose entry point names it, onto ``sys.path``; returns the package folder."""
    folder = tmp_path / package
    for name, source in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(source))
    info = tmp_path / f"{package}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[slotstream]\n{package} = {package}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_points = list(importlib.metadata.PathDistribution(info).entry_points)
    monkeypatch.setattr("plugins.manager._entry_points", lambda: entry_points)
    for module in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, module)
    return folder


def test_an_import_error_names_the_file_and_line_in_the_plugins_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NameError in a module the plugin imports is placed at its line there, and the warning is issued at that
    line (the one shown under it), not at the caller of build_plugin_manager."""
    folder = _install(
        tmp_path,
        monkeypatch,
        "slotstream_test_undefined",
        {
            "__init__.py": "from slotstream_test_undefined import helpers\n",
            "helpers.py": '"""Helpers."""\n\nVALUE = undefined_helper()\n',
        },
    )
    try:
        with pytest.warns(PluginWarning, match="was left out") as warned:
            setup = build_plugin_manager()
    finally:
        for module in ("slotstream_test_undefined", "slotstream_test_undefined.helpers"):
            sys.modules.pop(module, None)
    where = f"{folder / 'helpers.py'}:3"
    assert setup.failed["slotstream_test_undefined"] == (
        f"slotstream_test_undefined 0.3: NameError: name 'undefined_helper' is not defined (at {where})"
    )
    (warning,) = warned
    assert (warning.filename, warning.lineno) == (str(folder / "helpers.py"), 3)
    assert isinstance(warning.message, RuntimeWarning)  # what callers filtering plugin warnings expect


def test_a_left_out_plugin_is_not_listed_among_the_names_that_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin whose second name collides is left out whole: the warning says its first component goes with it,
    and lists only names that stay, as the error for that component later does."""
    folder = _install(
        tmp_path,
        monkeypatch,
        "slotstream_test_collide",
        {
            "__init__.py": """
                from plugins import hookimpl
                from plugins.builtin.transitions.identity import IdentityTransition


                class Fine(IdentityTransition):
                    name = "collide_ok"


                @hookimpl
                def slotstream_register_components(registry):
                    registry.add_transition(Fine)
                    registry.add_transition(IdentityTransition)  # a name the built-in plugin holds
                """
        },
    )
    try:
        with pytest.warns(PluginWarning, match="was left out") as warned:
            setup = build_plugin_manager()
    finally:
        sys.modules.pop("slotstream_test_collide", None)
    message = str(warned[0].message)
    stay = ", ".join(setup.registry.names("transitions"))
    assert f"the transitions of other plugins: {stay} (at {folder / '__init__.py'}:13)" in message
    assert "the components it had registered are left out with it: the transition 'collide_ok'" in message
    with pytest.raises(RegistryError, match=f"Known transitions: {stay}. Plugin 'slotstream_test_collide' was left"):
        setup.registry.get("transitions", "collide_ok")


def test_blocked_names_that_match_no_plugin_are_warned_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("slotstream_test_walkplug")

    @hookimpl
    def slotstream_register_components(registry: ComponentRegistry) -> None:
        del registry  # Unused.

    module.slotstream_register_components = slotstream_register_components  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    entry_point = importlib.metadata.EntryPoint(name="walkplug", value=module.__name__, group="slotstream")
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [entry_point])
    monkeypatch.setenv(BLOCK_ENV_VAR, "walkplgu, plugins.builtin.decoder")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("default")  # as a process without warning options shows them
        for _ in range(2):
            setup = build_plugin_manager()
    assert setup.blocked == [] and setup.external == ["walkplug"]
    assert [str(warning.message) for warning in warned] == [
        f"{BLOCK_ENV_VAR} names 'plugins.builtin.decoder' (did you mean 'plugins.builtin.decoders'?), 'walkplgu' "
        "(did you mean 'walkplug'?), which are no plugins here and block nothing; block installed plugins by their "
        "entry-point names (walkplug) or built-in modules (plugins.builtin.encoders, plugins.builtin.initializers, "
        "plugins.builtin.aggregators, plugins.builtin.transitions, plugins.builtin.decoders, plugins.builtin.losses, "
        "downstream.heads)"
    ]
    assert warned[0].filename == "<slotstream plugins>"  # no unrelated source line shown under it


class NeedsDepth(IdentityTransition):
    name = "needs_depth"

    def __init__(self, depth: int = 1) -> None:
        super().__init__()
        self.depth = depth


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"depht": 2}, r"got unknown config keys \['depht'\]; it accepts \['depth'\]$"),
        (
            {"slot_dim": 2},
            r"got unknown config keys \['slot_dim'\]; it accepts \['depth'\] \(slot_dim: set by",
        ),
    ],
    ids=["misspelt", "wiring"],
)
def test_a_config_key_the_component_does_not_take_is_a_registry_error(kwargs: dict[str, int], says: str) -> None:
    """One error class the tools report in one line; still a TypeError for callers that caught one."""
    registry = ComponentRegistry()
    registry.add_transition(NeedsDepth)
    with pytest.raises(ComponentConfigError, match=r"^the transition 'needs_depth' \(.*\) " + says) as raised:
        registry.build("transitions", "needs_depth", kwargs, {"num_slots": 3, "slot_dim": 16})
    assert isinstance(raised.value, RegistryError | ValueError) and isinstance(raised.value, TypeError)


def test_a_component_without_a_constructor_of_its_own_takes_no_config_keys() -> None:
    """It inherits ``nn.Module``'s ``*args, **kwargs``: keys it would never use were passed on, failing in the
    constructor (a ComponentBuildError) instead of being named."""
    registry = ComponentRegistry()
    registry.add_transition(IdentityTransition)
    for kwargs, says in (
        ({"scale": 2}, r"got unknown config keys \['scale'\]; it accepts \[\]$"),
        ({"num_slots": 2}, r"got unknown config keys \['num_slots'\]; it accepts \[\] \(num_slots: set by"),
    ):
        with pytest.raises(ComponentConfigError, match=r"^the transition 'identity' \(.*\) " + says):
            registry.build("transitions", "identity", kwargs, {"num_slots": 3, "slot_dim": 16})


def test_messages_name_one_component_of_a_kind_in_the_singular(registry: ComponentRegistry) -> None:
    with pytest.raises(RegistryError, match=r"^unknown loss name 'reconstruction_mes'\. Known losses: "):
        registry.get("losses", "reconstruction_mes")
    with pytest.raises(RegistryError, match=r"^unknown encoder name 'tiny_cnn'\. Known encoders: "):
        registry.get("encoders", "tiny_cnn")


def test_a_syntax_error_in_a_module_the_plugin_imports_names_that_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's import line runs, the broken file does not: the warning names the broken file and its line,
    not the import that read it."""
    folder = _install(
        tmp_path,
        monkeypatch,
        "slotstream_test_syntax",
        {
            "__init__.py": "from slotstream_test_syntax import inner\n",
            "inner.py": '"""Inner."""\n\ndef f(:\n    pass\n',
        },
    )
    try:
        with pytest.warns(PluginWarning, match="was left out") as warned:
            setup = build_plugin_manager()
    finally:
        for module in ("slotstream_test_syntax", "slotstream_test_syntax.inner"):
            sys.modules.pop(module, None)
    assert setup.failed["slotstream_test_syntax"].endswith(f"(at {folder / 'inner.py'}:3)")
    (warning,) = warned
    assert (warning.filename, warning.lineno) == (str(folder / "inner.py"), 3)


def test_a_syntax_error_in_evaluated_text_names_the_plugins_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval`` of broken text raises a SyntaxError of ``<string>``, no file: the plugin's line is the place."""
    folder = _install(
        tmp_path,
        monkeypatch,
        "slotstream_test_evaluated",
        {"__init__.py": '"""Evaluated."""\n\nSCALE = eval("1 +")\n'},
    )
    try:
        with pytest.warns(PluginWarning, match="was left out") as warned:
            setup = build_plugin_manager()
    finally:
        sys.modules.pop("slotstream_test_evaluated", None)
    assert setup.failed["slotstream_test_evaluated"].endswith(f"(at {folder / '__init__.py'}:3)")
    (warning,) = warned
    assert (warning.filename, warning.lineno) == (str(folder / "__init__.py"), 3)
