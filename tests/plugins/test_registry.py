"""ComponentRegistry: names, kinds, and errors that list what is known."""

from __future__ import annotations

import pytest

from plugins import ComponentRegistry, RegistryError
from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.transitions.identity import IdentityTransition


class Shadow(IdentityTransition):
    name = "identity"


class BadName(IdentityTransition):
    name = "BadName"


def test_duplicate_name_names_both_owners() -> None:
    registry = ComponentRegistry()
    registry.current_plugin = "first"
    registry.add_transition(IdentityTransition)
    registry.current_plugin = "second"
    with pytest.raises(RegistryError, match=r"duplicate transitions name 'identity'.*'first'.*'second'"):
        registry.add_transition(Shadow)


def test_unknown_name_lists_known_names_and_suggests(registry: ComponentRegistry) -> None:
    with pytest.raises(RegistryError) as error:
        registry.get("aggregators", "slot_atention")
    assert "Known aggregators: slot_attention" in str(error.value)
    assert "Did you mean 'slot_attention'" in str(error.value)


def test_name_must_be_snake_case() -> None:
    with pytest.raises(RegistryError, match="snake_case"):
        ComponentRegistry().add_transition(BadName)


def test_class_must_fit_its_kind() -> None:
    with pytest.raises(RegistryError, match="must subclass"):
        ComponentRegistry().add("transitions", SlotAttention)


def test_unknown_kind_is_rejected_with_the_kinds_listed() -> None:
    with pytest.raises(RegistryError, match="unknown component kind 'samplers'; the kinds are encoders"):
        ComponentRegistry().names("samplers")
    with pytest.raises(RegistryError, match="Did you mean 'decoders'"):
        ComponentRegistry().get("decoder", "broadcast")


def test_as_dict_covers_every_kind_sorted(registry: ComponentRegistry) -> None:
    listing = registry.as_dict()
    assert list(listing) == ["encoders", "initializers", "aggregators", "transitions", "decoders", "losses", "heads"]
    assert all(names == sorted(names) for names in listing.values())


def test_contract_attributes_are_checked_when_a_class_is_registered() -> None:
    from plugins.builtin.decoders.mlp import MLPFeatureDecoder
    from plugins.builtin.encoders.dinov2 import DINOv2Encoder

    class NoTargetKind(MLPFeatureDecoder):
        name = "no_target_kind"
        target_kind = None  # type: ignore[assignment]

    with pytest.raises(RegistryError, match="needs a class attribute `target_kind`, 'pixels' or 'features'"):
        ComponentRegistry().add_decoder(NoTargetKind)

    class WeightsRequired(DINOv2Encoder):
        name = "weights_required"

        def __init__(self, weights: str) -> None:  # required, yet left out of config.json on save
            super().__init__(weights=weights)

    with pytest.raises(RegistryError, match="weights in initial_weight_arguments must have a default"):
        ComponentRegistry().add_encoder(WeightsRequired)
