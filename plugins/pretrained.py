"""Saving a :class:`~plugins.model.VideoSlotModel` to a model directory and building one from it.

:meth:`~plugins.model.VideoSlotModel.save_pretrained` and :meth:`~plugins.model.VideoSlotModel.from_pretrained`
are the public entry points; their docstrings state the contract. The file names, the ``config.json`` reader and
the messages for wrong directories live in :mod:`plugins.model_files`.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from plugins.builtin import DEFAULT_PLUGINS
from plugins.config import ComponentSpec
from plugins.files import write_atomically
from plugins.interfaces import ContractViolation
from plugins.model_files import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    mismatch_summary,
    model_files,
    read_model_config,
    recorded_frame_fit,
    weights_mismatch_message,
)
from plugins.registry import (
    BLOCK_ENV_VAR,
    DIRECT_REGISTRATION,
    AmbiguousNameError,
    ComponentBuildError,
    ComponentConfigError,
    ComponentKind,
    ComponentRegistry,
    RegistryError,
)

if TYPE_CHECKING:
    from plugins.model import VideoSlotModel


class PluginVersionWarning(UserWarning):
    """A saved model's component comes from another version of its plugin than the one installed."""


class PluginSourceWarning(UserWarning):
    """A saved model's component name is registered here by another plugin than the one it was saved from."""


