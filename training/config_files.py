"""Training configurations from files outside the repository: ``--config path/to/experiment.py`` or ``.json``.

A Python file defines ``get_config() -> TrainConfig``, as the shipped experiments in ``training/configs/`` do
(it may import them and change a copy with ``dataclasses.replace``); a JSON file holds what a run saves as its
``train_config.json``. Either way the config's components may come from installed plugins.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

from training.config import TrainConfig, read_train_config
from training.configs import get_config

CONFIG_FILE_SUFFIXES = (".py", ".json")


def is_config_file(spec: str) -> bool:
    """Whether ``--config spec`` names a file (by its suffix) rather than a shipped experiment."""
    return Path(spec).suffix in CONFIG_FILE_SUFFIXES


def config_label(spec: str) -> str:
    """A short name for ``--config spec``, for the default run folder: the experiment name or the file's stem."""
    return Path(spec).stem if is_config_file(spec) else spec


def load_config(spec: str) -> TrainConfig:
    """The configuration ``--config spec`` names: a shipped experiment, a ``.py`` file or a ``.json`` file.

    A ``.json`` file keeps its data folders (a run's ``train_config.json`` records them as absolute paths) but not
    the working directory it records (``DataConfig.workdir``): a new run resolves relative ``--data`` and
    ``--val-data`` folders from where it starts.

    Raises:
        KeyError: an unknown experiment name (the message lists the shipped ones).
        ValueError: the file is missing, cannot be run or read, or does not give a ``TrainConfig`` (the message
            names the file).
    """
    if not is_config_file(spec):
        if Path(spec).is_file():  # a file, but of no config kind: not an experiment's name either
            raise ValueError(
                f"--config {spec}: a config file must end in {' or '.join(CONFIG_FILE_SUFFIXES)} (a Python file "
                "defining get_config(), or a run's train_config.json)"
            )
        return get_config(spec)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--config {spec}: no such file")
    if path.suffix == ".json":
        try:
            config = read_train_config(path)
        except OSError as error:
            raise ValueError(f"--config {spec}: cannot be read ({error.strerror or error})") from error
        return dataclasses.replace(config, data=dataclasses.replace(config.data, workdir=None))
    return _run_config_module(path)


def _run_config_module(path: Path) -> TrainConfig:
    module_name = f"_slotstream_config_{path.stem}"  # not a name an import would find by accident
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--config {path}: not a Python file that can be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses (and pickling for worker processes) look the module up here
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's own code: say which file failed, and how
        raise ValueError(f"--config {path}: running it raised {type(error).__name__}: {error}") from error
    factory = getattr(module, "get_config", None)
    if not callable(factory):
        raise ValueError(f"--config {path}: defines no get_config() -> TrainConfig")
    try:
        config = factory()
    except Exception as error:
        raise ValueError(f"--config {path}: get_config() raised {type(error).__name__}: {error}") from error
    if not isinstance(config, TrainConfig):
        raise ValueError(f"--config {path}: get_config() returned {type(config).__name__}, not a TrainConfig")
    return config
