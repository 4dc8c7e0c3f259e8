"""Building the plugin manager and the registry it fills.

Everything happens inside :func:`build_plugin_manager`; importing this module does nothing.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.builtin import DEFAULT_PLUGINS
from plugins.registry import BLOCK_ENV_VAR as BLOCK_ENV_VAR  # defined there for the registry's messages
from plugins.registry import ComponentKind, ComponentRegistry, DuplicateNameError, RegistryError, raised_in_package

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
"""Distributions advertise plugins in this entry-point group."""

PROJECT_DISTRIBUTION = "slotstream"
"""The distribution of the built-in plugins; its version is theirs."""


class PluginWarning(RuntimeWarning):
    """A problem with the installed plugins: one left out, a name two of them register, a block that matches none.

    Issued at the plugin's own file and line when the problem lies in its code (the line shown under the warning
    is that one), else at ``<slotstream plugins>`` (no source line shown), never at an unrelated caller's line.
    """


_WARNED: dict[Any, Any] = {}
"""The warnings registry of :func:`_warn`: under the default filters each message is shown once per process."""


@dataclass
class PluginSetup:
    """A built plugin manager and the registry it filled.

    Attributes:
        manager: the pluggy manager; plugins are registered under their entry-point or module names.
        registry: every component the plugins registered.
        external: names of plugins loaded from entry points.
        blocked: installed or built-in plugins that were blocked (a blocked name that is no plugin here is only
            warned about).
        failed: installed plugins that were left out, by entry-point name, with where they come from
            (distribution and version) and the reason (an import error, an invalid hook, a component name a
            built-in holds...; an error raised in the plugin's code names the file and line there); each was also
            reported with a :class:`PluginWarning` (a ``RuntimeWarning``).
        ambiguous: component names several installed plugins register, as ``(kind, name)`` -> those plugins;
            resolving one fails until all but one are blocked. Each was also reported with a
            :class:`PluginWarning`.
    """

    manager: pluggy.PluginManager
    registry: ComponentRegistry
    external: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def build_plugin_manager(*, load_entry_points: bool = True, blocked: list[str] | None = None) -> PluginSetup:
    """Create a plugin manager with the built-ins and installed plugins, and fill a registry.

    Steps: add the hook specs; register the built-in plugin modules of :data:`plugins.builtin.DEFAULT_PLUGINS`
    (through the same hook as third-party plugins); block the names given in ``blocked`` and in the
    ``SLOTSTREAM_DISABLE_PLUGINS`` environment variable; load entry points of the ``slotstream`` group one by one,
    sorted by entry-point name, then distribution name (never in the order the file system lists them, which
    differs between machines); ``check_pending()`` (an implementation without a matching spec is an error); then
    call ``slotstream_register_components`` once per plugin, in registration order (built-ins first).

    An installed plugin that fails (its import raises, a hook is invalid or unknown, its entry-point name is
    taken by an earlier distribution, its registration raises, for example by adding a component name a
    built-in holds) is left out, with every component it had registered, with a :class:`PluginWarning` naming
    its distribution and version, the error and, when the error was raised in the plugin's own code, the file and
    line there; it is recorded in :attr:`PluginSetup.failed`, and models asking for one of its components are told
    why it is missing: one broken package must not stop models that do not use it.

    Entries of ``SLOTSTREAM_DISABLE_PLUGINS`` (or ``blocked``) that match no plugin block nothing: one
    :class:`PluginWarning` per process names them, with close matches, and lists the plugins there are.

    The registry records each plugin's version (:attr:`ComponentRegistry.plugin_versions`): the distribution's
    for installed plugins, this project's for the built-ins.

    A component name that two installed plugins both register belongs to neither: it is ambiguous
    (:attr:`PluginSetup.ambiguous`, with a ``RuntimeWarning``), both plugins' other components stay available,
    and a model asking for that name fails with an error naming both plugins and the
    ``SLOTSTREAM_DISABLE_PLUGINS`` setting that keeps one. So which class a saved model loads never depends on
    installation order, and installing an unrelated plugin cannot silently swap it.

    Args:
        load_entry_points: load installed third-party plugins (tests turn this off for a clean slate).
        blocked: extra plugin names to block.

    Returns:
        The manager and the filled registry.

    Example:
        >>> setup = build_plugin_manager()
        >>> "slot_attention" in setup.registry.names("aggregators")
        True
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    blocked_names = sorted({*(blocked or []), *_names_from_env()})
    for name in blocked_names:
        manager.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if not manager.is_blocked(module_name):
            manager.register(importlib.import_module(module_name), name=module_name)
    failed: dict[str, str] = {}
    entry_points = sorted(_entry_points() if load_entry_points else [], key=_entry_point_order)
    external = _load_entry_points(manager, entry_points, failed)
    manager.check_pending()
    registry = ComponentRegistry()
    registry.external_plugins = dict(external)
    registry.plugin_versions, registry.plugin_distributions = _plugin_provenance(manager, entry_points, external)
    _register_components(manager, registry, external, failed)
    known = {*DEFAULT_PLUGINS, *(entry_point.name for entry_point in entry_points)}
    blocked_plugins = [name for name in blocked_names if name in known]  # the rest blocked nothing (warned below)
    registry.unavailable_plugins = {**failed, **{name: "blocked" for name in blocked_plugins}}
    ambiguous = registry.ambiguous()
    for (kind, name), owners in ambiguous.items():
        _warn(
            f"slotstream plugins {' and '.join(f'{owner!r} ({external[owner]})' for owner in owners)} all register "
            f"the {ComponentKind(kind).singular} name {name!r}: a model that asks for it fails until all but one of "
            f"them are blocked with {BLOCK_ENV_VAR}"
        )
    _warn_unmatched_blocks([name for name in blocked_names if name not in known], known)
    loaded = sorted(name for name in external if manager.has_plugin(name))  # not those whose registration failed
    return PluginSetup(manager, registry, loaded, blocked_plugins, failed, ambiguous)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed distributions' entry points of the ``slotstream`` group, in discovery order."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _entry_point_order(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str, str]:
    """Sort key: entry-point name, then distribution name, then the object it points to."""
    return entry_point.name, entry_point.dist.name if entry_point.dist else "", entry_point.value


def _origin(entry_point: importlib.metadata.EntryPoint) -> str:
    """Where a plugin comes from: ``"my-plugin 0.1.0"``, or the module path of an entry point without one."""
    return f"{entry_point.dist.name} {entry_point.dist.version}" if entry_point.dist else entry_point.value


def _load_entry_points(
    manager: pluggy.PluginManager, entry_points: list[importlib.metadata.EntryPoint], failed: dict[str, str]
) -> dict[str, str]:
    """Import and register each entry point on its own, so a broken one is left out (into ``failed``) rather
    than stopping the others; returns the names registered, in order, with where each comes from."""
    loaded: dict[str, str] = {}
    for entry_point in entry_points:
        name, origin = entry_point.name, _origin(entry_point)
        if manager.is_blocked(name):
            continue
        if manager.has_plugin(name):
            taken_by = loaded.get(name, "a built-in plugin")
            advice = f"uninstall one of the two ({BLOCK_ENV_VAR}={name} would block both)"
            _leave_out(failed, name, origin, f"the plugin name {name!r} is already taken by {taken_by}", advice=advice)
            continue
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=name)
            manager.check_pending()
        except Exception as error:  # a third party's import or hook error: whatever it raises
            if manager.has_plugin(name):
                manager.unregister(name=name)
            location = raised_in_package(error, entry_point.module)
            reason = f"{type(error).__name__}: {error}{_at(error, location)}"
            _leave_out(failed, name, origin, reason, location, _fix_advice(name, error, entry_point.module))
            continue
        loaded[name] = origin
    return loaded


