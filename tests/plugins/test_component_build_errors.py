"""A constructor's mistakes are reported at build time, naming the component and its plugin: an ``__init__`` that
never calls ``super().__init__()`` (even one that sets only plain attributes), and a ``TypeError`` raised inside the
constructor's body (a bug there, placed at its line, not blamed on the config)."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from plugins import ComponentRegistry, VideoSlotModel, build_plugin_manager
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.registry import ComponentBuildError
from plugins.testing import check_model_component, tiny_model_config


class PlainDamped(IdentityTransition):
    """The README's Damped without ``super().__init__()``: only a float is set, which nn.Module lets through."""

    name = "plain_damped"

    def __init__(self, slot_dim: int, factor: float = 0.9) -> None:
        self.factor = factor

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        return self.factor * past_slots[-1]


class CellMissingWidth(IdentityTransition):
    """A ``TypeError`` from the constructor's own code: ``nn.GRUCell`` also needs ``hidden_size``."""

    name = "cell_missing_width"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.cell = torch.nn.GRUCell(slot_dim)  # type: ignore[call-arg]


class NeedsDepth(IdentityTransition):
    """A ``TypeError`` of the call itself: ``depth`` is neither wired nor configured."""

    name = "needs_depth"

    def __init__(self, slot_dim: int, depth: int) -> None:
        super().__init__()


def _registry(*classes: type[IdentityTransition]) -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.external_plugins = {"their_plugin": "their-plugin 1.2"}
    registry.current_plugin = "their_plugin"
    for cls in classes:
        registry.add_transition(cls)
    registry.current_plugin = "<direct>"
    return registry


def _named(cls: type[IdentityTransition]) -> str:
    return re.escape(
        f"cannot build the transition '{cls.name}' ({cls.__module__}.{cls.__qualname__}, registered by plugin "
        "'their_plugin' (their-plugin 1.2))"
    )


def _line_of(cls: type, text: str) -> str:
    """``file:line`` of the line of ``cls``'s source that contains ``text``."""
    lines, start = inspect.getsourcelines(cls)
    return f"{inspect.getsourcefile(cls)}:{start + next(i for i, line in enumerate(lines) if text in line)}"


def test_an_init_without_super_that_sets_only_plain_attributes_fails_at_build_naming_the_component() -> None:
    """It used to build, then fail in model.to() with an AttributeError about '_modules' naming no component."""
    registry = _registry(PlainDamped)
    with pytest.raises(ComponentBuildError, match=_named(PlainDamped)) as raised:
        registry.build("transitions", "plain_damped", {}, {"num_slots": 3, "slot_dim": 16})
    message = str(raised.value)
    assert "never initialised as a torch.nn.Module" in message
    assert "does PlainDamped.__init__ call super().__init__()?" in message
    assert _line_of(PlainDamped, "def __init__") in message
    assert isinstance(raised.value, ValueError)


def test_check_model_component_reports_an_init_without_super_as_a_build_error() -> None:
    registry = _registry(PlainDamped)
    config = tiny_model_config(transition={"name": "plain_damped"})
    with pytest.raises(ComponentBuildError, match=_named(PlainDamped)):
        check_model_component(config, "transition", registry)
    with pytest.raises(ComponentBuildError, match="call super"):
        VideoSlotModel(**config, registry=registry)


def test_a_type_error_inside_the_constructor_body_is_placed_at_its_line_not_blamed_on_the_config() -> None:
    registry = _registry(CellMissingWidth)
    with pytest.raises(ComponentBuildError, match=_named(CellMissingWidth)) as raised:
        registry.build("transitions", "cell_missing_width", {}, {"num_slots": 3, "slot_dim": 16})
    message = str(raised.value)
    assert "missing 1 required positional argument: 'hidden_size'" in message
    assert "model fills in only" not in message
    assert message.endswith(f"(raised in the constructor's code at {_line_of(CellMissingWidth, 'GRUCell(')})")
    assert isinstance(raised.value.__cause__, TypeError)


def test_a_missing_constructor_argument_still_gets_the_config_hint() -> None:
    registry = _registry(NeedsDepth)
    with pytest.raises(
        ComponentBuildError, match=r"missing 1 required positional argument: 'depth' \(the model fills"
    ):
        registry.build("transitions", "needs_depth", {}, {"num_slots": 3, "slot_dim": 16})
