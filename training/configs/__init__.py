"""Shipped experiments: one module per name, each with a ``get_config() -> TrainConfig``."""

from __future__ import annotations

import importlib
import pkgutil

from training.config import TrainConfig


def available() -> list[str]:
    """Names of the shipped experiments."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def get_config(name: str) -> TrainConfig:
    """The config of the experiment ``name``.

    Raises:
        KeyError: unknown name; the message lists the shipped experiments.
    """
    if name not in available():
        raise KeyError(f"unknown config {name!r}; shipped configs: {', '.join(available())}")
    module = importlib.import_module(f"training.configs.{name}")
    config: TrainConfig = module.get_config()
    return config
