"""Saving a :class:`~plugins.model.VideoSlotModel` to a model directory and building one from it.

:meth:`~plugins.model.VideoSlotModel.save_pretrained` and :meth:`~plugins.model.VideoSlotModel.from_pretrained`
are the public entry points; their docstrings state the contract. The file names, the ``config.json`` reader and
the messages for wrong directories live in :mod:`plugins.model_files`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from plugins.builtin import DEFAULT_PLUGINS
from plugins.files import write_atomically
from plugins.model_files import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    model_files,
    read_model_config,
    recorded_frame_fit,
    weights_mismatch_message,
)
from plugins.registry import BLOCK_ENV_VAR, ComponentBuildError, ComponentConfigError, ComponentRegistry, RegistryError

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
    try:
        model = cls(**payload["model"], registry=registry)
    except ComponentConfigError as error:  # a component argument its class lacks: keep the type, name the file
        raise ComponentConfigError(f"{config_path}: {error}") from error
    except TypeError as error:  # an unknown or missing argument, or a value of the wrong type
        raise ValueError(f"{config_path}: its 'model' section does not describe a model: {error}") from error
    except ComponentBuildError as error:  # a component's constructor raised: keep the type, name the file
        raise ComponentBuildError(f"{config_path}: {error}") from error
    except RegistryError as error:  # a component name nothing registers here: a plugin missing or blocked
        raise RegistryError(f"{config_path}: {error} {missing_plugin_hint(payload)}") from error
    model.frame_fit = frame_fit
    _warn_on_other_plugin_sources(model, payload, config_path)
    _warn_on_other_plugin_versions(model, payload, config_path)
    model = model.to(map_location)  # the weights load straight onto it
    try:
        missing, unexpected = load_model(model, str(weights_path), strict=False, device=str(map_location))
    except (SafetensorError, RuntimeError) as error:  # a damaged file, or tensors of other shapes
        # PyTorch reports other shapes one line per tensor (dozens for a model of another size): summarise
        mismatch = weights_mismatch_message(str(weights_path), str(config_path), str(error))
        if mismatch is not None:
            raise ValueError(mismatch) from error
        raise ValueError(f"{weights_path} cannot be loaded into the model of {config_path}: {error}") from error
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not match {config_path}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model.eval()


def other_plugin_versions(model: VideoSlotModel, payload: Mapping[str, Any]) -> list[tuple[str, list[str], str, str]]:
    """The plugins of ``model`` whose installed version differs from the one a saved ``config.json`` (``payload``)
    records for the same plugin, as (plugin, roles, saved version, installed version). A file without the record,
    a registry that knows no version and the project's built-in plugins (recorded with the project's version)
    give none."""
    saved_plugins, saved_versions = payload.get("plugins"), payload.get("plugin_versions")
    if not (isinstance(saved_plugins, Mapping) and isinstance(saved_versions, Mapping)):
        return []
    roles_by_plugin: dict[str, list[str]] = {}
    for role in model.specs:  # in data-flow order
        plugin = model.component_plugins[role]
        if saved_plugins.get(role) == plugin:
            roles_by_plugin.setdefault(plugin, []).append(role)
    changed = []
    for plugin, roles in roles_by_plugin.items():
        if plugin in DEFAULT_PLUGINS:  # the project's own: its changes are the project's, and every release would warn
            continue
        saved, installed = saved_versions.get(plugin), model.plugin_versions.get(plugin)
        if saved is not None and installed is not None and str(saved) != installed:
            changed.append((plugin, roles, str(saved), installed))
    return changed


def other_plugin_sources(model: VideoSlotModel, payload: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The components of ``model`` whose name another plugin registers here than the one a saved ``config.json``
    (``payload``) records, as (role, saved plugin, plugin used here). A file without the record, and components
    that move between the project's own built-in plugins, give none."""
    saved_plugins = payload.get("plugins")
    if not isinstance(saved_plugins, Mapping):
        return []
    changed = []
    for role in model.specs:  # in data-flow order
        saved, loaded = saved_plugins.get(role), model.component_plugins[role]
        if saved is None or str(saved) == loaded or (str(saved) in DEFAULT_PLUGINS and loaded in DEFAULT_PLUGINS):
            continue
        changed.append((role, str(saved), loaded))
    return changed


def _warn_on_other_plugin_versions(model: VideoSlotModel, payload: Mapping[str, Any], config_path: Path) -> None:
    """Warn (:class:`PluginVersionWarning`) for each plugin :func:`other_plugin_versions` finds."""
    for plugin, roles, saved, installed in other_plugin_versions(model, payload):
        components = ", ".join(f"the {role} {model.specs[role].name!r}" for role in roles)
        warnings.warn(
            f"{config_path}: {components} of this model came from plugin {plugin!r} version {saved}, but version "
            f"{installed} is installed; the model is built with the arguments the file records, but the plugin's "
            f"code may now compute differently: check its results, or install version {saved}"
            f"{_pip_install(payload, plugin, saved)}",
            PluginVersionWarning,
            stacklevel=4,  # the caller of VideoSlotModel.from_pretrained
        )


def _warn_on_other_plugin_sources(model: VideoSlotModel, payload: Mapping[str, Any], config_path: Path) -> None:
    """Warn (:class:`PluginSourceWarning`) for each component :func:`other_plugin_sources` finds: the model is
    built with the other plugin's class, which may compute something else entirely."""
    for role, saved, loaded in other_plugin_sources(model, payload):
        warnings.warn(
            f"{config_path}: the {role} {model.specs[role].name!r} of this model came from plugin {saved!r}, but "
            f"here plugin {loaded!r} registers that name, so its class is used: install {saved!r} and block "
            f"{loaded!r} with {BLOCK_ENV_VAR} to load the model as saved, or check its results",
            PluginSourceWarning,
            stacklevel=4,  # the caller of VideoSlotModel.from_pretrained
        )


def missing_plugin_hint(payload: Mapping[str, Any]) -> str:
    """What to do about a saved model whose component names are not registered: the plugins it was saved with
    (when ``config.json`` records them) and the distributions to install (when it records those), or to unblock
    from ``SLOTSTREAM_DISABLE_PLUGINS``."""
    saved = payload.get("plugins")
    external = (
        sorted({str(plugin) for plugin in saved.values() if str(plugin) not in DEFAULT_PLUGINS})
        if isinstance(saved, Mapping)
        else []
    )
    versions = payload.get("plugin_versions")
    named = [
        f"{plugin!r}{_pip_install(payload, plugin, versions.get(plugin) if isinstance(versions, Mapping) else None)}"
        for plugin in external
    ]
    where = f"it was saved with components of the plugin(s) {', '.join(named)}; " if external else ""
    return (
        f"({where}a component from a plugin package needs that package installed and not blocked by "
        f"{BLOCK_ENV_VAR}; `python -m plugins list` shows what is loaded)"
    )


def _pip_install(payload: Mapping[str, Any], plugin: str, version: object) -> str:
    """`` (pip install 'dist==version')`` for ``plugin`` when ``config.json`` (``payload``) records its
    distribution, else ``""``."""
    distributions = payload.get("plugin_distributions")
    distribution = distributions.get(plugin) if isinstance(distributions, Mapping) else None
    if not distribution:
        return ""
    pinned = f"{distribution}=={version}" if version else str(distribution)
    return f" (pip install '{pinned}')"
