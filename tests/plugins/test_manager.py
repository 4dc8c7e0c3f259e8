"""build_plugin_manager: built-ins through the hook, blocking, check_pending, entry-point discovery, the CLI."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from tiny_configs import model_config

from plugins import Transition, VideoSlotModel, build_plugin_manager, hookimpl, hookspecs
from plugins.__main__ import main as plugins_cli
from plugins.builtin import DEFAULT_PLUGINS
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.manager import BLOCK_ENV_VAR
from plugins.registry import AmbiguousNameError, ComponentRegistry, RegistryError


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
    assert setup.blocked == ["plugins.builtin.decoders"]  # a name that is no plugin blocked nothing
    with pytest.raises(RegistryError, match=r"Plugin 'plugins.builtin.decoders' was left out \(blocked\)") as raised:
        setup.registry.get("decoders", "broadcast")
    assert "something_else" not in str(raised.value)


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
    assert "duplicate transition name 'identity'" in setup.failed["duplicate"]
    assert setup.external == [] and "frozen_example" not in setup.registry.names("transitions")
    assert setup.registry.owner("transitions", "identity") == "plugins.builtin.transitions"
    left_out = r"Plugin 'duplicate' was left out \(rogue_duplicate: its registration raised DuplicateNameError"
    with pytest.raises(RegistryError, match=left_out):
        setup.registry.get("transitions", "frozen_example")


def _plugin_module(name: str, *transitions: type[Transition], log: list[str] | None = None) -> types.ModuleType:
    """A plugin module registering ``transitions`` (and noting its name in ``log`` when its hook runs)."""
    module = types.ModuleType(name)

    @hookimpl
    def slotstream_register_components(registry: ComponentRegistry) -> None:
        if log is not None:
            log.append(name)
        for transition in transitions:
            registry.add_transition(transition)

    module.slotstream_register_components = slotstream_register_components  # type: ignore[attr-defined]
    return module


def _installed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    distribution: str,
    version: str,
    name: str,
    module: types.ModuleType,
) -> EntryPoint:
    """The entry point ``name`` of an installed distribution (real ``.dist-info`` metadata) pointing at ``module``."""
    info = tmp_path / f"{distribution}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[slotstream]\n{name} = {module.__name__}\n")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    (entry_point,) = importlib.metadata.PathDistribution(info).entry_points
    return entry_point


def test_installed_plugins_load_in_one_order_whatever_order_they_are_found_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery follows the raw directory listing, which differs between machines: plugins load sorted by
    entry-point name, then distribution, so an entry-point name two distributions use goes to the same one."""
    log: list[str] = []
    found = [
        _installed(tmp_path, monkeypatch, "b-dist", "1.0", "beta", _plugin_module("order_beta", log=log)),
        _installed(tmp_path, monkeypatch, "z-dist", "1.0", "alpha", _plugin_module("order_alpha_z", log=log)),
        _installed(tmp_path, monkeypatch, "a-dist", "1.0", "alpha", _plugin_module("order_alpha_a", log=log)),
    ]
    for listing in (found, found[::-1]):
        log.clear()
        monkeypatch.setattr("plugins.manager._entry_points", lambda listing=listing: listing)
        with pytest.warns(
            RuntimeWarning, match=r"'alpha' \(z-dist 1.0\) was left out: .*already taken by a-dist 1.0"
        ) as warned:
            setup = build_plugin_manager()
        # blocking the name would block the distribution that loaded too
        assert "uninstall one of the two (SLOTSTREAM_DISABLE_PLUGINS=alpha would block both)" in str(warned[0].message)
        assert log == ["order_alpha_a", "order_beta"]
        assert setup.external == ["alpha", "beta"] and list(setup.failed) == ["alpha"]


class Damped(IdentityTransition):
    name = "damped_example"


class AlsoDamped(IdentityTransition):
    name = "damped_example"


class OursOnly(IdentityTransition):
    name = "ours_only"


class TheirsOnly(IdentityTransition):
    name = "theirs_only"