def _register_components(
    manager: pluggy.PluginManager, registry: ComponentRegistry, external: dict[str, str], failed: dict[str, str]
) -> None:
    """Call each plugin's registration hook on its own, in registration order (so a duplicate name is blamed on
    the plugin adding it); an external plugin (``external``: name -> origin) whose hook raises is unregistered
    with what it added."""
    hook = manager.hook.slotstream_register_components
    implementing = {id(implementation.plugin) for implementation in hook.get_hookimpls()}
    plugins_in_order = [(name, plugin) for name, plugin in manager.list_name_plugin() if plugin is not None]
    for name, plugin in plugins_in_order:
        if id(plugin) not in implementing:
            if name in external:
                _warn(
                    f"slotstream plugin {name!r} implements no slotstream_register_components hook (a function of "
                    "that name marked with @plugins.hookimpl), so it adds no component"
                )
            continue
        others = [other for _, other in plugins_in_order if other is not plugin]
        registry.current_plugin = name or repr(plugin)
        try:
            manager.subset_hook_caller("slotstream_register_components", remove_plugins=others)(registry=registry)
        except Exception as error:
            if name not in external:
                raise  # a built-in plugin's error is a bug here, not a broken installation
            removed = registry.remove_plugin(name)
            manager.unregister(name=name)
            location = raised_in_package(error, _module_of(plugin))
            added = (
                "; the components it had registered are left out with it: "
                + ", ".join(f"the {ComponentKind(kind).singular} {component!r}" for kind, component in removed)
                if removed
                else ""
            )
            reason = f"its registration raised {type(error).__name__}: {error}{_at(error, location)}{added}"
            _leave_out(failed, name, external[name], reason, location, _fix_advice(name, error, _module_of(plugin)))
    registry.current_plugin = "<direct>"


