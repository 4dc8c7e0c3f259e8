"""The component registry: one typed table per component kind.

Plugins add classes through :func:`plugins.hookspecs.slotstream_register_components`; the model and the
training loop look them up by name.
"""

from __future__ import annotations

import difflib
import inspect
import re
from enum import StrEnum
from typing import Any, TypeVar

from plugins.interfaces import (
    WIRING_ARGUMENTS,
    Aggregator,
    Component,
    Decoder,
    Encoder,
    Head,
    Initializer,
    Loss,
    Transition,
)

C = TypeVar("C", bound=Component)

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class ComponentKind(StrEnum):
    """The component families, named as they appear in ``python -m plugins list``."""

    ENCODERS = "encoders"
    INITIALIZERS = "initializers"
    AGGREGATORS = "aggregators"
    TRANSITIONS = "transitions"
    DECODERS = "decoders"
    LOSSES = "losses"
    HEADS = "heads"


BASE_CLASSES: dict[ComponentKind, type[Component]] = {
    ComponentKind.ENCODERS: Encoder,
    ComponentKind.INITIALIZERS: Initializer,
    ComponentKind.AGGREGATORS: Aggregator,
    ComponentKind.TRANSITIONS: Transition,
    ComponentKind.DECODERS: Decoder,
    ComponentKind.LOSSES: Loss,
    ComponentKind.HEADS: Head,
}
"""The base class every component of a kind must derive from."""


class RegistryError(LookupError):
    """A component name is unknown, duplicated, malformed, or its class does not fit its kind."""