def write_pretrained(model: VideoSlotModel, directory: str | os.PathLike[str]) -> Path:
    """What :meth:`~plugins.model.VideoSlotModel.save_pretrained` does (see there); returns the directory."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    # "plugins" (which plugin registered each component) and "plugin_versions" are for people, error messages
    # and the version warning of from_pretrained; building the model ignores them.
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model.saved_config,
        "plugins": model.component_plugins,
    }
    if model.plugin_versions:
        payload["plugin_versions"] = model.plugin_versions
    if model.plugin_distributions:
        payload["plugin_distributions"] = model.plugin_distributions
    if model.frame_fit is not None:
        payload["input"] = {"frame_fit": model.frame_fit}
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    write_atomically(path / CONFIG_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    write_atomically(path / WEIGHTS_FILE, lambda temporary: save_model(model, str(temporary)))
    return path


def read_pretrained(
    cls: type[VideoSlotModel],
    directory: str | os.PathLike[str],
    registry: ComponentRegistry | None,
    map_location: str | torch.device,
) -> VideoSlotModel:
    """What :meth:`~plugins.model.VideoSlotModel.from_pretrained` does (see there for the contract)."""
    config_path, weights_path = model_files(directory)
    payload = read_model_config(config_path)
    frame_fit = recorded_frame_fit(payload, config_path)
    model = _build_saved(cls, payload, registry, config_path)
    model.frame_fit = frame_fit
    model = model.to(map_location)  # the weights load straight onto it
    _load_weights(model, payload, weights_path, config_path, str(map_location))
    # Warned once the model loaded: a failure above puts the plugin changes that explain it first in its message.
    _warn_on_other_plugin_sources(model, payload, config_path)
    _warn_on_other_plugin_versions(model, payload, config_path)
    return model.eval()


SAVED_MODEL_KEYS = (
    *("encoder", "initializer", "aggregator", "transition", "decoder"),  # plugins.model.COMPONENT_NAMES
    *("num_slots", "slot_dim", "image_size", "first_iters", "later_iters"),
)
"""The keys of ``config.json``'s ``model`` section that :meth:`~plugins.model.VideoSlotModel.save_pretrained`
always writes, and loading requires (none falls back to a constructor default)."""


def _build_saved(
    cls: type[VideoSlotModel], payload: Mapping[str, Any], registry: ComponentRegistry | None, config_path: Path
) -> VideoSlotModel:
    """The model the ``model`` section of ``config.json`` (``payload``, read from ``config_path``) describes.

    Raises:
        ComponentConfigError: a component's recorded arguments do not fit its class; ComponentBuildError: its
            constructor raised. Both name the file and, first, the plugin changes since it was saved
            (:func:`plugin_changes`: another version, or another plugin registering the name, and how to go back),
            which are what such a failure of a saved model usually comes from.
        RegistryError: a component name nothing registers here (with :func:`missing_plugin_hint`).
        ValueError: the section lacks one of :data:`SAVED_MODEL_KEYS`, does not describe a model (a value of the
            wrong type, an unknown key, a size out of bounds: :mod:`plugins.model_sizes`), or gives a component one
            of its initial weight arguments (:func:`_refuse_initial_weight_arguments`).
    """
    missing = [key for key in SAVED_MODEL_KEYS if key not in payload["model"]]
    if missing:  # every saved config.json holds them: without one the constructor's default would be loaded
        keys = ", ".join(f"model.{key}" for key in missing)
        raise ValueError(
            f"{config_path}: {keys} missing, which save_pretrained always writes: the file was edited or not written "
            "by slotstream; restore it, or save the model again with save_pretrained"
        )
    _refuse_initial_weight_arguments(payload, registry, config_path)
    try:
        return cls(**payload["model"], registry=registry)
    except ComponentConfigError as error:  # a component argument its class lacks: keep the type, name the file
        raise ComponentConfigError(_build_failure(payload, registry, config_path, error)) from error
    except TypeError as error:  # an unknown or missing argument, or a value of the wrong type
        raise ValueError(f"{config_path}: its 'model' section does not describe a model: {error}") from error
    except ComponentBuildError as error:  # a component's constructor raised: keep the type, name the file
        raise ComponentBuildError(_build_failure(payload, registry, config_path, error)) from error
    except AmbiguousNameError as error:  # two installed plugins claim the name: the message says how to keep one
        raise AmbiguousNameError(f"{config_path}: {error}") from error
    except RegistryError as error:  # a component name nothing registers here: a plugin missing or blocked
        raise RegistryError(f"{config_path}: {error} {missing_plugin_hint(payload)}") from error
    except ContractViolation:  # a plugin breaking its contract: the message names the plugin
        raise
    except ValueError as error:  # a size or count out of bounds (plugins.model_sizes)
        raise ValueError(f"{config_path}: its 'model' section holds a value the model refuses: {error}") from error


def _refuse_initial_weight_arguments(
    payload: Mapping[str, Any], registry: ComponentRegistry | None, config_path: Path
) -> None:
    """Refuse a component of the ``model`` section of ``config.json`` (``payload``, read from ``config_path``)
    whose kwargs give one of its class's :attr:`~plugins.interfaces.Component.initial_weight_arguments` a value
    (``null`` loads nothing and passes).

    ``save_pretrained`` never writes them: the trained weights are in ``model.safetensors``. In a file from
    elsewhere such an argument makes the constructor open a path on this machine (the ``dinov2`` encoder's
    ``weights``), so it is refused before anything is built. Building a model from a config directly, as training
    does with ``--encoder-weights``, still takes them. A component whose spec cannot be read, or whose name nothing
    registers here, is left to the constructor, which reports it.

    Raises:
        ValueError: naming the key (``model.encoder.kwargs.weights``), its value and the file.
    """
    if registry is None:
        from plugins.manager import default_registry  # what VideoSlotModel builds from when given none

        registry = default_registry()
    for role, raw in payload["model"].items():
        try:
            spec = ComponentSpec.parse(raw)
            component = registry.get(ComponentKind(f"{role}s"), spec.name)
        except (TypeError, ValueError, RegistryError):  # no component (num_slots, ...), or one the build reports
            continue
        for key in sorted(component.initial_weight_arguments):
            if spec.kwargs.get(key) is not None:
                raise ValueError(
                    f"{config_path}: model.{role}.kwargs.{key} is {spec.kwargs[key]!r}, but {key!r} only says where "
                    f"the {role} {spec.name!r} takes its initial weights from, which save_pretrained never records "
                    f"(the trained weights are in {WEIGHTS_FILE}): a model directory that gives it would make "
                    "loading open that path on this machine, so it is refused; delete the key to load the model"
                )


def _build_failure(
    payload: Mapping[str, Any], registry: ComponentRegistry | None, config_path: Path, error: RegistryError
) -> str:
    """The message for a component of ``config_path`` that cannot be built: the plugin changes since the file was
    saved first, when there are any, then the registry's ``error``."""
    changes = plugin_changes(payload, *_registered_plugins(payload, registry))
    if not changes:
        return f"{config_path}: {error}"
    return f"{_saved_under_other_plugins(config_path, changes)}, the model the file records cannot be built: {error}"


