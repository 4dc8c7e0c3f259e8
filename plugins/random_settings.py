"""Model-config settings that make a model random at inference (a component drawing fresh noise on every call),
and the deterministic value of each: read by the ``torch`` backend's warning at load and by the ONNX export's
refusal of a random operator, which both name the setting to change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugins.model import COMPONENT_NAMES

#: Component arguments that make a model random at inference: argument -> {random value: the deterministic one}.
RANDOM_AT_INFERENCE: dict[str, dict[str, str]] = {"eval_noise": {"sample": "fixed"}}


@dataclass(frozen=True)
class RandomSetting:
    """A component argument in a model config that makes the model random at inference.

    Attributes:
        role: the component's role (``initializer``).
        component: its registry name (``gaussian_shared``).
        argument: the argument (``eval_noise``).
        value: its value in the config (``sample``).
        fix: the value that makes the component deterministic (``fixed``).
    """

    role: str
    component: str
    argument: str
    value: str
    fix: str

    @property
    def key(self) -> str:
        """Where it is in ``config.json``: ``model.initializer.kwargs.eval_noise``."""
        return f"model.{self.role}.kwargs.{self.argument}"

    @property
    def cause(self) -> str:
        """``the initializer 'gaussian_shared' has eval_noise "sample"``."""
        return f"the {self.role} {self.component!r} has {self.argument} {json.dumps(self.value)}"

    @property
    def remedy(self) -> str:
        """``set model.initializer.kwargs.eval_noise to "fixed" in config.json``."""
        return f"set {self.key} to {json.dumps(self.fix)} in config.json"


def random_settings(config: Mapping[str, Any]) -> list[RandomSetting]:
    """The component arguments of a model config (:attr:`VideoSlotModel.config`, ``config.json``'s ``model``) that
    make the model random at inference (:data:`RANDOM_AT_INFERENCE`), in data-flow order; empty when it has none."""
    found = []
    for role in COMPONENT_NAMES:
        spec = config.get(role)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("kwargs"), Mapping):
            continue
        for argument, fixes in RANDOM_AT_INFERENCE.items():
            value = spec["kwargs"].get(argument)
            if isinstance(value, str) and value in fixes:
                found.append(RandomSetting(role, str(spec.get("name")), argument, value, fixes[value]))
    return found


__all__ = ["RANDOM_AT_INFERENCE", "RandomSetting", "random_settings"]