class ComponentRegistry:
    """Classes by kind and name.

    Example:
        >>> registry = ComponentRegistry()
        >>> registry.add_encoder(MyEncoder)  # doctest: +SKIP
        >>> registry.get("encoders", "my_encoder")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._tables: dict[ComponentKind, dict[str, type[Component]]] = {kind: {} for kind in ComponentKind}
        self._owners: dict[tuple[ComponentKind, str], str] = {}
        self.current_plugin: str = "<direct>"
        """Name of the plugin whose registration hook is running (set by the plugin manager)."""
        self.unavailable_plugins: dict[str, str] = {}
        """Plugins left out (blocked, or failed to load) and why, named when a component is not found."""

    # -- adding ---------------------------------------------------------------------------------------

    def add(self, kind: ComponentKind | str, cls: type[Component]) -> None:
        """Register ``cls`` under ``cls.name`` in ``kind``.

        Raises:
            RegistryError: if the name is missing or not snake_case, the class does not derive from the
                kind's base class, a decoder lacks ``target_kind``, an argument in ``initial_weight_arguments``
                has no default (saved models could not be loaded again), or the name is already taken (the
                message names both owners).
        """
        kind = _kind(kind)
        base = BASE_CLASSES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RegistryError(f"{cls!r} cannot be registered as one of the {kind.value}: it must subclass {base}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _SNAKE_CASE.match(name):
            raise RegistryError(
                f"{cls.__module__}.{cls.__qualname__} needs a class attribute `name` in snake_case "
                f"(got {name!r}) to be registered as one of the {kind.value}"
            )
        target_kind = getattr(cls, "target_kind", None)
        if kind is ComponentKind.DECODERS and target_kind not in ("pixels", "features"):
            raise RegistryError(
                f"{cls.__module__}.{cls.__qualname__} needs a class attribute `target_kind`, 'pixels' or 'features' "
                f"(what it reconstructs), to be registered as one of the decoders; got {target_kind!r}"
            )
        weights: frozenset[str] = getattr(cls, "initial_weight_arguments", frozenset())
        required = {
            parameter.name
            for parameter in inspect.signature(cls.__init__).parameters.values()
            if parameter.default is inspect.Parameter.empty and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        }
        if weights & required:
            raise RegistryError(
                f"{cls.__module__}.{cls.__qualname__}: {', '.join(sorted(weights & required))} in "
                "initial_weight_arguments must have a default: saved models leave these arguments out of config.json "
                "(the saved weights replace them), so the model could not be loaded again"
            )
        table = self._tables[kind]
        if name in table:
            owner = self._owners[(kind, name)]
            raise RegistryError(
                f"duplicate {kind.value} name {name!r}: already registered by plugin {owner!r} "
                f"({table[name].__module__}.{table[name].__qualname__}); plugin {self.current_plugin!r} tried to "
                f"register {cls.__module__}.{cls.__qualname__}. Known {kind.value}: {', '.join(sorted(table))}"
            )
        table[name] = cls
        self._owners[(kind, name)] = self.current_plugin

    def add_encoder(self, cls: type[Encoder]) -> None:
        """Register an :class:`~plugins.interfaces.Encoder`."""
        self.add(ComponentKind.ENCODERS, cls)

    def add_initializer(self, cls: type[Initializer]) -> None:
        """Register an :class:`~plugins.interfaces.Initializer`."""
        self.add(ComponentKind.INITIALIZERS, cls)

    def add_aggregator(self, cls: type[Aggregator]) -> None:
        """Register an :class:`~plugins.interfaces.Aggregator`."""
        self.add(ComponentKind.AGGREGATORS, cls)

    def add_transition(self, cls: type[Transition]) -> None:
        """Register a :class:`~plugins.interfaces.Transition`."""
        self.add(ComponentKind.TRANSITIONS, cls)

    def add_decoder(self, cls: type[Decoder]) -> None:
        """Register a :class:`~plugins.interfaces.Decoder`."""
        self.add(ComponentKind.DECODERS, cls)

    def add_loss(self, cls: type[Loss]) -> None:
        """Register a :class:`~plugins.interfaces.Loss`."""
        self.add(ComponentKind.LOSSES, cls)

    def add_head(self, cls: type[Head]) -> None:
        """Register a :class:`~plugins.interfaces.Head`."""
        self.add(ComponentKind.HEADS, cls)

    # -- querying -------------------------------------------------------------------------------------

    def get(self, kind: ComponentKind | str, name: str) -> type[Component]:
        """The class registered as ``name`` in ``kind``.

        Raises:
            RegistryError: for an unknown name; the message lists the known names and close matches.
        """
        kind = _kind(kind)
        table = self._tables[kind]
        if name not in table:
            close = difflib.get_close_matches(name, table, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(table)) or "(none)"
            left_out = "".join(
                f" Plugin {plugin!r} was left out ({why}): if it provides {name!r}, fix or unblock it."
                for plugin, why in sorted(self.unavailable_plugins.items())
            )
            raise RegistryError(f"unknown {kind.value} name {name!r}. Known {kind.value}: {known}.{hint}{left_out}")
        return table[name]

    def remove_plugin(self, plugin: str) -> None:
        """Remove every component ``plugin`` registered (the manager undoes a plugin whose hook failed)."""
        for (kind, name), owner in list(self._owners.items()):
            if owner == plugin:
                del self._tables[kind][name]
                del self._owners[(kind, name)]

    def owner(self, kind: ComponentKind | str, name: str) -> str:
        """The plugin that registered ``name``."""
        self.get(kind, name)
        return self._owners[(_kind(kind), name)]

    def names(self, kind: ComponentKind | str) -> list[str]:
        """Sorted names registered in ``kind``."""
        return sorted(self._tables[_kind(kind)])

    def as_dict(self) -> dict[str, list[str]]:
        """Every kind mapped to its sorted names (the ``python -m plugins list --json`` format)."""
        return {kind.value: self.names(kind) for kind in ComponentKind}

    def build(
        self, kind: ComponentKind | str, name: str, kwargs: dict[str, Any], wiring: dict[str, Any] | None = None
    ) -> Component:
        """Instantiate a component from its config, adding the wiring arguments its constructor names.

        Args:
            kind: the component kind.
            name: the registry name.
            kwargs: the component's own configuration.
            wiring: values the model supplies (see :data:`plugins.interfaces.WIRING_ARGUMENTS`); only those
                the constructor names are passed.

        Raises:
            RegistryError: unknown name.
            TypeError: a config sets a wiring argument itself, or names an argument the constructor lacks.
        """
        cls = self.get(kind, name)
        parameters = inspect.signature(cls.__init__).parameters
        clashes = sorted(set(kwargs) & set(WIRING_ARGUMENTS) & set(parameters))
        if clashes:
            raise TypeError(
                f"{kind if isinstance(kind, str) else kind.value} {name!r}: {', '.join(clashes)} is set by the model "
                "(num_slots, slot_dim, image_size on VideoSlotModel; the rest from the encoder); remove it from the "
                "component config"
            )
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        unknown = sorted(k for k in kwargs if k not in parameters and not accepts_any)
        if unknown:
            allowed = sorted(p for p in parameters if p != "self" and p not in WIRING_ARGUMENTS)
            raise TypeError(f"{name!r} got unknown config keys {unknown}; it accepts {allowed}")
        supplied = {k: v for k, v in (wiring or {}).items() if k in parameters}
        return cls(**kwargs, **supplied)


def _kind(kind: ComponentKind | str) -> ComponentKind:
    """``kind`` as a :class:`ComponentKind`.

    Raises:
        RegistryError: no such kind (the message lists the kinds, with a close match).
    """
    try:
        return ComponentKind(kind)
    except ValueError:
        kinds = [k.value for k in ComponentKind]
        close = difflib.get_close_matches(str(kind), kinds, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown component kind {kind!r}; the kinds are {', '.join(kinds)}.{hint}") from None