def _saved_under_other_plugins(config_path: Path, changes: list[str]) -> str:
    """The start of a message about ``config_path`` for the plugin ``changes`` (:func:`plugin_changes`), up to
    ``"With the plugins installed here"``."""
    return (
        f"{config_path} was saved under other plugin code than is installed here: {'; '.join(changes)}. With the "
        "plugins installed here"
    )


def _registered_plugins(
    payload: Mapping[str, Any], registry: ComponentRegistry | None
) -> tuple[dict[str, str], Mapping[str, str]]:
    """For a model that cannot be built: the plugin that registers each component of ``config.json``
    (``payload``) here, by role (those whose name is not registered, or not recorded, left out), and the installed
    plugins' versions, as :attr:`~plugins.model.VideoSlotModel.component_plugins` and
    :attr:`~plugins.model.VideoSlotModel.plugin_versions` would hold them."""
    if registry is None:
        from plugins.manager import default_registry  # what VideoSlotModel builds from when given none

        registry = default_registry()
    owners = {}
    names = _component_names(payload)
    recorded = payload.get("plugins")
    for role in recorded if isinstance(recorded, Mapping) else ():
        try:
            owners[str(role)] = registry.owner(ComponentKind(f"{role}s"), names[str(role)])
        except (KeyError, ValueError, RegistryError):  # not a role, not recorded, or not registered here
            continue
    return owners, registry.plugin_versions


def _load_weights(
    model: VideoSlotModel, payload: Mapping[str, Any], weights_path: Path, config_path: Path, device: str
) -> None:
    """Load ``weights_path`` into ``model``, built from ``config_path`` (``payload``).

    Raises:
        ValueError: the file is damaged, or its tensors do not fit the model (other shapes: one line, see
            :func:`~plugins.model_files.weights_mismatch_message`; missing or unexpected names). For weights that
            do not fit, the plugin changes since the file was saved (:func:`plugin_changes`) come first when there
            are any: the weights are the ones saved with the file, and the plugin's code is what changed.
    """
    try:
        missing, unexpected = load_model(model, str(weights_path), strict=False, device=device)
    except (SafetensorError, RuntimeError) as error:  # a damaged file, or tensors of other shapes
        # PyTorch reports other shapes one line per tensor (dozens for a model of another size): summarise
        summary = mismatch_summary(str(error), than="the installed plugins make", label="now")
        if summary is None:
            raise ValueError(f"{weights_path} cannot be loaded into the model of {config_path}: {error}") from error
        explained = _plugin_changes_for_weights(model, payload, weights_path, config_path, summary)
        if explained is not None:  # no cause: callers that summarise a mismatched cause would drop the plugins
            raise ValueError(explained) from None
        raise ValueError(weights_mismatch_message(str(weights_path), str(config_path), str(error))) from error
    if missing or unexpected:
        names = f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        explained = _plugin_changes_for_weights(model, payload, weights_path, config_path, names)
        raise ValueError(explained or f"{weights_path} does not match {config_path}: {names}")


def _plugin_changes_for_weights(
    model: VideoSlotModel, payload: Mapping[str, Any], weights_path: Path, config_path: Path, what: str
) -> str | None:
    """The message for weights that do not fit (``what``: which tensors) when plugins changed since
    ``config_path`` was saved; ``None`` when none did."""
    changes = plugin_changes(payload, model.component_plugins, model.plugin_versions)
    if not changes:
        return None
    return (
        f"{_saved_under_other_plugins(config_path, changes)}, the weights saved with the file ({weights_path}) do "
        f"not fit the model it builds: {what}"
    )


def other_plugin_versions(model: VideoSlotModel, payload: Mapping[str, Any]) -> list[tuple[str, list[str], str, str]]:
    """The plugins of ``model`` whose installed version differs from the one a saved ``config.json`` (``payload``)
    records for the same plugin, as (plugin, roles, saved version, installed version). A file without the record,
    a registry that knows no version and the project's built-in plugins (recorded with the project's version)
    give none."""
    return _changed_versions(payload, model.component_plugins, model.plugin_versions)