@pytest.mark.parametrize("reverse", [False, True], ids=["found_in_order", "found_reversed"])
def test_a_component_name_two_installed_plugins_register_belongs_to_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reverse: bool
) -> None:
    """Whichever is found first, asking for the shared name fails naming both plugins and how to keep one, so
    installing an unrelated plugin never silently changes the class a saved model loads."""
    found = [
        _installed(tmp_path, monkeypatch, "ours-dist", "1.0", "ours", _plugin_module("ours_mod", Damped, OursOnly)),
        _installed(
            tmp_path, monkeypatch, "theirs-dist", "2.0", "theirs", _plugin_module("theirs_mod", AlsoDamped, TheirsOnly)
        ),
    ]
    monkeypatch.setattr("plugins.manager._entry_points", lambda: found[::-1] if reverse else found)
    shared = r"'ours' \(ours-dist 1.0\) and 'theirs' \(theirs-dist 2.0\) all register the transition name"
    with pytest.warns(RuntimeWarning, match=shared):
        setup = build_plugin_manager()
    assert setup.failed == {} and setup.external == ["ours", "theirs"]
    assert setup.ambiguous == {("transitions", "damped_example"): ["ours", "theirs"]}
    assert setup.registry.get("transitions", "ours_only") is OursOnly  # both plugins' other components stay
    assert setup.registry.get("transitions", "theirs_only") is TheirsOnly
    config = model_config(transition="damped_example")
    with pytest.raises(RegistryError, match="'damped_example' is ambiguous") as raised:
        VideoSlotModel(**config, registry=setup.registry)
    for expected in ("plugin 'ours' (ours-dist 1.0)", "plugin 'theirs' (theirs-dist 2.0)"):
        assert expected in str(raised.value)
    assert f"{BLOCK_ENV_VAR}=theirs to use {__name__}.Damped" in str(raised.value)

    with pytest.warns(RuntimeWarning, match="all register"):
        assert plugins_cli(["list"]) == 0
    assert "damped_example  [ambiguous: ours, theirs; block all but one with SLOTSTREAM_DISABLE_PLUGINS]" in (
        capsys.readouterr().out
    )

    monkeypatch.setenv(BLOCK_ENV_VAR, "theirs")
    kept = build_plugin_manager().registry
    assert kept.get("transitions", "damped_example") is Damped
    assert kept.owner("transitions", "damped_example") == "ours"
    assert VideoSlotModel(**config, registry=kept).transition.__class__ is Damped
    VideoSlotModel(**config, registry=kept).save_pretrained(tmp_path / "saved")
    with pytest.raises(AmbiguousNameError) as loading:  # both plugins are installed: nothing to install
        VideoSlotModel.from_pretrained(tmp_path / "saved", registry=setup.registry)
    assert str(loading.value).startswith(f"{tmp_path / 'saved' / 'config.json'}: ")
    assert "'damped_example' is ambiguous" in str(loading.value)
    assert "needs that package installed" not in str(loading.value)


def test_a_left_out_plugin_is_named_with_its_distribution_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found through the real installed-distribution metadata, as ``pip install`` leaves it."""
    module = "slotstream_test_rogue_registration"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from plugins import hookimpl
            from plugins.builtin.transitions.identity import IdentityTransition


            @hookimpl
            def slotstream_register_components(registry):
                registry.add_transition(IdentityTransition)  # a name the built-in plugin holds
            """
        )
    )
    info = tmp_path / "rogue_dist-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rogue-dist\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[slotstream]\nrogue = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    try:
        left_out = r"plugin 'rogue' \(rogue-dist 1.2.3\) was left out: its registration raised DuplicateNameError: dup"
        with pytest.warns(RuntimeWarning, match=left_out):
            setup = build_plugin_manager()
    finally:
        sys.modules.pop(module, None)
    assert setup.failed["rogue"].startswith("rogue-dist 1.2.3: its registration raised DuplicateNameError")


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
    assert "external plugins: example (slotstream-example-plugin 0.0.1)" in text.stdout  # where it comes from
    blocked = subprocess.run(
        [sys.executable, "-m", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, BLOCK_ENV_VAR: "example"},
    )
    assert "frozen_example" not in json.loads(blocked.stdout)["transitions"]
