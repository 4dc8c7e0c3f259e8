"""The component registry: one typed table per component kind.

Plugins add classes through :func:`plugins.hookspecs.slotstream_register_components`; the model and the
training loop look them up by name.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
import traceback
from collections.abc import Collection
from enum import StrEnum
from typing import Any, TypeVar

from torch import nn

from plugins.interfaces import (
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

BLOCK_ENV_VAR = "SLOTSTREAM_DISABLE_PLUGINS"
"""Comma-separated plugin names (entry-point names or built-in module names) that must not load."""

DIRECT_REGISTRATION = "<direct>"
"""The owner recorded for a component registered outside any plugin's registration hook (``registry.add_transition``
called by the code that uses the registry): no installed plugin provides it, so only a process that runs that code
again knows it."""


class ComponentKind(StrEnum):
    """The component families, named as they appear in ``python -m plugins list``."""

    ENCODERS = "encoders"
    INITIALIZERS = "initializers"
    AGGREGATORS = "aggregators"
    TRANSITIONS = "transitions"
    DECODERS = "decoders"
    LOSSES = "losses"
    HEADS = "heads"

    @property
    def singular(self) -> str:
        """One component of the kind, as messages name it: ``"transition"``, ``"loss"``."""
        return "loss" if self is ComponentKind.LOSSES else self.value.removesuffix("s")


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
    """A component name is unknown, duplicated, ambiguous or malformed, or its class does not fit its kind."""


class DuplicateNameError(RegistryError):
    """A plugin registered a component under a name another plugin (or itself) holds already."""


class AmbiguousNameError(RegistryError):
    """A name that several installed plugins register, which :meth:`ComponentRegistry.get` refuses: the plugins are
    installed, so the fix is to keep one (the message says how), not to install anything."""


class ComponentBuildError(RegistryError, ValueError):
    """A registered component's constructor failed.

    The message names the kind, the registry name, the class, the plugin that registered it and the arguments
    it was given; the constructor's own exception is the ``__cause__``. Also a ``ValueError``: a constructor
    rejecting its configuration (``kernel_size must be odd``) is what most of these are, and callers that
    handle bad configurations as ``ValueError`` keep doing so.
    """


class ComponentConfigError(RegistryError, ValueError, TypeError):
    """A component config sets an argument the component's constructor lacks, or one the model supplies.

    Raised by :meth:`ComponentRegistry.build` before the constructor runs; the message names the component, its
    class and plugin, the offending keys and the keys it accepts. A ``RegistryError`` (what the command-line
    tools report as a one-line error), a ``ValueError`` (a bad configuration) and, for callers written when this
    was a plain ``TypeError``, a ``TypeError``.
    """


class ComponentRegistry:
    """Classes by kind and name.

    A name belongs to one class. The exception: when two installed plugins (those in
    :attr:`external_plugins`) register the same name, neither wins, whatever order they were found in: the
    name is *ambiguous* and :meth:`get` refuses it, naming both plugins and how to keep one
    (``SLOTSTREAM_DISABLE_PLUGINS``), so an unrelated installation never silently swaps the class a saved model
    loads. A name a built-in plugin (or a direct registration) holds is never shared: adding it again raises.

    Example:
        >>> registry = ComponentRegistry()
        >>> registry.add_encoder(MyEncoder)  # doctest: +SKIP
        >>> registry.get("encoders", "my_encoder")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._tables: dict[ComponentKind, dict[str, type[Component]]] = {kind: {} for kind in ComponentKind}
        self._owners: dict[tuple[ComponentKind, str], str] = {}
        self._ambiguous: dict[tuple[ComponentKind, str], list[tuple[str, type[Component]]]] = {}
        self.current_plugin: str = DIRECT_REGISTRATION
        """Name of the plugin whose registration hook is running (set by the plugin manager);
        :data:`DIRECT_REGISTRATION` outside any hook."""
        self.unavailable_plugins: dict[str, str] = {}
        """Plugins left out (blocked, or failed to load) and why, named when a component is not found."""
        self.external_plugins: dict[str, str] = {}
        """Installed plugins by name, with where they come from (distribution and version), set by the plugin
        manager: a name two of them register becomes ambiguous instead of failing the second one."""
        self.plugin_versions: dict[str, str] = {}
        """The version of the distribution each plugin comes from (the project's own for the built-ins), set by
        the plugin manager where known; saved models record it (:meth:`VideoSlotModel.save_pretrained`)."""
        self.plugin_distributions: dict[str, str] = {}
        """The distribution each plugin comes from (the name to ``pip install``; the project's own for the
        built-ins), set by the plugin manager where known; saved models record it."""

    # -- adding ---------------------------------------------------------------------------------------

    def add(self, kind: ComponentKind | str, cls: type[Component]) -> None:
        """Register ``cls`` under ``cls.name`` in ``kind``.

        If another installed plugin already registered the name (and both are in :attr:`external_plugins`),
        the name becomes ambiguous: it is kept out of :meth:`names`, and :meth:`get` refuses it until all but
        one of those plugins are blocked or uninstalled.

        Raises:
            RegistryError: if the name is missing or not snake_case, the class does not derive from the
                kind's base class, a decoder lacks ``target_kind``, an argument in ``initial_weight_arguments``
                has no default (saved models could not be loaded again), a constructor argument the model
                cannot pass by keyword is positional-only, or the name is already taken by a built-in plugin,
                a direct registration or the same plugin (the message names both owners).
        """
        kind = _kind(kind)
        base = BASE_CLASSES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RegistryError(f"{cls!r} cannot be registered as one of the {kind.value}: it must subclass {base}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _SNAKE_CASE.match(name):
            raise RegistryError(
                f"{_qualname(cls)} needs a class attribute `name` in snake_case (got {name!r}) to be registered as "
                f"one of the {kind.value}"
            )
        target_kind = getattr(cls, "target_kind", None)
        if kind is ComponentKind.DECODERS and target_kind not in ("pixels", "features"):
            raise RegistryError(
                f"{_qualname(cls)} needs a class attribute `target_kind`, 'pixels' or 'features' (what it "
                f"reconstructs), to be registered as one of the decoders; got {target_kind!r}"
            )
        parameters = _constructor_parameters(cls)
        # Refused even with a default: a saved config.json records every argument's value by keyword, so the
        # model could be built but never loaded again.
        unpassable = [p.name for p in parameters if p.kind is p.POSITIONAL_ONLY]
        if unpassable:
            raise RegistryError(
                f"{_qualname(cls)} cannot be registered as one of the {kind.value}: its constructor takes "
                f"{', '.join(unpassable)} positional-only (before '/'), but the model passes every argument, wiring "
                "and configuration alike, by keyword; drop the '/' (or make them keyword-only, after '*')"
            )
        weights: frozenset[str] = getattr(cls, "initial_weight_arguments", frozenset())
        required = {p.name for p in parameters if p.default is p.empty and p.kind not in _VARIADIC}
        if weights & required:
            raise RegistryError(
                f"{_qualname(cls)}: {', '.join(sorted(weights & required))} in initial_weight_arguments must have "
                "a default: saved models leave these arguments out of config.json (the saved weights replace "
                "them), so the model could not be loaded again"
            )
        key, table = (kind, name), self._tables[kind]
        plugin = self.current_plugin
        claims = self._ambiguous.get(key) or ([(self._owners[key], table[name])] if name in table else [])
        if claims:
            owners = [owner for owner, _ in claims]
            if plugin not in self.external_plugins or plugin in owners or owners[0] not in self.external_plugins:
                others = [known for known in self.names(kind) if self._owners[(kind, known)] != plugin]
                # the plugin's own earlier claim when it registers a name twice, else the first owner's
                owner, taken = next((claim for claim in claims if claim[0] == plugin), claims[0])
                raise DuplicateNameError(
                    f"duplicate {kind.singular} name {name!r}: already registered by plugin {owner!r} "
                    f"({_qualname(taken)}); plugin {plugin!r} tried to register {_qualname(cls)}. Choose "
                    f"another name; the {kind.value} of other plugins: {', '.join(others) or '(none)'}"
                )
            table.pop(name, None)
            self._owners.pop(key, None)
            self._ambiguous[key] = [*claims, (plugin, cls)]
            return
        table[name] = cls
        self._owners[key] = plugin

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
            RegistryError: for an unknown name (the message lists the known names and close matches), or an
                ambiguous one (it names the plugins that register it and how to keep one).
        """
        kind = _kind(kind)
        table = self._tables[kind]
        if (kind, name) in self._ambiguous:
            raise AmbiguousNameError(self._ambiguity_message(kind, name))
        if name not in table:
            close = difflib.get_close_matches(name, table, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(table)) or "(none)"
            left_out = "".join(
                f" Plugin {plugin!r} was left out ({why}): if it provides {name!r}, fix or unblock it."
                for plugin, why in sorted(self.unavailable_plugins.items())
            )
            raise RegistryError(f"unknown {kind.singular} name {name!r}. Known {kind.value}: {known}.{hint}{left_out}")
        return table[name]

    def remove_plugin(self, plugin: str) -> list[tuple[str, str]]:
        """Remove every component ``plugin`` registered (the manager undoes a plugin whose hook failed); a name
        it made ambiguous goes back to the one plugin left claiming it.

        Returns:
            The ``(kind, name)`` pairs removed that ``plugin`` held alone, in registration order.
        """
        removed: list[tuple[str, str]] = []
        for (kind, name), owner in list(self._owners.items()):
            if owner == plugin:
                del self._tables[kind][name]
                del self._owners[(kind, name)]
                removed.append((kind.value, name))
        for key, claims in list(self._ambiguous.items()):
            rest = [(owner, cls) for owner, cls in claims if owner != plugin]
            if len(rest) > 1:
                self._ambiguous[key] = rest
                continue
            del self._ambiguous[key]
            if rest:
                self._tables[key[0]][key[1]] = rest[0][1]
                self._owners[key] = rest[0][0]
        return removed

    def owner(self, kind: ComponentKind | str, name: str) -> str:
        """The plugin that registered ``name``.

        Raises:
            RegistryError: as :meth:`get`.
        """
        self.get(kind, name)
        return self._owners[(_kind(kind), name)]

    def names(self, kind: ComponentKind | str) -> list[str]:
        """Sorted names registered in ``kind`` (ambiguous names, which :meth:`get` refuses, left out)."""
        return sorted(self._tables[_kind(kind)])

    def ambiguous(self) -> dict[tuple[str, str], list[str]]:
        """Names that several installed plugins register, as ``(kind, name)`` -> those plugins, in the order
        they registered it."""
        return {(kind.value, name): [owner for owner, _ in claims] for (kind, name), claims in self._ambiguous.items()}

    def as_dict(self) -> dict[str, list[str]]:
        """Every kind mapped to its sorted names (the ``python -m plugins list --json`` format)."""
        return {kind.value: self.names(kind) for kind in ComponentKind}

    def build(
        self, kind: ComponentKind | str, name: str, kwargs: dict[str, Any], wiring: dict[str, Any] | None = None
    ) -> Component:
        """Instantiate a component from its config, adding the wiring arguments its constructor names.

        The model supplies encoders ``image_size``, ``num_slots`` and ``slot_dim``, and the other model
        components all of :data:`plugins.interfaces.WIRING_ARGUMENTS` (``feature_dim``, ``feature_grid`` and
        ``target_dim`` come from the encoder, so an encoder may take arguments of those names as its own
        configuration); losses and heads get none.

        Args:
            kind: the component kind.
            name: the registry name.
            kwargs: the component's own configuration.
            wiring: values the model supplies to this kind; only those the constructor names are passed.

        Raises:
            RegistryError: unknown or ambiguous name.
            ComponentConfigError: a config sets an argument the model supplies to this kind, or names an argument
                the constructor lacks (also a ``TypeError``, as these were once).
            ComponentBuildError: the constructor raised (a missing argument, a value it rejects, an
                ``__init__`` that does not call ``super().__init__()``...), or returned an instance that
                ``nn.Module.__init__`` never initialised (an ``__init__`` that sets only plain attributes without
                calling ``super().__init__()``, which would fail later in ``model.to()``); the message names the
                component, its class, the plugin that registered it, the arguments and, for an error raised in the
                constructor's own code, the file and line there; the original error (if any) is the cause.
        """
        kind = _kind(kind)
        cls = self.get(kind, name)
        described = self._describe(kind, name)
        parameters = {p.name: p for p in _constructor_parameters(cls)}
        supplied_keys = set(wiring or {})
        clashes = sorted(set(kwargs) & supplied_keys & set(parameters))
        if clashes:
            raise ComponentConfigError(
                f"{described}: {', '.join(clashes)} is set by the model (num_slots, slot_dim, image_size on "
                "VideoSlotModel; feature_dim, feature_grid and target_dim from the encoder); remove it from the "
                "component config"
            )
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        unknown = sorted(k for k in kwargs if k not in parameters and not accepts_any)
        if unknown:
            allowed = sorted(p for p, v in parameters.items() if p not in supplied_keys and v.kind not in _VARIADIC)
            wired = [key for key in unknown if key in supplied_keys]
            note = (
                f" ({', '.join(wired)}: set by the model for the components that name it in their constructor, "
                "never in a component config)"
                if wired
                else ""
            )
            raise ComponentConfigError(f"{described} got unknown config keys {unknown}; it accepts {allowed}{note}")
        supplied = {k: v for k, v in (wiring or {}).items() if k in parameters}
        failing = f"cannot build {described} from config {kwargs!r} and wiring {supplied!r}"
        try:
            instance = cls(**kwargs, **supplied)
        except Exception as error:  # a third party's constructor: whatever it raises, say whose it was
            hint = _constructor_hint(kind, cls, error, list(wiring or {}), {**kwargs, **supplied})
            raise ComponentBuildError(f"{failing}: {type(error).__name__}: {error}{hint}") from error
        if "_modules" not in vars(instance):  # set attributes, but nn.Module.__init__ never ran
            raise ComponentBuildError(
                f"{failing}: the instance was never initialised as a torch.nn.Module (no _modules), so the model "
                f"cannot move, save or train it (does {cls.__qualname__}.__init__ call super().__init__()? "
                f"{_code_of(cls)})"
            )
        return instance

    def _describe(self, kind: ComponentKind, name: str) -> str:
        """``the transition 'damped' (my_plugin.Damped, registered by plugin 'my_plugin' (my-plugin 0.1))``."""
        cls, owner = self._tables[kind][name], self._owners[(kind, name)]
        return f"the {kind.singular} {name!r} ({_qualname(cls)}, registered by {self._plugin_label(owner)})"

    def _plugin_label(self, plugin: str) -> str:
        origin = self.external_plugins.get(plugin)
        return f"plugin {plugin!r}" + (f" ({origin})" if origin else "")

    def _ambiguity_message(self, kind: ComponentKind, name: str) -> str:
        claims = self._ambiguous[(kind, name)]
        owners = [owner for owner, _ in claims]
        who = " and ".join(f"{self._plugin_label(owner)}: {_qualname(cls)}" for owner, cls in claims)
        choices = "; ".join(
            f"{BLOCK_ENV_VAR}={','.join(other for other in owners if other != owner)} to use {_qualname(cls)}"
            for owner, cls in claims
        )
        return (
            f"the {kind.singular} name {name!r} is ambiguous: several installed plugins register it ({who}), "
            f"and none of them takes precedence. Keep one by blocking the others ({choices}; blocking a plugin drops "
            "all its components), or uninstall one"
        )


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _constructor_parameters(cls: type[Component]) -> list[inspect.Parameter]:
    """The parameters of ``cls.__init__`` after ``self``; none for a class that inherits ``nn.Module``'s
    constructor, whose ``*args, **kwargs`` accept nothing it would use."""
    if cls.__init__ is nn.Module.__init__:
        return []
    return list(inspect.signature(cls.__init__).parameters.values())[1:]


def configuration_arguments(
    cls: type[Component], kwargs: dict[str, Any], supplied: Collection[str] = ()
) -> dict[str, Any]:
    """The configuration a component of class ``cls`` was built with: ``kwargs`` plus the default of every other
    constructor argument, as JSON values, so that a saved model rebuilds with the values it was trained with even
    after its plugin changes a default.

    Left out: the wiring arguments the model passed (``supplied``), ``*args``/``**kwargs`` parameters themselves
    (keys given through ``**kwargs`` stay), and a default that is not a JSON value (an ``nn.Module``, a dtype...),
    which a rebuild then takes from the constructor again. Tuples become lists and paths strings, as in the
    component's own config; ``kwargs`` is returned as given otherwise.

    Args:
        cls: the component class.
        kwargs: the component config's own arguments (JSON values).
        supplied: the wiring arguments the model passed to the constructor.

    Returns:
        A new mapping: the constructor's arguments in signature order, then any ``**kwargs`` keys.

    Example:
        >>> configuration_arguments(SlotAttention, {"epsilon": 1e-6}, ["slot_dim"])  # doctest: +SKIP
        {'mlp_multiplier': 4, 'epsilon': 1e-06, 'epsilon_placement': 'denominator', 'truncation': 'none'}
    """
    arguments: dict[str, Any] = {}
    for parameter in _constructor_parameters(cls):
        name = parameter.name
        if name in kwargs:
            arguments[name] = kwargs[name]
        elif name in supplied or parameter.kind in _VARIADIC or parameter.default is parameter.empty:
            continue
        else:
            try:
                arguments[name] = json.loads(json.dumps(parameter.default, default=_path_text))
            except (TypeError, ValueError):  # not a JSON value: the constructor's default applies on a rebuild
                continue
    return arguments | {name: value for name, value in kwargs.items() if name not in arguments}


def _path_text(value: object) -> str:
    """``json.dumps`` fallback: a path default is saved as its text, as a path given in a config is."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else None
    if isinstance(text, str):
        return text
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _constructor_hint(
    kind: ComponentKind, cls: type[Component], error: Exception, wiring: list[str], arguments: dict[str, Any]
) -> str:
    """A likely cause for the common constructor failures, else where the constructor's code raised, or ``""``.

    The advice about the arguments the model fills in is given only for a ``TypeError`` of the call itself
    (``arguments`` do not bind to the constructor's signature); one raised inside the constructor's body (a
    ``nn.GRUCell(slot_dim)`` missing an argument) is a bug there, and its file and line are named instead.
    """
    text = str(error)
    if isinstance(error, AttributeError) and any(
        marker in text for marker in ("_modules", "_parameters", "_buffers", "Module.__init__()")
    ):
        return f" (does {cls.__qualname__}.__init__ call super().__init__() before setting attributes?)"
    if isinstance(error, TypeError) and not _binds(cls, arguments):
        return (
            f" (the model fills in only the arguments named {', '.join(wiring) or '(none)'} for {kind.value}; "
            "any other argument needs a default or a value in the component's kwargs)"
        )
    location = raised_in_package(error, cls.__module__)
    return f" (raised in the constructor's code at {location[0]}:{location[1]})" if location else ""


def _binds(cls: type[Component], arguments: dict[str, Any]) -> bool:
    """Whether ``cls(**arguments)`` fits the signature of ``cls.__init__`` (whatever its body then does)."""
    try:
        inspect.signature(cls.__init__).bind(None, **arguments)  # None stands for self
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (a builtin __init__): assume the call was the problem
        return False
    return True


def _code_of(cls: type[Component]) -> str:
    """``"it is defined at FILE:LINE"`` for the class ``cls``, or ``""`` when its source cannot be found."""
    try:
        file, line = inspect.getsourcefile(cls.__init__), inspect.getsourcelines(cls.__init__)[1]
    except (OSError, TypeError):
        return ""
    return f"its __init__ is at {file}:{line}" if file else ""


def raised_in_package(error: BaseException, module: str) -> tuple[str, int] | None:
    """Where ``error`` was raised in a plugin's own code: the innermost traceback frame of a module of the
    plugin's top-level package (``module``'s first dotted part; for a plugin inside this project's own ``plugins``
    package, ``module`` and its submodules only), as ``(file, line)``; for a ``SyntaxError`` in a file, the file
    and line it names (the broken file, which no frame runs, rather than the plugin's line that imported it), and
    for one in a string given to ``eval`` or ``compile`` (``<string>``) the plugin's frame, else the place it names;
    ``None`` when neither applies."""
    package = module.split(".")[0]
    if package == __name__.split(".")[0]:  # a plugin inside this project's own package: only its module counts
        package = module
    found: tuple[str, int] | None = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        name = str(frame.f_globals.get("__name__", ""))
        if package and (name == package or name.startswith(package + ".")):
            found = (frame.f_code.co_filename, line)
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        in_a_file = not error.filename.startswith("<")  # not the text of an eval() or compile() call
        if in_a_file or found is None:
            return error.filename, error.lineno
    return found


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