def other_plugin_sources(model: VideoSlotModel, payload: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The components of ``model`` whose name another plugin registers here than the one a saved ``config.json``
    (``payload``) records, as (role, saved plugin, plugin used here). A file without the record, and components
    that move between the project's own built-in plugins, give none."""
    return _changed_sources(payload, model.component_plugins)


def plugin_changes(
    payload: Mapping[str, Any],
    component_plugins: Mapping[str, str],
    installed_versions: Mapping[str, str],
    described: Mapping[str, str] | None = None,
) -> list[str]:
    """What changed in the plugins of a saved ``config.json`` (``payload``) against those installed here, one
    clause per change for an error message.

    Args:
        payload: the saved ``config.json``, or another record of the same ``plugins`` (key -> plugin),
            ``plugin_versions`` and ``plugin_distributions`` (a training checkpoint's record of its losses, keyed by
            loss name).
        component_plugins: the plugin that registers each component here, by role (a model's
            :attr:`~plugins.model.VideoSlotModel.component_plugins`), or by the keys of ``payload``'s ``plugins``.
        installed_versions: the installed plugins' versions (a model's or registry's ``plugin_versions``).
        described: how the clauses name each key of ``component_plugins`` (``"the loss 'slot_div'"``); by default
            the role and the name ``payload``'s ``model`` section gives it (``"the transition 'damped'"``).

    Returns:
        For each component whose name another plugin registers here (as :func:`other_plugin_sources`), and each
        plugin installed in another version (as :func:`other_plugin_versions`): the component(s), both plugins or
        both versions, and how to go back (the ``pip install`` command, where the file records the distribution;
        in words, its recorded values shown as Python literals, where they are no PEP 508 name and PEP 440
        version).
        Empty when nothing changed or the file records no plugins.
    """
    if described is None:
        names = _component_names(payload)
        described = {
            role: f"the {role} {names[role]!r}" if role in names else f"the {role}" for role in component_plugins
        }
    sources = [
        f"{_components(described, [role])} came from plugin {saved!r}, but here plugin {loaded!r} registers "
        f"that name (to go back: {_go_back(payload, saved)} and block {loaded!r} with {BLOCK_ENV_VAR})"
        for role, saved, loaded in _changed_sources(payload, component_plugins)
    ]
    versions = [
        f"{_components(described, roles)} came from plugin {plugin!r} version {_shown_version(saved)}, but version "
        f"{installed} is installed (to go back: {_go_back(payload, plugin)})"
        for plugin, roles, saved, installed in _changed_versions(payload, component_plugins, installed_versions)
    ]
    return sources + versions


def _changed_versions(
    payload: Mapping[str, Any], component_plugins: Mapping[str, str], installed_versions: Mapping[str, str]
) -> list[tuple[str, list[str], str, str]]:
    """:func:`other_plugin_versions` for the plugins of ``component_plugins`` (role -> plugin, in data-flow
    order) installed in ``installed_versions``."""
    saved_plugins, saved_versions = payload.get("plugins"), payload.get("plugin_versions")
    if not (isinstance(saved_plugins, Mapping) and isinstance(saved_versions, Mapping)):
        return []
    roles_by_plugin: dict[str, list[str]] = {}
    for role, plugin in component_plugins.items():
        if saved_plugins.get(role) == plugin:
            roles_by_plugin.setdefault(plugin, []).append(role)
    changed = []
    for plugin, roles in roles_by_plugin.items():
        if plugin in DEFAULT_PLUGINS:  # the project's own: its changes are the project's, and every release would warn
            continue
        saved, installed = saved_versions.get(plugin), installed_versions.get(plugin)
        if saved is not None and installed is not None and str(saved) != installed:
            changed.append((plugin, roles, str(saved), installed))
    return changed


def _changed_sources(payload: Mapping[str, Any], component_plugins: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """:func:`other_plugin_sources` for the plugins of ``component_plugins`` (role -> plugin, in data-flow
    order)."""
    saved_plugins = payload.get("plugins")
    if not isinstance(saved_plugins, Mapping):
        return []
    changed = []
    for role, loaded in component_plugins.items():
        saved = saved_plugins.get(role)
        if saved is None or str(saved) == loaded or (str(saved) in DEFAULT_PLUGINS and loaded in DEFAULT_PLUGINS):
            continue
        changed.append((role, str(saved), loaded))
    return changed


def _component_names(payload: Mapping[str, Any]) -> dict[str, str]:
    """The registry name of each component of a saved ``config.json`` (``payload``), by role; a spec that cannot
    be read is left out."""
    names = {}
    for role, spec in payload["model"].items():
        try:
            names[str(role)] = ComponentSpec.parse(spec).name
        except TypeError:  # not a component spec (num_slots, ...), or a malformed one
            continue
    return names


def _components(described: Mapping[str, str], keys: list[str]) -> str:
    """``the transition 'damped', the decoder 'mine'`` for ``keys``, as ``described`` names each (else ``the KEY``)."""
    return ", ".join(described.get(key, f"the {key}") for key in keys)


def _warn_on_other_plugin_versions(model: VideoSlotModel, payload: Mapping[str, Any], config_path: Path) -> None:
    """Warn (:class:`PluginVersionWarning`) for each plugin :func:`other_plugin_versions` finds."""
    for plugin, roles, saved, installed in other_plugin_versions(model, payload):
        components = ", ".join(f"the {role} {model.specs[role].name!r}" for role in roles)
        shown = _shown_version(saved)
        warnings.warn(
            f"{config_path}: {components} of this model came from plugin {plugin!r} version {shown}, but version "
            f"{installed} is installed; the model is built with the arguments the file records, but the plugin's "
            f"code may now compute differently: check its results, or install version {shown}"
            f"{_pip_install(payload, plugin, saved)}",
            PluginVersionWarning,
            stacklevel=4,  # the caller of VideoSlotModel.from_pretrained
        )


def _warn_on_other_plugin_sources(model: VideoSlotModel, payload: Mapping[str, Any], config_path: Path) -> None:
    """Warn (:class:`PluginSourceWarning`) for each component :func:`other_plugin_sources` finds: the model is
    built with the other plugin's class, which may compute something else entirely. The warning says what to
    install as :class:`PluginVersionWarning` does: the recorded distribution and version, where the file records
    them (the plugin's entry-point name need not be what ``pip install`` takes)."""
    for role, saved, loaded in other_plugin_sources(model, payload):
        warnings.warn(
            f"{config_path}: the {role} {model.specs[role].name!r} of this model came from plugin {saved!r}, but "
            f"here plugin {loaded!r} registers that name, so its class is used: install {saved!r}"
            f"{_pip_install(payload, saved, _saved_version(payload, saved))} and block {loaded!r} with "
            f"{BLOCK_ENV_VAR} to load the model as saved, or check its results",
            PluginSourceWarning,
            stacklevel=4,  # the caller of VideoSlotModel.from_pretrained
        )


def missing_plugin_hint(payload: Mapping[str, Any]) -> str:
    """What to do about a saved model whose component names are not registered: the plugins it was saved with
    (when ``config.json`` records them) and the distributions to install (when it records those: a ``pip install``
    command for a valid name and version, else the values in words, as :func:`_pip_install` gives them), or to unblock
    from ``SLOTSTREAM_DISABLE_PLUGINS``; for components it records as registered directly
    (:data:`~plugins.registry.DIRECT_REGISTRATION`: by the code that saved it, not by a plugin), that they exist
    only where that code runs, and how to package them as a plugin instead."""
    saved = payload.get("plugins")
    plugins = {str(plugin) for plugin in saved.values()} if isinstance(saved, Mapping) else set()
    external = sorted(plugins - set(DEFAULT_PLUGINS) - {DIRECT_REGISTRATION})
    named = [f"{plugin!r}{_pip_install(payload, plugin, _saved_version(payload, plugin))}" for plugin in external]
    where = f"it was saved with components of the plugin(s) {', '.join(named)}; " if external else ""
    direct = (
        "it was saved with components registered directly (`registry.add_transition(...)` and the like, called by "
        "the code that saved it, not by an installed plugin), which a process knows only when it runs that code "
        "again: package such a component as a plugin (a distribution with a `slotstream` entry point whose "
        "`slotstream_register_components` hook registers it) and install it; "
        if DIRECT_REGISTRATION in plugins
        else ""
    )
    return (
        f"({where}{direct}a component from a plugin package needs that package installed and not blocked by "
        f"{BLOCK_ENV_VAR}; `python -m plugins list` shows what is loaded)"
    )


def _saved_version(payload: Mapping[str, Any], plugin: str) -> object:
    """The version of ``plugin`` that ``config.json`` (``payload``) records, or ``None``."""
    versions = payload.get("plugin_versions")
    return versions.get(plugin) if isinstance(versions, Mapping) else None


def _go_back(payload: Mapping[str, Any], plugin: str) -> str:
    """How to install ``plugin`` as ``config.json`` (``payload``) records it: ``pip install 'dist==version'``
    where the file records its distribution (and :func:`pip_command` finds both names fit to print as one), else
    in words, the recorded values shown as :func:`_not_a_pip_command` shows them."""
    version = _saved_version(payload, plugin)
    distribution = _recorded_distribution(payload, plugin)
    command = pip_command(distribution, version) if distribution is not None else None
    if command is not None:
        return command
    said = f" version {_shown_version(version)}" if version else ""
    unchecked = f" ({_not_a_pip_command(distribution, version)})" if distribution is not None else ""
    return f"install plugin {plugin!r}{said}{unchecked}"


def _pip_install(payload: Mapping[str, Any], plugin: str, version: object) -> str:
    """`` (pip install 'dist==version')`` for ``plugin`` when ``config.json`` (``payload``) records its
    distribution (in words, :func:`_not_a_pip_command`, when the names are not fit to print as a command), else
    ``""``."""
    distribution = _recorded_distribution(payload, plugin)
    if distribution is None:
        return ""
    return f" ({pip_command(distribution, version) or _not_a_pip_command(distribution, version)})"


def _recorded_distribution(payload: Mapping[str, Any], plugin: str) -> object:
    """The distribution of ``plugin`` that ``config.json`` (``payload``) records, or ``None`` (none, or empty)."""
    distributions = payload.get("plugin_distributions")
    distribution = distributions.get(plugin) if isinstance(distributions, Mapping) else None
    return distribution or None


#: A distribution name as PEP 508 allows it: ASCII letters, digits, ``.``, ``_`` and ``-``, beginning and ending
#: with a letter or digit.
_DISTRIBUTION_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE | re.ASCII)
#: A version as PEP 440 allows it: the pattern of its appendix (which ``packaging.version`` uses), without the
#: whitespace around it that the appendix tolerates.
_VERSION = re.compile(
    r"""
    v?
    (?:(?:[0-9]+)!)?                                    # epoch
    [0-9]+(?:\.[0-9]+)*                                 # release
    (?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?  # pre-release
    (?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?       # post-release
    (?:[-_.]?dev[-_.]?[0-9]*)?                          # development release
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?                 # local version
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)


def pip_command(distribution: object, version: object) -> str | None:
    """``pip install 'dist==version'`` (``'dist'`` without a version) for a ``distribution`` and ``version`` that
    a ``config.json`` records; ``None`` unless the distribution is a PEP 508 distribution name and the version
    (when given) a PEP 440 version.

    The file may come from anyone: a value that is no such name could close the quotes and add a shell command of
    its own to what the message tells a person to paste, or carry newlines and terminal escape codes.
    """
    if not (isinstance(distribution, str) and _DISTRIBUTION_NAME.fullmatch(distribution)):
        return None
    if not version:
        return f"pip install '{distribution}'"
    if not (isinstance(version, str) and _VERSION.fullmatch(version)):
        return None
    return f"pip install '{distribution}=={version}'"


def _not_a_pip_command(distribution: object, version: object) -> str:
    """The ``distribution`` and ``version`` a ``config.json`` records, for which :func:`pip_command` gives no
    command, in words: shown as Python literals (``repr``: no control character or terminal escape gets through),
    and said to be the file's."""
    recorded = f"distribution {distribution!r}" + (f" version {version!r}" if version else "")
    valid_name = isinstance(distribution, str) and _DISTRIBUTION_NAME.fullmatch(distribution)
    wrong = "the version is no valid PEP 440 version" if valid_name else "the distribution is no valid PEP 508 name"
    return f"the model's config.json names {recorded}; no pip command is given for them, as {wrong}"


def _shown_version(version: object) -> str:
    """A version that a ``config.json`` records, as messages show it: as written when it is a PEP 440 version
    (``1.0``), else as a Python literal (``repr``), which shows control characters and terminal escapes as
    escapes."""
    if isinstance(version, str) and _VERSION.fullmatch(version):
        return version
    return repr(version)