def _plugin_provenance(
    manager: pluggy.PluginManager, entry_points: list[importlib.metadata.EntryPoint], external: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The version and the distribution of each registered plugin where known: the project's for the built-ins
    (when it is installed), the installed distribution's for a plugin."""
    versions: dict[str, str] = {}
    distributions: dict[str, str] = {}
    try:
        project = importlib.metadata.version(PROJECT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        project = None
    if project is not None:
        built_ins = [name for name in DEFAULT_PLUGINS if manager.has_plugin(name)]
        versions |= dict.fromkeys(built_ins, project)
        distributions |= dict.fromkeys(built_ins, PROJECT_DISTRIBUTION)
    for entry_point in entry_points:
        if (
            entry_point.name in external
            and entry_point.dist is not None
            and external[entry_point.name] == _origin(entry_point)
        ):
            versions[entry_point.name] = entry_point.dist.version
            distributions[entry_point.name] = entry_point.dist.name
    return versions, distributions


def _module_of(plugin: object) -> str:
    """The module a registered plugin object comes from (a module's own name, a class's or instance's module)."""
    return str(getattr(plugin, "__module__", None) or getattr(plugin, "__name__", ""))


def _at(error: BaseException, location: tuple[str, int] | None) -> str:
    """`` (at file:line)`` for the message of ``error`` (a ``SyntaxError``'s own message names the file without its
    folder); ``""`` when the location is unknown."""
    if location is None:
        return ""
    return f" (at {location[0]}:{location[1]})"


def _leave_out(
    failed: dict[str, str],
    name: str,
    origin: str,
    reason: str,
    location: tuple[str, int] | None = None,
    advice: str | None = None,
) -> None:
    """Record the plugin ``name`` (from ``origin``) as left out for ``reason`` and warn, with ``advice`` on the fix
    (default: :func:`_fix_advice` for no particular error)."""
    failed[name] = f"{origin}: {reason}"
    advice = advice or _fix_advice(name, None, "")
    _warn(f"slotstream plugin {name!r} ({origin}) was left out: {reason}. To fix: {advice}", location)


def _fix_advice(name: str, error: BaseException | None, module: str) -> str:
    """What fixes the plugin ``name`` (whose code is the module ``module``) that ``error`` left out: the fix of the
    error itself (a missing module to install, a component to rename...), then blocking the plugin, which only
    silences the warning."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        if error.name.split(".")[0] == module.split(".")[0]:  # a module of the plugin's own package
            fix = f"fix the plugin's import of {error.name!r} (its own package has no such module)"
        else:
            fix = f"install the missing dependency (the distribution that provides the module {error.name!r})"
    elif isinstance(error, DuplicateNameError):
        fix = "rename the component whose name is taken"
    elif isinstance(error, RegistryError):
        fix = "change the registration as the error says"
    elif isinstance(error, pluggy.PluginValidationError):
        fix = _hook_fix(str(error))
    else:
        fix = "fix the error above in the plugin (e.g. install a missing dependency or rename a component)"
    return f"{fix}, or set {BLOCK_ENV_VAR}={name} to skip the plugin without this warning"


def _hook_specs() -> dict[str, list[str]]:
    """The hooks a plugin may implement, by name, with the arguments of each spec."""
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if name.startswith(f"{hookspecs.PROJECT_NAME}_") and callable(function)
    }


def _hook_fix(message: str) -> str:
    """The fix for pluggy's refusal of a hook implementation (its ``message``): the spec a misspelt hook name
    most likely means, or the arguments a hook may take; a general fix for any other refusal."""
    specs = _hook_specs()
    signatures = ", ".join(f"{name}({', '.join(arguments)})" for name, arguments in sorted(specs.items()))
    unknown = re.match(r"unknown hook '([^']+)'", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), specs, n=1)
        rename = f"rename the function {unknown.group(1)!r} to {close[0]!r}" if close else "rename the function"
        return f"{rename} or drop its @hookimpl marker (the hooks are {signatures})"
    mismatch = re.search(r"for hook '([^']+)'", message)
    if mismatch and mismatch.group(1) in specs:
        hook = mismatch.group(1)
        return f"declare only arguments of the hook's spec, {hook}({', '.join(specs[hook])}), by those names"
    return f"fix the hook implementation as the error says (the hooks are {signatures})"


def _warn_unmatched_blocks(unmatched: list[str], known: set[str]) -> None:
    """One warning for the blocked names that match no plugin (they block nothing: a misspelt name, usually),
    with close matches and the plugins there are."""
    if not unmatched:
        return
    installed = sorted(known - set(DEFAULT_PLUGINS))
    named = ", ".join(
        repr(name) + "".join(f" (did you mean {close!r}?)" for close in difflib.get_close_matches(name, known, n=1))
        for name in unmatched
    )
    _warn(
        f"{BLOCK_ENV_VAR} names {named}, "
        f"{'which is no plugin here and blocks' if len(unmatched) == 1 else 'which are no plugins here and block'} "
        "nothing; block installed plugins by their entry-point "
        f"names ({', '.join(installed) or 'none installed'}) or built-in modules ({', '.join(DEFAULT_PLUGINS)})"
    )


def _warn(message: str, location: tuple[str, int] | None = None) -> None:
    """Issue a :class:`PluginWarning` at ``location`` (the plugin's own file and line) or at
    ``<slotstream plugins>``, once per process under the default filters."""
    filename, line = location or ("<slotstream plugins>", 0)
    warnings.warn_explicit(message, PluginWarning, filename, line, module=__name__, registry=_WARNED)


def _names_from_env() -> list[str]:
    raw = os.environ.get(BLOCK_ENV_VAR, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


_default_registry: ComponentRegistry | None = None


def default_registry() -> ComponentRegistry:
    """The registry of a plugin manager built once per process with the default options (lazily)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = build_plugin_manager().registry
    return _default_registry
